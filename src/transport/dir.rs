//! skopeo's `dir:` transport: `version`, `manifest.json`, blobs named by their hex digest, and
//! the manifest's signatures as `signature-1`, `signature-2`, … (`<hex>.manifest.json` and
//! `<hex>.signature-N` for the instances of a multi-platform copy).

use std::io::Read;

use serde::{Deserialize, Serialize};

use super::files::{read_small, Files};
use super::TransportError;
use crate::manifest::{Descriptor, MAX_DOCUMENT_BYTES};
use crate::pull::{LocalError, LocalSource, Top};
use crate::reference::Digest;
use crate::trust::{signatures_limit, Attachment, Signatures};

pub const VERSION: &str = "Directory Transport Version: 1.1\n";
/// containers/image marks every signature format but the oldest with a prefix.
const SIMPLE_PREFIX: &[u8] = b"\x00simple-signing\n";
const SIGSTORE_PREFIX: &[u8] = b"\x00sigstore-json\n";
/// More signatures than any image has; the listing stops here.
const MAX_SIGNATURES: usize = 64;

/// A sigstore signature as containers/image stores it outside a registry.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sigstore {
    mime_type: String,
    payload: crate::trust::B64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// A `dir:` copy: the top manifest is `manifest.json`.
pub struct DirSource<F> {
    pub files: F,
    pub location: String,
    top: Digest,
}

impl<F: Files> DirSource<F> {
    /// Checks the version file and reads which manifest the copy holds.
    pub fn open(files: F, location: String) -> Result<(DirSource<F>, Top), TransportError> {
        let src = files.path().to_path_buf();
        let version =
            read_small(&files, "version", 4096)?.ok_or_else(|| TransportError::Missing {
                source_path: src.clone(),
                member: "version (not a dir: copy)".into(),
            })?;
        if !version.starts_with(b"Directory Transport Version: 1.") {
            return Err(TransportError::Choice {
                source_path: src,
                why: format!("version says {:?}", String::from_utf8_lossy(&version)),
            });
        }
        let manifest =
            read_small(&files, "manifest.json", MAX_DOCUMENT_BYTES)?.ok_or_else(|| {
                TransportError::Missing {
                    source_path: src.clone(),
                    member: "manifest.json".into(),
                }
            })?;
        let top = Digest::of(&manifest);
        let t = Top {
            digest: top.clone(),
            size: Some(manifest.len() as u64),
            media_type: None,
        };
        Ok((
            DirSource {
                files,
                location,
                top,
            },
            t,
        ))
    }

    /// The file a document or signature of `digest` is in: the top's are unprefixed.
    fn prefix(&self, digest: &Digest) -> String {
        if *digest == self.top {
            String::new()
        } else {
            format!("{}.", digest.hex())
        }
    }

    fn missing(&self, member: String) -> TransportError {
        TransportError::Missing {
            source_path: self.files.path().to_path_buf(),
            member,
        }
    }
}

/// One signature file's bytes as the trust room keeps them.
pub fn parse_signature(bytes: &[u8], sigs: &mut Signatures) -> Result<(), String> {
    if let Some(rest) = bytes.strip_prefix(SIMPLE_PREFIX) {
        sigs.simple.push(crate::trust::B64(rest.to_vec()));
    } else if let Some(rest) = bytes.strip_prefix(SIGSTORE_PREFIX) {
        let s: Sigstore = serde_json::from_slice(rest).map_err(|e| e.to_string())?;
        sigs.sigstore.push(Attachment {
            media_type: s.mime_type,
            payload: s.payload,
            annotations: s.annotations,
        });
    } else if bytes.first() == Some(&0) {
        return Err("is in a signature format skiff does not know".into());
    } else {
        // The oldest form: a bare OpenPGP message.
        sigs.simple.push(crate::trust::B64(bytes.to_vec()));
    }
    Ok(())
}

/// Signature files' bytes, as skopeo writes them (simple signing unprefixed, as it does).
pub fn signature_files(sigs: &Signatures) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = sigs.simple.iter().map(|s| s.0.clone()).collect();
    for a in &sigs.sigstore {
        let s = Sigstore {
            mime_type: a.media_type.clone(),
            payload: a.payload.clone(),
            annotations: a.annotations.clone(),
        };
        let mut b = SIGSTORE_PREFIX.to_vec();
        b.extend(serde_json::to_vec(&s).unwrap_or_default());
        out.push(b);
    }
    out
}

impl<F: Files> LocalSource for DirSource<F> {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn document(&self, digest: &Digest) -> Result<Vec<u8>, LocalError> {
        let name = format!("{}manifest.json", self.prefix(digest));
        Ok(
            read_small(&self.files, &name, MAX_DOCUMENT_BYTES)?
                .ok_or_else(|| self.missing(name))?,
        )
    }

    fn blob(&self, d: &Descriptor) -> Result<Box<dyn Read + '_>, LocalError> {
        let name = d.digest.hex().to_string();
        let o = self.files.open(&name)?.ok_or_else(|| self.missing(name))?;
        Ok(o.reader)
    }

    fn signatures(&self, digest: &Digest) -> Result<Signatures, LocalError> {
        let prefix = self.prefix(digest);
        let mut sigs = Signatures {
            looked: vec![format!("{}/{prefix}signature-N", self.location)],
            ..Signatures::default()
        };
        for i in 1..=MAX_SIGNATURES {
            let name = format!("{prefix}signature-{i}");
            let Some(bytes) = read_small(&self.files, &name, signatures_limit())? else {
                break;
            };
            parse_signature(&bytes, &mut sigs).map_err(|why| TransportError::Hostile {
                source_path: self.files.path().to_path_buf(),
                member: name,
                why,
            })?;
        }
        Ok(sigs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_formats_round_trip_and_unknown_ones_are_refused() {
        let mut s = Signatures::default();
        parse_signature(b"\xa3\x01gpg", &mut s).unwrap();
        parse_signature(b"\x00simple-signing\n\x89gpg", &mut s).unwrap();
        let sig = br#"{"mimeType":"application/vnd.dev.cosign.simplesigning.v1+json","payload":"e30=","annotations":{"dev.cosignproject.cosign/signature":"x"}}"#;
        let mut b = SIGSTORE_PREFIX.to_vec();
        b.extend_from_slice(sig);
        parse_signature(&b, &mut s).unwrap();
        assert_eq!(s.simple.len(), 2);
        assert_eq!(s.sigstore[0].payload.0, b"{}");
        let mut again = Signatures::default();
        for f in signature_files(&s) {
            parse_signature(&f, &mut again).unwrap();
        }
        assert_eq!(again.simple, s.simple);
        assert_eq!(again.sigstore, s.sigstore);
        assert!(parse_signature(b"\x00other\n", &mut s).is_err());
        assert!(parse_signature(b"\x00sigstore-json\n{", &mut s).is_err());
    }
}
