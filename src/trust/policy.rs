//! containers-policy.json(5): which requirements an image must meet, read as strictly as
//! containers/image reads it (an unknown or duplicate field rejects the whole policy), and the
//! scope that applies to an image of the `docker` transport.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::identity::IdentityRule;
use super::json::{FieldError, Fields, Json};
use super::TrustError;
use crate::reference::Reference;

/// Where the operator's policy lives when `--policy` is not given.
pub const DEFAULT_POLICY: &str = "/etc/containers/policy.json";
/// Policies are small; anything larger is not one.
const MAX_POLICY_BYTES: u64 = 4 << 20;

/// Key material named by a requirement: files read at each check, or inline bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keys {
    Paths(Vec<PathBuf>),
    Data(Vec<Vec<u8>>),
}

impl fmt::Display for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keys::Paths(p) => {
                let names: Vec<_> = p.iter().map(|p| p.display().to_string()).collect();
                f.write_str(&names.join(", "))
            }
            Keys::Data(d) => write!(f, "{} inline key(s)", d.len()),
        }
    }
}

/// One requirement of a scope; all of a scope's requirements must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    InsecureAcceptAnything,
    Reject,
    /// GPG simple signing (`keyType: GPGKeys`).
    SignedBy {
        keys: Keys,
        identity: IdentityRule,
    },
    /// A `signedBy` with a key type containers/image defines but does not verify either.
    SignedByUnsupported {
        key_type: String,
    },
    /// A cosign signature by an ECDSA P-256 key.
    SigstoreSigned {
        keys: Keys,
        identity: IdentityRule,
    },
    /// Defined by the format, implemented by no one: always refused.
    SignedBaseLayer,
}

impl Requirement {
    /// Whether checking it needs the image's signatures.
    pub fn needs_signatures(&self) -> bool {
        matches!(
            self,
            Requirement::SignedBy { .. } | Requirement::SigstoreSigned { .. }
        )
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::InsecureAcceptAnything => f.write_str("insecureAcceptAnything"),
            Requirement::Reject => f.write_str("reject"),
            Requirement::SignedBy { keys, identity } => {
                write!(f, "signedBy (GPGKeys {keys}; signedIdentity {identity})")
            }
            Requirement::SignedByUnsupported { key_type } => {
                write!(f, "signedBy (keyType {key_type})")
            }
            Requirement::SigstoreSigned { keys, identity } => {
                write!(f, "sigstoreSigned ({keys}; signedIdentity {identity})")
            }
            Requirement::SignedBaseLayer => f.write_str("signedBaseLayer"),
        }
    }
}

/// The scope whose requirements applied: named as it is written in the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Docker(String),
    Default,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Docker(s) => write!(f, "transports.docker[{s:?}]"),
            Scope::Default => f.write_str("default"),
        }
    }
}

/// A parsed policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Where it was read from, for messages.
    pub path: PathBuf,
    default: Vec<Requirement>,
    docker: Vec<(String, Vec<Requirement>)>,
}

impl Policy {
    /// Reads and parses the policy at `path`.
    pub fn load(path: &Path) -> Result<Policy, TrustError> {
        let bytes = super::read_bounded(path, MAX_POLICY_BYTES).map_err(|source| {
            TrustError::PolicyRead {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Self::parse(&bytes, path)
    }

    /// Parses policy bytes; `path` names them in errors and resolves nothing.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Policy, TrustError> {
        let bad = |source: FieldError| TrustError::Policy {
            path: path.to_path_buf(),
            source,
        };
        let json = Json::parse(bytes).map_err(|e| {
            bad(FieldError {
                at: "policy".into(),
                why: format!("not valid JSON: {e}"),
            })
        })?;
        let mut top = Fields::of(&json, "policy").map_err(bad)?;
        let default =
            requirements(top.required("default").map_err(bad)?, "default").map_err(bad)?;
        let mut docker = Vec::new();
        if let Some(t) = top.get("transports") {
            for (name, scopes) in t.object("transports").map_err(bad)? {
                let scopes = scopes.object(&format!("transports.{name}")).map_err(bad)?;
                for (scope, reqs) in scopes {
                    let at = format!("transports.{name}[{scope:?}]");
                    // Other transports' requirements are checked too: the policy is one file.
                    let reqs = requirements(reqs, &at).map_err(bad)?;
                    if name == "docker" {
                        docker.push((scope.clone(), reqs));
                    }
                }
            }
        }
        top.finish().map_err(bad)?;
        Ok(Policy {
            path: path.to_path_buf(),
            default,
            docker,
        })
    }

    /// The requirements for an image of the `docker` transport: its exact identity, then its
    /// namespaces from the most specific, then `*.domain` wildcards, then the transport's
    /// default `""`, then `default`.
    pub fn requirements_for(&self, image: &Reference) -> (Scope, &[Requirement]) {
        let find = |key: &str| self.docker.iter().find(|(k, _)| k == key);
        let candidates = std::iter::once(identity(image))
            .chain(namespaces(image))
            .chain(std::iter::once(String::new()));
        for c in candidates {
            if let Some((k, reqs)) = find(&c) {
                return (Scope::Docker(k.clone()), reqs);
            }
        }
        (Scope::Default, &self.default)
    }
}

/// An image's identity as a policy scope names it: `HOST/PATH:TAG`, or `HOST/PATH@DIGEST`.
pub fn identity(image: &Reference) -> String {
    match (image.tag(), image.digest()) {
        (Some(t), _) => format!("{}:{t}", image.name()),
        (None, Some(d)) => format!("{}@{d}", image.name()),
        (None, None) => image.name(),
    }
}

/// The repository, its parent namespaces up to the host, then `*.domain` wildcards of the
/// host (`*.example.com`, `*.com`).
pub fn namespaces(image: &Reference) -> Vec<String> {
    let mut out = Vec::new();
    let mut name = image.name();
    loop {
        out.push(name.clone());
        match name.rfind('/') {
            Some(i) => name.truncate(i),
            None => break,
        }
    }
    let mut host = name.as_str();
    while let Some(i) = host.find('.') {
        host = &host[i + 1..];
        out.push(format!("*.{host}"));
    }
    out
}

/// A non-empty list of requirements.
fn requirements(v: &Json, at: &str) -> Result<Vec<Requirement>, FieldError> {
    let Json::Array(items) = v else {
        return Err(FieldError {
            at: at.to_string(),
            why: format!("expected a list of requirements, found {}", v.kind()),
        });
    };
    if items.is_empty() {
        return Err(FieldError {
            at: at.to_string(),
            why: "the list of requirements must not be empty".into(),
        });
    }
    items
        .iter()
        .enumerate()
        .map(|(i, r)| requirement(r, &format!("{at}[{i}]")))
        .collect()
}

fn requirement(v: &Json, at: &str) -> Result<Requirement, FieldError> {
    let mut f = Fields::of(v, at)?;
    let req = match f.required_string("type")? {
        "insecureAcceptAnything" => Requirement::InsecureAcceptAnything,
        "reject" => Requirement::Reject,
        "signedBaseLayer" => {
            f.required("baseLayerIdentity")?;
            Requirement::SignedBaseLayer
        }
        "signedBy" => {
            let key_type = f.required_string("keyType")?;
            let keys = keys(&mut f, &["keyPath", "keyPaths", "keyData"])?;
            let identity = signed_identity(&mut f, at)?;
            match key_type {
                "GPGKeys" => Requirement::SignedBy { keys, identity },
                "signedByGPGKeys" | "X509Certificates" | "signedByX509CAs" => {
                    Requirement::SignedByUnsupported {
                        key_type: key_type.to_string(),
                    }
                }
                other => return Err(f.error(format!("unknown keyType {other:?}"))),
            }
        }
        "sigstoreSigned" => {
            for unsupported in [
                "fulcio",
                "rekorPublicKeyPath",
                "rekorPublicKeyPaths",
                "rekorPublicKeyData",
                "rekorPublicKeyDatas",
                "pki",
            ] {
                if f.get(unsupported).is_some() {
                    return Err(f.error(format!(
                        "{unsupported:?} is not supported by skiff (it verifies signatures by public keys: keyPath, keyPaths, keyData, keyDatas)"
                    )));
                }
            }
            let keys = keys(&mut f, &["keyPath", "keyPaths", "keyData", "keyDatas"])?;
            let identity = signed_identity(&mut f, at)?;
            Requirement::SigstoreSigned { keys, identity }
        }
        other => return Err(f.error(format!("unknown requirement type {other:?}"))),
    };
    f.finish()?;
    Ok(req)
}

fn signed_identity(f: &mut Fields<'_>, at: &str) -> Result<IdentityRule, FieldError> {
    match f.get("signedIdentity") {
        Some(v) => IdentityRule::parse(v, &format!("{at}.signedIdentity")),
        None => Ok(IdentityRule::MatchRepoDigestOrExact),
    }
}

/// Exactly one of the key fields a requirement allows.
fn keys(f: &mut Fields<'_>, allowed: &[&'static str]) -> Result<Keys, FieldError> {
    let present: Vec<(&str, &Json)> = allowed
        .iter()
        .filter_map(|name| f.get(name).map(|v| (*name, v)))
        .collect();
    let [(name, v)] = present.as_slice() else {
        return Err(f.error(format!(
            "exactly one of {} must be given",
            allowed.join(", ")
        )));
    };
    let string = |v: &Json| -> Result<String, FieldError> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| f.error(format!("{name} must hold strings, found {}", v.kind())))
    };
    let list = |v: &Json| -> Result<Vec<String>, FieldError> {
        match v {
            Json::Array(items) if !items.is_empty() => items.iter().map(string).collect(),
            _ => Err(f.error(format!("{name} must be a non-empty list of strings"))),
        }
    };
    let decode = |s: String| {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| f.error(format!("{name} is not base64: {e}")))
    };
    match *name {
        "keyPath" => Ok(Keys::Paths(vec![PathBuf::from(string(v)?)])),
        "keyPaths" => Ok(Keys::Paths(
            list(v)?.into_iter().map(PathBuf::from).collect(),
        )),
        "keyData" => Ok(Keys::Data(vec![decode(string(v)?)?])),
        _ => Ok(Keys::Data(
            list(v)?.into_iter().map(decode).collect::<Result<_, _>>()?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Policy, TrustError> {
        Policy::parse(s.as_bytes(), Path::new("/etc/containers/policy.json"))
    }

    fn scope_of(policy: &Policy, image: &str) -> String {
        policy
            .requirements_for(&image.parse().unwrap())
            .0
            .to_string()
    }

    #[test]
    fn the_most_specific_scope_applies() {
        let pol = p(r#"{
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    "": [{"type": "insecureAcceptAnything"}],
                    "quay.io": [{"type": "reject"}],
                    "quay.io/coreos": [{"type": "insecureAcceptAnything"}],
                    "quay.io/coreos/fleet:v1": [{"type": "insecureAcceptAnything"}],
                    "*.example.com": [{"type": "reject"}],
                    "docker.io/library/busybox": [{"type": "reject"}]
                },
                "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}
            }
        }"#)
        .unwrap();
        let rows = [
            (
                "quay.io/coreos/fleet:v1",
                r#"transports.docker["quay.io/coreos/fleet:v1"]"#,
            ),
            (
                "quay.io/coreos/fleet:v2",
                r#"transports.docker["quay.io/coreos"]"#,
            ),
            ("quay.io/other/x:1", r#"transports.docker["quay.io"]"#),
            ("reg.example.com:5000/a:1", r#"transports.docker[""]"#),
            (
                "reg.example.com/a:1",
                r#"transports.docker["*.example.com"]"#,
            ),
            (
                "a.b.example.com/a/b:1",
                r#"transports.docker["*.example.com"]"#,
            ),
            (
                "busybox",
                r#"transports.docker["docker.io/library/busybox"]"#,
            ),
        ];
        for (image, scope) in rows {
            assert_eq!(scope_of(&pol, image), scope, "{image}");
        }
        let only_default = p(r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
        assert_eq!(scope_of(&only_default, "quay.io/a:1"), "default");
    }

    #[test]
    fn namespaces_walk_up_to_the_host_then_its_wildcards() {
        let r: Reference = "reg.example.com:5000/a/b/c:1".parse().unwrap();
        assert_eq!(identity(&r), "reg.example.com:5000/a/b/c:1");
        assert_eq!(
            namespaces(&r),
            [
                "reg.example.com:5000/a/b/c",
                "reg.example.com:5000/a/b",
                "reg.example.com:5000/a",
                "reg.example.com:5000",
                "*.example.com:5000",
                "*.com:5000"
            ]
        );
    }

    #[test]
    fn requirements_parse_with_their_keys_and_identity() {
        let pol = p(r#"{"default":[
            {"type":"signedBy","keyType":"GPGKeys","keyPaths":["/a.gpg","/b.gpg"],"signedIdentity":{"type":"matchRepository"}},
            {"type":"sigstoreSigned","keyData":"aGVsbG8="},
            {"type":"signedBy","keyType":"X509Certificates","keyPath":"/c"}
        ]}"#)
        .unwrap();
        let (_, reqs) = pol.requirements_for(&"x.io/a:1".parse().unwrap());
        assert_eq!(
            reqs[0],
            Requirement::SignedBy {
                keys: Keys::Paths(vec!["/a.gpg".into(), "/b.gpg".into()]),
                identity: IdentityRule::MatchRepository
            }
        );
        assert_eq!(
            reqs[1],
            Requirement::SigstoreSigned {
                keys: Keys::Data(vec![b"hello".to_vec()]),
                identity: IdentityRule::MatchRepoDigestOrExact
            }
        );
        assert!(matches!(reqs[2], Requirement::SignedByUnsupported { .. }));
    }

    #[test]
    fn hostile_or_mistaken_policies_are_refused_naming_the_field() {
        let rows = [
            (
                r#"{"default":[{"type":"reject"}],"extra":1}"#,
                "unknown field \"extra\"",
            ),
            (
                r#"{"default":[{"type":"reject","x":1}]}"#,
                "default[0]: unknown field \"x\"",
            ),
            (
                r#"{"default":[{"type":"reject"}],"default":[]}"#,
                "duplicate key \"default\"",
            ),
            (r#"{"default":[]}"#, "must not be empty"),
            (r#"{"transports":{}}"#, "\"default\" is missing"),
            (
                r#"{"default":[{"type":"signedBy","keyType":"GPGKeys"}]}"#,
                "exactly one of keyPath, keyPaths, keyData",
            ),
            (
                r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","keyData":"eA=="}]}"#,
                "exactly one of",
            ),
            (
                r#"{"default":[{"type":"signedBy","keyType":"PGP","keyPath":"/a"}]}"#,
                "unknown keyType",
            ),
            (
                r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","keyPth":"/b"}]}"#,
                "unknown field \"keyPth\"",
            ),
            (
                r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyData":"!!"}]}"#,
                "not base64",
            ),
            (
                r#"{"default":[{"type":"sigstoreSigned","keyPath":"/k","fulcio":{}}]}"#,
                "\"fulcio\" is not supported",
            ),
            (
                r#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"a.io":[{"type":"rejekt"}]}}}"#,
                "transports.docker[\"a.io\"][0]: unknown requirement type",
            ),
            (
                r#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"a.io":[],"a.io":[]}}}"#,
                "duplicate key",
            ),
            (
                r#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"oci":{"":[{"type":"nope"}]}}}"#,
                "transports.oci",
            ),
            (r#"[1,2]"#, "expected an object"),
            (r#"{"default":"#, "not valid JSON"),
        ];
        for (text, want) in rows {
            let e = p(text).expect_err(text);
            let msg = crate::logging::chain(&e);
            assert!(msg.contains(want), "{text}: {msg}");
            assert!(msg.contains("/etc/containers/policy.json"), "{msg}");
        }
    }
}
