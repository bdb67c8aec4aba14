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

use crate::fs::root::{Root, RootError};
use crate::manifest::Image;
use crate::manifest::{Compression, Layer};
use crate::reference::Digest;
use crate::store::clean::Shutdown;
use crate::store::record::{self, Hashes};
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

/// Whether an existing, complete tree may be used as it is: always after a clean shutdown;
/// after an unclean one, once it passed a quick check against its record. A tree that fails
/// is rebuilt from its blob, never reused.
fn reusable(store: &Store, key: &TreeKey, shutdown: Shutdown) -> Result<bool, UnpackError> {
    if shutdown == Shutdown::Clean || store.was_checked(key) {
        return Ok(true);
    }
    let problems = store.check_tree(key, true)?;
    if problems.is_empty() {
        store.note_checked(key);
        return Ok(true);
    }
    tracing::warn!(tree = %key, problem = %problems[0], problems = problems.len(), "a tree does not match its record after an unclean shutdown; rebuilding it from its blob");
    Ok(false)
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
/// After an unclean shutdown, each tree found is quick-checked against its record first (the
/// keys this image actually uses), and one that fails is rebuilt in place.
pub fn ensure_layer_keys(store: &Store, image: &Image) -> Result<Vec<TreeKey>, UnpackError> {
    store.clean_stale_staging();
    let shutdown = store.shutdown()?;
    let chains = crate::store::chain_ids(&image.layers);
    let mut todo: Vec<usize> = Vec::new();
    let mut damaged: Vec<TreeKey> = Vec::new();
    for (i, l) in image.layers.iter().enumerate() {
        match staged::find_complete(store, l, &chains[i]) {
            None => todo.push(i),
            Some(key) => {
                if !damaged.contains(&key) && !reusable(store, &key, shutdown)? {
                    damaged.push(key);
                }
            }
        }
    }
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
        let key = found(store, l, &chains[i])?;
        if let Some(at) = damaged.iter().position(|k| *k == key) {
            staged::rebuild_layer(store, l, &key, &lower)?;
            damaged.swap_remove(at);
        }
        trees.push(store.tree_path(&key));
        keys.push(key);
    }
    Ok(keys)
}

fn found(store: &Store, l: &Layer, chain: &Digest) -> Result<TreeKey, UnpackError> {
    staged::find_complete(store, l, chain).ok_or_else(|| {
        io_err(
            l,
            "finding its unpacked tree (removed while this image was unpacked?)",
            io::Error::from(io::ErrorKind::NotFound),
        )
    })
}

/// The tree key each layer of `image` has in the store now (`None` where it has none): its
/// own where marked self-contained, its stack's ChainID's otherwise, as `ensure_layer_keys`
/// resolves them.
pub fn layer_keys(store: &Store, image: &Image) -> Vec<Option<TreeKey>> {
    let chains = crate::store::chain_ids(&image.layers);
    image
        .layers
        .iter()
        .zip(&chains)
        .map(|(l, c)| staged::find(store, l, c))
        .collect()
}

/// Rebuilds the given layer trees of `image` from their blobs (which must be in the store),
/// bottom up, each with the lower trees below it and replacing its tree in one rename: what
/// `verify --repair` does with a damaged tree. A layer with no tree is unpacked afresh.
pub fn rebuild_layers(store: &Store, image: &Image, keys: &[TreeKey]) -> Result<(), UnpackError> {
    let chains = crate::store::chain_ids(&image.layers);
    let mut done: Vec<TreeKey> = Vec::new();
    let mut trees: Vec<PathBuf> = Vec::with_capacity(image.layers.len());
    for (i, l) in image.layers.iter().enumerate() {
        let lower: Vec<PathBuf> = trees.iter().rev().cloned().collect();
        let key = match staged::find(store, l, &chains[i]) {
            Some(key) => key,
            None => {
                if let Some(staged) = unpack_layer(store, l, &chains[i], Some(&lower))? {
                    staged.decide(&lower)?;
                }
                found(store, l, &chains[i])?
            }
        };
        if keys.contains(&key) && !done.contains(&key) {
            staged::rebuild_layer(store, l, &key, &lower)?;
            done.push(key.clone());
        }
        trees.push(store.tree_path(&key));
    }
    Ok(())
}

/// Rebuilds the flat rootfs of `image` from its layer trees, replacing the one in place.
pub fn rebuild_flat(store: &Store, image: &Image) -> Result<(), UnpackError> {
    let layers = ensure_layers(store, image)?;
    build_flat(store, image, &layers, true).map(drop)
}

/// Builds the tree `key` names once, whoever asks: under its lock, in a fresh staging
/// directory that `build` fills, synced, its record written durably, and only then renamed
/// into place (with `replace`, swapped with the tree there in one rename); a failed build
/// leaves nothing behind. Without `replace`, a no-op when another process built it first.
/// `build` returns the content hashes it saw written, so the record reads no file again.
fn build_tree(
    store: &Store,
    key: &TreeKey,
    staging_name: &str,
    replace: bool,
    build: impl FnOnce(&Path) -> Result<Hashes, UnpackError>,
) -> Result<PathBuf, UnpackError> {
    let dest = store.tree_path(key);
    let _lock = store.lock_tree(key)?;
    if !replace && store.has_complete_tree(key) {
        return Ok(dest);
    }
    let _op = store.begin_write()?;
    if !replace {
        store.clear_incomplete(key)?;
    }
    store.forget_checked(key);
    let staging = store.staging_dir(staging_name)?;
    let result = (|| {
        // Opened before anything is written, so its syncfs reports every writeback error
        // since (an fd opened later would miss those another syncfs already saw).
        let f = File::open(&staging).map_err(|e| UnpackError::Dir {
            op: "opening",
            path: staging.clone(),
            source: e,
        })?;
        let hashes = build(&staging)?;
        let record = record::walk(&staging, record::Depth::Content(&hashes)).map_err(|e| {
            UnpackError::Dir {
                op: "recording",
                path: staging.clone(),
                source: e,
            }
        })?;
        // One syncfs per tree: cheaper than fsync per file, and neither the record nor the
        // rename that makes the tree visible may reach the disk before the tree does. An
        // error is final: the tree is dropped and built afresh next time, never re-synced.
        // SAFETY: plain syscall on a valid fd.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) } != 0 {
            return Err(UnpackError::Dir {
                op: "syncing",
                path: staging.clone(),
                source: io::Error::last_os_error(),
            });
        }
        store.put_record(key, &record)?;
        if replace {
            store.replace_tree(&staging, key)?;
        } else {
            store.commit_staged(&staging, &dest)?;
        }
        Ok(())
    })();
    if result.is_err() && staging.exists() {
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
    let replace = store.has_complete_tree(&key) && !reusable(store, &key, store.shutdown()?)?;
    build_flat(store, image, layers, replace)
}

fn build_flat(
    store: &Store,
    image: &Image,
    layers: &[PathBuf],
    replace: bool,
) -> Result<PathBuf, UnpackError> {
    let key = TreeKey::Flat(image.manifest.clone());
    build_tree(store, &key, &key.lock_name(), replace, |staging| {
        flatten(layers, staging)?;
        let root = Root::open(staging)?;
        for m in MOUNTPOINTS {
            // Constant, non-empty names: parse gives Some.
            if let Some(p) = crate::fs::root::InnerPath::parse(m.as_bytes())? {
                root.mountpoint(&p, crate::fs::root::NodeKind::Dir)?;
            }
        }
        // A flattened tree is copied, not streamed: its record hashes what it holds.
        Ok(Hashes::new())
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
) -> Result<entry::Finished, UnpackError> {
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
    let mut finished = applier.finish().map_err(entry_err)?;
    if let Some(lowers) = lower {
        implied::decide(root, lowers, &finished.implied).map_err(entry_err)?;
        finished.implied = Vec::new();
    }
    Ok(finished)
}

/// Streams blob → decompressor → hasher → tar entries into `dir`, then checks the diff_id.
/// Returns the directories still to decide and whether the tree depends on its lowers (see
/// `apply_entries`).
fn extract(
    store: &Store,
    layer: &Layer,
    lower: Option<&[PathBuf]>,
    dir: &Path,
) -> Result<entry::Finished, UnpackError> {
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
