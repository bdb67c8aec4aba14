//! One layer's tree, unpacked in staging under its lock and renamed into place; or, when
//! directories it implies wait for the lower trees, kept staged until they are decided.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use super::{extract, implied, io_err, UnpackError};
use crate::fs::root::{InnerPath, Root};
use crate::manifest::Layer;
use crate::store::{Store, TreeKey};

/// Unpacks one layer into its tree, atomically: in place when done, or staged and given back
/// when directories it implies wait for the lower layers (`lower` is `None`).
pub(super) fn unpack_layer<'s>(
    store: &'s Store,
    layer: &'s Layer,
    lower: Option<&[PathBuf]>,
) -> Result<Option<Staged<'s>>, UnpackError> {
    let key = TreeKey::of_layer(layer);
    let lock = store.lock_tree(&key)?;
    if store.has_tree(&store.tree_path(&key)) {
        return Ok(None);
    }
    let mut staged = Staged {
        store,
        layer,
        _lock: lock,
        staging: store.staging_dir(&format!("layer-{}", key.lock_name()))?,
        done: false,
        implied: Vec::new(),
    };
    staged.implied = extract(store, layer, lower, &staged.staging)?;
    if staged.implied.is_empty() {
        staged.commit()?;
        return Ok(None);
    }
    Ok(Some(staged))
}

/// A layer unpacked into staging, under its tree's lock, whose implied directories wait for
/// the lower trees. Removed when dropped before it is committed.
pub(super) struct Staged<'s> {
    store: &'s Store,
    layer: &'s Layer,
    _lock: nix::fcntl::Flock<File>,
    staging: PathBuf,
    done: bool,
    implied: Vec<InnerPath>,
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
        self.commit()
    }

    fn commit(&mut self) -> Result<(), UnpackError> {
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
        let dest = self.store.tree_path(&TreeKey::of_layer(layer));
        self.store.commit_staged(&self.staging, &dest)?;
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
