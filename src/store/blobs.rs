//! Blobs: ingest (hash and size-check while streaming) → verify → commit (fsync, rename).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use nix::fcntl::Flock;
use sha2::{Digest as _, Sha256};

use super::{io_err, lock_file, open_existing, remove_if_present, sync_dir, Store, StoreError};
use crate::reference::Digest;

/// A schema1 layer has no size in its manifest; cap it anyway.
const UNSIZED_LIMIT: u64 = 64 << 30;

/// What `begin_ingest` found.
pub enum Begin {
    /// The blob is already in the store (perhaps another skiff just fetched it).
    Present,
    /// This process holds the blob's ingest lock and should fetch from `offset()`.
    Ingest(Box<Ingest>),
}

/// A download in progress. Holds the blob's lock, so no other skiff fetches the same blob.
pub struct Ingest {
    digest: Digest,
    size: Option<u64>,
    file: File,
    partial: PathBuf,
    blob: PathBuf,
    hasher: Sha256,
    written: u64,
    _lock: Flock<File>,
}

impl Store {
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether a verified blob is present (a symlink planted in its place does not count).
    pub fn has_blob(&self, d: &Digest) -> bool {
        fs::symlink_metadata(self.blob_path(d)).is_ok_and(|m| m.is_file())
    }

    /// Opens a verified blob for reading, never through a symlink.
    pub fn open_blob(&self, d: &Digest) -> Result<File, StoreError> {
        open_existing(&self.blob_path(d))?.ok_or_else(|| StoreError::Missing(d.clone()))
    }

    /// Reads a small blob (manifest, config) whole, re-checking its digest: disk damage must not
    /// turn into a different command line.
    pub fn read_blob(&self, d: &Digest, limit: u64) -> Result<Vec<u8>, StoreError> {
        let f = self.open_blob(d)?;
        let mut buf = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(io_err("read", &self.blob_path(d)))?;
        if buf.len() as u64 > limit {
            return Err(StoreError::TooLong {
                digest: d.clone(),
                limit,
            });
        }
        verify(d.to_string(), d, None, &Digest::of(&buf), buf.len() as u64)?;
        Ok(buf)
    }

    /// Starts (or resumes) ingesting a blob. Waits while another process ingests the same blob.
    pub fn begin_ingest(&self, digest: &Digest, size: Option<u64>) -> Result<Begin, StoreError> {
        let dir = self.root.join("ingest");
        let lock = lock_file(&dir.join(format!("{}.lock", digest.hex())))?;
        if self.has_blob(digest) {
            return Ok(Begin::Present);
        }
        let partial = dir.join(format!("{}.partial", digest.hex()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&partial)
            .map_err(io_err("open", &partial))?;
        let mut ingest = Ingest {
            digest: digest.clone(),
            size,
            file,
            blob: self.blob_path(digest),
            partial,
            hasher: Sha256::new(),
            written: 0,
            _lock: lock,
        };
        ingest.rehash_partial()?;
        Ok(Begin::Ingest(Box::new(ingest)))
    }

    /// Stores a small document whose bytes are all in memory (manifest, config).
    pub fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        match self.begin_ingest(digest, Some(bytes.len() as u64))? {
            Begin::Present => Ok(()),
            Begin::Ingest(mut ing) => {
                ing.restart()?;
                ing.write(bytes)?;
                ing.commit()
            }
        }
    }

    /// Removes one blob (for `rm`/`gc`/`verify --repair`).
    pub fn remove_blob(&self, d: &Digest) -> Result<(), StoreError> {
        // A manifest's signatures mean nothing without it.
        self.remove_signatures(d)?;
        remove_if_present(&self.blob_path(d))
    }

    /// Every blob digest present (names that are not digests are skipped).
    pub fn list_blobs(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let e = e.map_err(io_err("list", &dir))?;
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Re-hashes a stored blob; `Ok(false)` when it is damaged.
    pub fn check_blob(&self, d: &Digest) -> Result<bool, StoreError> {
        let mut f = self.open_blob(d)?;
        let mut h = Sha256::new();
        io::copy(&mut f, &mut h).map_err(io_err("read", &self.blob_path(d)))?;
        Ok(Digest::from_sha256_bytes(&h.finalize().into()) == *d)
    }
}

/// The one place a blob is judged: its digest, and its size when the descriptor gives one.
fn verify(
    what: String,
    expected: &Digest,
    expected_size: Option<u64>,
    actual: &Digest,
    actual_size: u64,
) -> Result<(), StoreError> {
    if let Some(size) = expected_size {
        if size != actual_size {
            return Err(StoreError::SizeMismatch {
                digest: expected.clone(),
                expected: size,
                actual: actual_size,
            });
        }
    }
    if actual != expected {
        return Err(StoreError::DigestMismatch {
            what,
            expected: expected.clone(),
            actual: actual.clone(),
        });
    }
    Ok(())
}

impl Ingest {
    /// Bytes already held: where a resumed download starts (an HTTP Range offset).
    pub fn offset(&self) -> u64 {
        self.written
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    fn limit(&self) -> u64 {
        self.size.unwrap_or(UNSIZED_LIMIT)
    }

    /// A partial left by an earlier (killed) skiff is hashed again: its bytes are not trusted,
    /// only reused, and the final digest check still covers them.
    fn rehash_partial(&mut self) -> Result<(), StoreError> {
        let len = self
            .file
            .metadata()
            .map_err(io_err("stat", &self.partial))?
            .len();
        if len > self.limit() {
            return self.restart();
        }
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(io_err("seek", &self.partial))?;
        let n = io::copy(&mut (&self.file).take(len), &mut self.hasher)
            .map_err(io_err("read", &self.partial))?;
        self.written = n;
        self.file
            .seek(SeekFrom::Start(n))
            .map_err(io_err("seek", &self.partial))?;
        Ok(())
    }

    /// Drops what was downloaded so far (the server ignored our Range request).
    pub fn restart(&mut self) -> Result<(), StoreError> {
        self.file
            .set_len(0)
            .map_err(io_err("truncate", &self.partial))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(io_err("seek", &self.partial))?;
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
    }

    /// Appends bytes, refusing to grow past the descriptor's size.
    pub fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        if self.written + buf.len() as u64 > self.limit() {
            let limit = self.limit();
            self.discard();
            return Err(StoreError::TooLong {
                digest: self.digest.clone(),
                limit,
            });
        }
        self.file
            .write_all(buf)
            .map_err(io_err("write", &self.partial))?;
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(())
    }

    /// Verifies and makes the blob visible. On mismatch nothing stays: not the blob, not the
    /// partial (its bytes are known bad).
    pub fn commit(self) -> Result<(), StoreError> {
        let actual = Digest::from_sha256_bytes(&self.hasher.clone().finalize().into());
        if let Err(e) = verify(
            format!("blob {}", self.digest),
            &self.digest,
            self.size,
            &actual,
            self.written,
        ) {
            self.discard();
            return Err(e);
        }
        // A failed fsync is final: the kernel may have dropped the pages it could not write,
        // so the partial's bytes (read back on a resume) are no longer known; start over.
        if let Err(e) = self.file.sync_all() {
            self.discard();
            return Err(io_err("fsync", &self.partial)(e));
        }
        fs::rename(&self.partial, &self.blob).map_err(io_err("rename into place", &self.blob))?;
        let dir = self.blob.parent().unwrap_or(&self.blob);
        sync_dir(dir)
    }

    /// Deletes the partial download (its bytes are bad or unwanted).
    pub fn discard(&self) {
        if let Err(e) = fs::remove_file(&self.partial) {
            tracing::warn!(path = %self.partial.display(), error = %e, "could not remove partial download");
        }
    }
}
