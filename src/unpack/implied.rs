//! Directories a layer implies without carrying them (`tar cf layer.tar usr/local/bin/app`):
//! applying the layers in order leaves such a directory as the layers below made it, and the
//! overlay takes a merged directory's metadata from the upper tree, so the layer tree must
//! hold the lower directory's owner, mode, times and xattrs, not a made-up 0755 root. They
//! are decided once the lower trees are known, after the layer itself is unpacked, so layers
//! still unpack in parallel and only this step waits for the ones below.

use std::fs::File;

use nix::fcntl::OFlag;

use super::entry::EntryError;
use super::meta::Meta;
use crate::fs::root::{InnerPath, Kind, Root, RootError};

/// Gives each of `implied` (directories of the tree `root`, none with an entry of its own)
/// the metadata of the nearest of `lowers` (top first) that has it, or, where none has it,
/// what `mkdir` gives it there. Returns the directory that failed, with why.
pub fn decide(
    root: &Root,
    lowers: &[Root],
    implied: &[InnerPath],
) -> Result<(), (String, EntryError)> {
    let mut order: Vec<&InnerPath> = implied.iter().collect();
    // Parents first: a new directory below an implied one takes after it.
    order.sort_by_key(|p| p.display().len());
    for p in order {
        decide_one(root, lowers, p).map_err(|e| (p.display(), e))?;
    }
    Ok(())
}

fn decide_one(root: &Root, lowers: &[Root], p: &InnerPath) -> Result<(), EntryError> {
    let io = |what| move |source| EntryError::Io { what, source };
    match root.parent(p, false) {
        Ok(at) if at.kind()? == Kind::Dir => {}
        // A later entry of the layer replaced it (or what is above it).
        Ok(_)
        | Err(RootError::Sys {
            source: nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR,
            ..
        }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let meta = match super::lower::dir(lowers, p)? {
        Some(f) => Meta::read(&f).map_err(io("reading a lower directory"))?,
        None => new_dir_meta(&parent_meta(root, p).map_err(io("reading a parent directory"))?),
    };
    let f = root
        .parent(p, false)?
        .open(OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    meta.apply(&f).map_err(|e| EntryError::Io {
        what: "setting directory metadata",
        source: e.into(),
    })
}

/// The metadata the directory above `p` has in this tree (already final: explicit entries
/// were applied, implied parents decided first).
fn parent_meta(root: &Root, p: &InnerPath) -> std::io::Result<Meta> {
    let f = match p.parent() {
        Some(parent) => root
            .parent(&parent, false)
            .and_then(|at| at.open(OFlag::O_RDONLY | OFlag::O_DIRECTORY))
            .map_err(std::io::Error::other)?,
        None => File::open(root.path())?,
    };
    Meta::read(&f)
}

/// A directory no layer has, as `mkdir` makes it when applying the layers in order (GNU tar,
/// umoci): 0755 root, but below a setgid directory (Debian's `/usr/local`, 2775 root:staff)
/// setgid with that directory's group, as the kernel gives it.
fn new_dir_meta(parent: &Meta) -> Meta {
    let (mode, gid) = if parent.mode & 0o2000 != 0 {
        (0o2755, parent.gid)
    } else {
        (0o755, 0)
    };
    Meta {
        mode,
        gid,
        mtime: now(),
        ..Meta::default()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_takes_a_setgid_parents_group() {
        let staff = Meta {
            mode: 0o2775,
            gid: 50,
            ..Meta::default()
        };
        let m = new_dir_meta(&staff);
        assert_eq!((m.mode, m.uid, m.gid), (0o2755, 0, 50));
        let plain = Meta {
            mode: 0o1777,
            gid: 7,
            ..Meta::default()
        };
        let m = new_dir_meta(&plain);
        assert_eq!((m.mode, m.uid, m.gid), (0o755, 0, 0));
    }
}
