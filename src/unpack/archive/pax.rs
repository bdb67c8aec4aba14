//! PAX extended header records (POSIX.1-2001 `pax`): `LEN key=value\n`, where LEN counts the
//! whole record and the value may hold any byte, newlines included (binary xattrs, IMA
//! signatures). Records are split by their length, never by newlines.

/// Why a PAX header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaxError {
    #[error("PAX record at byte {at} has no valid length")]
    Length { at: usize },
    #[error("PAX record at byte {at} runs past the end of the header")]
    Overrun { at: usize },
    #[error("PAX record at byte {at} does not end with a newline")]
    Unterminated { at: usize },
    #[error("PAX record at byte {at} has no key=value")]
    NoKey { at: usize },
    #[error("GNU.sparse.offset and GNU.sparse.numbytes records are out of order")]
    SparseOrder,
}

/// The records of one header, in order; a later record for a key overrides an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// Key → value, the last record winning. An empty value unsets the key (POSIX).
    map: Vec<(Vec<u8>, Vec<u8>)>,
    /// GNU sparse 0.0 repeats `GNU.sparse.offset`/`numbytes` pairs: their order is the map.
    pub sparse_pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

const SPARSE_OFFSET: &[u8] = b"GNU.sparse.offset";
const SPARSE_NUMBYTES: &[u8] = b"GNU.sparse.numbytes";

impl Records {
    pub fn parse(data: &[u8]) -> Result<Records, PaxError> {
        let mut out = Records::default();
        let mut pending_offset: Option<Vec<u8>> = None;
        let mut at = 0;
        // A header's data is padded with NULs to its block; GNU tar and Go stop there too.
        while at < data.len() && data[at] != 0 {
            let rest = &data[at..];
            let space = rest
                .iter()
                .take(20)
                .position(|&b| b == b' ')
                .ok_or(PaxError::Length { at })?;
            let len: usize = std::str::from_utf8(&rest[..space])
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .filter(|&l| l > space + 1)
                .ok_or(PaxError::Length { at })?;
            if len > rest.len() {
                return Err(PaxError::Overrun { at });
            }
            let record = &rest[space + 1..len];
            let Some((b'\n', kv)) = record.split_last() else {
                return Err(PaxError::Unterminated { at });
            };
            let eq = kv
                .iter()
                .position(|&b| b == b'=')
                .filter(|&p| p > 0)
                .ok_or(PaxError::NoKey { at })?;
            let (key, value) = (&kv[..eq], &kv[eq + 1..]);
            match key {
                SPARSE_OFFSET if pending_offset.is_none() => pending_offset = Some(value.to_vec()),
                SPARSE_NUMBYTES => {
                    let off = pending_offset.take().ok_or(PaxError::SparseOrder)?;
                    out.sparse_pairs.push((off, value.to_vec()));
                }
                SPARSE_OFFSET => return Err(PaxError::SparseOrder),
                _ => out.set(key, value),
            }
            at += len;
        }
        if pending_offset.is_some() {
            return Err(PaxError::SparseOrder);
        }
        Ok(out)
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        match self.map.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_vec(),
            None => self.map.push((key.to_vec(), value.to_vec())),
        }
    }

    /// Lays `later` over these records (a global header's, then a member's own).
    pub fn merge(&mut self, later: Records) {
        for (k, v) in later.map {
            self.set(&k, &v);
        }
        if !later.sparse_pairs.is_empty() {
            self.sparse_pairs = later.sparse_pairs;
        }
    }

    /// The value of `key`, unless it is absent or unset by an empty value.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v.as_slice())
            .filter(|v| !v.is_empty())
    }

    /// Every (key, value) whose key starts with `prefix`, the prefix removed.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.map.iter().filter_map(move |(k, v)| {
            k.strip_prefix(prefix.as_bytes())
                .map(|name| (name, v.as_slice()))
        })
    }
}

/// A PAX decimal (`size`, `uid`): digits only.
pub fn decimal(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
}

/// A PAX time (`mtime`): seconds, optionally signed and with a fraction; whole seconds kept.
pub fn seconds(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    // -1.5 is one and a half seconds before the epoch: floor, as Go and GNU tar do.
    let frac_nonzero = frac.bytes().any(|b| b != b'0');
    Some(match (neg, frac_nonzero) {
        (false, _) => whole,
        (true, false) => -whole,
        (true, true) => -whole - 1,
    })
}

/// One PAX record, its length prefix counted as writers count it (for tests).
#[cfg(test)]
pub fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = [b" ", key.as_bytes(), b"=", value, b"\n"].concat();
    let mut len = body.len() + 1;
    while format!("{len}").len() + body.len() != len {
        len += 1;
    }
    [format!("{len}").as_bytes(), &body].concat()
}

#[cfg(test)]
mod tests {
    use super::record as rec;
    use super::*;

    #[test]
    fn binary_values_with_newlines() {
        let value: Vec<u8> = (1u8..=0x1f).collect();
        let data = [
            rec("SCHILY.xattr.user.binary", &value),
            rec("path", b"a\nb"),
        ]
        .concat();
        let r = Records::parse(&data).unwrap();
        let x: Vec<_> = r.with_prefix("SCHILY.xattr.").collect();
        assert_eq!(x, vec![(&b"user.binary"[..], &value[..])]);
        assert_eq!(r.get("path"), Some(&b"a\nb"[..]));
    }

    #[test]
    fn last_record_wins_and_empty_unsets() {
        let data = [rec("path", b"one"), rec("path", b"two"), rec("uid", b"5")].concat();
        let mut r = Records::parse(&data).unwrap();
        assert_eq!(r.get("path"), Some(&b"two"[..]));
        r.merge(Records::parse(&rec("uid", b"")).unwrap());
        assert_eq!(r.get("uid"), None);
    }

    #[test]
    fn sparse_0_0_pairs_in_order() {
        let data = [
            rec("GNU.sparse.offset", b"10"),
            rec("GNU.sparse.numbytes", b"5"),
            rec("GNU.sparse.offset", b"100"),
            rec("GNU.sparse.numbytes", b"0"),
        ]
        .concat();
        let r = Records::parse(&data).unwrap();
        assert_eq!(r.sparse_pairs.len(), 2);
        assert_eq!(r.sparse_pairs[1].0, b"100");
        let bad = [rec("GNU.sparse.numbytes", b"5")].concat();
        assert_eq!(Records::parse(&bad), Err(PaxError::SparseOrder));
    }

    #[test]
    fn hostile_records_are_refused() {
        for (data, why) in [
            (&b"x path=a\n"[..], "no length"),
            (b"99 path=a\n", "overrun"),
            (b"10 path=ab\x00", "no newline"),
            (b"9 =value\n", "empty key"),
            (b"8 novalu\n", "no ="),
            (b"3 \n", "too short"),
            (b"00000000000000000000000 a=b\n", "length too long"),
            (b"-5 a=b\n", "negative"),
        ] {
            assert!(Records::parse(data).is_err(), "{why}: {data:?}");
        }
        // Padding after the last record is fine.
        assert!(Records::parse(b"9 path=a\n\0\0\0").is_ok());
    }

    #[test]
    fn times() {
        assert_eq!(seconds(b"1600000000.123"), Some(1_600_000_000));
        assert_eq!(seconds(b"-1.5"), Some(-2));
        assert_eq!(seconds(b"-3"), Some(-3));
        assert_eq!(seconds(b"12x"), None);
        assert_eq!(seconds(b""), None);
        assert_eq!(decimal(b"42"), Some(42));
        assert_eq!(decimal(b"+42"), None);
    }
}
