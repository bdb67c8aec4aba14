//! Filesystem access to untrusted trees.

pub mod root;

#[cfg(test)]
mod tests;
