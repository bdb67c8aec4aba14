//! Ownership, mode, times and xattrs of one node, applied through an open fd.

use std::fs::File;
use std::os::fd::AsFd;

use nix::errno::Errno;

use crate::fs::root::set_xattr;

/// Xattrs an image may not set: `trusted.overlay.*` would let a layer forge whiteouts, opaque
/// directories or redirects in the overlay that serves it.
pub fn allowed_xattr(name: &str) -> bool {
    !name.starts_with("trusted.")
}

#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub mtime: i64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    /// chown first (it clears setuid/setgid), then chmod, xattrs (security.capability is
    /// cleared by chown too), and the mtime last.
    pub fn apply(&self, f: &File) -> Result<(), Errno> {
        nix::unistd::fchown(
            f.as_fd(),
            Some(nix::unistd::Uid::from_raw(self.uid)),
            Some(nix::unistd::Gid::from_raw(self.gid)),
        )?;
        nix::sys::stat::fchmod(
            f.as_fd(),
            nix::sys::stat::Mode::from_bits_truncate(self.mode & 0o7777),
        )?;
        for (k, v) in &self.xattrs {
            set_xattr(f, k, v)?;
        }
        let t = nix::sys::time::TimeSpec::new(self.mtime, 0);
        nix::sys::stat::futimens(f.as_fd(), &t, &t)
    }
}
