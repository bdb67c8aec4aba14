//! Registry authentication: `WWW-Authenticate` challenges, credentials from the places operators
//! already keep them, and bearer tokens cached per scope for their lifetime.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

/// A user name and secret. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// Why credentials or a token could not be had; secrets are never in the message.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("credentials must be USER:PASSWORD")]
    CredsSyntax,
    #[error("malformed token response")]
    TokenJson(#[source] serde_json::Error),
    #[error("token response has no token")]
    NoToken,
    #[error("token has characters that cannot go in a header")]
    TokenChars,
    #[error("reading {0}")]
    ReadFile(PathBuf, #[source] std::io::Error),
    #[error("malformed auth file {0}")]
    FileJson(PathBuf, #[source] serde_json::Error),
    #[error("bad \"auth\" in {0}: not base64 of UTF-8 USER:PASSWORD")]
    BadAuth(PathBuf),
    #[error("invalid credential helper name {0:?}")]
    HelperName(String),
    #[error("{what} {prog}")]
    Helper {
        what: &'static str,
        prog: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{prog} get failed ({status}) for {registry}")]
    HelperFailed {
        prog: String,
        status: std::process::ExitStatus,
        registry: String,
    },
    #[error("malformed output of {0}")]
    HelperJson(String, #[source] serde_json::Error),
    #[error("bad realm {0:?}")]
    Realm(String, #[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("realm {0:?} has no host")]
    RealmHost(String),
    #[error("token endpoint {url} answered {status}{hint}")]
    TokenStatus {
        url: String,
        status: reqwest::StatusCode,
        hint: &'static str,
    },
}

impl Credentials {
    /// Parses `USER:PASS` (the password may contain ':').
    pub fn parse(s: &str) -> Result<Credentials, AuthError> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => Err(AuthError::CredsSyntax),
        }
    }

    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value. Unknown schemes and malformed parameters are
/// `None`: the caller reports the 401 as it came.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest)?;
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let realm = get("realm")?;
    if !(realm.starts_with("https://") || realm.starts_with("http://")) {
        return None;
    }
    Some(Challenge::Bearer {
        realm,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `k="v", k2=v2` with quoted-string escapes; `None` on anything malformed.
fn parse_params(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            if !(c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return None;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() || chars.next() != Some('=') {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if out.len() > 32 || value.len() > 4096 {
            return None;
        }
        out.push((key, value));
    }
}

/// A bearer token. `Debug` never prints it.
#[derive(Clone)]
pub struct Token {
    value: String,
    expires: Instant,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<redacted>, expires {:?})", self.expires)
    }
}

impl Token {
    pub fn header(&self) -> String {
        format!("Bearer {}", self.value)
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Parses a token endpoint's answer. Tokens live 60 s unless the issuer says otherwise; a
/// margin keeps skiff from sending one that expires in flight.
pub fn parse_token(body: &[u8], now: Instant) -> Result<Token, AuthError> {
    let r: TokenResponse = serde_json::from_slice(body).map_err(AuthError::TokenJson)?;
    let value = r
        .token
        .or(r.access_token)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::NoToken)?;
    if value.chars().any(|c| c.is_control() || c == ' ') {
        return Err(AuthError::TokenChars);
    }
    let life = r.expires_in.unwrap_or(60).clamp(10, 24 * 3600);
    Ok(Token {
        value,
        expires: now + Duration::from_secs(life) - Duration::from_secs(life / 10),
    })
}

/// Tokens keyed by (registry, scope).
#[derive(Default, Debug)]
pub struct TokenCache {
    tokens: HashMap<(String, String), Token>,
}

impl TokenCache {
    pub fn get(&self, host: &str, scope: &str) -> Option<&Token> {
        self.tokens
            .get(&(host.to_string(), scope.to_string()))
            .filter(|t| t.expires > Instant::now())
    }

    pub fn put(&mut self, host: &str, scope: &str, token: Token) {
        self.tokens
            .insert((host.to_string(), scope.to_string()), token);
    }
}

/// Where credentials are looked for, in order, as podman and skopeo do.
pub fn auth_file_locations() -> Vec<PathBuf> {
    if let Ok(f) = std::env::var("REGISTRY_AUTH_FILE") {
        return vec![PathBuf::from(f)];
    }
    let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let mut out = Vec::new();
    if let Some(run) = env("XDG_RUNTIME_DIR") {
        out.push(run.join("containers/auth.json"));
    }
    out.push(PathBuf::from(format!(
        "/run/containers/{}/auth.json",
        nix::unistd::geteuid()
    )));
    let home = env("HOME");
    match env("XDG_CONFIG_HOME") {
        Some(c) => out.push(c.join("containers/auth.json")),
        None => out.extend(
            home.as_ref()
                .map(|h| h.join(".config/containers/auth.json")),
        ),
    }
    match env("DOCKER_CONFIG") {
        Some(d) => out.push(d.join("config.json")),
        None => out.extend(home.map(|h| h.join(".docker/config.json"))),
    }
    out
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
}

/// Auth-file keys come as `host`, `https://host`, `https://host/v1/` or `host/namespace`.
fn normalize_key(k: &str) -> String {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => k.to_string(),
    }
}

/// Finds credentials for `registry/repository` in the auth files, most specific key first.
pub fn lookup(
    files: &[PathBuf],
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>, AuthError> {
    let mut keys = vec![];
    let mut ns = format!("{registry}/{repository}");
    loop {
        keys.push(ns.clone());
        match ns.rfind('/') {
            Some(i) => ns.truncate(i),
            None => break,
        }
    }
    for path in files {
        let Some(file) = read_auth_file(path)? else {
            continue;
        };
        let auths: HashMap<String, &AuthEntry> = file
            .auths
            .iter()
            .map(|(k, v)| (normalize_key(k), v))
            .collect();
        let helpers: HashMap<String, &String> = file
            .cred_helpers
            .iter()
            .map(|(k, v)| (normalize_key(k), v))
            .collect();
        for key in &keys {
            if let Some(helper) = helpers.get(key) {
                return credential_helper(helper, registry).map(Some);
            }
            if let Some(entry) = auths.get(key) {
                if let Some(auth) = &entry.auth {
                    return decode_auth(auth, path).map(Some);
                }
            }
        }
        if let Some(store) = &file.creds_store {
            if let Ok(c) = credential_helper(store, registry) {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

fn read_auth_file(path: &Path) -> Result<Option<AuthFile>, AuthError> {
    let read = |e| AuthError::ReadFile(path.to_path_buf(), e);
    let bytes = match std::fs::File::open(path) {
        Ok(f) => {
            let mut buf = Vec::new();
            f.take(1 << 20).read_to_end(&mut buf).map_err(read)?;
            buf
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| AuthError::FileJson(path.to_path_buf(), e))
}

fn decode_auth(auth: &str, path: &Path) -> Result<Credentials, AuthError> {
    let bad = || AuthError::BadAuth(path.to_path_buf());
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    Credentials::parse(&s).map_err(|_| bad())
}

/// Asks `docker-credential-HELPER get`, as docker and podman do.
fn credential_helper(helper: &str, registry: &str) -> Result<Credentials, AuthError> {
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(AuthError::HelperName(helper.to_string()));
    }
    let prog = format!("docker-credential-{helper}");
    let io = |what: &'static str| {
        let prog = prog.clone();
        move |source| AuthError::Helper { what, prog, source }
    };
    let mut child = Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("running"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .map_err(io("writing to"))?;
    }
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        stdout
            .take(1 << 16)
            .read_to_end(&mut out)
            .map_err(io("reading from"))?;
    }
    let status = child.wait().map_err(io("waiting for"))?;
    if !status.success() {
        return Err(AuthError::HelperFailed {
            prog,
            status,
            registry: registry.to_string(),
        });
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct HelperOut {
        username: String,
        secret: String,
    }
    let h: HelperOut =
        serde_json::from_slice(&out).map_err(|e| AuthError::HelperJson(prog.clone(), e))?;
    Ok(Credentials {
        username: h.username,
        password: h.secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://quay.io/v2/auth",service="quay.io",scope="repository:coreos/fleet:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://quay.io/v2/auth".into(),
                service: Some("quay.io".into()),
                scope: Some("repository:coreos/fleet:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer Realm=http://127.0.0.1:1/t, service=a\"b"#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: Some("a\\\"b".into()),
                scope: None
            })
        );
    }

    #[test]
    fn hostile_challenges() {
        for bad in [
            "",
            "Bearer",
            "Bearer realm",
            "Bearer realm=\"unterminated",
            "Bearer realm=\"file:///etc/passwd\"",
            "Bearer realm=\"ftp://x\"",
            "Bearer =x",
            "Bearer re alm=\"https://x\"",
            "Digest realm=\"https://x\"",
            "Bearer realm=\"https://x\",\u{0}=1",
        ] {
            assert_eq!(parse_challenge(bad), None, "{bad:?}");
        }
        let many = format!("Bearer realm=\"https://x\"{}", ",a=b".repeat(100));
        assert_eq!(parse_challenge(&many), None);
    }

    #[test]
    fn tokens() {
        let now = Instant::now();
        let t = parse_token(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.header(), "Bearer abc");
        assert!(!format!("{t:?}").contains("abc"), "Debug must redact");
        assert!(parse_token(br#"{"access_token":"x"}"#, now).is_ok());
        for bad in [
            &b"{}"[..],
            b"{\"token\":\"\"}",
            b"{\"token\":\"a\\nb\"}",
            b"nope",
            b"{\"token\":5}",
        ] {
            assert!(parse_token(bad, now).is_err(), "{bad:?}");
        }
        let mut cache = TokenCache::default();
        cache.put("h", "s", t);
        assert!(cache.get("h", "s").is_some());
        assert!(cache.get("h", "other").is_none());
        let expired = parse_token(
            br#"{"token":"x","expires_in":10}"#,
            now - Duration::from_secs(60),
        )
        .unwrap();
        cache.put("h", "old", expired);
        assert!(cache.get("h", "old").is_none());
    }

    #[test]
    fn auth_files() {
        let dir = tempfile::tempdir().unwrap();
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let f = dir.path().join("auth.json");
        std::fs::write(
            &f,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"quay.io":{{"auth":"{}"}},"quay.io/coreos":{{"auth":"{}"}},"bad.io":{{"auth":"!!"}}}}}}"#,
                enc("hub:pw"),
                enc("q:pw:with:colons"),
                enc("coreos:x")
            ),
        )
        .unwrap();
        let files = vec![dir.path().join("missing.json"), f.clone()];
        let c = lookup(&files, "docker.io", "library/busybox")
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "hub");
        let c = lookup(&files, "quay.io", "other/x").unwrap().unwrap();
        assert_eq!(c.password, "pw:with:colons");
        let c = lookup(&files, "quay.io", "coreos/fleet").unwrap().unwrap();
        assert_eq!(c.username, "coreos", "the namespace key is more specific");
        assert_eq!(lookup(&files, "ghcr.io", "x").unwrap(), None);
        assert!(lookup(&files, "bad.io", "x").is_err());
        std::fs::write(&f, "{not json").unwrap();
        assert!(lookup(&files, "quay.io", "x").is_err());
        let secret = Credentials::parse("u:s3cret").unwrap();
        assert!(
            !format!("{secret:?}").contains("s3cret"),
            "Debug must redact"
        );
        assert!(Credentials::parse("nopass").is_err());
        assert!(Credentials::parse(":p").is_err());
    }

    #[test]
    fn helper_names_are_not_paths() {
        assert!(credential_helper("../../bin/sh", "x").is_err());
        assert!(credential_helper("a b", "x").is_err());
    }
}
