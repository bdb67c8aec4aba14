//! Garbage: what no listed image needs and no running payload holds. Which images need what is
//! the caller's to say (`images::needed`); the store sweeps the rest.

use std::collections::BTreeSet;

use super::{Store, StoreError, TreeKey};
use crate::reference::Digest;

/// What must stay: blobs and trees that listed images need.
#[derive(Clone, Debug, Default)]
pub struct Keep {
    pub blobs: BTreeSet<Digest>,
    pub trees: BTreeSet<TreeKey>,
}

/// What a sweep removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub blobs: usize,
    pub trees: usize,
    /// Bytes of partial downloads no live process was continuing.
    pub partial_bytes: u64,
}

impl Store {
    /// Removes every blob and tree `keep` does not name and no lease holds, stale staging, and
    /// partial downloads and locks no live process holds.
    pub fn sweep(&self, keep: &Keep) -> Result<Swept, StoreError> {
        let mut swept = Swept {
            blobs: self.sweep_blobs(keep)?,
            ..Swept::default()
        };
        let in_use: BTreeSet<TreeKey> = self.trees_in_use()?.into_iter().collect();
        for key in self.list_trees()? {
            if !keep.trees.contains(&key) && !in_use.contains(&key) {
                self.remove_tree(&key)?;
                swept.trees += 1;
            }
        }
        self.remove_orphan_marks()?;
        self.sweep_records()?;
        self.clean_stale_staging();
        swept.partial_bytes = self.clean_unheld()?;
        Ok(swept)
    }

    /// Removes every blob `keep` does not name.
    pub fn sweep_blobs(&self, keep: &Keep) -> Result<usize, StoreError> {
        let mut removed = 0;
        for d in self.list_blobs()? {
            if !keep.blobs.contains(&d) {
                self.remove_blob(&d)?;
                tracing::debug!(digest = %d, "removed unreferenced blob");
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes the blobs and trees of `these` (one image's) that `keep` does not name and no
    /// lease holds; everything else, other images' files in progress included, stays.
    pub fn release(&self, these: &Keep, keep: &Keep) -> Result<usize, StoreError> {
        let in_use: BTreeSet<TreeKey> = self.trees_in_use()?.into_iter().collect();
        let mut removed = 0;
        for key in these.trees.difference(&keep.trees) {
            if !in_use.contains(key) && self.has_tree(&self.tree_path(key)) {
                self.remove_tree(key)?;
                removed += 1;
            }
        }
        for d in these.blobs.difference(&keep.blobs) {
            if self.has_blob(d) {
                self.remove_blob(d)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_removes_what_keep_does_not_name_and_leases_protect() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store")).unwrap();
        let (kept, leased, dropped) = (
            Digest::of(b"kept"),
            Digest::of(b"leased"),
            Digest::of(b"dropped"),
        );
        let trees = [
            TreeKey::Layer(kept.clone()),
            TreeKey::Layer(leased.clone()),
            TreeKey::Flat(dropped.clone()),
        ];
        for k in &trees {
            std::fs::create_dir_all(store.tree_path(k).join("etc")).unwrap();
        }
        for b in [b"kept".as_slice(), b"dropped"] {
            store.put_blob(&Digest::of(b), b).unwrap();
        }
        // A live lease (this process) holds one tree.
        store.take_lease(&[TreeKey::Layer(leased.clone())]).unwrap();
        let mut keep = Keep::default();
        keep.blobs.insert(kept.clone());
        keep.trees.insert(TreeKey::Layer(kept.clone()));
        let swept = store.sweep(&keep).unwrap();
        assert_eq!((swept.blobs, swept.trees), (1, 1));
        assert!(store.has_blob(&kept) && !store.has_blob(&dropped));
        let left = store.list_trees().unwrap();
        assert!(left.contains(&trees[0]) && left.contains(&trees[1]) && !left.contains(&trees[2]));
        // Releasing an image's files spares what another image keeps.
        let mut these = Keep::default();
        these.trees.insert(TreeKey::Layer(kept.clone()));
        these.blobs.insert(kept.clone());
        assert_eq!(store.release(&these, &keep).unwrap(), 0);
        assert_eq!(store.release(&these, &Keep::default()).unwrap(), 2);
        assert!(!store.has_blob(&kept));
    }
}
