//! The content store: the gate every byte passes before skiff trusts it.
//!
//! Layout under `--root` (0700, root's):
//! - `blobs/sha256/<hex>`: verified blobs, immutable once renamed into place
//! - `ingest/<hex>.partial`, `ingest/<hex>.lock`: downloads in progress, resumable
//! - `index.json` (+ `index.lock`): references → manifest digests, with when they were resolved
//! - `layers/`, `tmp/`: unpacked layers and their staging area (see `unpack`)
//! - `signatures/sha256/<hex>`: the verified signatures of a manifest, re-checked at every start
//! - `records/<tree>`: what each tree held when it was committed (see `record`); a tree without
//!   its record is not complete
//! - `state/`: whether the last shutdown was clean (see `clean`)

mod blobs;
pub mod clean;
mod gc;
pub mod holds;
mod index;
pub mod lease;
pub mod record;
mod signatures;
mod tree;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

use crate::reference::Digest;
pub use blobs::{Begin, Ingest};
pub use gc::{Keep, Swept};
pub use index::{Index, IndexEntry};
pub use tree::{chain_ids, TreeKey};

pub const DEFAULT_ROOT: &str = "/var/lib/skiff";

/// The prefix of staging trees that could not be removed and were moved aside.
const ASIDE: &str = "stale-";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the store at {path} is owned by uid {owner}, not by uid {me}; run skiff as root (the store is root's)")]
    NotOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("skiff must run as root to use the store at {0} (it is created 0700, root's)")]
    NotRoot(PathBuf),
    #[error("{path} is a symlink or not a {kind}; refusing to follow it")]
    Unexpected { path: PathBuf, kind: &'static str },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("size mismatch for blob {digest}: descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is longer than the {limit} bytes allowed")]
    TooLong { digest: Digest, limit: u64 },
    #[error("blob {0} is not in the store")]
    Missing(Digest),
    #[error("the store index {path} is damaged")]
    BadIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// An open store. Cheap to clone; all state is on disk.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`. Refuses a store that is not the caller's.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        // Absolute, because `run` changes directory while it still uses store paths.
        let root = &std::path::absolute(root).map_err(io_err("resolve", root))?;
        let me = nix::unistd::geteuid().as_raw();
        if me != 0 {
            return Err(StoreError::NotRoot(root.to_path_buf()));
        }
        // The parents are ordinary system directories; only the store itself is private.
        if let Some(parent) = root.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", root)(e)),
        }
        let meta = fs::metadata(root).map_err(io_err("stat", root))?;
        if meta.uid() != me {
            return Err(StoreError::NotOwner {
                path: root.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [
            "blobs",
            "blobs/sha256",
            "ingest",
            "layers",
            "layers-self",
            "rootfs",
            "tmp",
            "leases",
            "records",
            "state",
            "state/ops",
            "holds",
        ] {
            store.ensure_dir(&root.join(dir))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a private directory, or checks that an existing one is a real directory.
    fn ensure_dir(&self, path: &Path) -> Result<(), StoreError> {
        match fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let meta = fs::symlink_metadata(path).map_err(io_err("stat", path))?;
                if meta.is_dir() {
                    Ok(())
                } else {
                    Err(StoreError::Unexpected {
                        path: path.to_path_buf(),
                        kind: "directory",
                    })
                }
            }
            Err(e) => Err(io_err("create", path)(e)),
        }
    }

    /// The staging area on the store's filesystem, so that renames out of it are atomic.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where a tree lives.
    pub fn tree_path(&self, key: &TreeKey) -> PathBuf {
        key.path(&self.root)
    }

    /// Where a tree's record lives.
    pub fn record_path(&self, key: &TreeKey) -> PathBuf {
        self.root.join("records").join(key.lock_name())
    }

    /// Whether a tree is complete: in place, and its record beside it.
    pub fn has_complete_tree(&self, key: &TreeKey) -> bool {
        self.has_tree(&self.tree_path(key))
            && fs::symlink_metadata(self.record_path(key)).is_ok_and(|m| m.is_file())
    }

    /// Writes a tree's record durably; done before the tree is renamed into place.
    pub fn put_record(&self, key: &TreeKey, record: &record::Record) -> Result<(), StoreError> {
        write_atomic(
            &self.root.join("records"),
            &key.lock_name(),
            &record.to_bytes(),
        )
    }

    /// A tree's record: `None` when there is none, an error inside when it is damaged.
    pub fn read_record(
        &self,
        key: &TreeKey,
    ) -> Result<Option<Result<record::Record, record::RecordError>>, StoreError> {
        record::Record::read(&self.record_path(key))
    }

    /// How the tree `key` differs from its record (empty: it matches). `quick` compares
    /// metadata and sizes only. A tree that is missing, or has no readable record, is damaged.
    pub fn check_tree(&self, key: &TreeKey, quick: bool) -> Result<Vec<String>, StoreError> {
        let path = self.tree_path(key);
        if !self.has_tree(&path) {
            return Ok(vec!["the tree is missing".into()]);
        }
        let rec = match self.read_record(key)? {
            None => {
                return Ok(vec![
                    "the tree has no record (it was never completed)".into()
                ])
            }
            Some(Err(e)) => return Ok(vec![format!("its record is damaged: {e}")]),
            Some(Ok(r)) => r,
        };
        let empty = record::Hashes::new();
        let depth = if quick {
            record::Depth::Quick
        } else {
            record::Depth::Content(&empty)
        };
        let tree = record::walk(&path, depth).map_err(io_err("read the tree", &path))?;
        Ok(record::compare(&rec, &tree, quick, 20))
    }

    /// Moves aside a tree left without its record (a build a power cut or an older skiff
    /// left), so it is built afresh. Call with the tree's lock held.
    pub fn clear_incomplete(&self, key: &TreeKey) -> Result<(), StoreError> {
        let path = self.tree_path(key);
        if self.has_tree(&path) && !self.has_complete_tree(key) {
            tracing::info!(tree = %key, "rebuilding a tree that has no record");
            self.discard_tree_at(&path, key)?;
        }
        Ok(())
    }

    fn discard_tree_at(&self, path: &Path, key: &TreeKey) -> Result<(), StoreError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let aside =
            self.tmp_dir()
                .join(format!("gc-{}.{}.{n}", key.lock_name(), std::process::id()));
        fs::rename(path, &aside).map_err(io_err("rename aside", path))?;
        crate::fs::root::remove_dir_all(&aside).map_err(|e| StoreError::Io {
            op: "remove",
            path: aside.clone(),
            source: io::Error::other(e.to_string()),
        })
    }

    /// Swaps a finished staging tree with the tree in place, in one rename (`RENAME_EXCHANGE`),
    /// so a reader or a power cut sees the old tree or the new one, never neither or half;
    /// then removes the old one. With no tree in place it is an ordinary commit.
    pub fn replace_tree(&self, staging: &Path, key: &TreeKey) -> Result<(), StoreError> {
        let dest = self.tree_path(key);
        if !self.has_tree(&dest) {
            return self.commit_staged(staging, &dest);
        }
        exchange(staging, &dest)?;
        sync_dir(dest.parent().unwrap_or(&self.root))?;
        crate::fs::root::remove_dir_all(staging).map_err(|e| StoreError::Io {
            op: "remove",
            path: staging.to_path_buf(),
            source: io::Error::other(e.to_string()),
        })
    }

    /// Serialises the building (and removal) of one tree between processes.
    pub fn lock_tree(&self, key: &TreeKey) -> Result<Flock<File>, StoreError> {
        lock_file(&self.tmp_dir().join(format!("{}.lock", key.lock_name())))
    }

    /// The directory `run` mounts its private tmpfs on. One for every run: each mounts it in
    /// its own mount namespace, so they never see each other's.
    pub fn run_scratch(&self) -> Result<PathBuf, StoreError> {
        let p = self.tmp_dir().join("run");
        self.ensure_dir(&p)?;
        Ok(p)
    }

    /// A fresh, empty staging directory for `name`, marked with this process's pid so a later
    /// run can tell a leftover from work in progress.
    pub fn staging_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self
            .tmp_dir()
            .join(format!("{name}.{}.{n}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(io_err("create", &path))?;
        Ok(path)
    }

    /// Moves a finished staging tree into place; the rename is what makes it visible.
    pub fn commit_staged(&self, staging: &Path, dest: &Path) -> Result<(), StoreError> {
        // Something that is not a finished tree (a planted symlink) is replaced, never followed.
        if fs::symlink_metadata(dest).is_ok_and(|m| !m.is_dir()) {
            fs::remove_file(dest).map_err(io_err("remove", dest))?;
        }
        match fs::rename(staging, dest) {
            Ok(()) => {}
            // Another process finished the same tree first: theirs is as good as ours.
            Err(err)
                if self.has_tree(dest)
                    && matches!(err.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) =>
            {
                if let Err(e) = crate::fs::root::remove_dir_all(staging) {
                    tracing::warn!(path = %staging.display(), error = %e, "could not remove a redundant tree; the next run will");
                }
            }
            Err(e) => return Err(io_err("rename into place", dest)(e)),
        }
        sync_dir(dest.parent().unwrap_or(&self.root))
    }

    /// Removes staging directories whose process is gone (a skiff killed mid-unpack). One
    /// that cannot be removed is logged and moved aside, so it never stops a pull; `gc` tries
    /// it again.
    pub fn clean_stale_staging(&self) {
        let tmp = self.tmp_dir();
        let entries = match fs::read_dir(&tmp) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(path = %tmp.display(), error = %e, "cannot list the staging area");
                return;
            }
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = if let Some(rest) = name.strip_prefix(ASIDE) {
                !rest.is_empty()
            } else {
                let mut parts = name.rsplit('.');
                let (_seq, pid) = (
                    parts.next(),
                    parts.next().and_then(|p| p.parse::<u32>().ok()),
                );
                pid.is_some_and(|pid| {
                    !name.ends_with(".lock") && !Path::new(&format!("/proc/{pid}")).exists()
                })
            };
            if !stale {
                continue;
            }
            tracing::debug!(path = %e.path().display(), "removing what an earlier skiff left");
            if let Err(err) = crate::fs::root::remove_dir_all(&e.path()) {
                if name.starts_with(ASIDE) {
                    tracing::warn!(path = %e.path().display(), error = %err, "still cannot remove a stale staging tree");
                    continue;
                }
                let aside = tmp.join(format!("{ASIDE}{}", name.replace('.', "-")));
                tracing::warn!(path = %e.path().display(), error = %err, aside = %aside.display(), "cannot remove a stale staging tree; moved it aside");
                if let Err(err) = fs::rename(e.path(), &aside) {
                    tracing::warn!(path = %e.path().display(), error = %err, "cannot move a stale staging tree aside");
                }
            }
        }
    }

    /// Whether a finished tree (a layer or flat rootfs) is in place: a real directory, never a
    /// symlink someone planted in the store.
    pub fn has_tree(&self, path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
    }

    /// Every finished tree, layers and flat rootfs trees (names that are no key are skipped).
    pub fn list_trees(&self) -> Result<Vec<TreeKey>, StoreError> {
        let mut out: Vec<TreeKey> = list_names(&self.root.join("layers"))?
            .iter()
            .filter_map(|n| TreeKey::from_layer_dir(n))
            .collect();
        out.extend(
            list_names(&self.root.join("rootfs"))?
                .iter()
                .filter_map(|n| TreeKey::from_flat_dir(n)),
        );
        Ok(out)
    }

    /// The mark `layers-self/<name>` of a layer tree `layers/<name>` keyed by its diff_id (or
    /// blob) that this skiff found self-contained: the same whatever lies below it, so any
    /// image may share it. Trees an older skiff made have none and are not reused: such a
    /// layer may depend on its lowers, and its tree is then only right for the image that
    /// made it.
    pub fn self_mark(&self, key: &TreeKey) -> PathBuf {
        let tree = self.tree_path(key);
        let name = tree.file_name().unwrap_or_default();
        self.root.join("layers-self").join(name)
    }

    /// Whether `key`'s tree is in place and, for a layer keyed by its own digest, marked
    /// self-contained (see `self_mark`).
    pub fn has_layer_tree(&self, key: &TreeKey) -> bool {
        self.has_tree(&self.tree_path(key))
            && (!matches!(key, TreeKey::Layer(_) | TreeKey::Schema1Layer(_))
                || fs::symlink_metadata(self.self_mark(key)).is_ok_and(|m| m.is_file()))
    }

    /// Removes the marks of `self_mark` whose tree is gone (a skiff stopped between the two).
    pub fn remove_orphan_marks(&self) -> Result<(), StoreError> {
        let (layers, marks) = (self.root.join("layers"), self.root.join("layers-self"));
        for name in list_names(&marks)? {
            if !self.has_tree(&layers.join(&name)) {
                let p = marks.join(&name);
                fs::remove_file(&p).map_err(io_err("remove", &p))?;
            }
        }
        Ok(())
    }

    /// Marks a layer tree self-contained (before it is renamed into place).
    pub fn mark_self_contained(&self, key: &TreeKey) -> Result<(), StoreError> {
        let p = self.self_mark(key);
        fs::File::create(&p).map_err(io_err("create", &p))?;
        Ok(())
    }

    /// Removes a tree: renamed aside first, so it stops looking complete at once.
    pub fn remove_tree(&self, key: &TreeKey) -> Result<(), StoreError> {
        let _lock = self.lock_tree(key)?;
        self.remove_tree_locked(key)
    }

    /// `remove_tree` for a caller that holds the tree's lock.
    pub fn remove_tree_locked(&self, key: &TreeKey) -> Result<(), StoreError> {
        let _op = self.begin_write()?;
        // The mark first: a tree without it is never reused, a mark without a tree means nothing.
        if matches!(key, TreeKey::Layer(_) | TreeKey::Schema1Layer(_)) {
            remove_if_present(&self.self_mark(key))?;
        }
        self.discard_tree_at(&self.tree_path(key), key)?;
        // The tree first, its record after: a tree in place always has its record.
        remove_if_present(&self.record_path(key))
    }

    /// Removes records whose tree is gone (a cut between writing a record and renaming its
    /// tree, or between removing a tree and its record).
    pub fn sweep_records(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for name in list_names(&self.root.join("records"))? {
            let key = if let Some(hex) = name.strip_prefix("flat-") {
                TreeKey::from_flat_dir(hex)
            } else {
                TreeKey::from_layer_dir(&name)
            };
            let Some(key) = key else { continue };
            let _lock = self.lock_tree(&key)?;
            if !self.has_tree(&self.tree_path(&key)) {
                remove_if_present(&self.record_path(&key))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Trees that a running payload uses, from the leases `run` leaves (see `lease`).
    pub fn trees_in_use(&self) -> Result<Vec<TreeKey>, StoreError> {
        lease::live_trees(&self.root.join("leases"))
    }

    /// Records that this process (soon the payload, on the same PID) uses `trees`.
    pub fn take_lease(&self, trees: &[TreeKey]) -> Result<(), StoreError> {
        lease::take(&self.root.join("leases"), trees)
    }

    /// Bytes free for skiff on the store's filesystem.
    pub fn free_space(&self) -> Result<u64, StoreError> {
        let st = nix::sys::statvfs::statvfs(&self.root)
            .map_err(|e| io_err("statvfs", &self.root)(io::Error::from(e)))?;
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    /// Removes partial downloads and lock files that no live process holds (a lock is held
    /// exactly while its process lives). Returns the bytes freed.
    pub fn clean_unheld(&self) -> Result<u64, StoreError> {
        let mut freed = 0;
        for dir in [self.root.join("ingest"), self.tmp_dir()] {
            for e in fs::read_dir(&dir).map_err(io_err("list", &dir))?.flatten() {
                let path = e.path();
                let Some(stem) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".lock"))
                else {
                    continue;
                };
                let Ok(lock) = lock_file_with(&path, FlockArg::LockExclusiveNonblock) else {
                    continue;
                };
                let partial = dir.join(format!("{stem}.partial"));
                if let Ok(m) = fs::symlink_metadata(&partial) {
                    fs::remove_file(&partial).map_err(io_err("remove", &partial))?;
                    freed += m.len();
                }
                // Removed while held, so a process that opened it meanwhile notices (see
                // `lock_file_with`) and takes a fresh one.
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                drop(lock);
            }
        }
        Ok(freed)
    }

    /// Images `owner` keeps whatever the index says (see `holds`).
    pub fn hold(&self, owner: &str, images: &[holds::Held]) -> Result<(), StoreError> {
        holds::set(&self.root.join("holds"), owner, images)
    }

    /// Every held image.
    pub fn held(&self) -> Result<Vec<holds::Held>, StoreError> {
        holds::all(&self.root.join("holds"))
    }

    /// The reference index.
    pub fn index(&self) -> Index {
        Index::new(&self.root)
    }
}

fn list_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let e = e.map_err(io_err("list", dir))?;
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Opens a file of the store for reading, never through a symlink (one planted there is an
/// error that says so); `None` when there is no such file.
pub(crate) fn open_existing(path: &Path) -> Result<Option<File>, StoreError> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(StoreError::Unexpected {
            path: path.to_path_buf(),
            kind: "regular file",
        }),
        Err(e) => Err(io_err("open", path)(e)),
    }
}

/// Removes a file of the store; one already gone is no error.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Takes an exclusive `flock` on `path` (created if missing), waiting for other holders.
pub(crate) fn lock_file(path: &Path) -> Result<Flock<File>, StoreError> {
    lock_file_with(path, FlockArg::LockExclusive)
}

pub(crate) fn lock_file_with(path: &Path, how: FlockArg) -> Result<Flock<File>, StoreError> {
    loop {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err("open lock", path))?;
        let lock =
            Flock::lock(f, how).map_err(|(_, e)| io_err("lock", path)(io::Error::from(e)))?;
        // `gc` removes unheld lock files: the lock counts only if the file is still the one
        // at the path.
        let held = lock.metadata().map_err(io_err("stat", path))?;
        match fs::symlink_metadata(path) {
            Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => return Ok(lock),
            Ok(_) | Err(_) => continue,
        }
    }
}

/// Writes `bytes` as `dir/name` so that a reader sees either the old or the new file, and the new
/// one survives a power loss: temp file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    write_replace(dir, name, bytes, true)
}

/// Like `write_atomic`; without `durable`, no fsync: for files whose meaning ends with the
/// process that wrote them (leases), so a power loss makes them moot anyway.
pub(crate) fn write_replace(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    durable: bool,
) -> Result<(), StoreError> {
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let dest = dir.join(name);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    if durable {
        if let Err(e) = f.sync_all() {
            // Never retried: what the kernel failed to write is not known to be anywhere.
            let _ = fs::remove_file(&tmp);
            return Err(io_err("fsync", &tmp)(e));
        }
    }
    fs::rename(&tmp, &dest).map_err(io_err("rename into place", &dest))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// `renameat2(RENAME_EXCHANGE)`: both names stay, their contents swapped atomically.
fn exchange(a: &Path, b: &Path) -> Result<(), StoreError> {
    use std::os::unix::ffi::OsStrExt;
    const RENAME_EXCHANGE: libc::c_uint = 2;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())
        .map_err(|e| io_err("rename", a)(io::Error::other(e)))?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())
        .map_err(|e| io_err("rename", b)(io::Error::other(e)))?;
    // SAFETY: two NUL-terminated paths; the raw syscall because libc's wrapper is glibc-only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            RENAME_EXCHANGE,
        )
    };
    if r != 0 {
        return Err(io_err("exchange with", b)(io::Error::last_os_error()));
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}
