//! The signatures of one manifest, as fetched and as kept in the store (JSON, bytes base64).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Kept signatures are a few KiB; this bounds what is read back.
pub const MAX_STORED_BYTES: u64 = 16 << 20;

/// Bytes that travel as base64 in JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct B64(pub Vec<u8>);

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<B64, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(B64)
            .map_err(serde::de::Error::custom)
    }
}

/// A cosign attachment layer: its media type, payload, and annotations (the signature).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub media_type: String,
    pub payload: B64,
    pub annotations: BTreeMap<String, String>,
}

/// The signatures found for one manifest digest, and where they were looked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signatures {
    /// GPG simple-signing signatures, in lookaside order.
    pub simple: Vec<B64>,
    /// cosign attachment layers, in manifest order.
    pub sigstore: Vec<Attachment>,
    /// The places searched (lookaside URLs, attachment tags), for messages.
    pub looked: Vec<String>,
}

impl Signatures {
    pub fn is_empty(&self) -> bool {
        self.simple.is_empty() && self.sigstore.is_empty()
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Signatures, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
