//! One 512-byte tar header block: its fields, as v7, ustar, star and GNU tar lay them out.
//!
//! Numeric fields are read as the mainstream readers (GNU tar, Go's archive/tar, libarchive)
//! read them: octal padded with spaces or NULs at either end (an empty field is 0), or
//! base-256 when the first byte has its high bit set.

pub const BLOCK: usize = 512;

/// Which layout the header block uses, from its magic (as Go's `getFormat` decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    V7,
    Ustar,
    /// ustar magic with star's trailer: the prefix field is only 131 bytes.
    Star,
    Gnu,
}

/// A numeric field that is neither octal nor base-256.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {field} field {raw:?} is not a number")]
pub struct BadNumber {
    pub field: &'static str,
    pub raw: String,
}

/// The fields of a header block, before PAX records and GNU long names are applied.
#[derive(Debug, Clone)]
pub struct Header {
    pub typeflag: u8,
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    pub size: i64,
    pub mtime: i64,
}

pub fn is_zero(b: &[u8; BLOCK]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// The bytes of a string field up to its first NUL.
pub fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Whether the stored checksum matches the block, summed as unsigned or (as some old tars
/// did) signed bytes, with the checksum field itself counted as spaces.
pub fn checksum_ok(b: &[u8; BLOCK]) -> bool {
    let Ok(stored) = number(&b[148..156], "checksum") else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &x) in b.iter().enumerate() {
        let x = if (148..156).contains(&i) { b' ' } else { x };
        unsigned += i64::from(x);
        signed += i64::from(x as i8);
    }
    stored == unsigned || stored == signed
}

pub fn format(b: &[u8; BLOCK]) -> Format {
    match (&b[257..263], &b[263..265]) {
        (b"ustar\0", b"00") if &b[508..512] == b"tar\0" => Format::Star,
        (b"ustar\0", b"00") => Format::Ustar,
        (b"ustar ", b" \0") => Format::Gnu,
        _ => Format::V7,
    }
}

/// Parses a numeric field: base-256 (two's complement, as GNU tar and Go write it) or octal.
pub fn number(field: &[u8], name: &'static str) -> Result<i64, BadNumber> {
    let bad = || BadNumber {
        field: name,
        raw: String::from_utf8_lossy(field).into_owned(),
    };
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            let inv = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &c) in field.iter().enumerate() {
                let mut c = c ^ inv;
                if i == 0 {
                    c &= 0x7f;
                }
                if x >> 56 != 0 {
                    return Err(bad());
                }
                x = (x << 8) | u64::from(c);
            }
            if x >> 63 != 0 {
                return Err(bad());
            }
            let x = x as i64;
            return Ok(if inv == 0xff { !x } else { x });
        }
    }
    let trimmed = trim(field);
    if trimmed.is_empty() {
        return Ok(0);
    }
    let mut x: i64 = 0;
    for &c in trimmed {
        if !(b'0'..=b'7').contains(&c) {
            return Err(bad());
        }
        x = x
            .checked_mul(8)
            .and_then(|x| x.checked_add(i64::from(c - b'0')))
            .ok_or_else(bad)?;
    }
    Ok(x)
}

fn trim(f: &[u8]) -> &[u8] {
    let pad = |b: &u8| *b == 0 || *b == b' ';
    let start = f.iter().position(|b| !pad(b)).unwrap_or(f.len());
    let end = f.iter().rposition(|b| !pad(b)).map_or(start, |e| e + 1);
    &f[start..end]
}

/// Reads the fields of a block whose checksum has been checked.
pub fn parse(b: &[u8; BLOCK]) -> Result<Header, BadNumber> {
    let format = format(b);
    let mut name = cstr(&b[0..100]).to_vec();
    let prefix = match format {
        Format::Ustar => cstr(&b[345..500]),
        Format::Star => cstr(&b[345..476]),
        Format::V7 | Format::Gnu => &[][..],
    };
    if !prefix.is_empty() {
        name = [prefix, b"/", &name].concat();
    }
    // Device numbers are not read: device nodes in images are skipped.
    Ok(Header {
        typeflag: b[156],
        name,
        link: cstr(&b[157..257]).to_vec(),
        mode: number(&b[100..108], "mode")?,
        uid: number(&b[108..116], "uid")?,
        gid: number(&b[116..124], "gid")?,
        size: number(&b[124..136], "size")?,
        mtime: number(&b[136..148], "mtime")?,
    })
}

/// An old GNU sparse header's map (`S` entries): up to four regions in the header, more in
/// extension blocks, and the file's real size.
pub struct GnuSparse {
    pub regions: Vec<(i64, i64)>,
    pub extended: bool,
    pub real_size: i64,
}

/// Reads `count` (offset, length) pairs starting at `at`, stopping at the first empty one.
fn sparse_pairs(b: &[u8], count: usize, out: &mut Vec<(i64, i64)>) -> Result<(), BadNumber> {
    for i in 0..count {
        let e = &b[i * 24..i * 24 + 24];
        if e[0] == 0 {
            break;
        }
        out.push((
            number(&e[..12], "sparse offset")?,
            number(&e[12..], "sparse length")?,
        ));
    }
    Ok(())
}

pub fn gnu_sparse(b: &[u8; BLOCK]) -> Result<GnuSparse, BadNumber> {
    let mut regions = Vec::new();
    sparse_pairs(&b[386..482], 4, &mut regions)?;
    Ok(GnuSparse {
        regions,
        extended: b[482] != 0,
        real_size: number(&b[483..495], "sparse real size")?,
    })
}

/// An extension block of an old GNU sparse map: 21 more regions; whether another follows.
pub fn gnu_sparse_ext(b: &[u8; BLOCK], out: &mut Vec<(i64, i64)>) -> Result<bool, BadNumber> {
    sparse_pairs(&b[..504], 21, out)?;
    Ok(b[504] != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields_as_the_mainstream_readers_take_them() {
        assert_eq!(number(b"0000644\0", "mode"), Ok(0o644));
        assert_eq!(number(b"   644 \0", "mode"), Ok(0o644));
        assert_eq!(number(b"\0\0\0\0\0\0\0\0", "uid"), Ok(0));
        assert_eq!(number(b"        ", "uid"), Ok(0));
        assert_eq!(number(b"0000644 ", "mode"), Ok(0o644));
        assert!(number(b"00006x4\0", "mode").is_err());
        assert!(number(b"0 6 4\0\0\0", "mode").is_err());
        // Twelve octal digits overflow nothing; 22 sevens would.
        assert!(number(b"7777777777777777777777", "size").is_err());
    }

    #[test]
    fn base256_fields() {
        let mut f = [0u8; 8];
        f[0] = 0x80;
        f[4..].copy_from_slice(&70000u32.to_be_bytes());
        assert_eq!(number(&f, "uid"), Ok(70000));
        // -1 in two's complement.
        assert_eq!(number(&[0xff; 12], "mtime"), Ok(-1));
        // Too many significant bytes.
        let mut big = [0xffu8; 12];
        big[0] = 0x80;
        assert!(number(&big, "size").is_err());
    }

    #[test]
    fn checksums_signed_or_unsigned() {
        let mut b = [0u8; BLOCK];
        b[0] = b'a';
        b[1] = 0xe9;
        let unsigned: u32 = b.iter().map(|&x| u32::from(x)).sum::<u32>() + 8 * 32;
        b[148..155].copy_from_slice(format!("{unsigned:06o}\0").as_bytes());
        assert!(checksum_ok(&b));
        let signed: i32 = i32::from(b'a') - 23 + 8 * 32;
        b[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
        assert!(checksum_ok(&b));
        b[2] = 1;
        assert!(!checksum_ok(&b));
    }

    #[test]
    fn prefixes_by_format() {
        let mut b = [0u8; BLOCK];
        b[..4].copy_from_slice(b"name");
        b[345..348].copy_from_slice(b"pre");
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        assert_eq!(parse(&b).unwrap().name, b"pre/name");
        // star: the same magic, a 131-byte prefix (here full, no NUL), times after it, and a
        // trailer. Read as ustar's 155 bytes, the prefix would run into the atime.
        let mut star = b;
        star[345..476].copy_from_slice(&[b'p'; 131]);
        star[476..488].copy_from_slice(b"14000000000\0");
        star[508..512].copy_from_slice(b"tar\0");
        assert_eq!(format(&star), Format::Star);
        let want = [&[b'p'; 131][..], b"/name"].concat();
        assert_eq!(
            parse(&star).unwrap().name,
            want,
            "star's times are not in the prefix"
        );
        b[257..263].copy_from_slice(b"ustar ");
        b[263..265].copy_from_slice(b" \0");
        assert_eq!(parse(&b).unwrap().name, b"name", "GNU has no prefix field");
    }
}
