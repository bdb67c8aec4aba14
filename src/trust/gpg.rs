//! GPG simple signing: an OpenPGP signed message (as `gpg --sign` and `skopeo --sign-by` write
//! it, binary: usually compressed, one-pass signed, literal data) whose literal data is the
//! payload.
//! rPGP does the cryptography; this module decides which key may have made it.

use std::io::Read;

use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::packet::{Packet, PacketParser, PacketTrait, Signature};
use pgp::types::KeyDetails;
use thiserror::Error;

use super::payload::MAX_PAYLOAD_BYTES;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GpgError {
    #[error("not an OpenPGP signed message: {0}")]
    Malformed(String),
    #[error("the OpenPGP message is not signed")]
    NotSigned,
    #[error("the signed data is larger than {MAX_PAYLOAD_BYTES} bytes")]
    TooLarge,
    #[error("signed by key {issuer}, which the policy does not trust")]
    Untrusted { issuer: String },
    #[error("bad signature: it names key {key}, but does not verify with it ({why})")]
    Bad { key: String, why: String },
    #[error("the signature by key {key} expired at {at}")]
    Expired { key: String, at: String },
    #[error("signed by key {key}, which {why}")]
    Unusable { key: String, why: String },
    #[error("no OpenPGP public key in {what}: {why}")]
    Keyring { what: String, why: String },
}

/// Trusted public keys (a keyring file may hold several).
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

/// A signature that verified: the payload it signs and the primary key that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub payload: Vec<u8>,
    /// The primary key's fingerprint, upper-case hex, as gpg prints it.
    pub key: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn is_armored(bytes: &[u8]) -> bool {
    bytes.trim_ascii_start().starts_with(b"-----BEGIN PGP")
}

impl Keyring {
    /// Reads keys, armored or binary (`gpg --export [--armor]`); `what` names the source.
    /// Keys whose self-signatures or subkey bindings do not verify are refused.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Keyring, GpgError> {
        let bad = |why: String| GpgError::Keyring {
            what: what.to_string(),
            why,
        };
        let keys: Vec<_> = if is_armored(bytes) {
            let (keys, _) =
                SignedPublicKey::from_armor_many(bytes).map_err(|e| bad(e.to_string()))?;
            keys.collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?
        } else {
            SignedPublicKey::from_bytes_many(bytes)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?
        };
        if keys.is_empty() {
            return Err(bad("the file holds no key".into()));
        }
        for k in &keys {
            k.verify_bindings().map_err(|e| {
                bad(format!(
                    "key {}: its self-signatures do not verify: {e}",
                    hex(k.fingerprint().as_bytes())
                ))
            })?;
        }
        Ok(Keyring { keys })
    }

    /// Adds another keyring's keys.
    pub fn extend(&mut self, other: Keyring) {
        self.keys.extend(other.keys);
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| hex(k.fingerprint().as_bytes()))
            .collect()
    }
}

/// Why a key may vouch for nothing now, as gpg judges it: revoked, or expired by today's date
/// (whenever the signature was made).
fn unusable(key: &SignedPublicKey, now: u64) -> Option<String> {
    if !key.details.revocation_signatures.is_empty() {
        return Some("is revoked".into());
    }
    // The newest self-signature says when the key expires (if it says nothing, it does not).
    let latest = key
        .details
        .users
        .iter()
        .flat_map(|u| &u.signatures)
        .chain(&key.details.direct_signatures)
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))?;
    let secs = u64::from(latest.key_expiration_time()?.as_secs());
    let expiry = u64::from(key.created_at().as_secs()) + secs;
    (secs > 0 && now >= expiry).then(|| format!("expired at {}", crate::logging::rfc3339(expiry)))
}

/// When a signature that carries its own expiry stopped being valid, if it has.
fn expired_signature(sig: &Signature, now: u64) -> Option<String> {
    let secs = u64::from(sig.signature_expiration_time()?.as_secs());
    let end = u64::from(sig.created()?.as_secs()) + secs;
    (secs > 0 && now >= end).then(|| crate::logging::rfc3339(end))
}

/// A signed message's packets are few: (compressed) one-pass signature, literal data, signature.
const MAX_PACKETS: usize = 16;

/// The packets of an OpenPGP message, bounded in number.
fn packets(bytes: &[u8]) -> Result<Vec<Packet>, GpgError> {
    let mut out = Vec::new();
    for p in PacketParser::new(bytes) {
        let p = p.map_err(|e| GpgError::Malformed(e.to_string()))?;
        if out.len() == MAX_PACKETS {
            return Err(GpgError::Malformed(format!(
                "more than {MAX_PACKETS} packets"
            )));
        }
        out.push(p);
    }
    Ok(out)
}

/// The literal data and the one signature of a (decompressed) signed message. Read packet by
/// packet: the message readers would link rPGP's whole decryption stack into skiff.
fn signed_data(signature: &[u8]) -> Result<(Vec<u8>, Signature), GpgError> {
    let mut pkts = packets(signature)?;
    if let [Packet::CompressedData(c)] = pkts.as_slice() {
        let mut data = Vec::new();
        c.decompress()
            .map_err(|e| GpgError::Malformed(e.to_string()))?
            .take(MAX_PAYLOAD_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|e| GpgError::Malformed(format!("decompressing: {e}")))?;
        if data.len() as u64 > MAX_PAYLOAD_BYTES {
            return Err(GpgError::TooLarge);
        }
        pkts = packets(&data)?;
    }
    let mut literal = None;
    let mut sig = None;
    for p in pkts {
        match p {
            Packet::LiteralData(l) if literal.is_none() => literal = Some(l),
            Packet::Signature(s) if sig.is_none() => sig = Some(s),
            Packet::OnePassSignature(_) | Packet::Marker(_) | Packet::Padding(_) => {}
            other => {
                return Err(GpgError::Malformed(format!(
                    "unexpected {:?} packet in a signed message",
                    other.tag()
                )))
            }
        }
    }
    match (literal, sig) {
        (Some(l), Some(s)) => Ok((l.data().to_vec(), s)),
        (Some(_), None) => Err(GpgError::NotSigned),
        (None, _) => Err(GpgError::Malformed("no literal data".into())),
    }
}

/// Verifies a simple-signing signature against `keyring`: the payload and the key that made it.
pub fn verify(signature: &[u8], keyring: &Keyring) -> Result<Verified, GpgError> {
    let (payload, sig) = signed_data(signature)?;
    if payload.len() as u64 > MAX_PAYLOAD_BYTES {
        return Err(GpgError::TooLarge);
    }
    let ids: Vec<String> = sig
        .issuer_key_id()
        .iter()
        .map(|k| hex(k.as_ref()))
        .collect();
    let fprs: Vec<String> = sig
        .issuer_fingerprint()
        .iter()
        .map(|f| hex(f.as_bytes()))
        .collect();
    let names = |fpr: &str, id: &str| fprs.iter().any(|f| f == fpr) || ids.iter().any(|i| i == id);
    let mut named = None;
    for key in &keyring.keys {
        let primary = hex(key.fingerprint().as_bytes());
        let subkeys = key.public_subkeys.iter().map(|s| {
            let fpr = hex(s.fingerprint().as_bytes());
            (fpr, hex(s.legacy_key_id().as_ref()), Some(s))
        });
        let candidates =
            std::iter::once((primary.clone(), hex(key.legacy_key_id().as_ref()), None))
                .chain(subkeys);
        for (fpr, id, subkey) in candidates {
            // Only keys the signature names are tried: each try is a public-key operation.
            if !names(&fpr, &id) {
                continue;
            }
            let verified = match subkey {
                None => sig.verify(key, payload.as_slice()),
                Some(s) => s
                    .verify_bindings(&key.primary_key)
                    .and_then(|()| sig.verify(s, payload.as_slice())),
            };
            if let Err(e) = verified {
                named = Some((fpr, e.to_string()));
                continue;
            }
            let now = crate::logging::now();
            if let Some(why) = unusable(key, now) {
                return Err(GpgError::Unusable { key: primary, why });
            }
            if let Some(at) = expired_signature(&sig, now) {
                return Err(GpgError::Expired { key: primary, at });
            }
            return Ok(Verified {
                payload,
                key: primary,
            });
        }
    }
    Err(match named {
        Some((key, why)) => GpgError::Bad { key, why },
        None => GpgError::Untrusted {
            issuer: fprs
                .first()
                .or(ids.first())
                .cloned()
                .unwrap_or_else(|| "(unnamed)".into()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let ring = Keyring { keys: vec![] };
        for input in [
            &b""[..],
            b"\x00",
            b"\xa3\x01",
            b"\x90\x0d\x03\x00",
            b"-----BEGIN PGP MESSAGE-----\n\n=AAAA\n-----END PGP MESSAGE-----\n",
            &[0xffu8; 64],
        ] {
            assert!(verify(input, &ring).is_err(), "{input:?}");
        }
        for input in [
            &b""[..],
            b"\x99\x00\x01",
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n",
        ] {
            assert!(Keyring::parse(input, "test").is_err(), "{input:?}");
        }
    }
}
