//! skiff: pull a verified container image and exec it in place.
//!
//! Data flows one way: reference → manifest → blobs (store) → layers → rootfs → exec.

pub mod manifest;
pub mod reference;
