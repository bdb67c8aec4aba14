//! cosign signatures: ECDSA P-256 with SHA-256 over the payload bytes, the signature (ASN.1 DER,
//! base64) in the layer annotation `dev.cosignproject.cosign/signature`.

use base64::Engine as _;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use thiserror::Error;

/// The media type of a cosign simple-signing attachment layer.
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation that holds the signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CosignError {
    #[error("{what} is not a PEM ECDSA P-256 public key (skiff verifies cosign keys of that kind): {why}")]
    Key { what: String, why: String },
    #[error("the annotation {SIGNATURE_ANNOTATION} is missing")]
    NoSignature,
    #[error("the signature is not base64-encoded ASN.1 DER: {0}")]
    Malformed(String),
    #[error("not signed by any key the policy trusts ({tried})")]
    Untrusted { tried: String },
}

/// A trusted cosign public key and how it is named in messages.
#[derive(Clone, Debug)]
pub struct Key {
    key: VerifyingKey,
    pub id: String,
}

impl Key {
    /// Reads a PEM `PUBLIC KEY` (as `cosign generate-key-pair` and openssl write it).
    pub fn parse_pem(pem: &[u8], what: &str) -> Result<Key, CosignError> {
        let bad = |why: String| CosignError::Key {
            what: what.to_string(),
            why,
        };
        let text = std::str::from_utf8(pem).map_err(|e| bad(e.to_string()))?;
        let key =
            p256::PublicKey::from_public_key_pem(text.trim()).map_err(|e| bad(e.to_string()))?;
        let der = key.to_public_key_der().map_err(|e| bad(e.to_string()))?;
        let id = crate::reference::Digest::of(der.as_bytes());
        Ok(Key {
            key: VerifyingKey::from(key),
            id: format!("ECDSA P-256 {}", &id.to_string()[..23]),
        })
    }
}

/// Verifies `signature_b64` over `payload` with one of `keys`; the key that verified it.
pub fn verify<'k>(
    payload: &[u8],
    signature_b64: Option<&str>,
    keys: &'k [Key],
) -> Result<&'k Key, CosignError> {
    let b64 = signature_b64.ok_or(CosignError::NoSignature)?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim().as_bytes())
        .map_err(|e| CosignError::Malformed(e.to_string()))?;
    let sig = DerSignature::try_from(der.as_slice())
        .map_err(|e| CosignError::Malformed(e.to_string()))?;
    keys.iter()
        .find(|k| k.key.verify(payload, &sig).is_ok())
        .ok_or_else(|| CosignError::Untrusted {
            tried: keys
                .iter()
                .map(|k| k.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A P-256 key and a DER signature over b"payload", made with openssl.
    const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsCGLum1V7UcNLLqHdST2me/JSV6A\nvrHn+EVdhbOmrnEsj2MRmRUQrQbWk0WKPFLNRQNenHJjy15ccq8ubwUyVw==\n-----END PUBLIC KEY-----\n";
    const SIG: &str = "MEUCIBpJdvBLHNXHdt8A5aDvuCRRTYLfjnZ8Ggn/SkYGh5IMAiEA8+H/BHMpVa4MqtPKZcgkhd80WaGSeP1h0n/vMu43INw=";

    #[test]
    fn a_signature_made_by_openssl_verifies_and_nothing_else_does() {
        let keys = vec![Key::parse_pem(PEM.as_bytes(), "k").unwrap()];
        assert_eq!(verify(b"payload", Some(SIG), &keys).unwrap().id, keys[0].id);
        assert!(keys[0].id.starts_with("ECDSA P-256 sha256:"));
        assert!(matches!(
            verify(b"payloaD", Some(SIG), &keys),
            Err(CosignError::Untrusted { .. })
        ));
        assert!(matches!(
            verify(b"payload", Some(SIG), &[]),
            Err(CosignError::Untrusted { .. })
        ));
    }

    #[test]
    fn hostile_keys_and_signatures_are_refused() {
        assert!(Key::parse_pem(b"not pem", "k").is_err());
        assert!(Key::parse_pem(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "k"
        )
        .is_err());
        assert!(Key::parse_pem(&[0xff, 0xfe], "k").is_err());
        let keys = vec![Key::parse_pem(PEM.as_bytes(), "k").unwrap()];
        assert!(matches!(
            verify(b"x", None, &keys),
            Err(CosignError::NoSignature)
        ));
        assert!(matches!(
            verify(b"x", Some("!!"), &keys),
            Err(CosignError::Malformed(_))
        ));
        assert!(matches!(
            verify(b"x", Some("MAYCAQECAQE="), &keys),
            Err(CosignError::Untrusted { .. })
        ));
        assert!(matches!(
            verify(b"x", Some("AAAA"), &keys),
            Err(CosignError::Malformed(_))
        ));
    }
}
