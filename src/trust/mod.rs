//! Trust: whether the operator's policy lets an image run, by who signed its manifest.
//!
//! Reads containers-policy.json(5) (`--policy`, else `/etc/containers/policy.json`) and
//! containers-registries.d(5) (`--registries.d`, else `/etc/containers/registries.d`), as podman
//! and skopeo do; fetches GPG simple signatures from a lookaside and cosign signatures from
//! attachments; verifies them; and keeps them in the store so every start re-verifies offline.
//! With no policy file at all, everything is accepted (and the debug log says so).

mod cosign;
mod evaluate;
mod fetch;
mod gpg;
mod identity;
pub mod json;
mod payload;
mod policy;
mod registries_d;
mod signatures;

use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use cosign::{
    verify as verify_cosign, CosignError, Key as CosignKey, SIGNATURE_ANNOTATION,
    SIGNATURE_MEDIA_TYPE,
};
pub use evaluate::{evaluate, Accepted, Check, Outcome, Verdict};
pub use fetch::fetch;
pub use gpg::{verify as verify_gpg, GpgError, Keyring, Verified};
pub use identity::IdentityRule;
pub use payload::{parse as parse_payload, Claim, COSIGN, SIMPLE_SIGNING};
pub use policy::{Keys, Policy, Requirement, Scope, DEFAULT_POLICY};
pub use registries_d::{lookaside_url, RegistriesD, Sources, DEFAULT_REGISTRIES_D};
pub use signatures::{Attachment, Signatures, B64};

use crate::reference::Reference;

#[derive(Debug, Error)]
pub enum TrustError {
    #[error("reading the policy {path}")]
    PolicyRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the policy {path} is invalid")]
    Policy {
        path: PathBuf,
        #[source]
        source: json::FieldError,
    },
    #[error("reading the signature configuration {path}")]
    RegistriesRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the signature configuration {path} is invalid: {why}")]
    Registries { path: PathBuf, why: String },
    #[error("reading signatures from {location}")]
    Fetch {
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The most bytes of kept signatures the store reads back for one manifest.
pub fn signatures_limit() -> u64 {
    signatures::MAX_STORED_BYTES
}

/// Reads at most `limit` bytes of a file; a longer one is an error, not a truncation.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than the {limit} bytes allowed"
        )));
    }
    Ok(buf)
}

/// The trust configuration in force for this run, resolved once.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    policy: Option<Policy>,
    registries_d: PathBuf,
}

impl Trust {
    /// Reads the policy from `policy` (an error if it cannot be read), else the default file
    /// when it exists; with neither, everything is accepted.
    pub fn load(policy: Option<&Path>, registries_d: Option<&Path>) -> Result<Trust, TrustError> {
        let policy = match policy {
            Some(p) => Some(Policy::load(p)?),
            None if Path::new(DEFAULT_POLICY).exists() => {
                Some(Policy::load(Path::new(DEFAULT_POLICY))?)
            }
            None => {
                tracing::debug!(
                    default = DEFAULT_POLICY,
                    "no signature policy (--policy, or the default file); accepting every image"
                );
                None
            }
        };
        Ok(Trust {
            policy,
            registries_d: registries_d
                .unwrap_or(Path::new(DEFAULT_REGISTRIES_D))
                .to_path_buf(),
        })
    }

    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// Where `image`'s signatures are (reads registries.d).
    pub fn sources(&self, image: &Reference) -> Result<Sources, TrustError> {
        Ok(RegistriesD::load(&self.registries_d)?.sources(image))
    }
}
