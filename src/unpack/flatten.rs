//! Flattening layer trees into one plain directory, with overlayfs's semantics: a 0/0 character
//! device deletes, an opaque directory hides what lies below, a directory replaces a
//! non-directory and the reverse. Used for `skiff unpack` and where overlayfs is unavailable.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::sys::stat::SFlag;

use super::meta::{allowed_xattr, Meta};
use super::UnpackError;
use crate::fs::root::{InnerPath, Root};

fn target_err(path: &Path, e: impl Into<io::Error>) -> UnpackError {
    UnpackError::Target {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Merges `layers` (bottom first) into `target`, which must exist.
pub fn flatten(layers: &[std::path::PathBuf], target: &Path) -> Result<(), UnpackError> {
    let root = Root::open(target)?;
    // Across layers: a layer's hardlink to a lower layer's file is that file's inode in the
    // layer trees (see `unpack::entry`), and one inode here too.
    let mut links = Links::default();
    for layer in layers {
        merge(layer, &[], &root, &mut links)?;
        let meta = read_meta(layer).map_err(|e| target_err(layer, e))?;
        let f = File::open(target).map_err(|e| target_err(target, e))?;
        meta.apply(&f).map_err(|e| target_err(target, e))?;
    }
    Ok(())
}

fn read_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: valid C string and buffer with its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let key = String::from_utf8_lossy(name).into_owned();
        if !allowed_xattr(&key) {
            continue;
        }
        let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
        let mut val = vec![0u8; 64 * 1024];
        // SAFETY: as above.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        if m < 0 {
            return Err(io::Error::last_os_error());
        }
        val.truncate(m as usize);
        out.push((key, val));
    }
    Ok(out)
}

/// Owner, mode, mtime and allowed xattrs of a node in a store tree.
fn read_meta(path: &Path) -> io::Result<Meta> {
    let m = fs::symlink_metadata(path)?;
    Ok(Meta {
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode() & 0o7777,
        mtime: m.mtime(),
        xattrs: if m.file_type().is_symlink() {
            vec![]
        } else {
            read_xattrs(path)?
        },
    })
}

/// The target's files made from layer-tree files with more than one name: by the layer
/// tree's (dev, ino), the target paths and the target inode each was made as.
#[derive(Default)]
struct Links(HashMap<(u64, u64), Vec<(InnerPath, u64)>>);

impl Links {
    /// A target path that still holds the file made for `key` (a later layer may have
    /// replaced or deleted the first name).
    fn find(&self, root: &Root, key: (u64, u64)) -> Result<Option<&InnerPath>, UnpackError> {
        for (path, ino) in self.0.get(&key).into_iter().flatten() {
            let at = match root.parent(path, false) {
                Ok(at) => at,
                Err(crate::fs::root::RootError::Sys { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let st = nix::sys::stat::fstatat(
                at.dir.as_fd(),
                at.name.as_c_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            if st.is_ok_and(|st| {
                st.st_ino == *ino && st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()
            }) {
                return Ok(Some(path));
            }
        }
        Ok(None)
    }

    fn add(&mut self, key: (u64, u64), path: InnerPath, made: &File) -> Result<(), UnpackError> {
        let ino = made
            .metadata()
            .map_err(|e| target_err(&path.relative(), e))?
            .ino();
        self.0.entry(key).or_default().push((path, ino));
        Ok(())
    }
}

fn is_opaque(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut v = [0u8; 2];
    // SAFETY: valid C strings and buffer.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}

/// Copies the layer directory `src` (at `rel` inside the image) onto the target.
fn merge(src: &Path, rel: &[u8], root: &Root, links: &mut Links) -> Result<(), UnpackError> {
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(|e| target_err(src, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| target_err(src, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name();
        let child_rel = if rel.is_empty() {
            name.as_bytes().to_vec()
        } else {
            [rel, b"/", name.as_bytes()].concat()
        };
        let Some(inner) = InnerPath::parse(&child_rel)? else {
            continue;
        };
        let m = fs::symlink_metadata(&path).map_err(|e| target_err(&path, e))?;
        let ft = m.file_type();
        let at = root.parent(&inner, true)?;
        if ft.is_char_device() && m.rdev() == 0 {
            at.remove()?;
            continue;
        }
        let meta = read_meta(&path).map_err(|e| target_err(&path, e))?;
        if ft.is_dir() {
            if is_opaque(&path) {
                at.remove()?;
            }
            at.mkdir(0o700)?;
            merge(&path, &child_rel, root, links)?;
            let f = at.open(nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY)?;
            meta.apply(&f).map_err(|e| target_err(&path, e))?;
        } else if ft.is_file() {
            let key = (m.dev(), m.ino());
            if m.nlink() > 1 {
                if let Some(first) = links.find(root, key)? {
                    if first.relative() == inner.relative() {
                        // The same layer tree twice in one image: already here.
                        continue;
                    }
                    let t = root.parent(first, false)?;
                    at.hardlink(&t)?;
                    continue;
                }
            }
            let mut out = at.create_file()?;
            let mut input = File::open(&path).map_err(|e| target_err(&path, e))?;
            crate::fs::copy::copy_sparse(&mut input, &mut out).map_err(|e| target_err(&path, e))?;
            meta.apply(&out).map_err(|e| target_err(&path, e))?;
            if m.nlink() > 1 {
                links.add(key, inner.clone(), &out)?;
            }
        } else if ft.is_symlink() {
            let t = fs::read_link(&path).map_err(|e| target_err(&path, e))?;
            at.symlink(OsStr::new(&t).as_bytes())?;
            at.lchown_times(meta.uid, meta.gid, meta.mtime)?;
        } else if ft.is_fifo() {
            at.mknod(SFlag::S_IFIFO, meta.mode, 0)?;
            at.chown_chmod_times(meta.uid, meta.gid, meta.mode, meta.mtime)?;
        }
    }
    Ok(())
}
