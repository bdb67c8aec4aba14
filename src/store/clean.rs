//! Whether the store went through an unclean shutdown (a power cut, a crash of the kernel).
//!
//! Every operation that writes trees leaves `state/ops/<boot id>.<pid>.<n>` on disk (durably)
//! while it runs and removes it when done; everything it committed was synced before. So the
//! last boot ended cleanly, as far as the store is concerned, when no such file of an earlier
//! boot is left. The first skiff of a boot decides that once and writes `state/mark`
//! (`<boot id> clean` or `<boot id> suspect`); every later start reads only that small file.
//! While the mark says suspect, a tree is quick-checked against its record before it is used
//! (and `state/checked/<tree>` notes it passed); a `skiff verify` that finds nothing wrong makes
//! the mark clean again.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::{io_err, lock_file, remove_if_present, write_atomic, Store, StoreError, TreeKey};

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The kernel's id of this boot; a fixed word where the kernel has none (then every start
/// looks like the same boot, and only a `verify` finds damage).
pub fn boot_id() -> String {
    fs::read_to_string(BOOT_ID)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .unwrap_or_else(|| "unknown".into())
}

/// A write operation in flight; its file is removed when it is dropped.
#[derive(Debug)]
pub struct WriteOp {
    path: PathBuf,
}

impl Drop for WriteOp {
    fn drop(&mut self) {
        // Not made durable: should the removal be lost to a power cut, the next boot only
        // checks trees that were fine.
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "could not remove an operation mark");
        }
    }
}

/// What the mark says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    Clean,
    /// An earlier boot ended with a write in flight: trees are checked before use.
    Unclean,
}

impl Store {
    fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    /// Marks a write operation as in flight, durably, before it writes anything.
    pub fn begin_write(&self) -> Result<WriteOp, StoreError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = self.state().join("ops");
        let path = dir.join(format!("{}.{}.{n}", boot_id(), std::process::id()));
        fs::File::create(&path).map_err(io_err("create", &path))?;
        super::sync_dir(&dir)?;
        Ok(WriteOp { path })
    }

    /// How the last shutdown was, as the mark says: one read of a small file once this boot's
    /// first skiff has decided it.
    pub fn shutdown(&self) -> Result<Shutdown, StoreError> {
        let boot = boot_id();
        let mark = self.state().join("mark");
        if let Some(s) = read_mark(&mark, &boot)? {
            return Ok(s);
        }
        let _lock = lock_file(&self.state().join("mark.lock"))?;
        if let Some(s) = read_mark(&mark, &boot)? {
            return Ok(s);
        }
        // The first skiff of this boot: an operation of another boot that never ended, or an
        // earlier boot's suspect mark nobody verified, makes this one suspect.
        let prev = fs::read_to_string(&mark).unwrap_or_default();
        let mut unclean = prev.trim_end().ends_with(" suspect");
        let ops = self.state().join("ops");
        let mut cut = false;
        for e in fs::read_dir(&ops).map_err(io_err("list", &ops))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&format!("{boot}.")) {
                cut = true;
                remove_if_present(&e.path())?;
            }
        }
        if cut {
            tracing::warn!("the last shutdown interrupted a write to the store; trees are checked before they are used");
            // What was checked before this cut may have been written during it.
            let checked = self.state().join("checked");
            if checked.exists() {
                crate::fs::root::remove_dir_all(&checked).map_err(|e| StoreError::Io {
                    op: "remove",
                    path: checked.clone(),
                    source: io::Error::other(e.to_string()),
                })?;
            }
            unclean = true;
        }
        let s = if unclean {
            Shutdown::Unclean
        } else {
            Shutdown::Clean
        };
        self.write_mark(&boot, s)?;
        Ok(s)
    }

    fn write_mark(&self, boot: &str, s: Shutdown) -> Result<(), StoreError> {
        let word = match s {
            Shutdown::Clean => "clean",
            Shutdown::Unclean => "suspect",
        };
        write_atomic(&self.state(), "mark", format!("{boot} {word}\n").as_bytes())
    }

    /// After a check of every tree found nothing wrong (or repaired it): clean again.
    pub fn mark_clean(&self) -> Result<(), StoreError> {
        let _lock = lock_file(&self.state().join("mark.lock"))?;
        self.write_mark(&boot_id(), Shutdown::Clean)?;
        let checked = self.state().join("checked");
        if checked.exists() {
            let _ = crate::fs::root::remove_dir_all(&checked);
        }
        Ok(())
    }

    /// Whether `key` passed its quick check since the mark became suspect.
    pub fn was_checked(&self, key: &TreeKey) -> bool {
        self.state().join("checked").join(key.lock_name()).exists()
    }

    /// Notes that `key` passed its quick check (not durably: losing it costs one more check).
    pub fn note_checked(&self, key: &TreeKey) {
        let dir = self.state().join("checked");
        let _ = fs::create_dir(&dir);
        let _ = fs::File::create(dir.join(key.lock_name()));
    }

    /// Forgets that `key` was checked (it is being rebuilt).
    pub fn forget_checked(&self, key: &TreeKey) {
        let _ = fs::remove_file(self.state().join("checked").join(key.lock_name()));
    }
}

fn read_mark(mark: &std::path::Path, boot: &str) -> Result<Option<Shutdown>, StoreError> {
    let Some(mut f) = super::open_existing(mark)? else {
        return Ok(None);
    };
    let mut s = String::new();
    // A mark is one short line; anything longer or other is not one, and is decided afresh.
    io::Read::read_to_string(&mut io::Read::take(&mut f, 128), &mut s)
        .map_err(io_err("read", mark))?;
    Ok(match s.strip_suffix('\n').and_then(|l| l.split_once(' ')) {
        Some((b, "clean")) if b == boot => Some(Shutdown::Clean),
        Some((b, "suspect")) if b == boot => Some(Shutdown::Unclean),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_left_by_another_boot_makes_the_store_suspect() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("s")).unwrap();
        assert_eq!(store.shutdown().unwrap(), Shutdown::Clean);
        // An operation of this boot in flight (or killed) is no power cut.
        let op = store.begin_write().unwrap();
        fs::remove_file(store.state().join("mark")).unwrap();
        assert_eq!(store.shutdown().unwrap(), Shutdown::Clean);
        drop(op);
        assert_eq!(fs::read_dir(store.state().join("ops")).unwrap().count(), 0);
        // One from another boot is; the mark stays suspect until a verify says otherwise.
        fs::write(store.state().join("ops/0000-other-boot.1.0"), "").unwrap();
        fs::write(store.state().join("mark"), "0000-other-boot clean\n").unwrap();
        let key = TreeKey::Layer(crate::reference::Digest::of(b"x"));
        assert_eq!(store.shutdown().unwrap(), Shutdown::Unclean);
        assert_eq!(store.shutdown().unwrap(), Shutdown::Unclean);
        store.note_checked(&key);
        assert!(store.was_checked(&key));
        // A later boot without a cut is still suspect: nobody verified.
        fs::write(store.state().join("mark"), "0000-other-boot suspect\n").unwrap();
        assert_eq!(store.shutdown().unwrap(), Shutdown::Unclean);
        assert!(
            store.was_checked(&key),
            "a clean boot keeps what was checked"
        );
        store.mark_clean().unwrap();
        assert_eq!(store.shutdown().unwrap(), Shutdown::Clean);
        assert!(!store.was_checked(&key));
        // A damaged mark is decided afresh.
        fs::write(store.state().join("mark"), "\u{0}garbage").unwrap();
        assert_eq!(store.shutdown().unwrap(), Shutdown::Clean);
    }
}
