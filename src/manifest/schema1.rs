//! Docker schema1 signed manifests (`…manifest.v1+prettyjws`), as quay.io/coreos still serves.
//!
//! The digest covers the canonical payload: the body cut at the signatures' `formatLength`, plus
//! the base64url `formatTail`. Every field is read from that payload only, so bytes outside what
//! the digest covers (the signatures block) can never change what is run. The libtrust signatures
//! themselves prove nothing (any key signs) and are not checked, as docker did not either.

use base64::Engine as _;
use serde::Deserialize;

use super::{json, Compression, Descriptor, Layer, ManifestError, Platform, RuntimeConfig};

const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

#[derive(Deserialize)]
struct Signed {
    #[serde(default)]
    signatures: Vec<Signature>,
}

#[derive(Deserialize)]
struct Signature {
    protected: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Protected {
    format_length: usize,
    format_tail: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    schema_version: u32,
    architecture: Option<String>,
    fs_layers: Vec<FsLayer>,
    history: Vec<History>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FsLayer {
    blob_sum: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct History {
    v1_compatibility: String,
}

#[derive(Deserialize, Default)]
struct V1Compat {
    #[serde(default)]
    throwaway: bool,
    config: Option<V1Config>,
    os: Option<String>,
    architecture: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct V1Config {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    user: Option<String>,
    working_dir: Option<String>,
}

/// What is wrong with a schema1 manifest.
#[derive(Debug, thiserror::Error)]
pub enum Schema1Error {
    #[error("bad base64url in signature")]
    Base64(#[source] base64::DecodeError),
    #[error("formatLength {length} is beyond the {body}-byte body")]
    FormatLength { length: usize, body: usize },
    #[error("signatures disagree on the signed payload")]
    Disagree,
    #[error("signed payload is not schemaVersion 1")]
    Version,
    #[error("{fs_layers} fsLayers but {history} history entries")]
    Counts { fs_layers: usize, history: usize },
}

fn b64url(s: &str) -> Result<Vec<u8>, ManifestError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| Schema1Error::Base64(e).into())
}

/// The canonical payload of a (possibly signed) schema1 body.
pub(super) fn canonical_payload(body: &[u8]) -> Result<Vec<u8>, ManifestError> {
    let signed: Signed = json("schema1 manifest", body)?;
    let mut payload: Option<Vec<u8>> = None;
    for sig in &signed.signatures {
        let protected: Protected = json("schema1 protected header", &b64url(&sig.protected)?)?;
        let head = body
            .get(..protected.format_length)
            .ok_or(Schema1Error::FormatLength {
                length: protected.format_length,
                body: body.len(),
            })?;
        let mut candidate = head.to_vec();
        candidate.extend_from_slice(&b64url(&protected.format_tail)?);
        match &payload {
            Some(p) if *p != candidate => return Err(Schema1Error::Disagree.into()),
            _ => payload = Some(candidate),
        }
    }
    Ok(payload.unwrap_or_else(|| body.to_vec()))
}

pub(super) fn parse(body: &[u8]) -> Result<(Vec<u8>, super::Schema1Image), ManifestError> {
    let canonical = canonical_payload(body)?;
    let p: Payload = json("schema1 payload", &canonical)?;
    if p.schema_version != 1 {
        return Err(Schema1Error::Version.into());
    }
    if p.fs_layers.len() != p.history.len() {
        return Err(Schema1Error::Counts {
            fs_layers: p.fs_layers.len(),
            history: p.history.len(),
        }
        .into());
    }
    let compat = p
        .history
        .iter()
        .map(|h| json::<V1Compat>("schema1 v1Compatibility", h.v1_compatibility.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    // fsLayers are listed top first; throwaway entries are empty layers that were never pushed.
    let mut layers = Vec::new();
    for (fs, c) in p.fs_layers.iter().zip(&compat).rev() {
        if c.throwaway {
            continue;
        }
        let digest = fs
            .blob_sum
            .parse()
            .map_err(|source| ManifestError::Digest {
                what: "schema1 blobSum".into(),
                source,
            })?;
        layers.push(Layer {
            blob: Descriptor {
                media_type: LAYER_TYPE.to_string(),
                digest,
                size: None,
            },
            compression: Compression::Gzip,
            diff_id: None,
        });
    }
    if layers.is_empty() {
        return Err(ManifestError::NoLayers);
    }
    let top = compat.into_iter().next().unwrap_or_default();
    let cfg = top.config.unwrap_or_default();
    let config = RuntimeConfig {
        entrypoint: cfg.entrypoint.unwrap_or_default(),
        cmd: cfg.cmd.unwrap_or_default(),
        env: cfg.env.unwrap_or_default(),
        user: cfg.user.filter(|u| !u.is_empty()),
        working_dir: cfg.working_dir.filter(|w| !w.is_empty()),
    };
    let platform = Platform {
        os: top.os.unwrap_or_else(|| "linux".into()),
        architecture: top
            .architecture
            .or(p.architecture)
            .unwrap_or_else(|| "amd64".into()),
        variant: None,
    };
    Ok((
        canonical,
        super::Schema1Image {
            layers,
            config,
            platform,
        },
    ))
}
