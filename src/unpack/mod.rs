//! Unpacking verified layer blobs into layer trees, once per layer, shared between images.
//!
//! Each layer is unpacked alone into a staging directory on the store's filesystem, its
//! uncompressed stream hashed on the way; only when the hash equals the config's diff_id is it
//! renamed to `layers/<key>`. A killed skiff leaves only staging directories, which the next
//! run removes. Layers of one image are independent until mounted, so they unpack in parallel.

mod archive;
mod entry;
mod flatten;
mod implied;
mod lower;
mod meta;
mod staged;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::fs::root::{InnerPath, Root, RootError};
use crate::manifest::Image;
use crate::manifest::{Compression, Layer};
use crate::reference::Digest;
use crate::store::{Store, StoreError, TreeKey};
pub use entry::EntryError;
pub use flatten::flatten;
use staged::unpack_layer;

#[derive(Debug, Error)]
pub enum UnpackError {
    #[error("layer {layer}")]
    Archive {
        layer: Digest,
        #[source]
        source: archive::ArchiveError,
    },
    #[error("layer {layer}: entry {entry:?}")]
    Entry {
        layer: Digest,
        entry: String,
        #[source]
        source: EntryError,
    },
    #[error("layer {layer}: {what}")]
    Io {
        layer: Digest,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer}: uncompressed digest {actual} does not match the config's diff_id {expected}")]
    DiffId {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fs(#[from] RootError),
    #[error("{path}")]
    Target {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is not empty; skiff unpack writes only into an empty or new directory")]
    NotEmpty(PathBuf),
    #[error("{op} {path}")]
    Dir {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Hashes what passes through it: the uncompressed layer stream, for the diff_id check.
struct HashRead<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn decompressor<'a>(layer: &Layer, file: File) -> Result<Box<dyn Read + 'a>, io::Error> {
    let buffered = BufReader::with_capacity(256 * 1024, file);
    Ok(match layer.compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    })
}

/// What the new root is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rootfs {
    /// Unpacked layer trees, bottom first: an overlay with a tmpfs upper.
    Overlay(Vec<PathBuf>),
    /// One flattened tree (no overlayfs): bind-mounted, never written.
    Flat(PathBuf),
}

/// An image made ready to run: its rootfs, and the trees a payload running from it must lease
/// so `gc` leaves them alone.
#[derive(Clone, Debug)]
pub struct Unpacked {
    pub rootfs: Rootfs,
    pub trees: Vec<TreeKey>,
}

/// Makes sure `image` can run from the store as `storage` serves it: every layer unpacked,
/// and for `flat` the flattened tree built.
pub fn ensure_rootfs(
    store: &Store,
    image: &Image,
    storage: Storage,
) -> Result<Unpacked, UnpackError> {
    let keys = ensure_layer_keys(store, image)?;
    let layers: Vec<PathBuf> = keys.iter().map(|k| store.tree_path(k)).collect();
    Ok(match storage {
        Storage::Overlay => Unpacked {
            rootfs: Rootfs::Overlay(layers),
            trees: keys,
        },
        Storage::Flat => Unpacked {
            rootfs: Rootfs::Flat(ensure_flat(store, image, &layers)?),
            trees: vec![TreeKey::Flat(image.manifest.clone())],
        },
    })
}

/// Makes sure every layer of `image` is unpacked; returns their trees, bottom layer first.
pub fn ensure_layers(store: &Store, image: &Image) -> Result<Vec<PathBuf>, UnpackError> {
    Ok(ensure_layer_keys(store, image)?
        .iter()
        .map(|k| store.tree_path(k))
        .collect())
}

/// `ensure_layers`, giving the trees' keys: each layer's own where it is self-contained, its
/// stack's (`TreeKey::Chain`) where its tree depends on the layers below (see `staged`).
pub fn ensure_layer_keys(store: &Store, image: &Image) -> Result<Vec<TreeKey>, UnpackError> {
    store.clean_stale_staging();
    let chains = crate::store::chain_ids(&image.layers);
    let todo: Vec<usize> = (0..image.layers.len())
        .filter(|&i| staged::find(store, &image.layers[i], &chains[i]).is_none())
        .collect();
    // Layers are independent until mounted, except for a hardlink into a lower layer or a
    // whiteout below a directory the layer lacks (rare): such a layer is unpacked again after
    // the others, with them to look at. A layer that implies directories it does not carry
    // waits, staged, for its lowers to decide just those (see `implied`). The bottom layer
    // has nothing below it, which is known at once.
    let deferred = std::sync::Mutex::new(Vec::new());
    let waiting = std::sync::Mutex::new(Vec::new());
    crate::parallel::for_each(&todo, crate::parallel::cores(), |&i| {
        let l = &image.layers[i];
        let lower: Option<&[PathBuf]> = (i == 0).then_some(&[]);
        match unpack_layer(store, l, &chains[i], lower) {
            Ok(Some(staged)) => {
                waiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, staged));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(UnpackError::Entry {
                source: EntryError::LowerLink(_) | EntryError::LowerWhiteout(_),
                ..
            }) => {
                deferred.lock().unwrap_or_else(|p| p.into_inner()).push(i);
                Ok(())
            }
            Err(e) => Err(e),
        }
    })?;
    let deferred = deferred.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut waiting = waiting.into_inner().unwrap_or_else(|p| p.into_inner());
    // Bottom up, so each layer's lowers are final (and their keys known) when it looks at them.
    let mut keys: Vec<TreeKey> = Vec::with_capacity(image.layers.len());
    let mut trees: Vec<PathBuf> = Vec::with_capacity(image.layers.len());
    for (i, l) in image.layers.iter().enumerate() {
        let lower: Vec<PathBuf> = trees.iter().rev().cloned().collect();
        if deferred.contains(&i) {
            // With the lowers given, nothing is left waiting.
            if let Some(staged) = unpack_layer(store, l, &chains[i], Some(&lower))? {
                staged.decide(&lower)?;
            }
        } else if let Some(at) = waiting.iter().position(|(k, _)| *k == i) {
            waiting.swap_remove(at).1.decide(&lower)?;
        }
        let key = staged::find(store, l, &chains[i]).ok_or_else(|| {
            io_err(
                l,
                "finding its unpacked tree (removed while this image was unpacked?)",
                io::Error::from(io::ErrorKind::NotFound),
            )
        })?;
        trees.push(store.tree_path(&key));
        keys.push(key);
    }
    Ok(keys)
}

/// Builds the tree `key` names once, whoever asks: under its lock, in a fresh staging
/// directory that `build` fills, renamed into place only when `build` succeeded; a failed
/// build leaves nothing behind. A no-op when another process built it first.
fn build_tree(
    store: &Store,
    key: &TreeKey,
    staging_name: &str,
    build: impl FnOnce(&Path) -> Result<(), UnpackError>,
) -> Result<PathBuf, UnpackError> {
    let dest = store.tree_path(key);
    let _lock = store.lock_tree(key)?;
    if store.has_tree(&dest) {
        return Ok(dest);
    }
    let staging = store.staging_dir(staging_name)?;
    let result = build(&staging).and_then(|()| {
        store
            .commit_staged(&staging, &dest)
            .map_err(UnpackError::from)
    });
    if result.is_err() {
        if let Err(e) = crate::fs::root::remove_dir_all(&staging) {
            tracing::warn!(path = %staging.display(), error = %e, "could not remove a failed tree; the next run will");
        }
    }
    result.map(|()| dest)
}

/// How a rootfs is served: an overlay of the shared layer trees, or one flattened copy (for
/// kernels without overlayfs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Storage {
    Overlay,
    Flat,
}

impl Storage {
    /// Overlay where the kernel has it.
    pub fn detect() -> Storage {
        let has_overlay = std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| {
            f.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        });
        if has_overlay {
            Storage::Overlay
        } else {
            Storage::Flat
        }
    }
}

/// The directories the run plan mounts over, made in a flat tree when it is built (the tree
/// is read-only at run time).
const MOUNTPOINTS: [&str; 5] = ["proc", "sys", "dev", "tmp", "run"];

/// Makes sure the image's flattened rootfs exists (`rootfs/<manifest hex>`), built in staging
/// from its verified layer trees (`layers`, as `ensure_layers` returned them) and renamed into
/// place.
pub fn ensure_flat(
    store: &Store,
    image: &Image,
    layers: &[PathBuf],
) -> Result<PathBuf, UnpackError> {
    let key = TreeKey::Flat(image.manifest.clone());
    build_tree(store, &key, &key.lock_name(), |staging| {
        flatten(layers, staging)?;
        let root = Root::open(staging)?;
        for m in MOUNTPOINTS {
            // Constant, non-empty names: parse gives Some.
            if let Some(p) = crate::fs::root::InnerPath::parse(m.as_bytes())? {
                root.mountpoint(&p, crate::fs::root::NodeKind::Dir)?;
            }
        }
        Ok(())
    })
}

/// `skiff unpack`: the image's flattened rootfs, from its layer trees, into `dir`, which must
/// be empty or absent.
pub fn unpack_into(store: &Store, image: &Image, dir: &Path) -> Result<(), UnpackError> {
    let dir_err = |op, source| UnpackError::Dir {
        op,
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(UnpackError::NotEmpty(dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| dir_err("creating", e))?
        }
        Err(e) => return Err(dir_err("reading", e)),
    }
    // The trees are in place after a pull; this finds which key each is under.
    let layers = ensure_layers(store, image)?;
    flatten(&layers, dir)
}

fn io_err(layer: &Layer, what: &'static str, source: io::Error) -> UnpackError {
    UnpackError::Io {
        layer: layer.blob.digest.clone(),
        what,
        source,
    }
}

/// Applies one uncompressed layer tar stream to `dir` (overlay form), as `pull` does, for
/// tools and fuzzing. Returns the uncompressed digest.
pub fn apply_tar<R: Read>(stream: R, dir: &Path) -> Result<Digest, UnpackError> {
    let layer = Digest::of(b"");
    let root = Root::open(dir)?;
    let mut hashed = HashRead {
        inner: stream,
        hasher: Sha256::new(),
    };
    let io = |what, source| UnpackError::Io {
        layer: layer.clone(),
        what,
        source,
    };
    apply_entries(&root, Some(&[]), &mut hashed, &layer).and_then(|_| {
        io::copy(&mut hashed, &mut io::sink())
            .map_err(|e| io("reading the end of the stream", e))?;
        Ok(Digest::from_sha256_bytes(&hashed.hasher.finalize().into()))
    })
}

/// Every entry of one tar stream, then the directories' metadata. `lower` is `None` while
/// the lower layers are not known (see `ensure_layers`): the directories the layer implies
/// are then given back, to be decided with them. Also says whether the tree depends on the
/// layers below (see `entry::Applier::finish`).
fn apply_entries<R: Read>(
    root: &Root,
    lower: Option<&[Root]>,
    stream: R,
    layer: &Digest,
) -> Result<(Vec<InnerPath>, bool), UnpackError> {
    let mut applier = entry::Applier::new(root, lower);
    let mut archive = archive::Archive::new(stream);
    let read_err = |source| UnpackError::Archive {
        layer: layer.clone(),
        source,
    };
    while let Some(m) = archive.next().map_err(read_err)? {
        applier
            .apply(&m, &mut archive.data())
            .map_err(|source| UnpackError::Entry {
                layer: layer.clone(),
                entry: m.display(),
                source,
            })?;
    }
    let entry_err = |(entry, source)| UnpackError::Entry {
        layer: layer.clone(),
        entry,
        source,
    };
    let (implied, depends) = applier.finish().map_err(entry_err)?;
    match lower {
        Some(lowers) => {
            implied::decide(root, lowers, &implied).map_err(entry_err)?;
            Ok((Vec::new(), depends))
        }
        None => Ok((implied, depends)),
    }
}

/// Streams blob → decompressor → hasher → tar entries into `dir`, then checks the diff_id.
/// Returns the directories still to decide and whether the tree depends on its lowers (see
/// `apply_entries`).
fn extract(
    store: &Store,
    layer: &Layer,
    lower: Option<&[PathBuf]>,
    dir: &Path,
) -> Result<(Vec<InnerPath>, bool), UnpackError> {
    let blob = store.open_blob(&layer.blob.digest)?;
    let stream =
        decompressor(layer, blob).map_err(|e| io_err(layer, "starting decompression", e))?;
    let mut hashed = HashRead {
        inner: stream,
        hasher: Sha256::new(),
    };
    let root = Root::open(dir)?;
    let lower = lower
        .map(|l| {
            l.iter()
                .map(|p| Root::open(p))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let found = apply_entries(&root, lower.as_deref(), &mut hashed, &layer.blob.digest)?;
    // The diff_id covers the whole stream, including the end-of-archive blocks and padding.
    io::copy(&mut hashed, &mut io::sink())
        .map_err(|e| io_err(layer, "reading the end of the stream", e))?;
    let actual = Digest::from_sha256_bytes(&hashed.hasher.finalize().into());
    match &layer.diff_id {
        Some(expected) if *expected != actual => Err(UnpackError::DiffId {
            layer: layer.blob.digest.clone(),
            expected: expected.clone(),
            actual,
        }),
        _ => Ok(found),
    }
}

#[cfg(test)]
mod tests;
