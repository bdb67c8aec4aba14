//! Applying one tar entry to a layer tree, in overlay form: `.wh.NAME` becomes a 0/0 character
//! device and `.wh..wh..opq` the `trusted.overlay.opaque` xattr, as overlayfs reads them.

use std::io::{self, Read};

use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;
use tar::EntryType;

use super::meta::{allowed_xattr, Meta};
use crate::fs::root::{InnerPath, Kind, Root, RootError};

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Why one entry could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Path(#[from] RootError),
    #[error("{0}")]
    Hostile(String),
    /// A hardlink to a file of a lower layer: resolvable only once those are unpacked.
    #[error("hardlink target {0:?} is not in this layer")]
    LowerLink(String),
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(io::Error) -> EntryError {
    move |source| EntryError::Io { what, source }
}

fn errno(what: &'static str) -> impl FnOnce(nix::errno::Errno) -> EntryError {
    move |e| EntryError::Io {
        what,
        source: io::Error::from(e),
    }
}

/// Applies entries of one layer to `root`; directory metadata waits for `finish`, so a
/// read-only directory mode does not stop its own contents from being written.
pub struct Applier<'r> {
    root: &'r Root,
    /// The image's lower layer trees, top first, for hardlinks into them.
    lower: &'r [Root],
    dirs: Vec<(Option<InnerPath>, Meta)>,
}

fn meta_of<R: Read>(e: &mut tar::Entry<R>) -> Result<Meta, EntryError> {
    let h = e.header();
    let num = |r: io::Result<u64>, what| r.map_err(io(what));
    let uid = num(h.uid(), "reading uid")?;
    let gid = num(h.gid(), "reading gid")?;
    let (uid, gid) = match (u32::try_from(uid), u32::try_from(gid)) {
        (Ok(u), Ok(g)) if u != u32::MAX && g != u32::MAX => (u, g),
        _ => {
            return Err(EntryError::Hostile(format!(
                "owner {uid}:{gid} is out of range"
            )))
        }
    };
    let mode = h.mode().map_err(io("reading mode"))?;
    let mtime = num(h.mtime(), "reading mtime")?.min(i64::MAX as u64) as i64;
    let mut xattrs = Vec::new();
    if let Some(exts) = e.pax_extensions().map_err(io("reading PAX headers"))? {
        for ext in exts {
            let ext = ext.map_err(io("reading PAX headers"))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if allowed_xattr(name) {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                } else {
                    tracing::warn!(xattr = name, "ignoring an xattr images may not set");
                }
            }
        }
    }
    Ok(Meta {
        uid,
        gid,
        mode,
        mtime,
        xattrs,
    })
}

impl<'r> Applier<'r> {
    pub fn new(root: &'r Root, lower: &'r [Root]) -> Self {
        Applier {
            root,
            lower,
            dirs: Vec::new(),
        }
    }

    /// Applies one entry. The caller names the layer and entry in any error.
    pub fn apply<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<(), EntryError> {
        let raw = e.path_bytes().into_owned();
        let kind = e.header().entry_type();
        let Some(path) = InnerPath::parse(&raw)? else {
            // "./" itself: the layer root's own metadata.
            if kind == EntryType::Directory {
                let meta = meta_of(e)?;
                self.dirs.push((None, meta));
            }
            return Ok(());
        };
        if let Some(hidden) = path.name().strip_prefix(WHITEOUT) {
            return self.whiteout(&path, hidden, kind);
        }
        let meta = meta_of(e)?;
        let at = self.root.parent(&path, true)?;
        match kind {
            EntryType::Directory => {
                at.mkdir(0o700)?;
                self.dirs.push((Some(path), meta));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut f = at.create_file()?;
                io::copy(e, &mut f).map_err(io("writing file contents"))?;
                meta.apply(&f)
                    .map_err(errno("setting owner, mode, xattrs or times"))?;
            }
            EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| EntryError::Hostile("symlink without a target".into()))?;
                at.symlink(&target)?;
                at.lchown_times(meta.uid, meta.gid, meta.mtime)?;
            }
            EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| EntryError::Hostile("hardlink without a target".into()))?;
                let target = InnerPath::parse(&target)?
                    .ok_or_else(|| EntryError::Hostile("hardlink to the root directory".into()))?;
                let found = match self.root.parent(&target, false) {
                    Ok(t) if t.kind()? != Kind::Missing => Some(t),
                    Ok(_)
                    | Err(RootError::Sys {
                        source: nix::errno::Errno::ENOENT,
                        ..
                    }) => None,
                    Err(e) => return Err(e.into()),
                };
                match found {
                    Some(t) => at.hardlink(&t)?,
                    None => self.copy_from_lower(&target, &at)?,
                }
            }
            EntryType::Fifo => {
                at.mknod(SFlag::S_IFIFO, meta.mode, 0)?;
                at.chown_chmod_times(meta.uid, meta.gid, meta.mode, meta.mtime)?;
            }
            EntryType::Char | EntryType::Block => {
                // The payload gets the host's /dev; a device node in an image is a way around
                // that for an unprivileged payload user.
                tracing::warn!(entry = %path.display(), "skipping a device node in the image");
            }
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {}
            other => {
                return Err(EntryError::Hostile(format!(
                    "unsupported entry type {other:?}"
                )));
            }
        }
        Ok(())
    }

    /// A hardlink into a lower layer becomes a copy in this one (layers are separate trees;
    /// the overlay shows the same content). The topmost lower layer with the path decides; a
    /// whiteout there means the target does not exist.
    fn copy_from_lower(
        &self,
        target: &InnerPath,
        at: &crate::fs::root::At,
    ) -> Result<(), EntryError> {
        let not_found = || EntryError::LowerLink(target.display());
        if self.lower.is_empty() {
            return Err(not_found());
        }
        for lower in self.lower {
            let t = match lower.parent(target, false) {
                Ok(t) => t,
                Err(RootError::Sys {
                    source: nix::errno::Errno::ENOENT,
                    ..
                }) => continue,
                Err(e) => return Err(e.into()),
            };
            match t.kind()? {
                Kind::Missing => continue,
                Kind::Dir => return Err(EntryError::Hostile("a hardlink to a directory".into())),
                Kind::Other => {}
            }
            if !t.is_file()? {
                // A whiteout (or any non-file) hides or cannot be the target.
                return Err(not_found());
            }
            let mut src = t.open(OFlag::O_RDONLY)?;
            let st = nix::sys::stat::fstat(&src).map_err(errno("reading the hardlink target"))?;
            let mut out = at.create_file()?;
            io::copy(&mut src, &mut out)
                .map_err(io("copying a hardlinked file from a lower layer"))?;
            let meta = Meta {
                uid: st.st_uid,
                gid: st.st_gid,
                mode: st.st_mode & 0o7777,
                mtime: st.st_mtime,
                xattrs: vec![],
            };
            return meta
                .apply(&out)
                .map_err(errno("setting owner, mode or times"));
        }
        Err(not_found())
    }

    fn whiteout(
        &mut self,
        path: &InnerPath,
        hidden: &[u8],
        kind: EntryType,
    ) -> Result<(), EntryError> {
        if kind == EntryType::Directory {
            return Err(EntryError::Hostile("a whiteout that is a directory".into()));
        }
        if path.name() == OPAQUE {
            // The directory's lower contents are hidden; create it if this layer has no entry.
            let dir = path.parent();
            let f = match &dir {
                Some(d) => self.root.parent(d, true)?.mkdir(0o755)?,
                None => return Err(EntryError::Hostile("an opaque whiteout at the root".into())),
            };
            return crate::fs::root::set_xattr(&f, "trusted.overlay.opaque", b"y").map_err(errno(
                "marking a directory opaque (does the store's filesystem support trusted xattrs?)",
            ));
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.starts_with(WHITEOUT) {
            return Err(EntryError::Hostile("a whiteout with no valid name".into()));
        }
        let target = path.with_name(hidden);
        let at = self.root.parent(&target, true)?;
        at.mknod(SFlag::S_IFCHR, 0o000, 0)?;
        Ok(())
    }

    /// Applies directory metadata, deepest first.
    pub fn finish(mut self) -> Result<(), (String, EntryError)> {
        self.dirs
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.as_ref().map_or(0, |p| p.display().len())));
        for (path, meta) in &self.dirs {
            let name = path.as_ref().map_or(".".to_string(), |p| p.display());
            let f = match path {
                Some(p) => self
                    .root
                    .parent(p, false)
                    .and_then(|at| at.open(OFlag::O_RDONLY | OFlag::O_DIRECTORY))
                    .map_err(|e| (name.clone(), e.into()))?,
                None => std::fs::File::open(self.root.path())
                    .map_err(|e| (name.clone(), io("opening the layer root")(e)))?,
            };
            meta.apply(&f)
                .map_err(|e| (name.clone(), errno("setting directory metadata")(e)))?;
        }
        Ok(())
    }
}
