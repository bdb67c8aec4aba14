//! What the layers below hold, for the entries of a layer that reach into them: a hardlink
//! target, the directory a whiteout is in, a directory a layer implies without carrying it.
//! The topmost lower layer that has the path decides, and what a layer tree marks as hidden
//! (a whiteout, a non-directory above the path, an opaque directory above it) hides it from
//! every layer further down, as the overlay reads the same trees.

use std::fs::File;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, SFlag};

use super::meta::is_opaque;
use crate::fs::root::{At, InnerPath, Kind, Root, RootError};

/// Whether a 0/0 character device (overlayfs's whiteout) is at the name.
pub fn is_whiteout(at: &At) -> Result<bool, RootError> {
    match fstatat(
        at.dir.as_fd(),
        at.name.as_c_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) => Ok(st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFCHR.bits() && st.st_rdev == 0),
        Err(Errno::ENOENT) => Ok(false),
        Err(source) => Err(RootError::Sys {
            op: "stat",
            path: String::from_utf8_lossy(at.name.as_bytes()).into_owned(),
            source,
        }),
    }
}

/// The node at `p` in the image the `lowers` (top first) make, if it is there: a directory
/// or a non-directory that is not a whiteout. `None` when no lower layer has it or one hides it.
pub fn find<'p>(lowers: &[Root], p: &'p InnerPath) -> Result<Option<At<'p>>, RootError> {
    for lower in lowers {
        match lower.parent(p, false) {
            Ok(at) => match at.kind()? {
                Kind::Missing if opaque_above(lower, p)? => return Ok(None),
                Kind::Missing => continue,
                Kind::Other if is_whiteout(&at)? => return Ok(None),
                Kind::Dir | Kind::Other => return Ok(Some(at)),
            },
            // Some directory above it is missing here: a lower layer may have it, unless a
            // directory above that one is opaque here.
            Err(RootError::Sys {
                source: Errno::ENOENT,
                ..
            }) if !opaque_above(lower, p)? => continue,
            Err(RootError::Sys {
                source: Errno::ENOENT | Errno::ENOTDIR,
                ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The directory at `p` in the image the `lowers` make, opened, if it is one there.
pub fn dir(lowers: &[Root], p: &InnerPath) -> Result<Option<File>, RootError> {
    match find(lowers, p)? {
        Some(at) if at.kind()? == Kind::Dir => {
            at.open(OFlag::O_RDONLY | OFlag::O_DIRECTORY).map(Some)
        }
        _ => Ok(None),
    }
}

/// Whether a directory of `lower` above `p` is opaque (hides the layers below it).
fn opaque_above(lower: &Root, p: &InnerPath) -> Result<bool, RootError> {
    let mut cur = p.parent();
    while let Some(dir) = cur {
        match lower.parent(&dir, false) {
            Ok(at) if at.kind()? == Kind::Dir => {
                if is_opaque(&at.open(OFlag::O_RDONLY | OFlag::O_DIRECTORY)?) {
                    return Ok(true);
                }
            }
            Ok(_)
            | Err(RootError::Sys {
                source: Errno::ENOENT | Errno::ENOTDIR,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        cur = dir.parent();
    }
    Ok(false)
}
