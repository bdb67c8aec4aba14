//! Holds: images a named owner keeps in the store whatever the index says. `skiff update`
//! holds a unit's current and previous image, so `gc` never removes what a rollback needs and
//! a rollback needs no network; the next successful update moves the hold on.
//!
//! `holds/<owner>`: one `DIGEST PLATFORM` line per image, replaced atomically.

use std::path::Path;

use super::{io_err, list_names, open_existing, remove_if_present, write_atomic, StoreError};
use crate::reference::Digest;

/// A held image: its top-level digest and the platform chosen from it.
pub type Held = (Digest, String);

fn name_ok(owner: &str) -> bool {
    !owner.is_empty()
        && owner.len() <= 255
        && !owner.starts_with('.')
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:\\".contains(&b))
}

pub fn set(dir: &Path, owner: &str, images: &[Held]) -> Result<(), StoreError> {
    if !name_ok(owner) {
        return Err(StoreError::Unexpected {
            path: dir.join(owner),
            kind: "hold name",
        });
    }
    let body: String = images.iter().map(|(d, p)| format!("{d} {p}\n")).collect();
    write_atomic(dir, owner, body.as_bytes())
}

pub fn clear(dir: &Path, owner: &str) -> Result<(), StoreError> {
    if !name_ok(owner) {
        return Ok(());
    }
    remove_if_present(&dir.join(owner))
}

/// Every held image; a line that does not parse is skipped with a warning.
pub fn all(dir: &Path) -> Result<Vec<Held>, StoreError> {
    let mut out = Vec::new();
    for name in list_names(dir)? {
        if !name_ok(&name) {
            continue;
        }
        let path = dir.join(&name);
        let Some(f) = open_existing(&path)? else {
            continue;
        };
        let mut body = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(f, 64 * 1024), &mut body)
            .map_err(io_err("read", &path))?;
        for line in body.lines() {
            match line
                .split_once(' ')
                .and_then(|(d, p)| Some((d.parse::<Digest>().ok()?, p.to_string())))
            {
                Some(h) => out.push(h),
                None => {
                    tracing::warn!(hold = %path.display(), line, "ignoring a line that names no image")
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_round_trip_and_refuse_path_names() {
        let t = tempfile::tempdir().unwrap();
        let d = Digest::of(b"x");
        set(
            t.path(),
            "etcd-member.service",
            &[(d.clone(), "linux/amd64".into())],
        )
        .unwrap();
        std::fs::write(t.path().join("junk"), "not a digest\n").unwrap();
        assert_eq!(
            all(t.path()).unwrap(),
            vec![(d.clone(), "linux/amd64".into())]
        );
        assert!(set(t.path(), "../x", &[]).is_err());
        assert!(set(t.path(), "a/b", &[]).is_err());
        clear(t.path(), "etcd-member.service").unwrap();
        assert!(all(t.path()).unwrap().is_empty());
    }
}
