//! The files of a source, by their path inside it: a directory (opened beneath it, never
//! through a symlink or a hard link) or a tar archive (indexed in one pass, each member then
//! read in place by offset). Nothing outside the source is ever read.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use super::TransportError;

/// Hops through links inside an archive before giving up (a loop, or a hostile chain).
const MAX_LINK_HOPS: usize = 8;

/// An open file of the source and its size.
pub struct Opened<'a> {
    pub reader: Box<dyn Read + 'a>,
    pub size: u64,
}

/// The files of a source.
pub trait Files {
    /// Where the source is, for messages.
    fn path(&self) -> &Path;
    /// Opens `name` (a relative path the caller built or checked); `None` when absent.
    fn open(&self, name: &str) -> Result<Option<Opened<'_>>, TransportError>;
}

/// Reads a whole (small) file, bounded; `None` when absent.
pub fn read_small(
    files: &dyn Files,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, TransportError> {
    let Some(o) = files.open(name)? else {
        return Ok(None);
    };
    if o.size > limit {
        return Err(TransportError::TooLarge {
            source_path: files.path().to_path_buf(),
            member: name.to_string(),
            size: o.size,
            limit,
        });
    }
    let mut buf = Vec::with_capacity(o.size as usize);
    o.reader
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| TransportError::read(files.path(), name, e))?;
    if buf.len() as u64 != o.size {
        return Err(TransportError::Hostile {
            source_path: files.path().to_path_buf(),
            member: name.to_string(),
            why: format!(
                "is {} bytes long but {} could be read (truncated?)",
                o.size,
                buf.len()
            ),
        });
    }
    Ok(Some(buf))
}

/// A directory source: every file is opened beneath it with `openat2`, refusing symlinks
/// anywhere on the way and files with more than one link (a hard link may be any file on the
/// filesystem).
pub struct DirFiles {
    fd: OwnedFd,
    path: PathBuf,
}

impl DirFiles {
    pub fn open(path: &Path) -> Result<DirFiles, TransportError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TransportError::Open {
            path: path.to_path_buf(),
            source: io::Error::from(e),
        })?;
        Ok(DirFiles {
            fd,
            path: path.to_path_buf(),
        })
    }
}

impl Files for DirFiles {
    fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self, name: &str) -> Result<Option<Opened<'_>>, TransportError> {
        check_name(&self.path, name)?;
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        let hostile = |why: &str| TransportError::Hostile {
            source_path: self.path.clone(),
            member: name.to_string(),
            why: why.to_string(),
        };
        let fd = match openat2(self.fd.as_fd(), OsStr::new(name), how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => {
                return Err(hostile(
                    "is (or lies under) a symlink; refusing to follow it",
                ))
            }
            Err(Errno::EXDEV) => return Err(hostile("resolves outside the source")),
            Err(e) => return Err(TransportError::read(&self.path, name, io::Error::from(e))),
        };
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| TransportError::read(&self.path, name, e))?;
        if !meta.is_file() {
            return Err(hostile("is not a regular file"));
        }
        if meta.nlink() > 1 {
            return Err(hostile(&format!(
                "has {} hard links; it may be a file outside the source, refusing it",
                meta.nlink()
            )));
        }
        Ok(Some(Opened {
            size: meta.len(),
            reader: Box::new(file),
        }))
    }
}

/// Refuses a path that could leave the source: absolute, `..`, empty or NUL.
fn check_name(source: &Path, name: &str) -> Result<(), TransportError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\0')
        || name.split('/').any(|c| c == "..");
    if bad {
        return Err(TransportError::Hostile {
            source_path: source.to_path_buf(),
            member: name.to_string(),
            why: "is an absolute path or climbs out with '..'".into(),
        });
    }
    Ok(())
}

/// A member of an archive, as the index holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// Data at `offset`, `size` bytes.
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink (target relative to the member's directory) or a hard link (target from the
    /// archive's root), resolved inside the archive only.
    Symlink(String),
    Hardlink(String),
    Dir,
    /// Something no image layout holds (a device, a FIFO).
    Other,
}

/// A tar archive source: its members' offsets, indexed in one pass that seeks over the data.
pub struct TarFiles {
    file: File,
    path: PathBuf,
    members: HashMap<String, Entry>,
}

/// The name a member is filed under: `./` prefixes and trailing slashes dropped.
fn normalize(raw: &str) -> String {
    let mut s = raw;
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    let parts: Vec<&str> = s
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    parts.join("/")
}

impl TarFiles {
    pub fn open(path: &Path) -> Result<TarFiles, TransportError> {
        let file = File::open(path).map_err(|source| TransportError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let members = index(&file, path)?;
        Ok(TarFiles {
            file,
            path: path.to_path_buf(),
            members,
        })
    }

    /// Follows links inside the archive to a member with data.
    fn resolve(&self, name: &str) -> Result<Option<(u64, u64)>, TransportError> {
        let mut cur = normalize(name);
        for _ in 0..MAX_LINK_HOPS {
            let hostile = |why: String| TransportError::Hostile {
                source_path: self.path.clone(),
                member: cur.clone(),
                why,
            };
            match self.members.get(&cur) {
                None => return Ok(None),
                Some(Entry::File { offset, size }) => return Ok(Some((*offset, *size))),
                Some(Entry::Dir) | Some(Entry::Other) => {
                    return Err(hostile("is not a regular file".into()))
                }
                Some(Entry::Hardlink(t)) => cur = inside(&self.path, &cur, "", t)?,
                Some(Entry::Symlink(t)) => {
                    let dir = cur.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    cur = inside(&self.path, &cur, dir, t)?;
                }
            }
        }
        Err(TransportError::Hostile {
            source_path: self.path.clone(),
            member: name.to_string(),
            why: format!("is a chain of more than {MAX_LINK_HOPS} links"),
        })
    }
}

/// A link target resolved lexically from `dir`, which must stay inside the archive.
fn inside(source: &Path, member: &str, dir: &str, target: &str) -> Result<String, TransportError> {
    let escape = || TransportError::Hostile {
        source_path: source.to_path_buf(),
        member: member.to_string(),
        why: format!("is a link to {target:?}, outside the archive"),
    };
    if target.starts_with('/') {
        return Err(escape());
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(escape)?;
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// One pass over the headers: each member's name and where its data is. Refuses names that
/// are absolute or climb out, a name given twice, and data past the end of the file.
fn index(file: &File, path: &Path) -> Result<HashMap<String, Entry>, TransportError> {
    let len = file
        .metadata()
        .map_err(|e| TransportError::read(path, "", e))?
        .len();
    let bad = |member: String, why: String| TransportError::Hostile {
        source_path: path.to_path_buf(),
        member,
        why,
    };
    let not_tar = |e: io::Error| TransportError::NotTar {
        path: path.to_path_buf(),
        source: e,
    };
    let mut archive = tar::Archive::new(file);
    let mut members = HashMap::new();
    for e in archive.entries_with_seek().map_err(not_tar)? {
        let e = e.map_err(not_tar)?;
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if raw.starts_with('/') || raw.split('/').any(|c| c == "..") {
            return Err(bad(
                raw,
                "is an absolute path or climbs out with '..'".into(),
            ));
        }
        let name = normalize(&raw);
        let link = || {
            e.link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default()
        };
        let entry = match e.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let (offset, size) = (e.raw_file_position(), e.size());
                if offset.checked_add(size).is_none_or(|end| end > len) {
                    return Err(bad(
                        raw,
                        format!(
                            "needs bytes up to {} but the archive ends at byte {len} (truncated)",
                            offset.saturating_add(size)
                        ),
                    ));
                }
                Entry::File { offset, size }
            }
            tar::EntryType::Directory => Entry::Dir,
            tar::EntryType::Symlink => Entry::Symlink(link()),
            tar::EntryType::Link => Entry::Hardlink(normalize(&link())),
            _ => Entry::Other,
        };
        if entry == Entry::Dir && matches!(members.get(&name), Some(Entry::Dir)) {
            continue;
        }
        if members.insert(name, entry).is_some() {
            return Err(bad(
                raw,
                "appears twice in the archive; which one is meant is ambiguous".into(),
            ));
        }
    }
    Ok(members)
}

/// A member's bytes, read in place with positional reads (no shared file offset).
struct Slice<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside this member (truncated)",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Files for TarFiles {
    fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self, name: &str) -> Result<Option<Opened<'_>>, TransportError> {
        check_name(&self.path, name)?;
        Ok(self.resolve(name)?.map(|(offset, size)| Opened {
            size,
            reader: Box::new(Slice {
                file: &self.file,
                pos: offset,
                end: offset + size,
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let p = t.path().join("a.tar");
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        (t, p)
    }

    fn add(
        b: &mut tar::Builder<Vec<u8>>,
        kind: tar::EntryType,
        name: &str,
        link: &str,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // Raw names, so hostile ones get in as a hostile writer would put them.
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn err(r: Result<TarFiles, TransportError>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn members_are_read_in_place_and_links_resolve_inside() {
        use tar::EntryType::*;
        let (_t, p) = archive(|b| {
            add(b, Regular, "./blobs/sha256/aa", "", b"hello");
            add(b, Symlink, "legacy/layer.tar", "../blobs/sha256/aa", b"");
            add(b, Link, "hard", "blobs/sha256/aa", b"");
            add(b, Regular, "index.json", "", b"{}");
        });
        let f = TarFiles::open(&p).unwrap();
        for name in ["blobs/sha256/aa", "legacy/layer.tar", "hard"] {
            let mut s = String::new();
            f.open(name)
                .unwrap()
                .unwrap()
                .reader
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "hello", "{name}");
        }
        assert!(f.open("missing").unwrap().is_none());
        assert!(f.open("../etc/passwd").is_err());
        assert!(f.open("/etc/passwd").is_err());
    }

    #[test]
    fn hostile_archives_are_refused_by_member() {
        use tar::EntryType::*;
        let (_t, p) = archive(|b| add(b, Regular, "../evil", "", b"x"));
        assert!(
            err(TarFiles::open(&p)).contains("\"../evil\"")
                || err(TarFiles::open(&p)).contains("../evil")
        );
        let (_t, p) = archive(|b| add(b, Regular, "/etc/evil", "", b"x"));
        assert!(err(TarFiles::open(&p)).contains("absolute"));
        let (_t, p) = archive(|b| {
            add(b, Regular, "index.json", "", b"1");
            add(b, Regular, "./index.json", "", b"2");
        });
        assert!(err(TarFiles::open(&p)).contains("twice"));
        // Links that leave the archive, or loop, are refused when used.
        let (_t, p) = archive(|b| {
            add(b, Symlink, "blobs/sha256/aa", "../../../etc/passwd", b"");
            add(b, Symlink, "abs", "/etc/passwd", b"");
            add(b, Symlink, "loop", "loop", b"");
            add(b, Char, "dev", "", b"");
        });
        let f = TarFiles::open(&p).unwrap();
        for name in ["blobs/sha256/aa", "abs", "loop", "dev"] {
            assert!(f.open(name).is_err(), "{name}");
        }
        // A truncated archive: the member's data runs past the end.
        let (_t, p) = archive(|b| add(b, Regular, "big", "", &[7u8; 4096]));
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..1024]).unwrap();
        assert!(err(TarFiles::open(&p)).contains("truncated"));
        // Not a tar at all.
        std::fs::write(&p, [0x55u8; 1500]).unwrap();
        assert!(TarFiles::open(&p).is_err());
    }

    #[test]
    fn a_directory_source_never_follows_links() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("src");
        std::fs::create_dir_all(d.join("blobs")).unwrap();
        std::fs::write(d.join("blobs/ok"), b"ok").unwrap();
        std::fs::write(t.path().join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink("../../outside", d.join("blobs/sym")).unwrap();
        std::os::unix::fs::symlink(t.path(), d.join("up")).unwrap();
        std::fs::hard_link(t.path().join("outside"), d.join("blobs/hard")).unwrap();
        let f = DirFiles::open(&d).unwrap();
        assert_eq!(read_small(&f, "blobs/ok", 10).unwrap().unwrap(), b"ok");
        assert!(read_small(&f, "blobs/ok", 1).is_err());
        for (name, why) in [
            ("blobs/sym", "symlink"),
            ("up/outside", "symlink"),
            ("blobs/hard", "hard links"),
            ("../outside", "climbs out"),
            ("blobs", "not a regular file"),
        ] {
            let e = f
                .open(name)
                .err()
                .unwrap_or_else(|| panic!("{name} accepted"))
                .to_string();
            assert!(e.contains(why), "{name}: {e}");
        }
        assert!(f.open("blobs/none").unwrap().is_none());
    }
}
