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

impl Meta {
    /// The owner, mode, mtime and allowed xattrs of an open node (a lower layer's directory,
    /// reached through the path-safety primitive, so never by a path a symlink could redirect).
    pub fn read(f: &File) -> std::io::Result<Meta> {
        use std::os::unix::fs::MetadataExt;
        let m = f.metadata()?;
        Ok(Meta {
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode() & 0o7777,
            mtime: m.mtime(),
            xattrs: read_xattrs(f)?,
        })
    }
}

/// The xattrs an image may set (`allowed_xattr`) that `f` carries.
fn read_xattrs(f: &File) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: valid fd and a buffer with its length.
    let n = unsafe { libc::flistxattr(fd, names.as_mut_ptr().cast(), names.len()) };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let key = String::from_utf8_lossy(name).into_owned();
        if !allowed_xattr(&key) {
            continue;
        }
        let cname = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
        let mut val = vec![0u8; 64 * 1024];
        // SAFETY: as above, with a NUL-terminated name.
        let m = unsafe { libc::fgetxattr(fd, cname.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        val.truncate(usize::try_from(m).map_err(|_| std::io::Error::last_os_error())?);
        out.push((key, val));
    }
    Ok(out)
}

/// Whether an open directory is marked opaque (`trusted.overlay.opaque=y`).
pub fn is_opaque(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    let mut v = [0u8; 2];
    // SAFETY: valid fd, NUL-terminated name and a buffer with its length.
    let n = unsafe {
        libc::fgetxattr(
            f.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}
