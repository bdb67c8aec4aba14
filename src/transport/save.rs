//! `skiff save`: a stored image written out in the formats skopeo and podman read. What is
//! written is the platform's image manifest and the blobs it names, byte for byte as stored
//! (so loading it again gives the same digests); `dir:` gets the kept signatures too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use thiserror::Error;

use super::dir::{signature_files, VERSION};
use super::docker::Item;
use super::oci::{blob_path, REF_NAME};
use super::{Location, TransportError};
use crate::manifest::{Compression, Image, Platform, MAX_DOCUMENT_BYTES};
use crate::pull::{self, index_key};
use crate::reference::{Digest, Reference};
use crate::store::{Store, StoreError};
use crate::trust::{signatures_limit, Signatures};

#[derive(Debug, Error)]
pub enum SaveError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Pull(#[from] pull::PullError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{reference} is a schema1 image; it has no config to save (pull a newer manifest of it)"
    )]
    Schema1 { reference: String },
    #[error("layer {digest} of {reference} is not in the store; pull it first")]
    MissingLayer { reference: String, digest: Digest },
    #[error("{path} exists and is not empty; dir: writes into a new or empty directory")]
    NotEmpty { path: PathBuf },
}

/// Where the files of a saved image go: a directory, or a tar archive.
trait Sink {
    fn add(&mut self, name: &str, size: u64, r: &mut dyn Read) -> Result<(), TransportError>;
    fn exists(&self, name: &str) -> bool;
    fn finish(self: Box<Self>) -> Result<(), TransportError>;
}

struct DirSink {
    dir: PathBuf,
}

impl Sink for DirSink {
    fn add(&mut self, name: &str, size: u64, r: &mut dyn Read) -> Result<(), TransportError> {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(TransportError::write(parent))?;
        }
        // Written aside and renamed, so a file that is there is whole.
        let tmp = path.with_extension(format!("skiff-{}.partial", std::process::id()));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(TransportError::write(&tmp))?;
        let n = io::copy(&mut r.take(size), &mut f).map_err(TransportError::write(&tmp))?;
        if n != size {
            return Err(TransportError::write(&tmp)(io::Error::other(format!(
                "{n} of {size} bytes"
            ))));
        }
        f.sync_all().map_err(TransportError::write(&tmp))?;
        fs::rename(&tmp, &path).map_err(TransportError::write(&path))
    }

    fn exists(&self, name: &str) -> bool {
        fs::symlink_metadata(self.dir.join(name)).is_ok_and(|m| m.is_file())
    }

    fn finish(self: Box<Self>) -> Result<(), TransportError> {
        Ok(())
    }
}

/// An archive written next to its final name and renamed into place when complete.
struct TarSink {
    builder: tar::Builder<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl TarSink {
    fn create(dest: &Path) -> Result<TarSink, TransportError> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dest.with_file_name(format!(".{name}.skiff-{}.partial", std::process::id()));
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(TransportError::write(&tmp))?;
        Ok(TarSink {
            builder: tar::Builder::new(f),
            tmp,
            dest: dest.to_path_buf(),
        })
    }
}

impl Sink for TarSink {
    fn add(&mut self, name: &str, size: u64, r: &mut dyn Read) -> Result<(), TransportError> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        self.builder
            .append_data(&mut h, name, r.take(size))
            .map_err(TransportError::write(&self.tmp))
    }

    fn exists(&self, _name: &str) -> bool {
        false
    }

    fn finish(self: Box<Self>) -> Result<(), TransportError> {
        let TarSink { builder, tmp, dest } = *self;
        let f = builder.into_inner().map_err(TransportError::write(&tmp))?;
        f.sync_all().map_err(TransportError::write(&tmp))?;
        fs::rename(&tmp, &dest).map_err(TransportError::write(&dest))
    }
}

/// A stored blob into the sink (skipped when a layout already has it).
fn add_blob(store: &Store, sink: &mut dyn Sink, name: &str, d: &Digest) -> Result<(), SaveError> {
    if sink.exists(name) {
        return Ok(());
    }
    let mut f = store.open_blob(d)?;
    let size = f
        .metadata()
        .map_err(|e| StoreError::Io {
            op: "stat",
            path: store.blob_path(d),
            source: e,
        })?
        .len();
    sink.add(name, size, &mut f)?;
    Ok(())
}

fn add_bytes(sink: &mut dyn Sink, name: &str, bytes: &[u8]) -> Result<(), TransportError> {
    sink.add(name, bytes.len() as u64, &mut &bytes[..])
}

/// Saves `reference` (for `platform`) to `dest`.
pub fn save(
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    dest: &Location,
) -> Result<(), SaveError> {
    let img = pull::load(store, reference, platform)?;
    let name = reference.to_string();
    if img.schema1 {
        return Err(SaveError::Schema1 { reference: name });
    }
    if let Some(l) = img.layers.iter().find(|l| !store.has_blob(&l.blob.digest)) {
        return Err(SaveError::MissingLayer {
            reference: name,
            digest: l.blob.digest.clone(),
        });
    }
    let manifest = store.read_blob(&img.manifest, MAX_DOCUMENT_BYTES)?;
    match dest {
        Location::Oci { dir, tag } => {
            let mut sink = DirSink { dir: dir.clone() };
            write_layout(
                store,
                &mut sink,
                reference,
                &img,
                &manifest,
                tag.as_deref(),
                Some(dir),
            )?;
        }
        Location::OciArchive { file, tag } => {
            let mut sink = Box::new(TarSink::create(file)?);
            write_layout(
                store,
                sink.as_mut(),
                reference,
                &img,
                &manifest,
                tag.as_deref(),
                None,
            )?;
            sink.finish()?;
        }
        Location::DockerArchive { file, reference: r } => {
            let mut sink = Box::new(TarSink::create(file)?);
            write_docker(store, sink.as_mut(), reference, r.as_deref(), &img)?;
            sink.finish()?;
        }
        Location::Dir { dir } => {
            if fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                return Err(SaveError::NotEmpty { path: dir.clone() });
            }
            let mut sink = DirSink { dir: dir.clone() };
            for d in blob_digests(&img) {
                add_blob(store, &mut sink, d.hex(), &d)?;
            }
            add_bytes(&mut sink, "manifest.json", &manifest)?;
            let kept = store.read_signatures(&img.manifest, signatures_limit())?;
            let sigs = kept
                .and_then(|b| Signatures::from_json(&b).ok())
                .unwrap_or_default();
            for (i, s) in signature_files(&sigs).iter().enumerate() {
                add_bytes(&mut sink, &format!("signature-{}", i + 1), s)?;
            }
            add_bytes(&mut sink, "version", VERSION.as_bytes())?;
        }
    }
    Ok(())
}

/// The config and layer blobs, each once.
fn blob_digests(img: &Image) -> Vec<Digest> {
    let mut out: Vec<Digest> = img.config_digest.iter().cloned().collect();
    for l in &img.layers {
        if !out.contains(&l.blob.digest) {
            out.push(l.blob.digest.clone());
        }
    }
    out
}

/// An OCI layout: blobs, `oci-layout`, and `index.json` last (in a directory that is one
/// already, the entry for the same tag is replaced and the others kept, as skopeo does).
fn write_layout(
    store: &Store,
    sink: &mut dyn Sink,
    reference: &Reference,
    img: &Image,
    manifest: &[u8],
    tag: Option<&str>,
    existing: Option<&Path>,
) -> Result<(), SaveError> {
    for d in blob_digests(img) {
        add_blob(store, sink, &blob_path(&d), &d)?;
    }
    add_bytes(sink, &blob_path(&img.manifest), manifest)?;
    add_bytes(sink, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let media_type = serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| crate::manifest::OCI_MANIFEST.to_string());
    let tag = tag
        .map(str::to_string)
        .or_else(|| reference.tag().map(str::to_string));
    let mut annotations = serde_json::Map::new();
    if let Some(t) = &tag {
        annotations.insert(REF_NAME.into(), json!(t));
    }
    annotations.insert(
        "io.containerd.image.name".into(),
        json!(index_key(reference)),
    );
    let entry = json!({"mediaType": media_type, "digest": img.manifest.to_string(),
                       "size": manifest.len(), "annotations": annotations});
    let mut manifests = Vec::new();
    if let Some(dir) = existing {
        // Another image's entries stay; the one this tag named is replaced.
        if let Ok(b) = crate::trust::read_bounded(&dir.join("index.json"), MAX_DOCUMENT_BYTES) {
            let old: serde_json::Value = super::parse_json(dir, "index.json", &b)?;
            for m in old
                .get("manifests")
                .and_then(|m| m.as_array())
                .into_iter()
                .flatten()
            {
                let same = tag.is_some()
                    && m.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                        .and_then(|v| v.as_str())
                        == tag.as_deref();
                if !same {
                    manifests.push(m.clone());
                }
            }
        }
    }
    manifests.push(entry);
    let index = json!({"schemaVersion": 2, "mediaType": crate::manifest::OCI_INDEX, "manifests": manifests});
    add_bytes(
        sink,
        "index.json",
        &serde_json::to_vec(&index).unwrap_or_default(),
    )?;
    Ok(())
}

/// The uncompressed stream of a stored layer.
fn layer_stream(store: &Store, d: &Digest, c: Compression) -> Result<Box<dyn Read>, SaveError> {
    let f = store.open_blob(d)?;
    let io = |e: io::Error| StoreError::Io {
        op: "decompress",
        path: store.blob_path(d),
        source: e,
    };
    Ok(match c {
        Compression::None => Box::new(f),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(io::BufReader::new(f))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(f).map_err(io)?),
    })
}

/// `docker save`'s format: each layer uncompressed, named by its diff_id; the config by its
/// digest; `manifest.json` last.
fn write_docker(
    store: &Store,
    sink: &mut dyn Sink,
    reference: &Reference,
    repo_tag: Option<&str>,
    img: &Image,
) -> Result<(), SaveError> {
    let config = img
        .config_digest
        .clone()
        .ok_or_else(|| SaveError::Schema1 {
            reference: reference.to_string(),
        })?;
    let config_name = format!("{}.json", config.hex());
    add_blob(store, sink, &config_name, &config)?;
    let mut layers = Vec::new();
    for l in &img.layers {
        let Some(diff_id) = &l.diff_id else {
            return Err(SaveError::Schema1 {
                reference: reference.to_string(),
            });
        };
        let name = format!("{}.tar", diff_id.hex());
        if !layers.contains(&name) {
            let io = |e: io::Error| StoreError::Io {
                op: "decompress",
                path: store.blob_path(&l.blob.digest),
                source: e,
            };
            // The tar header needs the size first: one pass to count, one to write.
            let size = io::copy(
                &mut layer_stream(store, &l.blob.digest, l.compression)?,
                &mut io::sink(),
            )
            .map_err(io)?;
            sink.add(
                &name,
                size,
                &mut layer_stream(store, &l.blob.digest, l.compression)?,
            )?;
        }
        layers.push(name);
    }
    let tag = repo_tag
        .map(str::to_string)
        .or_else(|| reference.tagged_name());
    let items = vec![Item {
        config: config_name,
        repo_tags: Some(tag.into_iter().collect()),
        layers,
    }];
    add_bytes(
        sink,
        "manifest.json",
        &serde_json::to_vec(&items).unwrap_or_default(),
    )?;
    Ok(())
}
