//! Image references and digests, validated once at the edge.
//!
//! Grammar: docker/distribution `reference` (the one podman, skopeo and docker accept).
//! A `Digest` is only ever built from validated text, so it is safe to put in a path or URL.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    BadDigest(String),
    #[error("unsupported digest algorithm {0:?} (skiff verifies sha256)")]
    UnsupportedAlgorithm(String),
    #[error("invalid reference {input:?}: {part} {value:?} {why}")]
    BadPart {
        input: String,
        part: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("invalid reference {0:?}: empty")]
    Empty(String),
    #[error("invalid reference {0:?}: repository name longer than 255 characters")]
    TooLong(String),
}

/// A sha256 content digest (`sha256:` + 64 lowercase hex digits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Builds a digest from a raw 32-byte sha256 output.
    pub fn from_sha256_bytes(bytes: &[u8; 32]) -> Self {
        let mut hex = String::with_capacity(64);
        for b in bytes {
            hex.push_str(&format!("{b:02x}"));
        }
        Digest { hex }
    }

    /// Digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        let out: [u8; 32] = sha2::Sha256::digest(bytes).into();
        Self::from_sha256_bytes(&out)
    }

    /// The 64 hex digits, safe as a file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Parses just the hex part (as found in a store file name).
    pub fn from_hex(hex: &str) -> Result<Self, ReferenceError> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Digest {
                hex: hex.to_string(),
            })
        } else {
            Err(ReferenceError::BadDigest(hex.to_string()))
        }
    }
}

impl FromStr for Digest {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| ReferenceError::BadDigest(s.to_string()))?;
        if alg != "sha256" {
            let valid_alg = !alg.is_empty()
                && alg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
            return Err(if valid_alg {
                ReferenceError::UnsupportedAlgorithm(alg.to_string())
            } else {
                ReferenceError::BadDigest(s.to_string())
            });
        }
        Self::from_hex(hex).map_err(|_| ReferenceError::BadDigest(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A parsed image reference: `registry[:port]/path[:tag][@sha256:…]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// The registry as the user names it (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host[:port] the registry API lives on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, `latest` when neither tag nor digest was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Pins the reference to a digest (from `--digest`); a different pin already present is an error
    /// the caller reports, so this returns whether the pin was consistent.
    pub fn with_digest(mut self, digest: Digest) -> Result<Self, (Digest, Digest)> {
        match &self.digest {
            Some(d) if *d != digest => Err((d.clone(), digest)),
            _ => {
                self.digest = Some(digest);
                Ok(self)
            }
        }
    }

    /// Replaces the tag (from `--tag`).
    pub fn with_tag(mut self, tag: &str) -> Result<Self, ReferenceError> {
        validate_tag(tag, tag)?;
        self.tag = Some(tag.to_string());
        Ok(self)
    }

    /// Neither tag nor digest (only from `parse_exact`).
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository` without tag or digest: the key of a repository in the store index.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same reference without its digest: the tag the store index resolves.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}/{}:{}", self.registry, self.repository, t))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse(input)
    }
}

fn bad(input: &str, part: &'static str, value: &str, why: &'static str) -> ReferenceError {
    ReferenceError::BadPart {
        input: input.to_string(),
        part,
        value: value.to_string(),
        why,
    }
}

fn parse(input: &str) -> Result<Reference, ReferenceError> {
    parse_with(input, true)
}

/// Parses a reference as signatures and policies name images: normalised (`busybox` is
/// `docker.io/library/busybox`), but with no tag added when none is given.
pub fn parse_exact(input: &str) -> Result<Reference, ReferenceError> {
    parse_with(input, false)
}

fn parse_with(input: &str, default_tag: bool) -> Result<Reference, ReferenceError> {
    if input.is_empty() {
        return Err(ReferenceError::Empty(input.to_string()));
    }
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => (r, Some(d.parse::<Digest>()?)),
        None => (input, None),
    };
    // A tag is after the last ':' that comes after the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        validate_tag(input, t)?;
    }
    if name.is_empty() {
        return Err(ReferenceError::Empty(input.to_string()));
    }
    let (registry, path) = split_domain(name);
    if let Some(r) = &registry {
        validate_domain(input, r)?;
    }
    for component in path.split('/') {
        validate_path_component(input, component)?;
    }
    let registry = registry.unwrap_or_else(|| DOCKER_HUB.to_string());
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
        return Err(ReferenceError::TooLong(input.to_string()));
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) if default_tag => Some("latest".to_string()),
        (None, None) => None,
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// The first component is a registry when it looks like a host: has a '.', a ':' or is `localhost`.
fn split_domain(name: &str) -> (Option<String>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            let reg = if first == "index.docker.io" {
                DOCKER_HUB.to_string()
            } else {
                first.to_string()
            };
            (Some(reg), rest)
        }
        _ => (None, name),
    }
}

fn validate_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let mut bytes = tag.bytes();
    let first_ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !first_ok || !rest_ok || tag.len() > MAX_TAG_LEN {
        return Err(bad(
            input,
            "tag",
            tag,
            "must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
        ));
    }
    Ok(())
}

fn validate_domain(input: &str, domain: &str) -> Result<(), ReferenceError> {
    let (host, port) = if let Some(stripped) = domain.strip_prefix('[') {
        // IPv6 literal: [addr] or [addr]:port
        let (addr, after) = stripped
            .split_once(']')
            .ok_or_else(|| bad(input, "registry", domain, "has an unclosed '['"))?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad(
                input,
                "registry",
                domain,
                "is not a valid IPv6 address",
            ));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad(input, "registry", domain, "has junk after ']'"))?,
            ),
        };
        (None, port)
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(input, "registry port", p, "must be a number"));
        }
    }
    if let Some(h) = host {
        let ok = !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(bad(
                input,
                "registry",
                h,
                "is not a valid host name (letters, digits, '-' and '.')",
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn validate_path_component(input: &str, c: &str) -> Result<(), ReferenceError> {
    const WHY: &str = "must be lowercase letters and digits, separated by '.', '_', '__' or '-'";
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(bad(input, "repository component", c, WHY));
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Err(bad(input, "repository component", c, WHY));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn r(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_defaults() {
        let x = r("busybox");
        assert_eq!(x.registry(), "docker.io");
        assert_eq!(x.api_host(), "registry-1.docker.io");
        assert_eq!(x.repository(), "library/busybox");
        assert_eq!(x.tag(), Some("latest"));
        assert_eq!(x.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r("index.docker.io/foo/bar").registry(), "docker.io");
        assert_eq!(r("docker.io/busybox").repository(), "library/busybox");
        assert_eq!(r("user/app").repository(), "user/app");
    }

    #[test]
    fn registry_port_tag_digest() {
        let x = r(&format!("quay.io:443/coreos/fleet:v1.0.0@sha256:{HEX}"));
        assert_eq!(x.registry(), "quay.io:443");
        assert_eq!(x.repository(), "coreos/fleet");
        assert_eq!(x.tag(), Some("v1.0.0"));
        assert_eq!(x.digest().map(|d| d.hex()), Some(HEX));
        assert_eq!(x.manifest_ref(), format!("sha256:{HEX}"));
        let y = r(&format!("localhost:5000/a/b@sha256:{HEX}"));
        assert_eq!(y.tag(), None, "digest-only reference has no tag");
        assert_eq!(r("localhost/x").registry(), "localhost");
        assert_eq!(r("127.0.0.1:5000/x:1").api_host(), "127.0.0.1:5000");
        assert_eq!(r("[::1]:5000/x:1").registry(), "[::1]:5000");
        assert_eq!(r("a.b-c.e/f-g_h__i.j---k").repository(), "f-g_h__i.j---k");
    }

    #[test]
    fn hostile_references_name_the_part() {
        let cases = [
            ("", "empty"),
            ("up.per!/x", "registry"),
            ("Upper", "repository component"),
            ("quay.io/../etc", "repository component"),
            ("quay.io/a//b", "repository component"),
            ("quay.io/a/b:", "tag"),
            ("quay.io/a/b:-x", "tag"),
            ("quay.io/a/b:t/../../x", "repository component"),
            ("quay.io:port/a", "registry port"),
            ("bad_host.io:80/a", "registry"),
            ("a/b@sha256:abc", "digest"),
            ("a/b@md5:abc", "digest"),
            ("a/b@sha256:../../../../etc/passwd", "digest"),
            ("a\u{0}b", "repository component"),
            ("a b", "repository component"),
            ("[::1/a", "registry"),
        ];
        for (input, part) in cases {
            let err = input.parse::<Reference>().expect_err(input).to_string();
            assert!(err.contains(part), "{input:?}: {err}");
        }
        let long = format!("quay.io/{}", "a".repeat(300));
        assert!(matches!(
            long.parse::<Reference>(),
            Err(ReferenceError::TooLong(_))
        ));
        let longtag = format!("a:{}", "t".repeat(129));
        assert!(longtag.parse::<Reference>().is_err());
    }

    #[test]
    fn digests() {
        let d: Digest = format!("sha256:{HEX}").parse().unwrap();
        assert_eq!(d, Digest::of(b""));
        assert!("sha256:".parse::<Digest>().is_err());
        assert!(format!("sha256:{}", HEX.to_uppercase())
            .parse::<Digest>()
            .is_err());
        assert!(format!("sha256:{HEX}0").parse::<Digest>().is_err());
        assert!(matches!(
            "sha512:abcd".parse::<Digest>(),
            Err(ReferenceError::UnsupportedAlgorithm(_))
        ));
        assert!(Digest::from_hex("../x").is_err());
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }

    #[test]
    fn pins() {
        let x = r("quay.io/a:1");
        let d = Digest::of(b"x");
        let pinned = x.with_digest(d.clone()).unwrap();
        assert_eq!(pinned.digest(), Some(&d));
        assert!(pinned.with_digest(Digest::of(b"y")).is_err());
    }
}
