//! The reference index: `index.json`, references → the manifest digest they resolved to.
//!
//! Small and rewritten whole under `index.lock`, atomically (temp, fsync, rename), so a crash
//! leaves either the old or the new index, never half of one.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io_err, lock_file, write_atomic, StoreError};
use crate::reference::Digest;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// What the reference resolved to (for a multi-platform image: the index's digest).
    pub digest: Digest,
    /// The platform's image manifest (equal to `digest` for a single-platform image).
    pub manifest: Digest,
    pub platform: String,
    /// Bytes of config and layer blobs.
    pub size: u64,
    /// Seconds since the epoch when the registry last confirmed this resolution.
    pub resolved: u64,
    /// Where a loaded image was read from (`oci-archive:/mnt/etcd.tar`); none when pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    refs: BTreeMap<String, IndexEntry>,
}

pub struct Index {
    dir: PathBuf,
}

const NAME: &str = "index.json";

impl Index {
    pub(super) fn new(root: &Path) -> Index {
        Index {
            dir: root.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(NAME)
    }

    fn load(&self) -> Result<File, StoreError> {
        let path = self.path();
        match fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| StoreError::BadIndex { path, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(File::default()),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    pub fn get(&self, reference: &str) -> Result<Option<IndexEntry>, StoreError> {
        Ok(self.load()?.refs.remove(reference))
    }

    pub fn list(&self) -> Result<Vec<(String, IndexEntry)>, StoreError> {
        Ok(self.load()?.refs.into_iter().collect())
    }

    /// Applies `f` to the index under its lock and writes the result back.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, IndexEntry>) -> T,
    ) -> Result<T, StoreError> {
        let _lock = lock_file(&self.dir.join("index.lock"))?;
        let mut file = self.load()?;
        let out = f(&mut file.refs);
        let bytes = serde_json::to_vec_pretty(&file).map_err(|source| StoreError::BadIndex {
            path: self.path(),
            source,
        })?;
        write_atomic(&self.dir, NAME, &bytes)?;
        Ok(out)
    }

    pub fn set(&self, reference: &str, entry: IndexEntry) -> Result<(), StoreError> {
        self.update(|refs| {
            refs.insert(reference.to_string(), entry);
        })
    }
}
