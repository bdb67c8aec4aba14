//! A policy's requirements against an image's signatures: a verdict that says, for each
//! requirement, which signature satisfied it and with which key, or why none did.

use std::fmt;
use std::path::PathBuf;

use super::cosign::{self, SIGNATURE_ANNOTATION, SIGNATURE_MEDIA_TYPE};
use super::gpg::{self, Keyring};
use super::identity::IdentityRule;
use super::payload::{self, COSIGN, SIMPLE_SIGNING};
use super::policy::{Keys, Requirement, Scope};
use super::signatures::Signatures;
use crate::reference::{Digest, Reference};

/// Key files are small; a keyring of many keys is still far below this.
const MAX_KEY_BYTES: u64 = 4 << 20;

/// A signature that satisfied a requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// "GPG" or "cosign".
    pub kind: &'static str,
    /// The key that verified it (a GPG fingerprint, or a cosign key's SPKI digest).
    pub key: String,
    pub digest: Digest,
    /// The identity it was signed for.
    pub identity: String,
}

/// One signature checked against one requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Which signature: "GPG signature 1 of sha256:…", "cosign attachment 2 of sha256:…".
    pub signature: String,
    pub result: Result<Accepted, String>,
}

/// One requirement's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub requirement: String,
    /// The signature that satisfied it (`None` for requirements that need none), or why not.
    pub result: Result<Option<Accepted>, String>,
    pub checks: Vec<Check>,
}

/// The policy's answer for one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub image: String,
    pub policy: PathBuf,
    pub scope: Scope,
    pub outcomes: Vec<Outcome>,
}

impl Verdict {
    /// Every requirement of the scope holds.
    pub fn accepted(&self) -> bool {
        self.outcomes.iter().all(|o| o.result.is_ok())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.accepted() {
            "accepts"
        } else {
            "refuses"
        };
        write!(
            f,
            "the policy {} {verb} {} (scope {})",
            self.policy.display(),
            self.image,
            self.scope
        )?;
        let mut sep = ": ";
        for o in &self.outcomes {
            match &o.result {
                Err(why) => write!(f, "{sep}{}: {why}", o.requirement)?,
                Ok(_) if self.accepted() => write!(f, "{sep}{}: satisfied", o.requirement)?,
                Ok(_) => continue,
            }
            sep = "; ";
        }
        Ok(())
    }
}

/// Checks `requirements` for `image`, whose manifests (the one the reference names and, for
/// an index, the platform's) have the signatures in `signed`.
pub fn evaluate(
    image: &Reference,
    policy: PathBuf,
    scope: Scope,
    requirements: &[Requirement],
    signed: &[(Digest, &Signatures)],
) -> Verdict {
    let outcomes = requirements
        .iter()
        .map(|r| {
            let (result, checks) = match r {
                Requirement::InsecureAcceptAnything => (Ok(None), vec![]),
                Requirement::Reject => (
                    Err("the policy rejects every image in this scope".to_string()),
                    vec![],
                ),
                Requirement::SignedBaseLayer => (
                    Err(
                        "signedBaseLayer is not implemented (by containers/image either)"
                            .to_string(),
                    ),
                    vec![],
                ),
                Requirement::SignedByUnsupported { key_type } => (
                    Err(format!("keyType {key_type} is not supported (GPGKeys is)")),
                    vec![],
                ),
                Requirement::SignedBy { keys, identity } => {
                    gpg_requirement(image, keys, identity, signed)
                }
                Requirement::SigstoreSigned { keys, identity } => {
                    cosign_requirement(image, keys, identity, signed)
                }
            };
            Outcome {
                requirement: r.to_string(),
                result,
                checks,
            }
        })
        .collect();
    Verdict {
        image: image.to_string(),
        policy,
        scope,
        outcomes,
    }
}

/// The key files' (or inline keys') bytes, each named.
fn key_bytes(keys: &Keys) -> Result<Vec<(String, Vec<u8>)>, String> {
    match keys {
        Keys::Paths(paths) => paths
            .iter()
            .map(|p| {
                super::read_bounded(p, MAX_KEY_BYTES)
                    .map(|b| (p.display().to_string(), b))
                    .map_err(|e| format!("cannot read the key file {}: {e}", p.display()))
            })
            .collect(),
        Keys::Data(d) => Ok(d
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("keyData {}", i + 1), b.clone()))
            .collect()),
    }
}

/// The claim's digest must be the manifest's, and its identity must satisfy the rule.
fn check_claim(
    image: &Reference,
    identity: &IdentityRule,
    digest: &Digest,
    claim: payload::Claim,
    kind: &'static str,
    key: String,
) -> Result<Accepted, String> {
    if claim.digest != *digest {
        return Err(format!(
            "signed for docker-manifest-digest {}, not this manifest {digest}",
            claim.digest
        ));
    }
    if !identity.matches(image, &claim.reference) {
        return Err(format!(
            "signed for identity {}, which does not match {image} (signedIdentity {identity})",
            claim.reference
        ));
    }
    Ok(Accepted {
        kind,
        key,
        digest: claim.digest,
        identity: claim.reference,
    })
}

type Evaluated = (Result<Option<Accepted>, String>, Vec<Check>);

/// One accepted check satisfies the requirement; otherwise every reason is given.
fn conclude(checks: Vec<Check>, none_found: impl FnOnce() -> String) -> Evaluated {
    if let Some(a) = checks.iter().find_map(|c| c.result.as_ref().ok()) {
        return (Ok(Some(a.clone())), checks);
    }
    if checks.is_empty() {
        return (Err(none_found()), checks);
    }
    let reasons: Vec<String> = checks
        .iter()
        .filter_map(|c| {
            c.result
                .as_ref()
                .err()
                .map(|e| format!("{}: {e}", c.signature))
        })
        .collect();
    (Err(reasons.join("; ")), checks)
}

fn looked(signed: &[(Digest, &Signatures)]) -> String {
    let places: Vec<&str> = signed
        .iter()
        .flat_map(|(_, s)| s.looked.iter().map(String::as_str))
        .collect();
    if places.is_empty() {
        "no signature kept in the store for this image (pulled before the policy asked for one?); \
         `skiff pull` or a run without --pull=never fetches its signatures"
            .to_string()
    } else {
        format!("no signature found at {}", places.join(", "))
    }
}

fn gpg_requirement(
    image: &Reference,
    keys: &Keys,
    identity: &IdentityRule,
    signed: &[(Digest, &Signatures)],
) -> Evaluated {
    let ring = key_bytes(keys).and_then(|files| {
        let mut ring: Option<Keyring> = None;
        for (name, bytes) in files {
            let k = Keyring::parse(&bytes, &name).map_err(|e| e.to_string())?;
            match &mut ring {
                Some(r) => r.extend(k),
                None => ring = Some(k),
            }
        }
        ring.ok_or_else(|| "no key given".to_string())
    });
    let ring = match ring {
        Ok(r) => r,
        Err(e) => return (Err(e), vec![]),
    };
    let mut checks = Vec::new();
    for (digest, sigs) in signed {
        for (i, sig) in sigs.simple.iter().enumerate() {
            let result = gpg::verify(&sig.0, &ring)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    let claim =
                        payload::parse(&v.payload, SIMPLE_SIGNING).map_err(|e| e.to_string())?;
                    check_claim(image, identity, digest, claim, "GPG", v.key)
                });
            checks.push(Check {
                signature: format!("GPG signature {} of {digest}", i + 1),
                result,
            });
        }
    }
    conclude(checks, || looked(signed))
}

fn cosign_requirement(
    image: &Reference,
    keys: &Keys,
    identity: &IdentityRule,
    signed: &[(Digest, &Signatures)],
) -> Evaluated {
    let keys = key_bytes(keys).and_then(|files| {
        files
            .iter()
            .map(|(name, pem)| cosign::Key::parse_pem(pem, name).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()
    });
    let keys = match keys {
        Ok(k) => k,
        Err(e) => return (Err(e), vec![]),
    };
    let mut checks = Vec::new();
    let mut others = 0;
    for (digest, sigs) in signed {
        for (i, att) in sigs.sigstore.iter().enumerate() {
            if att.media_type != SIGNATURE_MEDIA_TYPE {
                others += 1;
                continue;
            }
            let sig = att
                .annotations
                .get(SIGNATURE_ANNOTATION)
                .map(String::as_str);
            let result = cosign::verify(&att.payload.0, sig, &keys)
                .map_err(|e| e.to_string())
                .and_then(|key| {
                    let claim =
                        payload::parse(&att.payload.0, COSIGN).map_err(|e| e.to_string())?;
                    check_claim(image, identity, digest, claim, "cosign", key.id.clone())
                });
            checks.push(Check {
                signature: format!("cosign attachment {} of {digest}", i + 1),
                result,
            });
        }
    }
    let gpg_count: usize = signed.iter().map(|(_, s)| s.simple.len()).sum();
    conclude(checks, || {
        let mut why = looked(signed);
        if gpg_count + others > 0 {
            why += &format!(
                " ({gpg_count} GPG signatures and {others} other attachments, no cosign signature)"
            );
        }
        let attachments_looked = signed
            .iter()
            .any(|(_, s)| s.looked.iter().any(|l| l.ends_with(".sig")));
        if !attachments_looked && signed.iter().any(|(_, s)| !s.looked.is_empty()) {
            why += "; cosign attachments are read only where registries.d sets use-sigstore-attachments: true";
        }
        why
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(reqs: &[Requirement], signed: &[(Digest, &Signatures)]) -> Verdict {
        let image: Reference = "reg.lan/ns/app:v1".parse().unwrap();
        evaluate(
            &image,
            "/p.json".into(),
            Scope::Docker("reg.lan/ns".into()),
            reqs,
            signed,
        )
    }

    #[test]
    fn every_requirement_must_hold_and_each_failure_says_why() {
        let d = Digest::of(b"manifest");
        let none = Signatures {
            looked: vec!["file:///sigs/ns/app@sha256=…/signature-1".into()],
            ..Signatures::default()
        };
        let ok = verdict(
            &[Requirement::InsecureAcceptAnything],
            &[(d.clone(), &none)],
        );
        assert!(ok.accepted());
        assert!(ok.to_string().contains("accepts reg.lan/ns/app:v1"), "{ok}");
        let gpg = Requirement::SignedBy {
            keys: Keys::Paths(vec!["/nonexistent/key.gpg".into()]),
            identity: IdentityRule::MatchRepoDigestOrExact,
        };
        let cosign = Requirement::SigstoreSigned {
            keys: Keys::Data(vec![b"not a key".to_vec()]),
            identity: IdentityRule::MatchRepoDigestOrExact,
        };
        let v = verdict(
            &[
                Requirement::InsecureAcceptAnything,
                Requirement::Reject,
                gpg,
                cosign,
            ],
            &[(d.clone(), &none)],
        );
        assert!(!v.accepted());
        let text = v.to_string();
        assert!(text.starts_with("the policy /p.json refuses reg.lan/ns/app:v1 (scope transports.docker[\"reg.lan/ns\"])"), "{text}");
        assert!(
            text.contains("reject: the policy rejects every image"),
            "{text}"
        );
        assert!(
            text.contains("cannot read the key file /nonexistent/key.gpg"),
            "{text}"
        );
        assert!(
            text.contains("keyData 1 is not a PEM ECDSA P-256 public key"),
            "{text}"
        );
        assert!(
            !text.contains("insecureAcceptAnything"),
            "only failures are listed: {text}"
        );
    }

    #[test]
    fn a_cosign_signature_is_checked_for_digest_and_identity() {
        // The key and a signature over `payload` below were made with openssl.
        use super::super::signatures::{Attachment, B64};
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        let att = |payload: &[u8], sig: &str| Attachment {
            media_type: SIGNATURE_MEDIA_TYPE.into(),
            payload: B64(payload.to_vec()),
            annotations: [(SIGNATURE_ANNOTATION.to_string(), sig.to_string())].into(),
        };
        // Not a payload at all, signed: the signature verifies, the claim does not parse.
        let sigs = Signatures {
            sigstore: vec![att(b"payload", "MEUCIBpJdvBLHNXHdt8A5aDvuCRRTYLfjnZ8Ggn/SkYGh5IMAiEA8+H/BHMpVa4MqtPKZcgkhd80WaGSeP1h0n/vMu43INw=")],
            ..Signatures::default()
        };
        let pem = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsCGLum1V7UcNLLqHdST2me/JSV6A\nvrHn+EVdhbOmrnEsj2MRmRUQrQbWk0WKPFLNRQNenHJjy15ccq8ubwUyVw==\n-----END PUBLIC KEY-----\n";
        let req = Requirement::SigstoreSigned {
            keys: Keys::Data(vec![pem.to_vec()]),
            identity: IdentityRule::MatchRepoDigestOrExact,
        };
        let v = verdict(std::slice::from_ref(&req), &[(d.clone(), &sigs)]);
        let text = v.to_string();
        assert!(
            !v.accepted()
                && text.contains("cosign attachment 1")
                && text.contains("not valid JSON"),
            "{text}"
        );
        // A check against a claim: another digest, then another identity.
        let image: Reference = "reg.lan/ns/app:v1".parse().unwrap();
        let claim = |digest: &Digest, reference: &str| payload::Claim {
            digest: digest.clone(),
            reference: reference.into(),
        };
        let rule = IdentityRule::MatchRepoDigestOrExact;
        let other = Digest::of(b"other");
        assert!(check_claim(
            &image,
            &rule,
            &d,
            claim(&other, "reg.lan/ns/app:v1"),
            "cosign",
            "k".into()
        )
        .unwrap_err()
        .contains("not this manifest"));
        assert!(check_claim(
            &image,
            &rule,
            &d,
            claim(&d, "reg.lan/ns/app:v2"),
            "cosign",
            "k".into()
        )
        .unwrap_err()
        .contains("does not match"));
        assert!(check_claim(
            &image,
            &rule,
            &d,
            claim(&d, "reg.lan/ns/app:v1"),
            "cosign",
            "k".into()
        )
        .is_ok());
    }
}
