//! The pin file: the environment file a unit reads (`ETCD_IMAGE=…@sha256:…`, what
//! `skiff pin --write` writes), with one comment line saying which tag it follows:
//!
//! ```text
//! # skiff-follow: quay.io/coreos/etcd:v3.4
//! ETCD_IMAGE=quay.io/coreos/etcd@sha256:…
//! ```
//!
//! systemd ignores the comment; an operator reads and edits it by hand (`-` follows nothing).
//! Every other line is kept byte for byte when the pin moves.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::reference::{Digest, Reference};

/// The comment that makes an environment file a skiff pin file.
pub const FOLLOW: &str = "# skiff-follow:";
/// Pin files are a few lines; anything larger is not one.
const MAX_BYTES: u64 = 64 * 1024;

#[derive(Debug, Error)]
pub enum PinError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Bad { path: PathBuf, why: String },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PinError {
    let path = path.to_path_buf();
    move |source| PinError::Io { op, path, source }
}

/// A parsed pin file: its bytes, which line pins, and what it follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinFile {
    pub path: PathBuf,
    /// The file exactly as read (what a rollback puts back).
    pub bytes: Vec<u8>,
    /// The variable that holds the pinned reference.
    pub var: String,
    /// The pinned reference (with its digest).
    pub pinned: Reference,
    /// The tag it follows; `None` when the file pins a digest with nothing to follow.
    pub follows: Option<Reference>,
}

impl PinFile {
    pub fn read(path: &Path) -> Result<PinFile, PinError> {
        let f = File::open(path).map_err(io("open", path))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_BYTES + 1), &mut bytes)
            .map_err(io("read", path))?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(bad(path, format!("longer than {MAX_BYTES} bytes")));
        }
        Self::parse(path, bytes)
    }

    /// Parses a pin file's bytes (untrusted: an operator's hand edit).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<PinFile, PinError> {
        let text = std::str::from_utf8(&bytes).map_err(|_| bad(path, "not UTF-8".into()))?;
        let mut follows = None;
        let mut pins = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(f) = line.strip_prefix(FOLLOW) {
                let f = f.trim();
                if f != "-" {
                    let r: Reference = f
                        .parse()
                        .map_err(|e| bad(path, format!("{FOLLOW} {f:?}: {e}")))?;
                    if r.digest().is_some() || r.tag().is_none() {
                        return Err(bad(path, format!("{FOLLOW} {f:?} must name a tag")));
                    }
                    follows = Some(r);
                }
            } else if let Some((var, value)) = assignment(line) {
                if let Ok(r) = value.parse::<Reference>() {
                    if r.digest().is_some() {
                        pins.push((var.to_string(), r));
                    }
                }
            }
        }
        let (var, pinned) = match pins.len() {
            1 => pins.remove(0),
            0 => return Err(bad(path, "no NAME=IMAGE@sha256:… line".into())),
            _ => {
                let names: Vec<&str> = pins.iter().map(|(v, _)| v.as_str()).collect();
                return Err(bad(
                    path,
                    format!("more than one pin: {}", names.join(", ")),
                ));
            }
        };
        if let Some(f) = &follows {
            if f.name() != pinned.name() {
                return Err(bad(
                    path,
                    format!("{var} pins {} but the file follows {f}", pinned.name()),
                ));
            }
        }
        Ok(PinFile {
            path: path.to_path_buf(),
            bytes,
            var,
            pinned,
            follows,
        })
    }

    /// The pinned digest.
    pub fn digest(&self) -> &Digest {
        self.pinned
            .digest()
            .expect("a parsed pin always has a digest")
    }

    /// The file's bytes with the pin moved to `digest`; every other byte as it was.
    pub fn moved_to(&self, digest: &Digest) -> Vec<u8> {
        let new = format!("{}@{digest}", self.pinned.name());
        let text = String::from_utf8_lossy(&self.bytes);
        let mut out = String::with_capacity(text.len() + 8);
        for line in text.split_inclusive('\n') {
            match assignment(line.trim()) {
                Some((var, value))
                    if var == self.var && value.parse() == Ok(self.pinned.clone()) =>
                {
                    let end = if line.ends_with('\n') { "\n" } else { "" };
                    out.push_str(&format!("{var}={new}{end}"));
                }
                _ => out.push_str(line),
            }
        }
        out.into_bytes()
    }
}

/// What `skiff pin --write` writes: the follow line, then the pin.
pub fn render(var: &str, pinned: &Reference, follows: Option<&Reference>) -> Vec<u8> {
    let follow = follows.map_or("-".to_string(), |r| r.to_string());
    format!(
        "# Written by `skiff pin`; `skiff update` moves {var} to what the tag below means now.\n\
         {FOLLOW} {follow}\n{var}={pinned}\n"
    )
    .into_bytes()
}

/// `NAME=VALUE` as systemd's EnvironmentFile= reads it (optional quotes around the value).
fn assignment(line: &str) -> Option<(&str, &str)> {
    if line.starts_with('#') || line.starts_with(';') {
        return None;
    }
    let (k, v) = line.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    Some((k, v))
}

fn bad(path: &Path, why: String) -> PinError {
    PinError::Bad {
        path: path.to_path_buf(),
        why,
    }
}

/// Replaces `path` with `bytes` so that a reader sees the old or the new file, and the new one
/// survives a power loss: temp file beside it, fsync, rename, fsync of the directory. The mode
/// of the file it replaces is kept (an env file is usually 0644).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PinError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| bad(path, "not a file name".into()))?;
    let tmp = dir.join(format!(
        ".{}.skiff{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mode = fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.set_permissions(fs::Permissions::from_mode(mode)))
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        // A temp file that will never be renamed is only litter.
        if let Err(rm) = fs::remove_file(&tmp) {
            tracing::debug!(path = %tmp.display(), error = %rm, "could not remove a temp file");
        }
        return Err(io("write", &tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(s: &str) -> Result<PinFile, PinError> {
        PinFile::parse(Path::new("/etc/skiff/x.env"), s.as_bytes().to_vec())
    }

    #[test]
    fn a_pin_file_names_its_variable_pin_and_tag() {
        let text = format!(
            "# comment\nETCD_USER=etcd\n{FOLLOW} reg.lan/coreos/etcd:v3\nETCD_IMAGE=reg.lan/coreos/etcd@sha256:{HEX}\n"
        );
        let p = parse(&text).unwrap();
        assert_eq!(p.var, "ETCD_IMAGE");
        assert_eq!(p.digest().hex(), HEX);
        assert_eq!(p.follows.unwrap().to_string(), "reg.lan/coreos/etcd:v3");
        // No follow line (or `-`): a digest with nothing to follow.
        let p = parse(&format!("IMG=\"reg.lan/a@sha256:{HEX}\"\n")).unwrap();
        assert!(p.follows.is_none());
        let p = parse(&format!("{FOLLOW} -\nIMG=reg.lan/a@sha256:{HEX}\n")).unwrap();
        assert!(p.follows.is_none());
    }

    #[test]
    fn a_hostile_or_confused_pin_file_is_refused_with_the_reason() {
        let cases = [
            ("", "no NAME=IMAGE"),
            ("IMG=reg.lan/a:v1\n", "no NAME=IMAGE"),
            (
                &format!("A=reg.lan/a@sha256:{HEX}\nB=reg.lan/b@sha256:{HEX}\n"),
                "more than one pin",
            ),
            (
                &format!("{FOLLOW} reg.lan/b:v1\nA=reg.lan/a@sha256:{HEX}\n"),
                "but the file follows",
            ),
            (
                &format!("{FOLLOW} reg.lan/a@sha256:{HEX}\nA=reg.lan/a@sha256:{HEX}\n"),
                "must name a tag",
            ),
            (&format!("{FOLLOW} ../../x\n"), "skiff-follow"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let e = PinFile::parse(Path::new("x"), vec![0xff, b'\n']).unwrap_err();
        assert!(e.to_string().contains("UTF-8"));
    }

    #[test]
    fn moving_a_pin_changes_only_its_line() {
        let text =
            format!("# keep me\r\nA=1\n{FOLLOW} reg.lan/a:v1\nIMG=reg.lan/a@sha256:{HEX}\nZ=2");
        let p = parse(&text).unwrap();
        let new: Digest = format!("sha256:{}", "f".repeat(64)).parse().unwrap();
        let moved = String::from_utf8(p.moved_to(&new)).unwrap();
        assert_eq!(
            moved,
            text.replace(&format!("sha256:{HEX}"), &new.to_string())
        );
        assert_eq!(parse(&moved).unwrap().digest(), &new);
    }

    #[test]
    fn what_pin_write_writes_parses_back() {
        let pinned: Reference = format!("reg.lan/a@sha256:{HEX}").parse().unwrap();
        let tag: Reference = "reg.lan/a:v1".parse().unwrap();
        let p = parse(std::str::from_utf8(&render("IMG", &pinned, Some(&tag))).unwrap()).unwrap();
        assert_eq!((p.pinned, p.follows), (pinned.clone(), Some(tag)));
        let p = parse(std::str::from_utf8(&render("IMG", &pinned, None)).unwrap()).unwrap();
        assert!(p.follows.is_none());
    }

    #[test]
    fn the_atomic_writer_replaces_whole_and_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("x.env");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"new\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1, "no temp left");
    }
}
