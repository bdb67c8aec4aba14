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
    if find(store, layer, chain).is_some() {
        return Ok(None);
    }
    let mut staged = Staged {
        store,
        layer,
        chain: chain.clone(),
        staging: store.staging_dir(&format!("layer-{}", own.lock_name()))?,
        done: false,
        implied: Vec::new(),
        depends: false,
    };
    (staged.implied, staged.depends) = extract(store, layer, lower, &staged.staging)?;
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
    done: bool,
    implied: Vec<InnerPath>,
    depends: bool,
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

    fn sync(&self) -> Result<(), UnpackError> {
        // One syncfs per layer: cheaper than fsync per file, and the rename that makes the
        // tree visible must not reach the disk before the tree does.
        let layer = self.layer;
        let f =
            File::open(&self.staging).map_err(|e| io_err(layer, "opening the staged layer", e))?;
        // SAFETY: plain syscall on a valid fd.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) } != 0 {
            return Err(io_err(
                layer,
                "syncing the staged layer",
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// A self-contained layer, under its own key's lock: to `layers/<diff_id>`, marked. A
    /// tree already there without the mark (an older skiff's, perhaps made for one lower
    /// stack) is replaced, unless a running payload holds it: then this one goes under the
    /// ChainID, which is as right for this image.
    fn commit_own(&mut self, _lock: nix::fcntl::Flock<File>) -> Result<(), UnpackError> {
        debug_assert!(!self.depends);
        self.sync()?;
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
        self.store.mark_self_contained(&key)?;
        if let Err(e) = self.store.commit_staged(&self.staging, &dest) {
            let _ = std::fs::remove_file(self.store.self_mark(&key));
            return Err(e.into());
        }
        self.done = true;
        Ok(())
    }

    /// A layer whose tree depends on its lowers (or one kept apart, see `commit_own`): to
    /// `layers/chain-<ChainID>`.
    fn commit_chained(&mut self) -> Result<(), UnpackError> {
        self.sync()?;
        let key = TreeKey::Chain(self.chain.clone());
        let _lock = self.store.lock_tree(&key)?;
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
