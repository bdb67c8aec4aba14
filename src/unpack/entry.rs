//! Applying one tar entry to a layer tree, in overlay form: `.wh.NAME` becomes a 0/0 character
//! device and `.wh..wh..opq` the `trusted.overlay.opaque` xattr, as overlayfs reads them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;

use super::archive::{Kind as Type, Member};
use super::meta::{allowed_xattr, Meta};
use crate::fs::root::{At, InnerPath, Kind, Root, RootError};
use crate::store::record::Hashes;

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Why one entry could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Path(#[from] RootError),
    #[error("owner {uid}:{gid} is out of range")]
    OwnerRange { uid: i64, gid: i64 },
    #[error("symlink without a target")]
    SymlinkWithoutTarget,
    #[error("hardlink to the root directory")]
    HardlinkToRoot,
    #[error("a hardlink to a directory")]
    HardlinkToDir,
    #[error("a whiteout that is a directory")]
    WhiteoutDir,
    #[error("an opaque whiteout at the root")]
    OpaqueAtRoot,
    #[error("a whiteout with no valid name")]
    WhiteoutName,
    /// A hardlink to a file of a lower layer: resolvable only once those are unpacked.
    #[error("hardlink target {0:?} is not in this layer")]
    LowerLink(String),
    /// A whiteout below a directory this layer does not have: whether it removes anything
    /// depends on the lower layers.
    #[error("whiteout of {0:?} below a directory that is not in this layer")]
    LowerWhiteout(String),
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
    /// The image's lower layer trees, top first, once they are known: a layer is first
    /// unpacked alone, and again with its lower layers only when an entry needs them.
    lower: Option<&'r [Root]>,
    dirs: Vec<(Option<InnerPath>, Meta)>,
    /// Content hashes of the files written, for the tree's record.
    hashes: Hashes,
    /// Directories made for entries below them that have no entry of their own (yet): their
    /// metadata comes from the lower layers (see `implied`).
    implied: std::collections::BTreeMap<std::path::PathBuf, InnerPath>,
    /// Whether an entry reached into the lower layers: a hardlink to a path this layer does
    /// not carry, or a whiteout whose parent it lacks. With `implied`, what makes the tree
    /// depend on the layers below (see `TreeKey::Chain`).
    reaches_lower: bool,
}

/// What `Applier::finish` gives back.
pub struct Finished {
    /// Directories the layer implies without carrying them, for `implied::decide`.
    pub implied: Vec<InnerPath>,
    /// Whether the tree depends on the layers below (see `TreeKey::Chain`).
    pub depends: bool,
    /// Content hashes of the files written, for the tree's record.
    pub hashes: Hashes,
}

fn meta_of(m: &Member) -> Result<Meta, EntryError> {
    let (uid, gid) = match (u32::try_from(m.uid), u32::try_from(m.gid)) {
        (Ok(u), Ok(g)) if u != u32::MAX && g != u32::MAX => (u, g),
        _ => {
            return Err(EntryError::OwnerRange {
                uid: m.uid,
                gid: m.gid,
            })
        }
    };
    let mut xattrs = Vec::new();
    for (name, value) in &m.xattrs {
        if allowed_xattr(name) {
            xattrs.push((name.clone(), value.clone()));
        } else {
            tracing::warn!(entry = %m.display(), xattr = %name, "ignoring an xattr images may not set");
        }
    }
    Ok(Meta {
        uid,
        gid,
        mode: m.mode,
        mtime: m.mtime,
        xattrs,
    })
}

/// Hashes what is written through it: a file's content, for the tree's record.
struct HashWrite<'f> {
    file: &'f mut File,
    hasher: sha2::Sha256,
}

impl io::Write for HashWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes a file's contents: plain, or a sparse file's regions with holes between them.
/// Returns the content's sha256 for a plain file (a sparse one is hashed when recorded).
fn write_contents(
    m: &Member,
    data: &mut impl Read,
    f: &mut File,
) -> Result<Option<[u8; 32]>, EntryError> {
    let Some((_, regions)) = &m.sparse else {
        let mut w = HashWrite {
            file: f,
            hasher: sha2::Digest::new(),
        };
        io::copy(data, &mut w).map_err(io("writing file contents"))?;
        return Ok(Some(sha2::Digest::finalize(w.hasher).into()));
    };
    for r in regions {
        f.seek(SeekFrom::Start(r.offset))
            .map_err(io("seeking in a sparse file"))?;
        let n = io::copy(&mut data.take(r.len), f).map_err(io("writing a sparse file"))?;
        if n != r.len {
            return Err(EntryError::Io {
                what: "writing a sparse file",
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "its data ends early"),
            });
        }
    }
    // The tail after the last region is a hole too.
    f.set_len(m.size)
        .map_err(io("setting a sparse file's size"))?;
    Ok(None)
}

impl<'r> Applier<'r> {
    pub fn new(root: &'r Root, lower: Option<&'r [Root]>) -> Self {
        Applier {
            root,
            lower,
            dirs: Vec::new(),
            hashes: Hashes::new(),
            implied: std::collections::BTreeMap::new(),
            reaches_lower: false,
        }
    }

    /// Applies one member, reading its contents from `data`. The caller names the layer and
    /// entry in any error.
    pub fn apply(&mut self, m: &Member, data: &mut impl Read) -> Result<(), EntryError> {
        let Some(path) = InnerPath::parse(&m.path)? else {
            // "./" itself: the layer root's own metadata.
            if m.kind == Type::Dir {
                self.dirs.push((None, meta_of(m)?));
            }
            return Ok(());
        };
        if let Some(hidden) = path.name().strip_prefix(WHITEOUT) {
            return self.whiteout(&path, hidden, m.kind);
        }
        let meta = meta_of(m)?;
        let at = self.parent_of(&path)?;
        match m.kind {
            Type::Dir => {
                // This layer's whiteout of the name, then the name as a directory: the lower
                // one is gone, so none of its contents shows through.
                let replaces_whiteout = super::lower::is_whiteout(&at)?;
                let f = at.mkdir(0o700)?;
                if replaces_whiteout {
                    mark_opaque(&f)?;
                }
                self.implied.remove(&path.relative());
                self.dirs.push((Some(path), meta));
            }
            Type::File => {
                let mut f = at.create_file()?;
                let hash = write_contents(m, data, &mut f)?;
                let st = nix::sys::stat::fstat(&f).map_err(errno("reading a written file"))?;
                match hash {
                    Some(h) => self.hashes.insert((st.st_dev, st.st_ino), h),
                    None => self.hashes.remove(&(st.st_dev, st.st_ino)),
                };
                meta.apply(&f)
                    .map_err(errno("setting owner, mode, xattrs or times"))?;
            }
            Type::Symlink => {
                if m.link.is_empty() {
                    return Err(EntryError::SymlinkWithoutTarget);
                }
                at.symlink(&m.link)?;
                at.lchown_times(meta.uid, meta.gid, meta.mtime)?;
            }
            Type::Hardlink => {
                let target = InnerPath::parse(&m.link)?.ok_or(EntryError::HardlinkToRoot)?;
                if target.relative() == path.relative() {
                    // GNU tar writes one when a file is named twice (`tar cf l.tar dir
                    // dir/file`); it and Python's tarfile keep the file and skip the link.
                    tracing::debug!(entry = %path.display(), "skipping a hardlink to itself");
                    return Ok(());
                }
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
                    None => self.link_from_lower(&target, &at)?,
                }
            }
            Type::Fifo => {
                at.mknod(SFlag::S_IFIFO, meta.mode, 0)?;
                at.chown_chmod_times(meta.uid, meta.gid, meta.mode, meta.mtime)?;
            }
            Type::Char | Type::Block => {
                // The payload gets the host's /dev; a device node in an image is a way around
                // that for an unprivileged payload user.
                tracing::warn!(entry = %path.display(), "skipping a device node in the image");
            }
        }
        Ok(())
    }

    /// The directory `path` goes in, with the directories above it that this layer does not
    /// carry made (see `make_parents`).
    fn parent_of<'p>(&mut self, path: &'p InnerPath) -> Result<At<'p>, EntryError> {
        match self.root.parent(path, false) {
            Err(RootError::Sys {
                source: nix::errno::Errno::ENOENT,
                ..
            }) => {
                self.make_parents(path)?;
                Ok(self.root.parent(path, false)?)
            }
            other => Ok(other?),
        }
    }

    /// A hardlink into a lower layer is a hardlink to that layer tree's file (the store holds
    /// every tree on one filesystem), so a flattened tree can keep the two names one inode, as
    /// applying the layers in order does; a copy where the link cannot be made. The topmost
    /// lower layer with the path decides; a whiteout there means the target does not exist.
    fn link_from_lower(&mut self, target: &InnerPath, at: &At) -> Result<(), EntryError> {
        self.reaches_lower = true;
        let not_found = || EntryError::LowerLink(target.display());
        let Some(lowers) = self.lower else {
            return Err(not_found());
        };
        let Some(t) = super::lower::find(lowers, target)? else {
            return Err(not_found());
        };
        if t.kind()? == Kind::Dir {
            return Err(EntryError::HardlinkToDir);
        }
        if !t.is_file()? {
            return Err(not_found());
        }
        match at.hardlink(&t) {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::debug!(entry = %target.display(), error = %e, "copying a lower file instead of linking it");
            }
        }
        let mut src = t.open(OFlag::O_RDONLY)?;
        let st = nix::sys::stat::fstat(&src).map_err(errno("reading the hardlink target"))?;
        let mut out = at.create_file()?;
        crate::fs::copy::copy_sparse(&mut src, &mut out)
            .map_err(io("copying a hardlinked file from a lower layer"))?;
        let meta = Meta {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            mtime: st.st_mtime,
            xattrs: vec![],
        };
        meta.apply(&out)
            .map_err(errno("setting owner, mode or times"))
    }

    fn whiteout(&mut self, path: &InnerPath, hidden: &[u8], kind: Type) -> Result<(), EntryError> {
        if kind == Type::Dir {
            return Err(EntryError::WhiteoutDir);
        }
        if path.name() == OPAQUE {
            // The directory's lower contents are hidden; create it if this layer has no entry.
            let Some(dir) = path.parent() else {
                return Err(EntryError::OpaqueAtRoot);
            };
            // The directory itself too, when the layer does not carry it.
            self.parent_of(path)?;
            let f = self
                .root
                .parent(&dir, false)?
                .open(OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
            return mark_opaque(&f);
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.starts_with(WHITEOUT) {
            return Err(EntryError::WhiteoutName);
        }
        let target = path.with_name(hidden);
        let at = match self.root.parent(&target, false) {
            // This layer's own entry of the name: a whiteout applies to the lower layers only
            // (OCI image spec), so it stays, and a directory of this layer hides theirs.
            Ok(at) if at.kind()? == Kind::Dir => {
                return mark_opaque(&at.open(OFlag::O_RDONLY | OFlag::O_DIRECTORY)?)
            }
            Ok(at) if at.kind()? == Kind::Other && !super::lower::is_whiteout(&at)? => {
                tracing::debug!(entry = %path.display(), "a whiteout of this layer's own entry removes only what lies below");
                return Ok(());
            }
            Ok(at) => at,
            // Below a non-directory of this layer: nothing there to remove.
            Err(RootError::Sys {
                source: nix::errno::Errno::ENOTDIR,
                ..
            }) => return Ok(()),
            Err(RootError::Sys {
                source: nix::errno::Errno::ENOENT,
                ..
            }) => {
                // The parent comes from a lower layer, if from anywhere. Creating it here
                // would turn a lower non-directory into a directory, so ask the lower layers.
                self.reaches_lower = true;
                let Some(lowers) = self.lower else {
                    return Err(EntryError::LowerWhiteout(target.display()));
                };
                if !parent_is_lower_dir(lowers, &target)? {
                    // Removing a path that does not exist is a no-op (umoci, containerd).
                    return Ok(());
                }
                self.make_parents(&target)?;
                self.root.parent(&target, false)?
            }
            Err(e) => return Err(e.into()),
        };
        at.mknod(SFlag::S_IFCHR, 0o000, 0)?;
        Ok(())
    }

    /// Makes the directories above `target` that this layer lacks, and notes them: each
    /// takes the metadata of the nearest lower directory it stands over, decided once the
    /// lower layers are known (`implied::decide`).
    fn make_parents(&mut self, target: &InnerPath) -> Result<(), EntryError> {
        let mut chain = Vec::new();
        let mut cur = target.parent();
        while let Some(dir) = cur {
            cur = dir.parent();
            chain.push(dir);
        }
        for dir in chain.into_iter().rev() {
            let at = self.root.parent(&dir, false)?;
            if at.kind()? == Kind::Dir {
                continue;
            }
            at.mkdir(0o700)?;
            self.implied.insert(dir.relative(), dir);
        }
        Ok(())
    }

    /// Applies directory metadata, deepest first, and gives back the directories the layer
    /// implies without carrying them, for `implied::decide`, whether the tree depends on the
    /// layers below (it implies directories, or an entry reached into them), and the content
    /// hashes of the files written, for the tree's record.
    pub fn finish(mut self) -> Result<Finished, (String, EntryError)> {
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
        let depends = self.reaches_lower || !self.implied.is_empty();
        Ok(Finished {
            implied: self.implied.into_values().collect(),
            depends,
            hashes: self.hashes,
        })
    }
}

/// Whether the parent of `target` is a directory in the image below this layer.
fn parent_is_lower_dir(lowers: &[Root], target: &InnerPath) -> Result<bool, EntryError> {
    let Some(dir) = target.parent() else {
        return Ok(true);
    };
    Ok(super::lower::dir(lowers, &dir)?.is_some())
}

fn mark_opaque(f: &File) -> Result<(), EntryError> {
    crate::fs::root::set_xattr(f, "trusted.overlay.opaque", b"y").map_err(errno(
        "marking a directory opaque (does the store's filesystem support trusted xattrs?)",
    ))
}
