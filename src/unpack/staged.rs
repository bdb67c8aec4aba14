//! One layer's tree, unpacked in staging and renamed into place; or, when directories it
//! implies wait for the lower trees, kept staged until they are decided.
//!
//! Where it goes depends on what the layer is, known once it is unpacked: a self-contained
//! layer (the same tree whatever lies below) goes to `layers/<diff_id>`, shared by every image
//! with it, marked so (`Store::self_mark`); a layer whose tree depends on its lowers (it
//! implies directories it has no entry for, hard-links a path it does not carry, or has
//! whiteouts whose parents it lacks) goes to `layers/chain-<ChainID>`, one per lower stack.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use super::{extract, implied, io_err, UnpackError};
use crate::fs::root::{InnerPath, Root};
use crate::manifest::Layer;
use crate::reference::Digest;
use crate::store::record::{self, Hashes};
use crate::store::{Store, TreeKey};

/// The tree of `layer` over the stack `chain` (its ChainID) names, if one is in place: the
/// stack's own, or the layer's shared one where that is marked self-contained.
pub(super) fn find(store: &Store, layer: &Layer, chain: &Digest) -> Option<TreeKey> {
    let chained = TreeKey::Chain(chain.clone());
    if store.has_layer_tree(&chained) {
        return Some(chained);
    }
    let own = TreeKey::of_layer(layer);
    store.has_layer_tree(&own).then_some(own)
}

/// `find`, of a tree with its record: a tree without one is not complete (a cut before its
/// rename was durable, or an older skiff's), and is built again.
pub(super) fn find_complete(store: &Store, layer: &Layer, chain: &Digest) -> Option<TreeKey> {
    find(store, layer, chain).filter(|k| store.has_complete_tree(k))
}

/// Rebuilds the tree `key` of `layer` from its blob with its lower trees (`lower`, top first)
/// given, records it, and swaps it with the tree in place in one rename: a damaged tree's
/// repair, which keeps its key.
pub(super) fn rebuild_layer(
    store: &Store,
    layer: &Layer,
    key: &TreeKey,
    lower: &[PathBuf],
) -> Result<(), UnpackError> {
    let _lock = store.lock_tree(key)?;
    let _op = store.begin_write()?;
    store.forget_checked(key);
    let staging = store.staging_dir(&format!("layer-{}", key.lock_name()))?;
    let result = (|| {
        let fd = open_dir(layer, &staging)?;
        let finished = extract(store, layer, Some(lower), &staging)?;
        write_record(store, layer, key, &staging, &fd, &finished.hashes)?;
        store.replace_tree(&staging, key)?;
        Ok(())
    })();
    if result.is_err() && staging.exists() {
        if let Err(e) = crate::fs::root::remove_dir_all(&staging) {
            tracing::warn!(path = %staging.display(), error = %e, "could not remove a failed tree; the next run will");
        }
    }
    result
}

// Opened before anything is written, so its syncfs reports every writeback error since (an
// fd opened later would miss those another syncfs already saw).
fn open_dir(layer: &Layer, dir: &std::path::Path) -> Result<File, UnpackError> {
    File::open(dir).map_err(|e| io_err(layer, "opening the staged layer", e))
}

/// Records the staged tree as it is now (implied directories decided), syncs it, and writes
/// the record durably: all before the rename that makes the tree visible.
fn write_record(
    store: &Store,
    layer: &Layer,
    key: &TreeKey,
    staging: &std::path::Path,
    fd: &File,
    hashes: &Hashes,
) -> Result<(), UnpackError> {
    let record =
        record::walk(staging, record::Depth::Content(hashes)).map_err(|e| UnpackError::Dir {
            op: "recording",
            path: staging.to_path_buf(),
            source: e,
        })?;
    // One syncfs per layer: cheaper than fsync per file, and neither the record nor the rename
    // that makes the tree visible may reach the disk before the tree does. An error is final:
    // the tree is dropped and built afresh next time, never re-synced.
    // SAFETY: plain syscall on a valid fd.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(fd)) } != 0 {
        return Err(io_err(
            layer,
            "syncing the staged layer",
            io::Error::last_os_error(),
        ));
    }
    store.put_record(key, &record)?;
    Ok(())
}

/// Unpacks one layer into its tree, atomically: in place when done, or staged and given back
/// when directories it implies wait for the lower layers (`lower` is `None`).
pub(super) fn unpack_layer<'s>(
    store: &'s Store,
    layer: &'s Layer,
    chain: &Digest,
    lower: Option<&[PathBuf]>,
) -> Result<Option<Staged<'s>>, UnpackError> {
    let own = TreeKey::of_layer(layer);
    // Held while unpacking, so two processes do not unpack one layer twice; never while
    // waiting for the lowers (a staged layer holds no lock, so it never waits holding one).
    let lock = store.lock_tree(&own)?;
    if find_complete(store, layer, chain).is_some() {
        return Ok(None);
    }
    let staging = store.staging_dir(&format!("layer-{}", own.lock_name()))?;
    let fd = match open_dir(layer, &staging) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = crate::fs::root::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let mut staged = Staged {
        store,
        layer,
        chain: chain.clone(),
        staging,
        fd,
        done: false,
        implied: Vec::new(),
        depends: false,
        hashes: Hashes::new(),
    };
    let finished = extract(store, layer, lower, &staged.staging)?;
    (staged.implied, staged.depends, staged.hashes) =
        (finished.implied, finished.depends, finished.hashes);
    if !staged.depends {
        staged.commit_own(lock)?;
        return Ok(None);
    }
    drop(lock);
    if staged.implied.is_empty() {
        staged.commit_chained()?;
        return Ok(None);
    }
    Ok(Some(staged))
}

/// A layer unpacked into staging whose implied directories wait for the lower trees. Removed
/// when dropped before it is committed.
pub(super) struct Staged<'s> {
    store: &'s Store,
    layer: &'s Layer,
    chain: Digest,
    staging: PathBuf,
    /// The staging directory, opened before anything was written into it (see `open_dir`).
    fd: File,
    done: bool,
    implied: Vec<InnerPath>,
    depends: bool,
    /// Content hashes of the files written, for the tree's record.
    hashes: Hashes,
}

impl Staged<'_> {
    /// Decides the implied directories from `lower` (the trees below, top first), then
    /// commits.
    pub(super) fn decide(mut self, lower: &[PathBuf]) -> Result<(), UnpackError> {
        let root = Root::open(&self.staging)?;
        let lowers = lower
            .iter()
            .map(|p| Root::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        implied::decide(&root, &lowers, &self.implied).map_err(|(entry, source)| {
            UnpackError::Entry {
                layer: self.layer.blob.digest.clone(),
                entry,
                source,
            }
        })?;
        self.commit_chained()
    }

    /// Records the tree as it is now, syncs it, and writes its record durably, for `key`.
    fn record(&self, key: &TreeKey) -> Result<(), UnpackError> {
        self.store.forget_checked(key);
        write_record(
            self.store,
            self.layer,
            key,
            &self.staging,
            &self.fd,
            &self.hashes,
        )
    }

    /// A self-contained layer, under its own key's lock: to `layers/<diff_id>`, marked. A
    /// tree already there without the mark (an older skiff's, perhaps made for one lower
    /// stack) is replaced, unless a running payload holds it: then this one goes under the
    /// ChainID, which is as right for this image.
    fn commit_own(&mut self, _lock: nix::fcntl::Flock<File>) -> Result<(), UnpackError> {
        debug_assert!(!self.depends);
        let _op = self.store.begin_write()?;
        let key = TreeKey::of_layer(self.layer);
        let dest = self.store.tree_path(&key);
        if self.store.has_tree(&dest) {
            if self.store.trees_in_use()?.contains(&key) {
                tracing::debug!(tree = %key, "an unmarked layer tree is in use; this one goes under its ChainID");
                return self.commit_chained();
            }
            tracing::debug!(tree = %key, "replacing a layer tree an older skiff made");
            self.store.remove_tree_locked(&key)?;
        }
        self.record(&key)?;
        self.store.mark_self_contained(&key)?;
        if let Err(e) = self.store.commit_staged(&self.staging, &dest) {
            let _ = std::fs::remove_file(self.store.self_mark(&key));
            let _ = std::fs::remove_file(self.store.record_path(&key));
            return Err(e.into());
        }
        self.done = true;
        Ok(())
    }

    /// A layer whose tree depends on its lowers (or one kept apart, see `commit_own`): to
    /// `layers/chain-<ChainID>`.
    fn commit_chained(&mut self) -> Result<(), UnpackError> {
        let key = TreeKey::Chain(self.chain.clone());
        let _lock = self.store.lock_tree(&key)?;
        let _op = self.store.begin_write()?;
        // One another process finished meanwhile is as good; one without its record is not.
        if self.store.has_complete_tree(&key) {
            return Ok(());
        }
        self.store.clear_incomplete(&key)?;
        self.record(&key)?;
        self.store
            .commit_staged(&self.staging, &self.store.tree_path(&key))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Err(e) = crate::fs::root::remove_dir_all(&self.staging) {
            tracing::warn!(path = %self.staging.display(), error = %e, "could not remove a failed tree; the next run will");
        }
    }
}
