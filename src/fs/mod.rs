//! Filesystem access to untrusted trees.

pub mod copy;
pub mod root;

#[cfg(test)]
mod tests;
