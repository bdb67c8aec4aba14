//! GNU sparse files: which regions of a file hold data, in every form GNU tar writes them
//! (old `S` headers; PAX 0.0, 0.1 and 1.0). The member's stored data is those regions back to
//! back; everything else is a hole.

use super::pax::{decimal, Records};

/// One region that holds data: `len` bytes at `offset` of the real file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub len: u64,
}

/// Which GNU sparse form a member uses, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseFormat {
    OldGnu,
    Pax00,
    Pax01,
    Pax10,
}

impl std::fmt::Display for SparseFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SparseFormat::OldGnu => "GNU 'S' (old GNU)",
            SparseFormat::Pax00 => "GNU PAX 0.0",
            SparseFormat::Pax01 => "GNU PAX 0.1",
            SparseFormat::Pax10 => "GNU PAX 1.0",
        })
    }
}

/// More regions than any real file has: the bound on what a header may make us hold.
pub const MAX_REGIONS: usize = 1 << 20;

/// What is wrong with a sparse map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SparseError {
    #[error("GNU sparse version {0} is not one skiff knows")]
    Version(String),
    #[error("{0:?} in the sparse map is not a number")]
    NotANumber(String),
    #[error("the sparse map has an odd number of values")]
    Odd,
    #[error("the sparse map has more than {MAX_REGIONS} regions")]
    TooMany,
    #[error("GNU.sparse.numblocks says {said} regions, the map has {has}")]
    NumBlocks { said: String, has: usize },
    #[error("the sparse map runs past the member's data")]
    PastData,
    #[error("a number in the sparse map is too long")]
    TooLong,
    #[error("a sparse region overflows")]
    Overflow,
    #[error("sparse region at {0} overlaps or precedes the one before it")]
    Order(u64),
    #[error("sparse region {offset}+{len} ends past the file's size {size}")]
    PastEnd { offset: u64, len: u64, size: u64 },
    #[error("the sparse map covers {covered} bytes but the member stores {stored}")]
    Stored { covered: u64, stored: u64 },
    #[error("a negative sparse offset, length or size")]
    Negative,
    #[error("no real size")]
    NoRealSize,
}

fn not_a_number(v: &[u8]) -> SparseError {
    SparseError::NotANumber(String::from_utf8_lossy(v).into_owned())
}

/// What a PAX header says about sparseness: `Ok(None)` for an ordinary member.
pub fn pax_format(r: &Records) -> Result<Option<SparseFormat>, SparseError> {
    match (r.get("GNU.sparse.major"), r.get("GNU.sparse.minor")) {
        (Some(b"1"), Some(b"0")) => Ok(Some(SparseFormat::Pax10)),
        (Some(b"0"), Some(b"1")) => Ok(Some(SparseFormat::Pax01)),
        (Some(b"0"), Some(b"0")) => Ok(Some(SparseFormat::Pax00)),
        (None, None) if r.get("GNU.sparse.map").is_some() => Ok(Some(SparseFormat::Pax01)),
        (None, None) if !r.sparse_pairs.is_empty() => Ok(Some(SparseFormat::Pax00)),
        (None, None) => Ok(None),
        (major, minor) => Err(SparseError::Version(format!(
            "{}.{}",
            String::from_utf8_lossy(major.unwrap_or(b"?")),
            String::from_utf8_lossy(minor.unwrap_or(b"?"))
        ))),
    }
}

/// The map of a PAX 0.0 (`offset`/`numbytes` pairs) or 0.1 (`GNU.sparse.map`) member.
pub fn pax0_map(r: &Records) -> Result<Vec<Region>, SparseError> {
    let mut values: Vec<&[u8]> = Vec::new();
    if let Some(map) = r.get("GNU.sparse.map") {
        values.extend(map.split(|&b| b == b','));
    } else {
        for (o, n) in &r.sparse_pairs {
            values.push(o);
            values.push(n);
        }
    }
    let map = pairs(&values)?;
    if let Some(n) = r.get("GNU.sparse.numblocks") {
        let said = decimal(n).ok_or_else(|| not_a_number(n))?;
        if usize::try_from(said).ok() != Some(map.len()) {
            return Err(SparseError::NumBlocks {
                said: said.to_string(),
                has: map.len(),
            });
        }
    }
    Ok(map)
}

fn pairs(values: &[&[u8]]) -> Result<Vec<Region>, SparseError> {
    if values.len() % 2 != 0 {
        return Err(SparseError::Odd);
    }
    if values.len() / 2 > MAX_REGIONS {
        return Err(SparseError::TooMany);
    }
    let num = |v: &[u8]| {
        decimal(v)
            .and_then(|x| u64::try_from(x).ok())
            .ok_or_else(|| not_a_number(v))
    };
    values
        .chunks(2)
        .map(|p| {
            Ok(Region {
                offset: num(p[0])?,
                len: num(p[1])?,
            })
        })
        .collect()
}

/// The map at the start of a PAX 1.0 member's data: decimal numbers each ending in `\n`
/// (the count, then offset/length pairs), padded to a 512-byte block. `block` reads the next
/// block of the member's data; returns the map and how many bytes of data it took.
pub fn pax1_map(
    mut block: impl FnMut() -> Result<Option<[u8; 512]>, std::io::Error>,
) -> Result<Result<(Vec<Region>, u64), SparseError>, std::io::Error> {
    let mut numbers: Vec<u64> = Vec::new();
    let mut want: Option<usize> = None;
    let mut current: Vec<u8> = Vec::new();
    let mut used = 0u64;
    while want.is_none_or(|w| numbers.len() < w) {
        let Some(b) = block()? else {
            return Ok(Err(SparseError::PastData));
        };
        used += 512;
        for &c in b.iter() {
            if want.is_some_and(|w| numbers.len() >= w) {
                break;
            }
            if c == b'\n' {
                let Some(n) = decimal(&current).and_then(|n| u64::try_from(n).ok()) else {
                    return Ok(Err(not_a_number(&current)));
                };
                current.clear();
                if want.is_none() {
                    if n > MAX_REGIONS as u64 {
                        return Ok(Err(SparseError::TooMany));
                    }
                    want = Some(1 + 2 * n as usize);
                }
                numbers.push(n);
            } else if current.len() < 20 {
                current.push(c);
            } else {
                return Ok(Err(SparseError::TooLong));
            }
        }
    }
    let map = numbers[1..]
        .chunks(2)
        .map(|p| Region {
            offset: p[0],
            len: p[1],
        })
        .collect();
    Ok(Ok((map, used)))
}

/// Checks a map against the file's real size and the data stored for it: regions in order,
/// not overlapping, inside the file, and their lengths adding up to the stored data.
pub fn validate(map: &[Region], real_size: u64, stored: u64) -> Result<(), SparseError> {
    let mut end = 0u64;
    let mut total = 0u64;
    for r in map {
        let r_end = r.offset.checked_add(r.len).ok_or(SparseError::Overflow)?;
        if r.offset < end {
            return Err(SparseError::Order(r.offset));
        }
        if r_end > real_size {
            return Err(SparseError::PastEnd {
                offset: r.offset,
                len: r.len,
                size: real_size,
            });
        }
        end = r_end;
        total += r.len;
    }
    if total != stored {
        return Err(SparseError::Stored {
            covered: total,
            stored,
        });
    }
    Ok(())
}

/// Regions from an old GNU header's (offset, length) pairs.
pub fn from_pairs(pairs: &[(i64, i64)]) -> Result<Vec<Region>, SparseError> {
    pairs
        .iter()
        .map(|&(o, l)| match (u64::try_from(o), u64::try_from(l)) {
            (Ok(offset), Ok(len)) => Ok(Region { offset, len }),
            _ => Err(SparseError::Negative),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_checked_against_sizes() {
        let m = [
            Region { offset: 0, len: 10 },
            Region {
                offset: 100,
                len: 5,
            },
            Region {
                offset: 200,
                len: 0,
            },
        ];
        assert!(validate(&m, 200, 15).is_ok());
        assert!(validate(&m, 199, 15).is_err(), "past the end");
        assert!(validate(&m, 200, 16).is_err(), "stored bytes left over");
        let overlap = [Region { offset: 0, len: 10 }, Region { offset: 5, len: 1 }];
        assert!(validate(&overlap, 100, 11).is_err());
        let overflow = [Region {
            offset: u64::MAX,
            len: 2,
        }];
        assert!(validate(&overflow, u64::MAX, 2).is_err());
    }

    #[test]
    fn pax1_map_from_blocks() {
        let mut b = [0u8; 512];
        let text = b"2\n10\n5\n100\n0\n";
        b[..text.len()].copy_from_slice(text);
        let mut blocks = vec![b].into_iter();
        let (map, used) = pax1_map(|| Ok(blocks.next())).unwrap().unwrap();
        assert_eq!(used, 512);
        assert_eq!(
            map,
            vec![
                Region { offset: 10, len: 5 },
                Region {
                    offset: 100,
                    len: 0
                }
            ]
        );
        let mut none = Vec::<[u8; 512]>::new().into_iter();
        assert!(pax1_map(|| Ok(none.next())).unwrap().is_err());
        let mut huge = [0u8; 512];
        huge[..9].copy_from_slice(b"99999999\n");
        let mut blocks = vec![huge].into_iter();
        assert!(pax1_map(|| Ok(blocks.next())).unwrap().is_err());
    }

    fn records(pairs: &[(&str, &str)]) -> Records {
        let data: Vec<u8> = pairs
            .iter()
            .flat_map(|(k, v)| super::super::pax::record(k, v.as_bytes()))
            .collect();
        Records::parse(&data).unwrap()
    }

    #[test]
    fn versions() {
        let r = records(&[("GNU.sparse.major", "2"), ("GNU.sparse.minor", "0")]);
        assert!(pax_format(&r).is_err());
        let r = records(&[("GNU.sparse.map", "0,1,5,0")]);
        assert_eq!(pax_format(&r), Ok(Some(SparseFormat::Pax01)));
        assert_eq!(pax0_map(&r).unwrap().len(), 2);
        let r = records(&[("GNU.sparse.map", "0,1,5")]);
        assert!(pax0_map(&r).is_err());
        let r = records(&[("GNU.sparse.map", "0,1"), ("GNU.sparse.numblocks", "2")]);
        assert!(pax0_map(&r).is_err(), "numblocks disagrees");
        let r = records(&[("GNU.sparse.offset", "0"), ("GNU.sparse.numbytes", "1")]);
        assert_eq!(pax_format(&r), Ok(Some(SparseFormat::Pax00)));
        assert_eq!(pax0_map(&r).unwrap(), vec![Region { offset: 0, len: 1 }]);
    }
}
