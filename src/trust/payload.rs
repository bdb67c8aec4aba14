//! The signed claim inside a signature: "the manifest with digest D is the image R". The same
//! JSON shape for GPG simple signing and cosign, told apart by `critical.type`, read strictly.

use super::json::{FieldError, Fields, Json};
use crate::reference::Digest;

/// `critical.type` of a GPG simple-signing payload.
pub const SIMPLE_SIGNING: &str = "atomic container signature";
/// `critical.type` of a cosign payload.
pub const COSIGN: &str = "cosign container image signature";
/// Payloads are a few hundred bytes; this bounds what a signature may unpack to.
pub const MAX_PAYLOAD_BYTES: u64 = 4 << 20;

/// What a signature claims, once its cryptography has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub digest: Digest,
    /// The `docker-reference` as written (compared by the policy's identity rule).
    pub reference: String,
}

/// Parses a payload of the given `kind` (`SIMPLE_SIGNING` or `COSIGN`).
pub fn parse(bytes: &[u8], kind: &str) -> Result<Claim, FieldError> {
    let json = Json::parse(bytes).map_err(|e| FieldError {
        at: "signature payload".into(),
        why: format!("not valid JSON: {e}"),
    })?;
    let mut top = Fields::of(&json, "signature payload")?;
    let critical = top.required("critical")?;
    let optional = top.required("optional")?;
    top.finish()?;
    // `optional` carries creator and timestamp; cosign writes null. Nothing in it is trusted.
    if !matches!(optional, Json::Null | Json::Object(_)) {
        return Err(FieldError {
            at: "signature payload".into(),
            why: format!("\"optional\" must be an object, found {}", optional.kind()),
        });
    }
    let mut c = Fields::of(critical, "critical")?;
    let found = c.required_string("type")?;
    if found != kind {
        return Err(c.error(format!("type is {found:?}, expected {kind:?}")));
    }
    let mut image = Fields::of(c.required("image")?, "critical.image")?;
    let digest = image.required_string("docker-manifest-digest")?;
    let digest: Digest = digest
        .parse()
        .map_err(|e| image.error(format!("docker-manifest-digest: {e}")))?;
    image.finish()?;
    let mut identity = Fields::of(c.required("identity")?, "critical.identity")?;
    let reference = identity.required_string("docker-reference")?.to_string();
    identity.finish()?;
    c.finish()?;
    Ok(Claim { digest, reference })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn payload(kind: &str, extra_critical: &str, optional: &str) -> String {
        format!(
            r#"{{"critical":{{"type":"{kind}","image":{{"docker-manifest-digest":"{D}"}},"identity":{{"docker-reference":"quay.io/a/b:1"}}{extra_critical}}},"optional":{optional}}}"#
        )
    }

    #[test]
    fn claims_are_read_from_both_kinds() {
        let c = parse(
            payload(SIMPLE_SIGNING, "", r#"{"creator":"skopeo","timestamp":1}"#).as_bytes(),
            SIMPLE_SIGNING,
        )
        .unwrap();
        assert_eq!(c.digest.to_string(), D);
        assert_eq!(c.reference, "quay.io/a/b:1");
        assert!(parse(payload(COSIGN, "", "null").as_bytes(), COSIGN).is_ok());
    }

    #[test]
    fn hostile_payloads_are_refused() {
        let rows = [
            (payload(COSIGN, "", "null"), SIMPLE_SIGNING, "expected"),
            (
                payload(SIMPLE_SIGNING, r#","extra":1"#, "{}"),
                SIMPLE_SIGNING,
                "unknown field \"extra\"",
            ),
            (
                payload(SIMPLE_SIGNING, "", "[]"),
                SIMPLE_SIGNING,
                "must be an object",
            ),
            (
                payload(SIMPLE_SIGNING, "", "{}").replace(D, "sha256:00"),
                SIMPLE_SIGNING,
                "docker-manifest-digest",
            ),
            (
                payload(SIMPLE_SIGNING, "", "{}")
                    .replace("\"optional\":{}", "\"optional\":{},\"optional\":{}"),
                SIMPLE_SIGNING,
                "duplicate",
            ),
            (
                r#"{"critical":{}}"#.to_string(),
                SIMPLE_SIGNING,
                "\"optional\" is missing",
            ),
            ("not json".to_string(), SIMPLE_SIGNING, "not valid JSON"),
        ];
        for (text, kind, want) in rows {
            let e = parse(text.as_bytes(), kind).expect_err(&text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
