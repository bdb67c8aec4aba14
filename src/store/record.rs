//! Tree records: what every entry of an unpacked tree was when it was committed (type, mode,
//! owner, size, link target, xattrs, content hash), kept in `records/<tree>` beside the tree and
//! written durably before the tree is renamed into place, so a tree without its record is not
//! complete. `skiff verify` compares a tree with its record; the record is a file on disk that may
//! be damaged, so it is parsed strictly and within bounds.
//!
//! Format (version 1), one line per entry, sorted by path, fields separated by one space:
//!
//! ```text
//! skiff-tree-record 1
//! KIND MODE UID GID SIZE HASH PATH LINK XATTRS
//! end COUNT SHA256
//! ```
//! KIND is `d f l p c b s`; MODE octal permission bits; SIZE decimal (a device's rdev for `c`
//! and `b`); HASH the sha256 of a file's content in hex, or `-`; PATH `.` for the tree root,
//! else the relative path in hex; LINK a symlink's target in hex, or `-`; XATTRS `-` or
//! `NAME=VALUE` pairs in hex joined by `,`. The last line counts the entries and hashes every
//! byte before it, so a torn or damaged record is told from a damaged tree.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest as _, Sha256};

const MAGIC: &str = "skiff-tree-record 1";
/// Bounds on what is read back: a record is at most this long, and its fields these.
pub const MAX_RECORD: u64 = 256 << 20;
const MAX_PATH: usize = 4096;
const MAX_XATTRS: usize = 64;
const MAX_XATTR_VALUE: usize = 64 * 1024;

/// Content hashes of files as they were written, by (device, inode): filled while a layer
/// unpacks, so recording the tree reads no file again.
pub type Hashes = HashMap<(u64, u64), [u8; 32]>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
}

impl Kind {
    fn code(self) -> char {
        match self {
            Kind::Dir => 'd',
            Kind::File => 'f',
            Kind::Symlink => 'l',
            Kind::Fifo => 'p',
            Kind::Char => 'c',
            Kind::Block => 'b',
            Kind::Socket => 's',
        }
    }
    fn from_code(s: &str) -> Option<Kind> {
        Some(match s {
            "d" => Kind::Dir,
            "f" => Kind::File,
            "l" => Kind::Symlink,
            "p" => Kind::Fifo,
            "c" => Kind::Char,
            "b" => Kind::Block,
            "s" => Kind::Socket,
            _ => return None,
        })
    }
}

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the tree root; empty for the root itself.
    pub path: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub hash: Option<[u8; 32]>,
    pub link: Option<Vec<u8>>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A whole tree's record, entries sorted by path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("line {line}: {what}")]
    Bad { line: usize, what: &'static str },
    #[error("the record is longer than {MAX_RECORD} bytes")]
    TooLong,
    #[error("the record is cut short (no end line)")]
    Truncated,
    #[error("the record's checksum does not match its contents")]
    Checksum,
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn unhex(s: &str, max: usize) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 || b.len() / 2 > max {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    b.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

impl Record {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::new();
        s.push_str(MAGIC);
        s.push('\n');
        for e in &self.entries {
            let path = if e.path.is_empty() {
                ".".to_string()
            } else {
                hex(&e.path)
            };
            let xattrs = if e.xattrs.is_empty() {
                "-".to_string()
            } else {
                e.xattrs
                    .iter()
                    .map(|(k, v)| format!("{}={}", hex(k), hex(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let _ = writeln!(
                s,
                "{} {:o} {} {} {} {} {} {} {}",
                e.kind.code(),
                e.mode,
                e.uid,
                e.gid,
                e.size,
                e.hash.map_or("-".to_string(), |h| hex(&h)),
                path,
                e.link.as_deref().map_or("-".to_string(), hex),
                xattrs
            );
        }
        let sum = hex(&Sha256::digest(s.as_bytes()));
        let _ = writeln!(s, "end {} {sum}", self.entries.len());
        s.into_bytes()
    }

    /// Reads a record strictly: any deviation from the format, an entry out of order, a field
    /// out of bounds or a checksum that does not match is an error.
    pub fn parse(data: &[u8]) -> Result<Record, RecordError> {
        if data.len() as u64 > MAX_RECORD {
            return Err(RecordError::TooLong);
        }
        let text = std::str::from_utf8(data).map_err(|_| RecordError::Bad {
            line: 0,
            what: "not text",
        })?;
        let Some(body_end) = text.rfind("\nend ") else {
            return Err(RecordError::Truncated);
        };
        let (body, tail) = text.split_at(body_end + 1);
        let tail = tail.strip_suffix('\n').ok_or(RecordError::Truncated)?;
        let mut t = tail.split(' ');
        let (Some("end"), Some(count), Some(sum), None) = (t.next(), t.next(), t.next(), t.next())
        else {
            return Err(RecordError::Truncated);
        };
        if unhex(sum, 32).map(|s| s.len()) != Some(32) {
            return Err(RecordError::Truncated);
        }
        if hex(&Sha256::digest(body.as_bytes())) != sum {
            return Err(RecordError::Checksum);
        }
        let mut lines = body.split_terminator('\n');
        if lines.next() != Some(MAGIC) {
            return Err(RecordError::Bad {
                line: 1,
                what: "not a version 1 tree record",
            });
        }
        let mut entries: Vec<Entry> = Vec::new();
        for (i, l) in lines.enumerate() {
            let line = i + 2;
            let bad = |what| RecordError::Bad { line, what };
            let e = parse_entry(l).ok_or(bad("malformed entry"))?;
            if let Some(prev) = entries.last() {
                if prev.path >= e.path {
                    return Err(bad("entries out of order or repeated"));
                }
            }
            entries.push(e);
        }
        if dec::<usize>(count) != Some(entries.len()) {
            return Err(RecordError::Bad {
                line: 0,
                what: "entry count does not match",
            });
        }
        Ok(Record { entries })
    }

    /// Reads `path` (at most `MAX_RECORD` bytes); `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Result<Record, RecordError>>, super::StoreError> {
        let Some(f) = super::open_existing(path)? else {
            return Ok(None);
        };
        let mut data = Vec::new();
        f.take(MAX_RECORD + 1)
            .read_to_end(&mut data)
            .map_err(super::io_err("read", path))?;
        Ok(Some(Record::parse(&data)))
    }
}

fn dec<T: std::str::FromStr>(s: &str) -> Option<T> {
    // Canonical decimal only: no sign, no leading zeros.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn parse_entry(l: &str) -> Option<Entry> {
    let f: Vec<&str> = l.split(' ').collect();
    let [kind, mode, uid, gid, size, hash, path, link, xattrs] = f[..] else {
        return None;
    };
    let kind = Kind::from_code(kind)?;
    if mode.is_empty() || mode.len() > 5 || (mode.len() > 1 && mode.starts_with('0')) {
        return None;
    }
    let mode = u32::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o7777)?;
    let hash = match hash {
        "-" => None,
        h => Some(<[u8; 32]>::try_from(unhex(h, 32)?).ok()?),
    };
    if hash.is_some() != (kind == Kind::File) {
        return None;
    }
    let path = match path {
        "." => Vec::new(),
        p => unhex(p, MAX_PATH).filter(|p| valid_path(p))?,
    };
    if path.is_empty() != (kind == Kind::Dir && path.is_empty()) {
        return None;
    }
    let link = match link {
        "-" => None,
        t => Some(unhex(t, MAX_PATH).filter(|t| !t.is_empty() && !t.contains(&0))?),
    };
    if link.is_some() != (kind == Kind::Symlink) {
        return None;
    }
    let xattrs = match xattrs {
        "-" => Vec::new(),
        x => {
            let pairs: Vec<&str> = x.split(',').collect();
            if pairs.len() > MAX_XATTRS {
                return None;
            }
            let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for p in pairs {
                let (k, v) = p.split_once('=')?;
                let k = unhex(k, 255).filter(|k| !k.is_empty() && !k.contains(&0))?;
                let v = unhex(v, MAX_XATTR_VALUE)?;
                if out.last().is_some_and(|(pk, _)| *pk >= k) {
                    return None;
                }
                out.push((k, v));
            }
            out
        }
    };
    Some(Entry {
        path,
        kind,
        mode,
        uid: dec(uid)?,
        gid: dec(gid)?,
        size: dec(size)?,
        hash,
        link,
        xattrs,
    })
}

/// A relative path as a tree can hold it: no empty, `.` or `..` component, no NUL, no
/// leading or trailing `/`.
fn valid_path(p: &[u8]) -> bool {
    !p.is_empty()
        && !p.contains(&0)
        && p.split(|b| *b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// What to read of the files while walking a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth<'h> {
    /// Metadata and sizes only.
    Quick,
    /// Hash every file's content, except those whose hash is known already.
    Content(&'h Hashes),
}

/// Walks the tree at `root` (never following a symlink) into a record.
pub fn walk(root: &Path, depth: Depth) -> io::Result<Record> {
    let mut entries = Vec::new();
    walk_into(root, Vec::new(), depth, &mut entries)?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Record { entries })
}

fn walk_into(
    dir_or_file: &Path,
    rel: Vec<u8>,
    depth: Depth,
    out: &mut Vec<Entry>,
) -> io::Result<()> {
    let m = std::fs::symlink_metadata(dir_or_file)?;
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_char_device() {
        Kind::Char
    } else if ft.is_block_device() {
        Kind::Block
    } else {
        Kind::Socket
    };
    let size = match kind {
        Kind::File => m.len(),
        Kind::Char | Kind::Block => m.rdev(),
        _ => 0,
    };
    let hash = match (kind, depth) {
        (Kind::File, Depth::Content(known)) => Some(match known.get(&(m.dev(), m.ino())) {
            Some(h) => *h,
            None => hash_file(dir_or_file)?,
        }),
        (Kind::File, Depth::Quick) => Some([0; 32]),
        _ => None,
    };
    let link = if kind == Kind::Symlink {
        Some(
            std::fs::read_link(dir_or_file)?
                .as_os_str()
                .as_bytes()
                .to_vec(),
        )
    } else {
        None
    };
    out.push(Entry {
        path: rel.clone(),
        kind,
        mode: if kind == Kind::Symlink {
            0o777
        } else {
            m.mode() & 0o7777
        },
        uid: m.uid(),
        gid: m.gid(),
        size,
        hash,
        link,
        xattrs: lxattrs(dir_or_file)?,
    });
    if kind == Kind::Dir {
        for e in std::fs::read_dir(dir_or_file)? {
            let e = e?;
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(e.file_name().as_bytes());
            walk_into(&e.path(), child, depth, out)?;
        }
    }
    Ok(())
}

/// The sha256 of a file's content.
pub fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(h.finalize().into())
}

/// Every xattr of a node, not following a symlink, sorted by name.
fn lxattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: NUL-terminated path and a buffer with its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let n = match usize::try_from(n) {
        Ok(n) => n,
        Err(_) => {
            let e = io::Error::last_os_error();
            // Filesystems (and symlinks on some) without xattrs have none.
            if matches!(e.raw_os_error(), Some(libc::ENOTSUP)) {
                return Ok(Vec::new());
            }
            return Err(e);
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
        let mut val = vec![0u8; MAX_XATTR_VALUE];
        // SAFETY: as above, with a NUL-terminated name.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        val.truncate(usize::try_from(m).map_err(|_| io::Error::last_os_error())?);
        out.push((name.to_vec(), val));
    }
    out.sort();
    Ok(out)
}

/// How a tree differs from its record, one line per difference (at most `limit` lines).
pub fn compare(record: &Record, tree: &Record, quick: bool, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let name = |p: &[u8]| {
        if p.is_empty() {
            "/".to_string()
        } else {
            format!("/{}", String::from_utf8_lossy(p))
        }
    };
    let (mut a, mut b) = (
        record.entries.iter().peekable(),
        tree.entries.iter().peekable(),
    );
    while out.len() < limit {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(r), None) => {
                out.push(format!("{}: missing", name(&r.path)));
                a.next();
            }
            (None, Some(t)) => {
                out.push(format!("{}: not in the record", name(&t.path)));
                b.next();
            }
            (Some(r), Some(t)) if r.path < t.path => {
                out.push(format!("{}: missing", name(&r.path)));
                a.next();
            }
            (Some(r), Some(t)) if r.path > t.path => {
                out.push(format!("{}: not in the record", name(&t.path)));
                b.next();
            }
            (Some(r), Some(t)) => {
                let p = name(&r.path);
                if r.kind != t.kind {
                    out.push(format!("{p}: is a {:?}, was a {:?}", t.kind, r.kind));
                } else if r.size != t.size {
                    out.push(format!("{p}: {} bytes, was {}", t.size, r.size));
                } else if r.mode != t.mode {
                    out.push(format!("{p}: mode {:o}, was {:o}", t.mode, r.mode));
                } else if (r.uid, r.gid) != (t.uid, t.gid) {
                    out.push(format!(
                        "{p}: owner {}:{}, was {}:{}",
                        t.uid, t.gid, r.uid, r.gid
                    ));
                } else if r.link != t.link {
                    out.push(format!("{p}: symlink target changed"));
                } else if r.xattrs != t.xattrs {
                    out.push(format!("{p}: xattrs changed"));
                } else if !quick && r.hash != t.hash {
                    out.push(format!("{p}: content differs"));
                }
                a.next();
                b.next();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            entries: vec![
                Entry {
                    path: vec![],
                    kind: Kind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    hash: None,
                    link: None,
                    xattrs: vec![(b"trusted.overlay.opaque".to_vec(), b"y".to_vec())],
                },
                Entry {
                    path: b"etc/a b".to_vec(),
                    kind: Kind::File,
                    mode: 0o4755,
                    uid: 1,
                    gid: 2,
                    size: 3,
                    hash: Some([7; 32]),
                    link: None,
                    xattrs: vec![],
                },
                Entry {
                    path: b"l".to_vec(),
                    kind: Kind::Symlink,
                    mode: 0o777,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    hash: None,
                    link: Some(b"../x y".to_vec()),
                    xattrs: vec![],
                },
            ],
        }
    }

    #[test]
    fn records_round_trip() {
        let r = sample();
        assert_eq!(Record::parse(&r.to_bytes()).unwrap(), r);
        assert_eq!(
            Record::parse(&Record::default().to_bytes()).unwrap(),
            Record::default()
        );
    }

    /// Re-seals a body with a valid end line, so the strict parsing behind the checksum is
    /// what is tested.
    fn sealed(body: &str, count: usize) -> Vec<u8> {
        let sum = hex(&Sha256::digest(body.as_bytes()));
        format!("{body}end {count} {sum}\n").into_bytes()
    }

    #[test]
    fn damaged_and_hostile_records_are_refused() {
        let good = sample().to_bytes();
        // Every cut short of the whole is refused: a torn record is never read as a shorter one.
        for n in 0..good.len() {
            assert!(Record::parse(&good[..n]).is_err(), "cut at {n}");
        }
        // Every single flipped byte is refused.
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x01;
            assert!(Record::parse(&b).is_err(), "flip at {i}");
        }
        let m = format!("{MAGIC}\n");
        let root = "d 755 0 0 0 - . - -\n";
        for (body, count) in [
            (format!("{m}{root}{root}"), 2),           // repeated
            (format!("{m}f 644 0 0 1 - 61 - -\n"), 1), // file without hash
            (format!("{m}d 755 0 0 0 {} 61 - -\n", "0".repeat(64)), 1), // dir with hash
            (format!("{m}l 777 0 0 0 - 61 - -\n"), 1), // symlink without target
            (format!("{m}d 77777 0 0 0 - 61 - -\n"), 1), // mode out of range
            (format!("{m}d 755 -1 0 0 - 61 - -\n"), 1), // negative owner
            (format!("{m}d 755 4294967296 0 0 - 61 - -\n"), 1), // owner overflow
            (format!("{m}d 755 01 0 0 - 61 - -\n"), 1), // leading zero
            (format!("{m}d 755 0 0 0 - 2e2e - -\n"), 1), // ".."
            (format!("{m}d 755 0 0 0 - 2f61 - -\n"), 1), // "/a"
            (format!("{m}d 755 0 0 0 - 6100 - -\n"), 1), // NUL
            (format!("{m}d 755 0 0 0 - 6 - -\n"), 1),  // odd hex
            (format!("{m}d 755 0 0 0 - 4A - -\n"), 1), // upper-case hex
            (format!("{m}d 755 0 0 0 - 61 - 61=1,61=2\n"), 1), // repeated xattr
            (format!("{m}d 755 0 0 0 - 61 - -  \n"), 1), // extra field
            (format!("{m}x 755 0 0 0 - 61 - -\n"), 1), // unknown kind
            (format!("{m}f 644 0 0 0 - . - -\n"), 1),  // root not a dir
            (format!("skiff-tree-record 2\n{root}"), 1), // unknown version
            (format!("{m}{root}"), 2),                 // wrong count
        ] {
            assert!(
                Record::parse(&sealed(&body, count)).is_err(),
                "{body:?} parsed"
            );
        }
        let many = (0..=MAX_XATTRS)
            .map(|i| format!("{:02x}=", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        assert!(Record::parse(&sealed(&format!("{m}d 755 0 0 0 - 61 - {many}\n"), 1)).is_err());
        let long = "61".repeat(MAX_PATH + 1);
        assert!(Record::parse(&sealed(&format!("{m}d 755 0 0 0 - {long} - -\n"), 1)).is_err());
        assert!(matches!(
            Record::parse(&vec![b'a'; MAX_RECORD as usize + 1]),
            Err(RecordError::TooLong)
        ));
    }

    #[test]
    fn the_fuzz_seed_is_a_record() {
        let seed = include_bytes!("../../fuzz/seeds/record/sample");
        assert_eq!(Record::parse(seed).unwrap().to_bytes(), seed);
    }

    #[test]
    fn compare_names_each_kind_of_damage() {
        let r = sample();
        let same = compare(&r, &r, false, 10);
        assert!(same.is_empty());
        let mut t = r.clone();
        t.entries[1].size = 0;
        assert_eq!(compare(&r, &t, true, 10), ["/etc/a b: 0 bytes, was 3"]);
        let mut t = r.clone();
        t.entries[1].hash = Some([8; 32]);
        assert!(
            compare(&r, &t, true, 10).is_empty(),
            "quick reads no content"
        );
        assert_eq!(compare(&r, &t, false, 10), ["/etc/a b: content differs"]);
        let mut t = r.clone();
        t.entries[1].mode = 0o755;
        assert_eq!(compare(&r, &t, true, 10), ["/etc/a b: mode 755, was 4755"]);
        let mut t = r.clone();
        t.entries.remove(2);
        assert_eq!(compare(&r, &t, true, 10), ["/l: missing"]);
    }
}
