//! /proc/self/mountinfo, for propagation decisions (which mounts exist, which are shared).

use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    /// In a `shared:N` peer group.
    pub shared: bool,
}

/// Octal escapes (`\040` for a space) as the kernel writes them.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo lines; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let mp = fields.get(4)?;
            Some(MountInfo {
                mount_point: PathBuf::from(unescape(mp)),
                shared: fields.get(6..sep)?.iter().any(|f| f.starts_with("shared:")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_and_unescapes() {
        let text =
            "36 35 98:0 /mnt1 /mnt\\040space rw,noatime master:1 shared:7 - ext3 /dev/root rw\n\
                    37 35 98:0 / / rw - ext4 /dev/vda rw\nbroken line\n";
        let m = super::parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, std::path::PathBuf::from("/mnt space"));
        assert!(m[0].shared && !m[1].shared);
    }
}
