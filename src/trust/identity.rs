//! `signedIdentity`: which image names a signature's `docker-reference` may vouch for, as
//! containers-policy.json(5) defines the rules.

use std::fmt;

use super::json::{FieldError, Fields, Json};
use crate::reference::{parse_exact, Reference};

/// How the identity a signature claims must relate to the image being run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityRule {
    /// A tag must be signed for exactly that tag; a digest reference for its repository.
    MatchRepoDigestOrExact,
    /// Any tag or digest of the same repository.
    MatchRepository,
    /// Exactly the reference being run (a digest-only reference never matches).
    MatchExact,
    /// The signature must name exactly this reference, whatever is being run.
    ExactReference(Reference),
    /// The signature must name this repository, whatever is being run.
    ExactRepository(Reference),
    /// Images under `prefix` are signed as if they were under `signed_prefix` (a mirror).
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

impl fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityRule::MatchRepoDigestOrExact => f.write_str("matchRepoDigestOrExact"),
            IdentityRule::MatchRepository => f.write_str("matchRepository"),
            IdentityRule::MatchExact => f.write_str("matchExact"),
            IdentityRule::ExactReference(r) => write!(f, "exactReference {r}"),
            IdentityRule::ExactRepository(r) => write!(f, "exactRepository {r}"),
            IdentityRule::RemapIdentity {
                prefix,
                signed_prefix,
            } => write!(f, "remapIdentity {prefix} → {signed_prefix}"),
        }
    }
}

/// The image as the rules compare it: a reference with both a tag and a pin is compared by
/// its tag (the pin is enforced on the manifest itself).
fn intended(image: &Reference) -> Reference {
    match (image.tag(), image.digest()) {
        (Some(tag), Some(_)) => {
            parse_exact(&format!("{}:{tag}", image.name())).unwrap_or_else(|_| image.clone())
        }
        _ => image.clone(),
    }
}

/// A tagged reference must be signed as exactly that; a digest reference as its repository.
fn repo_digest_or_exact(intended: &Reference, signed: &Reference) -> bool {
    if signed.is_name_only() {
        return false;
    }
    if intended.tag().is_some() {
        signed.to_string() == intended.to_string()
    } else if intended.digest().is_some() {
        // The digest itself is compared with the manifest, not here.
        signed.name() == intended.name()
    } else {
        false
    }
}

impl IdentityRule {
    /// Whether a signature claiming `signed` may vouch for `image`.
    pub fn matches(&self, image: &Reference, signed: &str) -> bool {
        let Ok(signed) = parse_exact(signed) else {
            return false;
        };
        let image = intended(image);
        match self {
            IdentityRule::MatchRepoDigestOrExact => repo_digest_or_exact(&image, &signed),
            IdentityRule::MatchRepository => signed.name() == image.name(),
            IdentityRule::MatchExact => {
                !image.is_name_only()
                    && !signed.is_name_only()
                    && signed.to_string() == image.to_string()
            }
            IdentityRule::ExactReference(r) => {
                !signed.is_name_only() && signed.to_string() == r.to_string()
            }
            IdentityRule::ExactRepository(r) => signed.name() == r.name(),
            IdentityRule::RemapIdentity {
                prefix,
                signed_prefix,
            } => match remap(&image, prefix, signed_prefix) {
                Some(remapped) => repo_digest_or_exact(&remapped, &signed),
                None => false,
            },
        }
    }

    /// Reads a `signedIdentity` object.
    pub fn parse(v: &Json, at: &str) -> Result<IdentityRule, FieldError> {
        let mut f = Fields::of(v, at)?;
        let rule = match f.required_string("type")? {
            "matchRepoDigestOrExact" => IdentityRule::MatchRepoDigestOrExact,
            "matchRepository" => IdentityRule::MatchRepository,
            "matchExact" => IdentityRule::MatchExact,
            "exactReference" => {
                let s = f.required_string("dockerReference")?;
                match parse_exact(s) {
                    Ok(r) if !r.is_name_only() => IdentityRule::ExactReference(r),
                    Ok(_) => {
                        return Err(
                            f.error(format!("dockerReference {s:?} has neither tag nor digest"))
                        )
                    }
                    Err(e) => return Err(f.error(format!("dockerReference {s:?}: {e}"))),
                }
            }
            "exactRepository" => {
                let s = f.required_string("dockerRepository")?;
                match parse_exact(s) {
                    Ok(r) => IdentityRule::ExactRepository(r),
                    Err(e) => return Err(f.error(format!("dockerRepository {s:?}: {e}"))),
                }
            }
            "remapIdentity" => {
                let prefix = f.required_string("prefix")?;
                let signed_prefix = f.required_string("signedPrefix")?;
                for (name, p) in [("prefix", prefix), ("signedPrefix", signed_prefix)] {
                    check_prefix(p).map_err(|why| f.error(format!("{name} {p:?}: {why}")))?;
                }
                IdentityRule::RemapIdentity {
                    prefix: prefix.to_string(),
                    signed_prefix: signed_prefix.to_string(),
                }
            }
            other => return Err(f.error(format!("unknown signedIdentity type {other:?}"))),
        };
        f.finish()?;
        Ok(rule)
    }
}

/// A remap prefix is a host, or a host and repository path, with no tag or digest.
fn check_prefix(p: &str) -> Result<(), &'static str> {
    if p.contains('@')
        || p.rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':') && p.contains('/'))
    {
        return Err("must be a host or a repository, without tag or digest");
    }
    let probe = if p.contains('/') {
        p.to_string()
    } else {
        format!("{p}/x")
    };
    match parse_exact(&probe) {
        Ok(r) if probe.starts_with(r.registry()) => Ok(()),
        _ => Err("must be a fully qualified host or repository (HOST[:PORT][/PATH])"),
    }
}

/// `image` with `prefix` replaced by `signed_prefix`, when its name is under `prefix`.
fn remap(image: &Reference, prefix: &str, signed_prefix: &str) -> Option<Reference> {
    let name = image.name();
    let under = name == prefix
        || (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'/'));
    if !under {
        return Some(image.clone());
    }
    let s = image.to_string();
    parse_exact(&format!("{signed_prefix}{}", &s[prefix.len()..])).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        parse_exact(s).unwrap()
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn the_rules_as_containers_policy_json_defines_them() {
        use IdentityRule::*;
        let tagged = r("quay.io/coreos/fleet:v1");
        let pinned = r(&format!("quay.io/coreos/fleet@{D}"));
        let both = r(&format!("quay.io/coreos/fleet:v1@{D}"));
        let rows: &[(IdentityRule, &Reference, &str, bool)] = &[
            (
                MatchRepoDigestOrExact,
                &tagged,
                "quay.io/coreos/fleet:v1",
                true,
            ),
            (
                MatchRepoDigestOrExact,
                &tagged,
                "quay.io/coreos/fleet:v2",
                false,
            ),
            (
                MatchRepoDigestOrExact,
                &tagged,
                "quay.io/coreos/fleet",
                false,
            ),
            (
                MatchRepoDigestOrExact,
                &pinned,
                "quay.io/coreos/fleet:v9",
                true,
            ),
            (
                MatchRepoDigestOrExact,
                &pinned,
                "quay.io/other/fleet:v9",
                false,
            ),
            (
                MatchRepoDigestOrExact,
                &both,
                "quay.io/coreos/fleet:v1",
                true,
            ),
            (MatchRepository, &tagged, "quay.io/coreos/fleet:v2", true),
            (MatchRepository, &tagged, "quay.io/coreos/fleet", true),
            (MatchRepository, &tagged, "quay.io/coreos/etcd:v1", false),
            (MatchExact, &tagged, "quay.io/coreos/fleet:v1", true),
            (MatchExact, &tagged, "quay.io/coreos/fleet:v2", false),
            (MatchExact, &pinned, "quay.io/coreos/fleet:v1", false),
            (
                ExactReference(r("reg.lan/a:1")),
                &tagged,
                "reg.lan/a:1",
                true,
            ),
            (
                ExactReference(r("reg.lan/a:1")),
                &tagged,
                "quay.io/coreos/fleet:v1",
                false,
            ),
            (
                ExactRepository(r("reg.lan/a")),
                &tagged,
                "reg.lan/a:7",
                true,
            ),
            (
                ExactRepository(r("reg.lan/a")),
                &tagged,
                "reg.lan/b:7",
                false,
            ),
            (
                RemapIdentity {
                    prefix: "mirror.lan/q".into(),
                    signed_prefix: "quay.io".into(),
                },
                &r("mirror.lan/q/coreos/fleet:v1"),
                "quay.io/coreos/fleet:v1",
                true,
            ),
            (
                RemapIdentity {
                    prefix: "mirror.lan/q".into(),
                    signed_prefix: "quay.io".into(),
                },
                &r("mirror.lan/q/coreos/fleet:v1"),
                "mirror.lan/q/coreos/fleet:v1",
                false,
            ),
            (
                RemapIdentity {
                    prefix: "mirror.lan/q".into(),
                    signed_prefix: "quay.io".into(),
                },
                &r("mirror.lan/qq/fleet:v1"),
                "mirror.lan/qq/fleet:v1",
                true,
            ),
            // Normalised as docker does: busybox is docker.io/library/busybox.
            (
                MatchRepoDigestOrExact,
                &r("busybox:1"),
                "docker.io/library/busybox:1",
                true,
            ),
            (MatchRepoDigestOrExact, &r("busybox:1"), "busybox:1", true),
            // Garbage never matches.
            (MatchRepository, &tagged, "Not A Reference", false),
        ];
        for (rule, image, signed, want) in rows {
            assert_eq!(
                rule.matches(image, signed),
                *want,
                "{rule} {image} vs {signed}"
            );
        }
    }

    #[test]
    fn signed_identity_objects_parse_strictly() {
        let p =
            |s: &str| IdentityRule::parse(&Json::parse(s.as_bytes()).unwrap(), "signedIdentity");
        assert_eq!(
            p(r#"{"type":"matchExact"}"#).unwrap(),
            IdentityRule::MatchExact
        );
        assert!(p(r#"{"type":"matchExact","x":1}"#)
            .unwrap_err()
            .why
            .contains("unknown field"));
        assert!(p(r#"{"type":"exactReference","dockerReference":"reg.lan/a"}"#).is_err());
        assert!(p(r#"{"type":"exactReference"}"#).is_err());
        assert!(
            p(r#"{"type":"remapIdentity","prefix":"m.lan/x","signedPrefix":"quay.io"}"#).is_ok()
        );
        assert!(
            p(r#"{"type":"remapIdentity","prefix":"m.lan/x:tag","signedPrefix":"quay.io"}"#)
                .is_err()
        );
        assert!(p(
            r#"{"type":"remapIdentity","prefix":"m.lan/x@sha256:00","signedPrefix":"quay.io"}"#
        )
        .is_err());
        assert!(p(r#"{"type":"whatever"}"#).is_err());
        assert!(p(r#""matchExact""#).is_err());
    }
}
