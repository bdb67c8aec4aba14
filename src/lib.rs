//! skiff: pull a verified container image and exec it in place.
//!
//! Data flows one way: reference → manifest → blobs (store) → layers → rootfs → exec.

pub mod cli;
pub mod fleet;
pub mod fs;
pub mod images;
pub mod logging;
pub mod manifest;
pub mod parallel;
pub mod profiles;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod run;
pub mod store;
pub mod transport;
pub mod trust;
pub mod unpack;
pub mod update;
pub mod wrapper;
