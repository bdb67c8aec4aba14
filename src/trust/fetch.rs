//! Fetching a manifest's signatures: the lookaside (`file://`, `http(s)://`), signature-1,
//! signature-2, … until the first missing one; and cosign attachments (the tag
//! `sha256-HEX.sig` in the image's repository, one layer per signature). Every read is bounded.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::signatures::{Attachment, Signatures, B64};
use super::{lookaside_url, Sources, TrustError};
use crate::manifest::Descriptor;
use crate::reference::{Digest, Reference};
use crate::registry::{Client, RegistryError, Repo};

/// A signature is a few KiB; containers/image allows 4 MiB.
pub const MAX_SIGNATURE_BYTES: u64 = 4 << 20;
/// containers/image's bound on lookaside signatures per manifest.
const MAX_LOOKASIDE: usize = 128;
/// A bound on attachment layers, so a hostile registry cannot make skiff fetch without end.
const MAX_ATTACHMENTS: usize = 128;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn fetch_err(location: &str, e: impl std::error::Error + Send + Sync + 'static) -> TrustError {
    TrustError::Fetch {
        location: location.to_string(),
        source: Box::new(e),
    }
}

/// Fetches the signatures of `digest` (a manifest of `image`) from `sources`.
pub fn fetch(
    client: &Client,
    repo: &Repo,
    sources: &Sources,
    image: &Reference,
    digest: &Digest,
) -> Result<Signatures, TrustError> {
    let mut out = Signatures::default();
    out.looked
        .push(lookaside_url(&sources.lookaside, image, digest, 1));
    for n in 1.. {
        let url = lookaside_url(&sources.lookaside, image, digest, n);
        if n > MAX_LOOKASIDE {
            return Err(fetch_err(
                &url,
                std::io::Error::other(format!("more than {MAX_LOOKASIDE} signatures")),
            ));
        }
        match read_lookaside(client, &url)? {
            Some(sig) => out.simple.push(B64(sig)),
            None => break,
        }
    }
    if sources.attachments {
        let tag = format!("sha256-{}.sig", digest.hex());
        out.looked.push(format!("{}:{tag}", image.name()));
        out.sigstore = attachments(repo, &tag, &format!("{}:{tag}", image.name()))?;
    }
    Ok(out)
}

/// One lookaside signature: `None` when there is no such file (the end of the list).
fn read_lookaside(client: &Client, url: &str) -> Result<Option<Vec<u8>>, TrustError> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(fetch_err(
                url,
                std::io::Error::other("a file:// lookaside must be an absolute path"),
            ));
        }
        return match super::read_bounded(std::path::Path::new(path), MAX_SIGNATURE_BYTES) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fetch_err(url, e)),
        };
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return client
            .get_url(url, MAX_SIGNATURE_BYTES)
            .map_err(|e| fetch_err(url, e));
    }
    Err(fetch_err(
        url,
        std::io::Error::other("unsupported lookaside URL scheme (file://, http:// or https://)"),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttachmentManifest {
    media_type: Option<String>,
    #[serde(default)]
    layers: Vec<AttachmentLayer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttachmentLayer {
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The layers of a cosign attachment manifest, each fetched and checked against its digest.
fn attachments(repo: &Repo, tag: &str, location: &str) -> Result<Vec<Attachment>, TrustError> {
    let fetched = match repo.manifest(tag) {
        Ok(f) => f,
        Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(fetch_err(location, e)),
    };
    let m: AttachmentManifest =
        serde_json::from_slice(&fetched.body).map_err(|e| fetch_err(location, e))?;
    let declared = m.media_type.as_deref().or(fetched.content_type.as_deref());
    if declared.and_then(|t| t.split(';').next()).map(str::trim) != Some(OCI_MANIFEST) {
        return Err(fetch_err(
            location,
            std::io::Error::other(format!(
                "an attachment must be an OCI image manifest, not {declared:?}"
            )),
        ));
    }
    if m.layers.len() > MAX_ATTACHMENTS {
        return Err(fetch_err(
            location,
            std::io::Error::other(format!("more than {MAX_ATTACHMENTS} layers")),
        ));
    }
    let mut out = Vec::new();
    for l in m.layers {
        if l.size > MAX_SIGNATURE_BYTES {
            return Err(fetch_err(
                location,
                std::io::Error::other(format!(
                    "layer {} is {} bytes, more than {MAX_SIGNATURE_BYTES}",
                    l.digest, l.size
                )),
            ));
        }
        let d = Descriptor {
            media_type: l.media_type.clone(),
            digest: l.digest.clone(),
            size: Some(l.size),
        };
        let payload = repo.small_blob(&d).map_err(|e| fetch_err(location, e))?;
        let actual = Digest::of(&payload);
        if actual != l.digest || payload.len() as u64 != l.size {
            return Err(fetch_err(
                location,
                std::io::Error::other(format!(
                    "layer {} has digest {actual} and {} bytes",
                    l.digest,
                    payload.len()
                )),
            ));
        }
        out.push(Attachment {
            media_type: l.media_type,
            payload: B64(payload),
            annotations: l.annotations,
        });
    }
    Ok(out)
}
