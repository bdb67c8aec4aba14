//! Signatures kept beside the manifest they sign (`signatures/sha256/<hex>`), so every start
//! re-verifies them offline. The store keeps bytes; what they mean is the trust room's.

use std::io::{self, Read};
use std::path::PathBuf;

use super::{io_err, open_existing, remove_if_present, write_atomic, Store, StoreError};
use crate::reference::Digest;

impl Store {
    fn signatures_dir(&self) -> PathBuf {
        self.root.join("signatures/sha256")
    }

    /// Replaces the signatures kept for `digest`: written through a temp file, fsync and
    /// rename, so a reader sees the old set or the new one, never a torn file. The caller
    /// writes only sets it has just verified.
    pub fn put_signatures(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = self.signatures_dir();
        self.ensure_dir(&self.root.join("signatures"))?;
        self.ensure_dir(&dir)?;
        write_atomic(&dir, digest.hex(), bytes)
    }

    /// The signatures kept for `digest`, if any (read bounded, never through a symlink).
    pub fn read_signatures(
        &self,
        digest: &Digest,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.signatures_dir().join(digest.hex());
        let Some(f) = open_existing(&path)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(io_err("read", &path))?;
        if buf.len() as u64 > limit {
            return Err(io_err("read", &path)(io::Error::other(format!(
                "longer than the {limit} bytes allowed"
            ))));
        }
        Ok(Some(buf))
    }

    /// Drops the signatures kept for `digest` (with its manifest).
    pub(super) fn remove_signatures(&self, digest: &Digest) -> Result<(), StoreError> {
        remove_if_present(&self.signatures_dir().join(digest.hex()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_their_manifest() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store")).unwrap();
        let d = Digest::of(b"manifest");
        store.put_blob(&d, b"manifest").unwrap();
        assert_eq!(store.read_signatures(&d, 100).unwrap(), None);
        store.put_signatures(&d, b"{}").unwrap();
        store.put_signatures(&d, b"{\"simple\":[]}").unwrap();
        assert_eq!(
            store.read_signatures(&d, 100).unwrap().unwrap(),
            b"{\"simple\":[]}"
        );
        assert!(store.read_signatures(&d, 3).is_err());
        store.remove_blob(&d).unwrap();
        assert_eq!(store.read_signatures(&d, 100).unwrap(), None);
        // A planted symlink is refused, never followed.
        std::os::unix::fs::symlink("/etc/passwd", store.signatures_dir().join(d.hex())).unwrap();
        assert!(matches!(
            store.read_signatures(&d, 1 << 20),
            Err(StoreError::Unexpected { .. })
        ));
    }
}
