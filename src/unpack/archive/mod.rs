//! Reading a tar stream member by member, as the mainstream readers (GNU tar, Go's
//! archive/tar, libarchive, Python's tarfile) agree on it.
//!
//! skiff reads headers itself rather than through the `tar` crate's iterator, because that
//! iterator honours the size field of header-only entries (a v7 directory with a size swallows
//! the next header; a hardlink with a size is refused), refuses a second GNU long name, and
//! splits PAX records on newlines. Here: PAX records are split by their length and may hold any
//! byte; a later PAX record, long name or link wins; the size of links, directories, devices
//! and FIFOs is ignored; every GNU sparse form becomes a map of data regions; and a typeflag no
//! reader knows is refused by name.

mod header;
mod pax;
mod sparse;

use std::io::{self, Read};

use base64::Engine as _;
use header::{cstr, BadNumber, Header, BLOCK};
use pax::{decimal, seconds, PaxError, Records};
pub use sparse::{Region, SparseError, SparseFormat};

/// The largest PAX header or GNU long name we read (as Go's archive/tar).
const MAX_SPECIAL: i64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading the tar stream at byte {offset}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("the tar stream ends inside {what} at byte {offset} (truncated?)")]
    Truncated { offset: u64, what: &'static str },
    #[error("the tar header at byte {offset} has a wrong checksum (corrupt, or not a tar stream)")]
    Checksum { offset: u64 },
    #[error("the tar header at byte {offset}")]
    Number {
        offset: u64,
        #[source]
        source: BadNumber,
    },
    #[error("the PAX header at byte {offset}")]
    Pax {
        offset: u64,
        #[source]
        source: PaxError,
    },
    #[error("the {what} at byte {offset} is {size} bytes; more than {MAX_SPECIAL} is refused")]
    TooLarge {
        offset: u64,
        what: &'static str,
        size: i64,
    },
    #[error("entry {path:?}: unsupported tar entry type {:?} (0x{typeflag:02x})", char::from(*typeflag))]
    UnknownType { path: String, typeflag: u8 },
    #[error("entry {path:?}: {format} sparse file")]
    Sparse {
        path: String,
        format: SparseFormat,
        #[source]
        source: SparseError,
    },
    #[error("entry {path:?}: a sparse file")]
    SparseVersion {
        path: String,
        #[source]
        source: SparseError,
    },
    #[error("entry {path:?}")]
    Field {
        path: String,
        #[source]
        source: FieldError,
    },
}

/// A header field or PAX record a member cannot be read with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("PAX {key} {value:?} is not a number")]
    NotANumber { key: String, value: String },
    #[error("negative size {0}")]
    NegativeSize(i64),
    #[error("xattr name {0:?} is not UTF-8")]
    XattrName(String),
    #[error("LIBARCHIVE xattr name {0:?} is malformed")]
    LibarchiveName(String),
    #[error("LIBARCHIVE xattr {0:?} is not base64")]
    LibarchiveValue(String),
}

/// What a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// A sparse file's form and the regions that hold its data.
pub type SparseMap = (SparseFormat, Vec<Region>);

/// One member, with its PAX records, long names and sparse map applied.
#[derive(Clone, Debug)]
pub struct Member {
    pub path: Vec<u8>,
    /// The target of a symlink or hardlink.
    pub link: Vec<u8>,
    pub kind: Kind,
    /// Permission bits, setuid/setgid/sticky included.
    pub mode: u32,
    pub uid: i64,
    pub gid: i64,
    pub mtime: i64,
    /// `SCHILY.xattr.*` (or libarchive's) records, value bytes exactly as stored.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// The file's real size (for a sparse file, holes included).
    pub size: u64,
    /// For a sparse file, where its stored data goes; the data is these regions back to back.
    pub sparse: Option<SparseMap>,
}

impl Member {
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// A tar stream being read. `next` yields members; `data` reads the current one's contents.
pub struct Archive<R> {
    r: R,
    offset: u64,
    /// Data of the current member not read yet, and the padding after it.
    remaining: u64,
    padding: u64,
    globals: Records,
    ended: bool,
}

fn padding(n: u64) -> u64 {
    (BLOCK as u64 - n % BLOCK as u64) % BLOCK as u64
}

impl<R: Read> Archive<R> {
    pub fn new(r: R) -> Self {
        Archive {
            r,
            offset: 0,
            remaining: 0,
            padding: 0,
            globals: Records::default(),
            ended: false,
        }
    }

    /// The current member's data (its stored bytes; for a sparse file, the regions').
    pub fn data(&mut self) -> Data<'_, R> {
        Data { a: self }
    }

    /// Fills `buf`; `Ok(false)` when the stream ended cleanly before its first byte.
    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<bool, ArchiveError> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => {
                    return Err(ArchiveError::Truncated {
                        offset: self.offset + got as u64,
                        what,
                    })
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ArchiveError::Io {
                        offset: self.offset + got as u64,
                        source,
                    })
                }
            }
        }
        self.offset += got as u64;
        Ok(true)
    }

    fn block(&mut self, what: &'static str) -> Result<Option<[u8; BLOCK]>, ArchiveError> {
        let mut b = [0u8; BLOCK];
        Ok(self.fill(&mut b, what)?.then_some(b))
    }

    fn skip(&mut self, mut n: u64, what: &'static str) -> Result<(), ArchiveError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let chunk = n.min(buf.len() as u64) as usize;
            if !self.fill(&mut buf[..chunk], what)? {
                return Err(ArchiveError::Truncated {
                    offset: self.offset,
                    what,
                });
            }
            n -= chunk as u64;
        }
        Ok(())
    }

    /// The data of a PAX header or GNU long name (bounded), and the padding after it.
    fn special(
        &mut self,
        h: &Header,
        at: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, ArchiveError> {
        if !(0..=MAX_SPECIAL).contains(&h.size) {
            return Err(ArchiveError::TooLarge {
                offset: at,
                what,
                size: h.size,
            });
        }
        let mut data = vec![0u8; h.size as usize];
        if !data.is_empty() && !self.fill(&mut data, what)? {
            return Err(ArchiveError::Truncated {
                offset: self.offset,
                what,
            });
        }
        self.skip(padding(h.size as u64), what)?;
        Ok(data)
    }

    /// The next member, or `None` at the end of the archive.
    pub fn next(&mut self) -> Result<Option<Member>, ArchiveError> {
        if self.ended {
            return Ok(None);
        }
        self.skip(self.remaining + self.padding, "a member's data")?;
        self.remaining = 0;
        self.padding = 0;
        let mut local = Records::default();
        let (mut long_name, mut long_link) = (None, None);
        loop {
            let at = self.offset;
            // A stream that stops at a block boundary without end blocks is complete enough
            // for every mainstream reader.
            let Some(b) = self.block("a header")? else {
                self.ended = true;
                return Ok(None);
            };
            if header::is_zero(&b) {
                self.ended = true;
                return Ok(None);
            }
            if !header::checksum_ok(&b) {
                return Err(ArchiveError::Checksum { offset: at });
            }
            let h =
                header::parse(&b).map_err(|source| ArchiveError::Number { offset: at, source })?;
            let pax_err = |source| ArchiveError::Pax { offset: at, source };
            match h.typeflag {
                b'x' => {
                    let d = self.special(&h, at, "PAX header")?;
                    local.merge(Records::parse(&d).map_err(pax_err)?);
                }
                b'g' => {
                    let d = self.special(&h, at, "global PAX header")?;
                    self.globals.merge(Records::parse(&d).map_err(pax_err)?);
                }
                // GNU long names: the last one before a member is the one that counts.
                b'L' => long_name = Some(cstr(&self.special(&h, at, "GNU long name")?).to_vec()),
                b'K' => long_link = Some(cstr(&self.special(&h, at, "GNU long link")?).to_vec()),
                // A volume label names the archive, not a file.
                b'V' => {
                    let n = u64::try_from(h.size).unwrap_or(0);
                    self.skip(n + padding(n), "a volume label")?;
                }
                _ => {
                    let mut pax = self.globals.clone();
                    pax.merge(local);
                    return self.member(&b, h, &pax, long_name, long_link).map(Some);
                }
            }
        }
    }

    fn member(
        &mut self,
        block: &[u8; BLOCK],
        h: Header,
        pax: &Records,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<Member, ArchiveError> {
        let mut path = match pax.get("path") {
            Some(p) => p.to_vec(),
            None => long_name.unwrap_or(h.name),
        };
        let shown = String::from_utf8_lossy(&path).into_owned();
        let field = |source: FieldError| ArchiveError::Field {
            path: shown.clone(),
            source,
        };
        let link = match pax.get("linkpath") {
            Some(p) => p.to_vec(),
            None => long_link.unwrap_or(h.link),
        };
        let pax_num = |key: &str, parse: fn(&[u8]) -> Option<i64>, header: i64| match pax.get(key) {
            Some(v) => parse(v).ok_or_else(|| {
                field(FieldError::NotANumber {
                    key: key.to_string(),
                    value: String::from_utf8_lossy(v).into_owned(),
                })
            }),
            None => Ok(header),
        };
        let size = pax_num("size", decimal, h.size)?;
        let size = u64::try_from(size).map_err(|_| field(FieldError::NegativeSize(size)))?;
        let (uid, gid) = (
            pax_num("uid", decimal, h.uid)?,
            pax_num("gid", decimal, h.gid)?,
        );
        let mtime = pax_num("mtime", seconds, h.mtime)?;
        let (kind, has_data) = kind_of(h.typeflag, path.ends_with(b"/"), &shown)?;
        let stored = if has_data { size } else { 0 };
        self.remaining = stored;
        self.padding = padding(stored);
        let (sparse, real_size) = match (h.typeflag, kind) {
            (b'S', _) => {
                let (map, real) = self.old_gnu_sparse(block, &shown)?;
                (Some((SparseFormat::OldGnu, map)), real)
            }
            (_, Kind::File) => self.pax_sparse(pax, &mut path, &shown)?,
            _ => (None, stored),
        };
        if let Some((format, map)) = &sparse {
            sparse::validate(map, real_size, self.remaining).map_err(|source| {
                ArchiveError::Sparse {
                    path: shown.clone(),
                    format: *format,
                    source,
                }
            })?;
        }
        Ok(Member {
            path,
            link,
            kind,
            mode: (h.mode & 0o7777) as u32,
            uid,
            gid,
            mtime,
            xattrs: xattrs(pax).map_err(field)?,
            size: real_size,
            sparse,
        })
    }

    /// A PAX sparse file's map and real size (renaming it to `GNU.sparse.name`), or `None` and
    /// the stored size for an ordinary file.
    fn pax_sparse(
        &mut self,
        pax: &Records,
        path: &mut Vec<u8>,
        shown: &str,
    ) -> Result<(Option<SparseMap>, u64), ArchiveError> {
        let format = sparse::pax_format(pax).map_err(|source| ArchiveError::SparseVersion {
            path: shown.to_string(),
            source,
        })?;
        let Some(format) = format else {
            return Ok((None, self.remaining));
        };
        let err = |source| ArchiveError::Sparse {
            path: shown.to_string(),
            format,
            source,
        };
        if let Some(name) = pax.get("GNU.sparse.name") {
            *path = name.to_vec();
        }
        let real = pax
            .get("GNU.sparse.size")
            .or_else(|| pax.get("GNU.sparse.realsize"))
            .and_then(decimal)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| err(SparseError::NoRealSize))?;
        let map = if format == SparseFormat::Pax10 {
            self.pax1_map().map_err(|e| match e {
                Ok(why) => err(why),
                Err(e) => e,
            })?
        } else {
            sparse::pax0_map(pax).map_err(err)?
        };
        Ok((Some((format, map)), real))
    }

    /// An old GNU sparse header's map, with its extension blocks (which follow the header and
    /// are not counted in the size), and the real size.
    fn old_gnu_sparse(
        &mut self,
        block: &[u8; BLOCK],
        shown: &str,
    ) -> Result<(Vec<Region>, u64), ArchiveError> {
        let err = |source: SparseError| ArchiveError::Sparse {
            path: shown.to_string(),
            format: SparseFormat::OldGnu,
            source,
        };
        let at = self.offset;
        let num = move |e: BadNumber| ArchiveError::Number {
            offset: at,
            source: e,
        };
        let gs = header::gnu_sparse(block).map_err(num)?;
        let mut pairs = gs.regions;
        let mut extended = gs.extended;
        while extended {
            let Some(ext) = self.block("a GNU sparse extension block")? else {
                return Err(ArchiveError::Truncated {
                    offset: self.offset,
                    what: "a GNU sparse extension block",
                });
            };
            extended = header::gnu_sparse_ext(&ext, &mut pairs).map_err(num)?;
            if pairs.len() > sparse::MAX_REGIONS {
                return Err(err(SparseError::TooMany));
            }
        }
        let real = u64::try_from(gs.real_size).map_err(|_| err(SparseError::Negative))?;
        Ok((sparse::from_pairs(&pairs).map_err(err)?, real))
    }

    /// A PAX 1.0 map, read from the start of the member's data. `Err(Ok(why))` for a bad map.
    fn pax1_map(&mut self) -> Result<Vec<Region>, Result<SparseError, ArchiveError>> {
        let mut failure = None;
        let result = sparse::pax1_map(|| {
            if self.remaining < BLOCK as u64 {
                return Ok(None);
            }
            match self.block("a sparse map") {
                Ok(b) => {
                    self.remaining -= BLOCK as u64;
                    Ok(b)
                }
                Err(e) => {
                    failure = Some(e);
                    Err(io::Error::other("reading the sparse map"))
                }
            }
        });
        match (result, failure) {
            (_, Some(e)) => Err(Err(e)),
            (Ok(Ok((map, _))), None) => Ok(map),
            (Ok(Err(why)), None) => Err(Ok(why)),
            (Err(e), None) => Err(Err(ArchiveError::Io {
                offset: self.offset,
                source: e,
            })),
        }
    }
}

/// What a typeflag makes a member, and whether data follows its header. Which types carry
/// data is Go's and libarchive's rule: links, directories, devices and FIFOs have none,
/// whatever their size field says.
fn kind_of(typeflag: u8, dir_name: bool, shown: &str) -> Result<(Kind, bool), ArchiveError> {
    Ok(match typeflag {
        // v7 wrote directories as regular entries with a trailing slash.
        b'0' | b'\0' | b'7' if dir_name => (Kind::Dir, false),
        b'0' | b'\0' | b'7' | b'S' => (Kind::File, true),
        b'1' => (Kind::Hardlink, false),
        b'2' => (Kind::Symlink, false),
        b'3' => (Kind::Char, false),
        b'4' => (Kind::Block, false),
        b'5' => (Kind::Dir, false),
        b'6' => (Kind::Fifo, false),
        // GNU dumpdir: a directory whose data lists its contents for incremental restores.
        b'D' => (Kind::Dir, true),
        typeflag => {
            return Err(ArchiveError::UnknownType {
                path: shown.to_string(),
                typeflag,
            })
        }
    })
}

/// Extended attributes from `SCHILY.xattr.NAME=VALUE` (GNU tar, Go, star, bsdtar) and, where
/// only libarchive wrote one, `LIBARCHIVE.xattr.URLENCODED=BASE64`.
fn xattrs(pax: &Records) -> Result<Vec<(String, Vec<u8>)>, FieldError> {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in pax.with_prefix("SCHILY.xattr.") {
        let name =
            String::from_utf8(name.to_vec()).map_err(|_| FieldError::XattrName(lossy(name)))?;
        out.push((name, value.to_vec()));
    }
    for (name, value) in pax.with_prefix("LIBARCHIVE.xattr.") {
        let name = url_decode(name)
            .and_then(|n| String::from_utf8(n).ok())
            .ok_or_else(|| FieldError::LibarchiveName(lossy(name)))?;
        if out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let value = LIBARCHIVE_BASE64
            .decode(value)
            .map_err(|_| FieldError::LibarchiveValue(name.clone()))?;
        out.push((name, value));
    }
    Ok(out)
}

/// libarchive's writer leaves out the `=` padding (its reader takes both), so both are base64
/// here; anything else (other alphabets, stray bytes, bad lengths) is refused.
const LIBARCHIVE_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

fn url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The current member's stored data; ends with an error if the stream ends first.
pub struct Data<'a, R> {
    a: &'a mut Archive<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.a.remaining) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.a.r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the tar stream ends inside a member's data at byte {} (truncated?)",
                    self.a.offset
                ),
            ));
        }
        self.a.remaining -= n as u64;
        self.a.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
