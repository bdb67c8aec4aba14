//! The one place an untrusted path becomes a file descriptor.
//!
//! Every path from an image (tar entry, hardlink target, whiteout) is split into components
//! here; `..` is refused outright, a leading `/` is taken relative to the root (as containerd
//! does), parents are resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` so no
//! symlink can lead outside, and the final component is always acted on with `*at` calls that
//! do not follow it. The kernel enforces confinement; this code only asks.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{linkat, symlinkat, unlinkat, UnlinkatFlags};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RootError {
    #[error("{path:?}: {why}")]
    Hostile { path: String, why: &'static str },
    #[error("{op} {path:?}")]
    Sys {
        op: &'static str,
        path: String,
        #[source]
        source: Errno,
    },
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn sys<'a>(op: &'static str, path: &'a [u8]) -> impl FnOnce(Errno) -> RootError + 'a {
    move |source| match source {
        Errno::EXDEV | Errno::ELOOP => RootError::Hostile {
            path: show(path),
            why: "leads outside the root through a symlink",
        },
        _ => RootError::Sys {
            op,
            path: show(path),
            source,
        },
    }
}

/// The longest path an image may name, in bytes (the kernel's PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// The deepest an image may nest directories: far beyond any real image, and a bound on
/// what one layer can make every later walk of the tree do.
pub const MAX_DEPTH: usize = 1024;

/// A path inside a root, checked: no `..`, no NUL, at least one component, at most
/// `MAX_PATH` bytes and `MAX_DEPTH` components.
#[derive(Clone, Debug)]
pub struct InnerPath {
    /// As the image spelled it, for messages.
    raw: Vec<u8>,
    parts: Vec<Vec<u8>>,
}

impl PartialEq for InnerPath {
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts
    }
}

impl Eq for InnerPath {}

impl InnerPath {
    /// Parses an untrusted path. `/a`, `./a` and `a/` all mean `a`; the root itself is `None`.
    pub fn parse(raw: &[u8]) -> Result<Option<InnerPath>, RootError> {
        if raw.contains(&0) {
            return Err(RootError::Hostile {
                path: show(raw),
                why: "contains a NUL byte",
            });
        }
        if raw.len() > MAX_PATH {
            return Err(RootError::Hostile {
                path: show(&raw[..64]) + "…",
                why: "is longer than 4096 bytes",
            });
        }
        let mut parts = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    return Err(RootError::Hostile {
                        path: show(raw),
                        why: "has a '..' component",
                    })
                }
                c => parts.push(c.to_vec()),
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        if parts.len() > MAX_DEPTH {
            return Err(RootError::Hostile {
                path: show(&raw[..raw.len().min(64)]) + "…",
                why: "nests more than 1024 directories deep",
            });
        }
        Ok(Some(InnerPath {
            raw: raw.to_vec(),
            parts,
        }))
    }

    pub fn name(&self) -> &[u8] {
        self.parts.last().map_or(b"", |v| v)
    }

    pub fn parent(&self) -> Option<InnerPath> {
        (self.parts.len() > 1).then(|| InnerPath {
            raw: self.parts[..self.parts.len() - 1].join(&b'/'),
            parts: self.parts[..self.parts.len() - 1].to_vec(),
        })
    }

    /// The same path with its last component replaced.
    pub fn with_name(&self, name: &[u8]) -> InnerPath {
        let mut parts = self.parts.clone();
        if let Some(last) = parts.last_mut() {
            *last = name.to_vec();
        }
        InnerPath {
            raw: parts.join(&b'/'),
            parts,
        }
    }

    pub fn display(&self) -> String {
        show(&self.raw)
    }

    /// The checked path, relative, for joining onto a trusted root (a store tree).
    pub fn relative(&self) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(&self.parts.join(&b'/')))
    }

    fn dir_part(&self) -> Vec<u8> {
        self.parts[..self.parts.len() - 1].join(&b'/')
    }
}

/// A directory that untrusted paths are confined to.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// A directory inside the root (the parent of an entry), and the entry's name.
pub struct At<'r> {
    pub dir: OwnedFd,
    pub name: CString,
    path: &'r InnerPath,
}

fn beneath() -> OpenHow {
    OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

impl Root {
    pub fn open(path: &Path) -> Result<Root, RootError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("open root", path.as_os_str().as_bytes()))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the directory `rel` (components already checked) beneath the root.
    fn open_dir(&self, rel: &[u8]) -> Result<OwnedFd, Errno> {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        openat2(self.fd.as_fd(), OsStr::from_bytes(rel), beneath())
    }

    /// Resolves the parent of `p`, creating missing parent directories (0755, root-owned, as
    /// tar and containerd do) when `create` is set.
    pub fn parent<'p>(&self, p: &'p InnerPath, create: bool) -> Result<At<'p>, RootError> {
        let name = CString::new(p.name()).map_err(|_| RootError::Hostile {
            path: p.display(),
            why: "contains a NUL byte",
        })?;
        let dir = match self.open_dir(&p.dir_part()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => self.create_parents(p)?,
            Err(e) => return Err(sys("resolve parent of", &p.raw)(e)),
        };
        Ok(At { dir, name, path: p })
    }

    fn create_parents(&self, p: &InnerPath) -> Result<OwnedFd, RootError> {
        let mut cur = self.open_dir(b"").map_err(sys("open root", b"."))?;
        for i in 0..p.parts.len() - 1 {
            let prefix = p.parts[..=i].join(&b'/');
            cur = match self.open_dir(&prefix) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(
                        cur.as_fd(),
                        OsStr::from_bytes(&p.parts[i]),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(sys("create directory", &prefix)(e)),
                    }
                    self.open_dir(&prefix).map_err(sys("open", &prefix))?
                }
                Err(e) => return Err(sys("resolve", &prefix)(e)),
            };
        }
        Ok(cur)
    }
}

/// What a mountpoint must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File,
}

impl Root {
    /// Resolves `p` as the payload will see it (symlinks followed, but never out of the root:
    /// `RESOLVE_IN_ROOT`), creating it and its parents when missing, and returns an `O_PATH`
    /// fd to mount onto through `/proc/self/fd/N` so no later path walk can be redirected.
    pub fn mountpoint(&self, p: &InnerPath, kind: NodeKind) -> Result<OwnedFd, RootError> {
        let how = || {
            OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
        };
        let rel = OsStr::from_bytes(&p.raw);
        match openat2(self.fd.as_fd(), rel, how()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(sys("resolve", &p.raw)(e)),
        }
        let mut cur = self.open_dir(b"").map_err(sys("open root", b"."))?;
        for (i, part) in p.parts.iter().enumerate() {
            let last = i + 1 == p.parts.len();
            let name = OsStr::from_bytes(part);
            let made = if last && kind == NodeKind::File {
                nix::fcntl::openat(
                    cur.as_fd(),
                    name,
                    OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o644),
                )
                .map(drop)
            } else {
                mkdirat(cur.as_fd(), name, Mode::from_bits_truncate(0o755))
            };
            match made {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(sys("create mountpoint", &p.raw)(e)),
            }
            let prefix = p.parts[..=i].join(&b'/');
            let flags = if last {
                OFlag::O_PATH | OFlag::O_CLOEXEC
            } else {
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
            };
            cur = openat2(
                self.fd.as_fd(),
                OsStr::from_bytes(&prefix),
                OpenHow::new()
                    .flags(flags)
                    .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
            )
            .map_err(sys("resolve", &prefix))?;
        }
        Ok(cur)
    }
}

/// What is at a name, without following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Missing,
    Dir,
    Other,
}

impl At<'_> {
    fn err(&self, op: &'static str) -> impl FnOnce(Errno) -> RootError + '_ {
        sys(op, &self.path.raw)
    }

    pub fn kind(&self) -> Result<Kind, RootError> {
        match fstatat(
            self.dir.as_fd(),
            self.name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st)
                if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
                    == SFlag::S_IFDIR =>
            {
                Ok(Kind::Dir)
            }
            Ok(_) => Ok(Kind::Other),
            Err(Errno::ENOENT) => Ok(Kind::Missing),
            Err(e) => Err(self.err("stat")(e)),
        }
    }

    /// Whether a regular file is at the name (not following it).
    pub fn is_file(&self) -> Result<bool, RootError> {
        match fstatat(
            self.dir.as_fd(),
            self.name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.err("stat")(e)),
        }
    }

    /// Removes whatever is at the name (a directory with all it holds), if anything.
    pub fn remove(&self) -> Result<(), RootError> {
        match self.kind()? {
            Kind::Missing => Ok(()),
            Kind::Dir => {
                remove_tree(self.dir.as_fd(), &self.name).map_err(self.err("remove directory"))
            }
            Kind::Other => unlinkat(
                self.dir.as_fd(),
                self.name.as_c_str(),
                UnlinkatFlags::NoRemoveDir,
            )
            .map_err(self.err("remove")),
        }
    }

    /// Makes sure a directory is at the name (replacing a non-directory) and opens it.
    pub fn mkdir(&self, mode: u32) -> Result<File, RootError> {
        match self.kind()? {
            Kind::Dir => {}
            k => {
                if k == Kind::Other {
                    self.remove()?;
                }
                mkdirat(
                    self.dir.as_fd(),
                    self.name.as_c_str(),
                    Mode::from_bits_truncate(mode & 0o7777),
                )
                .map_err(self.err("create directory"))?;
            }
        }
        self.open(OFlag::O_RDONLY | OFlag::O_DIRECTORY)
    }

    /// Opens the final component without following it.
    pub fn open(&self, flags: OFlag) -> Result<File, RootError> {
        let fd = nix::fcntl::openat(
            self.dir.as_fd(),
            self.name.as_c_str(),
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.err("open"))?;
        Ok(File::from(fd))
    }

    /// Creates a new regular file, replacing whatever was at the name.
    pub fn create_file(&self) -> Result<File, RootError> {
        self.remove()?;
        let fd = nix::fcntl::openat(
            self.dir.as_fd(),
            self.name.as_c_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(self.err("create file"))?;
        Ok(File::from(fd))
    }

    pub fn symlink(&self, target: &[u8]) -> Result<(), RootError> {
        self.remove()?;
        symlinkat(
            OsStr::from_bytes(target),
            self.dir.as_fd(),
            self.name.as_c_str(),
        )
        .map_err(self.err("create symlink"))
    }

    /// Hard-links `target` (another entry of the same root) at the name.
    pub fn hardlink(&self, target: &At) -> Result<(), RootError> {
        if target.kind()? == Kind::Missing {
            return Err(RootError::Hostile {
                path: target.path.display(),
                why: "is a hardlink target that is not in this layer",
            });
        }
        self.remove()?;
        linkat(
            target.dir.as_fd(),
            target.name.as_c_str(),
            self.dir.as_fd(),
            self.name.as_c_str(),
            AtFlags::empty(),
        )
        .map_err(self.err("create hardlink"))
    }

    pub fn mknod(&self, kind: SFlag, mode: u32, dev: u64) -> Result<(), RootError> {
        self.remove()?;
        mknodat(
            self.dir.as_fd(),
            self.name.as_c_str(),
            kind,
            Mode::from_bits_truncate(mode & 0o7777),
            dev,
        )
        .map_err(self.err("create node"))
    }

    /// Ownership and times of a symlink (which has no mode of its own).
    pub fn lchown_times(&self, uid: u32, gid: u32, mtime: i64) -> Result<(), RootError> {
        nix::unistd::fchownat(
            self.dir.as_fd(),
            self.name.as_c_str(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(self.err("chown"))?;
        let t = nix::sys::time::TimeSpec::new(mtime, 0);
        nix::sys::stat::utimensat(
            self.dir.as_fd(),
            self.name.as_c_str(),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(self.err("set times"))
    }

    /// Ownership, mode and mtime of a node that cannot be opened for writing (a FIFO).
    pub fn chown_chmod_times(
        &self,
        uid: u32,
        gid: u32,
        mode: u32,
        mtime: i64,
    ) -> Result<(), RootError> {
        let f = self.open(OFlag::O_PATH)?;
        // fchmodat on a just-created FIFO in a staging tree no one else writes.
        self.lchown_times(uid, gid, mtime)?;
        drop(f);
        nix::sys::stat::fchmodat(
            self.dir.as_fd(),
            self.name.as_c_str(),
            Mode::from_bits_truncate(mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(self.err("chmod"))
    }
}

fn open_subdir(at: BorrowedFd, name: &std::ffi::CStr) -> Result<OwnedFd, Errno> {
    nix::fcntl::openat(
        at,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn dir_id(fd: BorrowedFd) -> Result<(u64, u64), Errno> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Unlinks every non-directory in `dir` and returns the names of its subdirectories.
fn clear_files(dir: BorrowedFd) -> Result<Vec<CString>, Errno> {
    let mut listing = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut children = Vec::new();
    for e in listing.iter() {
        let e = e?;
        let n = e.file_name();
        if n.to_bytes() == b"." || n.to_bytes() == b".." {
            continue;
        }
        children.push((n.to_owned(), e.file_type()));
    }
    drop(listing);
    let mut subdirs = Vec::new();
    for (n, t) in children {
        let is_dir = match t {
            Some(nix::dir::Type::Directory) => true,
            Some(_) => false,
            None => {
                let st = fstatat(dir, n.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
                st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()
            }
        };
        if is_dir {
            subdirs.push(n);
        } else {
            unlinkat(dir, n.as_c_str(), UnlinkatFlags::NoRemoveDir)?;
        }
    }
    Ok(subdirs)
}

/// One directory on the way down: its name in its parent, its identity (to check the way
/// back up through `..`), and the subdirectories still to remove.
struct Frame {
    name: CString,
    id: (u64, u64),
    pending: Vec<CString>,
}

/// Removes a directory tree below `parent/name`, never following symlinks, with two fds open
/// at most whatever its depth: a layer may nest thousands of directories, more than the fd
/// limit allows a recursive walk to hold.
fn remove_tree(parent: BorrowedFd, name: &std::ffi::CStr) -> Result<(), Errno> {
    let mut cur = open_subdir(parent, name)?;
    let mut stack = vec![Frame {
        name: name.to_owned(),
        id: dir_id(cur.as_fd())?,
        pending: clear_files(cur.as_fd())?,
    }];
    while let Some(top) = stack.last_mut() {
        if let Some(child) = top.pending.pop() {
            match open_subdir(cur.as_fd(), &child) {
                Ok(fd) => {
                    let frame = Frame {
                        id: dir_id(fd.as_fd())?,
                        pending: clear_files(fd.as_fd())?,
                        name: child,
                    };
                    stack.push(frame);
                    cur = fd;
                }
                Err(Errno::ENOENT) => {}
                Err(Errno::ENOTDIR) => {
                    unlinkat(cur.as_fd(), child.as_c_str(), UnlinkatFlags::NoRemoveDir)?
                }
                Err(e) => return Err(e),
            }
            continue;
        }
        let Some(done) = stack.pop() else { break };
        let Some(up) = stack.last() else {
            drop(cur);
            return unlinkat(parent, done.name.as_c_str(), UnlinkatFlags::RemoveDir);
        };
        let p = open_subdir(cur.as_fd(), c"..")?;
        if dir_id(p.as_fd())? != up.id {
            // The tree was moved while we worked in it: stop rather than remove elsewhere.
            return Err(Errno::ESTALE);
        }
        unlinkat(p.as_fd(), done.name.as_c_str(), UnlinkatFlags::RemoveDir)?;
        cur = p;
    }
    Ok(())
}

/// Sets an extended attribute through an open fd.
pub fn set_xattr(f: &File, name: &str, value: &[u8]) -> Result<(), Errno> {
    let cname = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: valid fd, NUL-terminated name, pointer and length from one slice.
    let r = unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Removes a whole directory tree at a trusted path (store-owned staging or layer trees).
pub fn remove_dir_all(path: &Path) -> Result<(), RootError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or(b".");
    let pfd = nix::fcntl::open(
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open", parent.as_os_str().as_bytes()))?;
    let cname = CString::new(name).map_err(|_| RootError::Hostile {
        path: path.display().to_string(),
        why: "contains a NUL byte",
    })?;
    match remove_tree(pfd.as_fd(), &cname) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::ENOTDIR) => unlinkat(pfd.as_fd(), cname.as_c_str(), UnlinkatFlags::NoRemoveDir)
            .map_err(sys("remove", path.as_os_str().as_bytes())),
        Err(e) => Err(sys("remove", path.as_os_str().as_bytes())(e)),
    }
}
