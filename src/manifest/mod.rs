//! Manifest, index and config documents: pure parsing of untrusted bytes.
//!
//! Used both online (bytes fresh from a registry) and offline (bytes from the store), so a host
//! that boots without a network reads its images exactly as it read them when they were pulled.

mod image;
mod platform;
mod schema1;

use std::fmt;

use serde::Deserialize;
use thiserror::Error;

use crate::reference::{Digest, ReferenceError};
pub use image::Image;
pub use platform::{select as select_platform, Platform, PlatformError};

/// Manifests, indexes and configs are small; anything larger is hostile or broken.
pub const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_V1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const DOCKER_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Every manifest type skiff reads, for the `Accept` header. Without it docker-registry 2.8
/// converts v2 manifests to schema1 and hides OCI ones.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws, \
application/vnd.docker.distribution.manifest.v1+json";

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("document is {size} bytes, more than the {MAX_DOCUMENT_BYTES}-byte limit")]
    TooLarge { size: u64 },
    #[error("malformed {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedType(String),
    #[error("manifest media type mismatch: {expected} expected, document says {found}")]
    TypeMismatch { expected: String, found: String },
    #[error("{what} has a bad digest")]
    Digest {
        what: String,
        #[source]
        source: ReferenceError,
    },
    #[error("layer {digest} has unsupported media type {media_type:?}")]
    LayerType { digest: Digest, media_type: String },
    #[error("schema1 manifest")]
    Schema1(#[from] schema1::Schema1Error),
    #[error("config has {diff_ids} diff_ids but the manifest lists {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
    #[error("the manifest has no layers")]
    NoLayers,
}

/// A content descriptor as skiff uses it. `urls` are never read: skiff only fetches from the
/// registry it was pointed at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    /// Unknown only for schema1 layers, which carry no size.
    pub size: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One filesystem layer: the blob to fetch and, where the config says, the digest of its
/// uncompressed tar stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub blob: Descriptor,
    pub compression: Compression,
    pub diff_id: Option<Digest>,
}

/// What the payload is run with, from the image config.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
}

/// A document fetched by a manifest reference.
#[derive(Debug)]
pub enum Document {
    Index(Vec<IndexEntry>),
    Manifest(ImageManifest),
    Schema1(Schema1Image),
}

#[derive(Clone, Debug)]
pub struct IndexEntry {
    pub descriptor: Descriptor,
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug)]
pub struct ImageManifest {
    pub config: Descriptor,
    layers: Vec<(Descriptor, Compression)>,
}

/// A schema1 image carries its runtime config inline and has no diff_ids.
#[derive(Clone, Debug)]
pub struct Schema1Image {
    pub layers: Vec<Layer>,
    pub config: RuntimeConfig,
    pub platform: Platform,
}

/// A document and the digest it is addressed by.
#[derive(Debug)]
pub struct Parsed {
    pub digest: Digest,
    /// The bytes that hash to `digest` (for schema1: the canonical payload).
    pub canonical: Vec<u8>,
    pub document: Document,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "tar",
            Compression::Gzip => "tar+gzip",
            Compression::Zstd => "tar+zstd",
        })
    }
}

fn json<'a, T: Deserialize<'a>>(what: &'static str, bytes: &'a [u8]) -> Result<T, ManifestError> {
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(ManifestError::TooLarge {
            size: bytes.len() as u64,
        });
    }
    serde_json::from_slice(bytes).map_err(|source| ManifestError::Json { what, source })
}

fn media_base(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
}

/// Parses a manifest-endpoint document. `declared` is what the transport says it is (the
/// `Content-Type`, or the parent descriptor's media type); it must agree with the document.
pub fn parse_document(body: &[u8], declared: Option<&str>) -> Result<Parsed, ManifestError> {
    let probe: Probe = json("manifest", body)?;
    let declared = declared
        .map(media_base)
        .filter(|d| is_manifest_type(d))
        .map(str::to_string);
    if probe.schema_version == Some(1) {
        if let Some(d) = &declared {
            if d != DOCKER_V1_SIGNED && d != DOCKER_V1 {
                return Err(mismatch(d, DOCKER_V1_SIGNED));
            }
        }
        let (canonical, image) = schema1::parse(body)?;
        return Ok(Parsed {
            digest: Digest::of(&canonical),
            canonical,
            document: Document::Schema1(image),
        });
    }
    let kind = match (&probe.media_type, &declared) {
        (Some(inner), Some(outer)) if inner != outer => return Err(mismatch(outer, inner)),
        (Some(t), _) | (None, Some(t)) => t.clone(),
        // OCI lets mediaType be absent; tell the two OCI documents apart by shape.
        (None, None) => sniff_oci(body)?.to_string(),
    };
    let document = match kind.as_str() {
        OCI_INDEX | DOCKER_LIST => Document::Index(parse_index(body)?),
        OCI_MANIFEST | DOCKER_V2 => Document::Manifest(parse_manifest(body)?),
        other => return Err(ManifestError::UnsupportedType(other.to_string())),
    };
    Ok(Parsed {
        digest: Digest::of(body),
        canonical: body.to_vec(),
        document,
    })
}

fn mismatch(expected: &str, found: &str) -> ManifestError {
    ManifestError::TypeMismatch {
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

fn is_manifest_type(t: &str) -> bool {
    [
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_LIST,
        DOCKER_V2,
        DOCKER_V1_SIGNED,
        DOCKER_V1,
    ]
    .contains(&t)
}

fn sniff_oci(body: &[u8]) -> Result<&'static str, ManifestError> {
    #[derive(Deserialize)]
    struct Shape {
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let s: Shape = json("manifest", body)?;
    match (s.manifests.is_some(), s.config.is_some()) {
        (true, false) => Ok(OCI_INDEX),
        (false, true) => Ok(OCI_MANIFEST),
        _ => Err(ManifestError::UnsupportedType(
            "(no mediaType, neither index nor manifest)".into(),
        )),
    }
}

fn descriptor(d: &oci_spec::image::Descriptor, what: &str) -> Result<Descriptor, ManifestError> {
    let digest = d
        .digest()
        .to_string()
        .parse()
        .map_err(|source| ManifestError::Digest {
            what: what.to_string(),
            source,
        })?;
    Ok(Descriptor {
        media_type: d.media_type().to_string(),
        digest,
        size: Some(d.size()),
    })
}

fn parse_index(body: &[u8]) -> Result<Vec<IndexEntry>, ManifestError> {
    let index: oci_spec::image::ImageIndex = json("image index", body)?;
    index
        .manifests()
        .iter()
        .map(|m| {
            Ok(IndexEntry {
                descriptor: descriptor(m, "index entry")?,
                platform: m.platform().as_ref().map(Platform::from_oci),
            })
        })
        .collect()
}

fn parse_manifest(body: &[u8]) -> Result<ImageManifest, ManifestError> {
    let m: oci_spec::image::ImageManifest = json("image manifest", body)?;
    let config = descriptor(m.config(), "config")?;
    if config.media_type != OCI_CONFIG && config.media_type != DOCKER_CONFIG {
        return Err(ManifestError::UnsupportedType(config.media_type));
    }
    let layers = m
        .layers()
        .iter()
        .map(|l| {
            let d = descriptor(l, "layer")?;
            let c = layer_compression(&d)?;
            Ok((d, c))
        })
        .collect::<Result<Vec<_>, ManifestError>>()?;
    if layers.is_empty() {
        return Err(ManifestError::NoLayers);
    }
    Ok(ImageManifest { config, layers })
}

fn layer_compression(d: &Descriptor) -> Result<Compression, ManifestError> {
    let t = d.media_type.as_str();
    let base = t
        .strip_prefix("application/vnd.oci.image.layer.nondistributable.v1.")
        .or_else(|| t.strip_prefix("application/vnd.oci.image.layer.v1."));
    match (base, t) {
        (Some("tar"), _) => Ok(Compression::None),
        (Some("tar+gzip"), _) | (None, "application/vnd.docker.image.rootfs.diff.tar.gzip") => {
            Ok(Compression::Gzip)
        }
        (Some("tar+zstd"), _) => Ok(Compression::Zstd),
        (None, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") => {
            Ok(Compression::Gzip)
        }
        _ => Err(ManifestError::LayerType {
            digest: d.digest.clone(),
            media_type: t.to_string(),
        }),
    }
}

/// The parts of an image config skiff needs.
#[derive(Debug)]
pub struct Config {
    pub runtime: RuntimeConfig,
    pub diff_ids: Vec<Digest>,
    pub platform: Platform,
}

pub fn parse_config(body: &[u8]) -> Result<Config, ManifestError> {
    let c: oci_spec::image::ImageConfiguration = json("image config", body)?;
    let diff_ids = c
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            d.parse().map_err(|source| ManifestError::Digest {
                what: "config diff_id".into(),
                source,
            })
        })
        .collect::<Result<Vec<Digest>, _>>()?;
    let runtime = c
        .config()
        .as_ref()
        .map(|cfg| RuntimeConfig {
            entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
            cmd: cfg.cmd().clone().unwrap_or_default(),
            env: cfg.env().clone().unwrap_or_default(),
            user: cfg.user().clone().filter(|u| !u.is_empty()),
            working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
        })
        .unwrap_or_default();
    let platform = Platform {
        os: c.os().to_string(),
        architecture: c.architecture().to_string(),
        variant: c.variant().clone(),
    };
    Ok(Config {
        runtime,
        diff_ids,
        platform,
    })
}

impl ImageManifest {
    /// Joins the manifest's layers with the config's diff_ids, which must be one per layer.
    pub fn layers(&self, config: &Config) -> Result<Vec<Layer>, ManifestError> {
        if config.diff_ids.len() != self.layers.len() {
            return Err(ManifestError::LayerCount {
                diff_ids: config.diff_ids.len(),
                layers: self.layers.len(),
            });
        }
        Ok(self
            .layers
            .iter()
            .zip(&config.diff_ids)
            .map(|((blob, compression), diff_id)| Layer {
                blob: blob.clone(),
                compression: *compression,
                diff_id: Some(diff_id.clone()),
            })
            .collect())
    }

    pub fn layer_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.layers.iter().map(|(d, _)| d)
    }
}

#[cfg(test)]
mod tests;
