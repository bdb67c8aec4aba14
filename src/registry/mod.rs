//! The registry client: Distribution API v2 over HTTPS (or HTTP where allowed), with auth,
//! mirrors, bounded retries and resumable blob downloads.
//!
//! Everything it returns is still untrusted: the store verifies blobs, `manifest` parses
//! documents. This room only moves bytes.

pub mod auth;
mod repo;

pub use repo::FetchedManifest;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client as Http, Response};
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use thiserror::Error;

use crate::reference::{Digest, Reference};
use crate::store::StoreError;
use auth::{Challenge, Credentials, TokenCache};

/// Per-registry CAs, as containers' certs.d: `DIR/HOST[:PORT]/*.crt`.
pub const DEFAULT_CERTS_DIR: &str = "/etc/skiff/certs.d";
const MAX_ERROR_BODY: u64 = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_TOKEN_BODY: u64 = 1 << 20;

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("GET {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: {status}{}", body_suffix(.body))]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{what} not found at {url} (does the repository and tag exist?)")]
    NotFound { what: String, url: String },
    #[error("GET {url}: 401 unauthorized{}; give credentials with --creds USER:PASS or an auth file (REGISTRY_AUTH_FILE, containers auth.json, ~/.docker/config.json)", body_suffix(.body))]
    Unauthorized { url: String, body: String },
    #[error("authenticating to {registry}")]
    Auth {
        registry: String,
        #[source]
        source: auth::AuthError,
    },
    #[error("reading CA certificates {path}: {why}")]
    Ca { path: PathBuf, why: String },
    #[error("{url} answered more than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("storing {digest} from {url}")]
    Store {
        digest: Digest,
        url: String,
        #[source]
        source: StoreError,
    },
    #[error("GET {url}")]
    Read {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("every endpoint failed for {what}: {}", .errors.join("; "))]
    AllEndpoints { what: String, errors: Vec<String> },
    #[error("{url} is not a URL skiff can fetch: {why}")]
    BadUrl { url: String, why: String },
    #[error("GET {url}: no answer within the registry budget of {budget:?} (--registry-timeout)")]
    OutOfTime { url: String, budget: Duration },
}

impl RegistryError {
    /// Whether the registry could not be reached (as opposed to answering "no").
    pub fn is_unreachable(&self) -> bool {
        match self {
            RegistryError::Transport { .. }
            | RegistryError::Read { .. }
            | RegistryError::OutOfTime { .. }
            | RegistryError::AllEndpoints { .. } => true,
            RegistryError::Status { status, .. } => {
                status.is_server_error() || status.as_u16() == 429
            }
            _ => false,
        }
    }
}

/// Whether a connection failed in a way no wait can mend soon: refused, no route, or a name
/// that does not resolve. Timeouts (dropped packets) are not among them.
fn fails_at_once(e: &reqwest::Error) -> bool {
    use std::io::ErrorKind::*;
    let refused = crate::logging::has_io_cause(e, |io| {
        matches!(
            io.kind(),
            ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
        )
    });
    refused || crate::logging::causes(e).any(|c| c.to_string().contains("dns error"))
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(" ({body})")
    }
}

/// How the client reaches registries.
#[derive(Clone, Debug)]
pub struct Options {
    /// `HOST[:PORT]` allowed over plain HTTP (loopback always is).
    pub insecure: Vec<String>,
    /// Extra CA bundles trusted for every registry (`--tls-ca`).
    pub tls_ca: Vec<PathBuf>,
    /// Per-registry CAs: `DIR/HOST[:PORT]/*.crt`.
    pub certs_dir: PathBuf,
    /// Credentials for the image's own registry (`--creds`).
    pub creds: Option<Credentials>,
    pub auth_files: Vec<PathBuf>,
    /// `(registry, mirror)` pairs, tried in order before the registry itself.
    pub mirrors: Vec<(String, String)>,
    /// Attempts after the first, for connection errors, 429 and 5xx.
    pub retries: u32,
    /// First backoff; doubles each attempt.
    pub backoff: Duration,
    /// A read that stalls this long fails (and is retried or resumed).
    pub stall_timeout: Duration,
    /// The time a registry gets when the store can serve instead (`--pull=newer` with a cached
    /// resolution), or a mirror gets before the next endpoint is tried (`--registry-timeout`).
    pub budget: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: vec![],
            tls_ca: vec![],
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            creds: None,
            auth_files: auth::auth_file_locations(),
            mirrors: vec![],
            retries: 4,
            backoff: Duration::from_millis(250),
            stall_timeout: Duration::from_secs(60),
            budget: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scheme {
    Https,
    Http,
}

/// One place a repository can be fetched from: the registry itself or a mirror.
#[derive(Clone, Debug)]
struct Endpoint {
    /// host[:port] the API is on.
    host: String,
    /// The name credentials are filed under.
    cred_key: String,
    /// `--creds` go to the image's own registry only, never to a mirror.
    upstream: bool,
}

#[derive(Default)]
struct State {
    http: HashMap<String, Http>,
    scheme: HashMap<String, Scheme>,
    tokens: TokenCache,
    basic: HashMap<String, String>,
    /// While set, requests to the image's own registry end by then (see `within_budget`).
    deadline: Option<Instant>,
}

pub struct Client {
    opts: Options,
    state: Mutex<State>,
}

/// A repository on a registry (and its mirrors).
pub struct Repo<'c> {
    client: &'c Client,
    repository: String,
    endpoints: Vec<Endpoint>,
}

/// What `send` does after one attempt.
enum Step {
    Done(Response),
    Wait(Duration),
    Fail(RegistryError),
}

/// Whether a wait still leaves time under a deadline (always, without one).
fn fits(wait: Duration, remaining: Option<Duration>) -> bool {
    remaining.is_none_or(|r| wait < r)
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') {
            h
        } else {
            host
        }
    });
    matches!(h, "localhost" | "127.0.0.1" | "[::1]") || h.starts_with("127.")
}

impl Client {
    pub fn new(opts: Options) -> Client {
        Client {
            opts,
            state: Mutex::new(State::default()),
        }
    }

    pub fn repo(&self, r: &Reference) -> Repo<'_> {
        let mut endpoints: Vec<Endpoint> = self
            .opts
            .mirrors
            .iter()
            .filter(|(reg, _)| reg == r.registry())
            .map(|(_, m)| Endpoint {
                host: m.clone(),
                cred_key: m.clone(),
                upstream: false,
            })
            .collect();
        endpoints.push(Endpoint {
            host: r.api_host().to_string(),
            cred_key: r.registry().to_string(),
            upstream: true,
        });
        Repo {
            client: self,
            repository: r.repository().to_string(),
            endpoints,
        }
    }

    /// Runs `f` with the registry budget: every request ends by then, and a connection that is
    /// refused, unroutable or unresolvable fails at once instead of being retried.
    pub fn within_budget<T>(&self, f: impl FnOnce() -> T) -> T {
        self.lock().deadline = Some(Instant::now() + self.opts.budget);
        let out = f();
        self.lock().deadline = None;
        out
    }

    pub fn budget(&self) -> Duration {
        self.opts.budget
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only caches behind; they stay usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn http(&self, host: &str, connect: Duration) -> Result<Http, RegistryError> {
        if let Some(c) = self.lock().http.get(host) {
            return Ok(c.clone());
        }
        let mut b = Http::builder()
            .user_agent(concat!("skiff/", env!("CARGO_PKG_VERSION")))
            .timeout(self.opts.stall_timeout)
            .connect_timeout(connect);
        let mut cas = self.opts.tls_ca.clone();
        cas.extend(host_cas(&self.opts.certs_dir.join(host))?);
        for path in cas {
            let pem = std::fs::read(&path).map_err(|e| RegistryError::Ca {
                path: path.clone(),
                why: e.to_string(),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RegistryError::Ca {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(RegistryError::Ca {
                    path,
                    why: "no PEM certificate in the file".into(),
                });
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let client = b.build().map_err(RegistryError::Client)?;
        self.lock().http.insert(host.to_string(), client.clone());
        Ok(client)
    }

    fn insecure_allowed(&self, host: &str) -> bool {
        is_loopback(host) || self.opts.insecure.iter().any(|h| h == host)
    }

    fn scheme(&self, host: &str) -> Scheme {
        *self.lock().scheme.get(host).unwrap_or(&Scheme::Https)
    }

    fn backoff(&self, attempt: u32, resp: Option<&Response>) -> Duration {
        let retry_after = resp
            .and_then(|r| r.headers().get(RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(30)));
        retry_after.unwrap_or_else(|| {
            (self.opts.backoff * 2u32.saturating_pow(attempt)).min(Duration::from_secs(10))
        })
    }

    /// Sends one GET (or HEAD) with bounded retries on connection errors, 429 and 5xx. For hosts
    /// allowed plain HTTP, a failed TLS connection falls back to HTTP once and remembers it.
    fn send(
        &self,
        method: &reqwest::Method,
        ep: &Endpoint,
        path: &str,
        scope: &str,
        headers: &[(reqwest::header::HeaderName, String)],
    ) -> Result<(String, Response), RegistryError> {
        // A mirror that does not answer gets the budget, then the next endpoint is tried.
        let connect = if ep.upstream {
            CONNECT_TIMEOUT
        } else {
            self.opts.budget.min(CONNECT_TIMEOUT)
        };
        let http = self.http(&ep.host, connect)?;
        // Under a budget (or for a mirror, which the next endpoint can stand in for), waiting
        // is bounded and hopeless failures are not retried.
        let deadline = if ep.upstream {
            self.lock().deadline
        } else {
            Some(Instant::now() + self.opts.budget)
        };
        let mut attempt = 0;
        loop {
            let scheme = self.scheme(&ep.host);
            let url = format!(
                "{}://{}{path}",
                if scheme == Scheme::Https {
                    "https"
                } else {
                    "http"
                },
                ep.host
            );
            let remaining = match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
                Some(r) if r.is_zero() => return Err(self.out_of_time(url)),
                r => r,
            };
            let mut req = http.request(method.clone(), &url);
            if let Some(r) = remaining {
                req = req.timeout(r);
            }
            for (k, v) in headers {
                req = req.header(k, v);
            }
            if let Some(a) = self.auth_header(&ep.host, scope) {
                req = req.header(AUTHORIZATION, a);
            }
            let result = req.send();
            if let Err(e) = &result {
                if scheme == Scheme::Https && self.insecure_allowed(&ep.host) {
                    tracing::debug!(host = %ep.host, error = %crate::logging::chain(e), "TLS failed; using plain HTTP for an insecure registry");
                    self.lock().scheme.insert(ep.host.clone(), Scheme::Http);
                    continue;
                }
            }
            match self.next_step(result, attempt, remaining, deadline.is_some(), &url) {
                Step::Done(r) => return Ok((url, r)),
                Step::Fail(e) => return Err(e),
                Step::Wait(wait) => std::thread::sleep(wait),
            }
            attempt += 1;
        }
    }

    /// GETs a URL outside the Distribution API (a signature lookaside), bounded by `limit`
    /// and, under `within_budget`, by the budget: `None` when it is not there (404). No
    /// credentials are sent: a lookaside is not the registry.
    pub fn get_url(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, RegistryError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| RegistryError::BadUrl {
            url: url.to_string(),
            why: e.to_string(),
        })?;
        let host = host_port(&parsed).ok_or_else(|| RegistryError::BadUrl {
            url: url.to_string(),
            why: "no host".into(),
        })?;
        let http = self.http(&host, self.opts.budget.min(CONNECT_TIMEOUT))?;
        let mut req = http.get(parsed);
        if let Some(d) = self.lock().deadline {
            let remaining = d.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.out_of_time(url.to_string()));
            }
            req = req.timeout(remaining);
        }
        let resp = req.send().map_err(|source| RegistryError::Transport {
            url: url.to_string(),
            source,
        })?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => read_bounded(resp, limit, url).map(Some),
            status => Err(RegistryError::Status {
                url: url.to_string(),
                status,
                body: error_excerpt(resp),
            }),
        }
    }

    fn out_of_time(&self, url: String) -> RegistryError {
        RegistryError::OutOfTime {
            url,
            budget: self.opts.budget,
        }
    }

    /// What to do with one attempt's outcome: 429, 5xx and connection failures are retried
    /// with backoff while attempts (and, under a budget, time) remain; under a budget a
    /// refused, unroutable or unresolvable connection is not, since no wait mends it soon.
    fn next_step(
        &self,
        result: reqwest::Result<Response>,
        attempt: u32,
        remaining: Option<Duration>,
        budgeted: bool,
        url: &str,
    ) -> Step {
        let retries_left = attempt < self.opts.retries;
        match result {
            Ok(r)
                if r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error() =>
            {
                let wait = self.backoff(attempt, Some(&r));
                if retries_left && fits(wait, remaining) {
                    tracing::warn!(%url, status = %r.status(), ?wait, "registry error; waiting, then asking again");
                    Step::Wait(wait)
                } else {
                    Step::Done(r)
                }
            }
            Ok(r) => Step::Done(r),
            Err(e) => {
                let wait = self.backoff(attempt, None);
                let transient = e.is_connect() || e.is_timeout() || e.is_request();
                if retries_left
                    && transient
                    && !(budgeted && fails_at_once(&e))
                    && fits(wait, remaining)
                {
                    tracing::warn!(%url, error = %crate::logging::chain(&e), ?wait, "connection failed; waiting, then trying again");
                    Step::Wait(wait)
                } else if budgeted && e.is_timeout() {
                    Step::Fail(self.out_of_time(url.to_string()))
                } else {
                    Step::Fail(RegistryError::Transport {
                        url: url.to_string(),
                        source: e,
                    })
                }
            }
        }
    }

    fn auth_header(&self, host: &str, scope: &str) -> Option<String> {
        let st = self.lock();
        st.tokens
            .get(host, scope)
            .map(|t| t.header())
            .or_else(|| st.basic.get(host).cloned())
    }

    fn credentials(
        &self,
        ep: &Endpoint,
        repository: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        if ep.upstream {
            if let Some(c) = &self.opts.creds {
                return Ok(Some(c.clone()));
            }
        }
        auth::lookup(&self.opts.auth_files, &ep.cred_key, repository).map_err(|source| {
            RegistryError::Auth {
                registry: ep.cred_key.clone(),
                source,
            }
        })
    }

    /// Answers a 401 challenge: fetches a bearer token (anonymously when no credentials are
    /// known, as quay.io and Docker Hub allow) or arms Basic auth. `false`: nothing to try.
    fn authenticate(
        &self,
        ep: &Endpoint,
        repository: &str,
        scope: &str,
        challenge: Option<&str>,
    ) -> Result<bool, RegistryError> {
        let creds = self.credentials(ep, repository)?;
        match challenge.and_then(auth::parse_challenge) {
            Some(Challenge::Basic) => match creds {
                Some(c) => {
                    self.lock().basic.insert(ep.host.clone(), c.basic_header());
                    Ok(true)
                }
                None => Ok(false),
            },
            Some(Challenge::Bearer { realm, service, .. }) => {
                let token =
                    self.fetch_token(ep, &realm, service.as_deref(), scope, creds.as_ref())?;
                self.lock().tokens.put(&ep.host, scope, token);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn fetch_token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<auth::Token, RegistryError> {
        let err = |source: auth::AuthError| RegistryError::Auth {
            registry: ep.cred_key.clone(),
            source,
        };
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| err(auth::AuthError::Realm(realm.to_string(), Box::new(e))))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let realm_host =
            host_port(&url).ok_or_else(|| err(auth::AuthError::RealmHost(realm.to_string())))?;
        let http = self.http(&realm_host, CONNECT_TIMEOUT)?;
        let mut req = http.get(url.clone());
        if let Some(c) = creds {
            req = req.header(AUTHORIZATION, c.basic_header());
        }
        let resp = req.send().map_err(|source| RegistryError::Transport {
            url: url.to_string(),
            source,
        })?;
        let status = resp.status();
        let body = read_bounded(resp, MAX_TOKEN_BODY, url.as_str())?;
        if !status.is_success() {
            return Err(err(auth::AuthError::TokenStatus {
                url: url.as_str().split('?').next().unwrap_or("").to_string(),
                status,
                hint: if status == StatusCode::UNAUTHORIZED {
                    " (wrong credentials?)"
                } else {
                    ""
                },
            }));
        }
        auth::parse_token(&body, Instant::now()).map_err(err)
    }
}

/// `HOST[:PORT]` of a URL, the key the per-host HTTP clients and CAs are filed under.
fn host_port(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

/// `*.crt` files in a certs.d directory, as containers' certs.d reads them.
fn host_cas(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => {
            return Err(RegistryError::Ca {
                path: dir.to_path_buf(),
                why: e.to_string(),
            })
        }
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    out.sort();
    Ok(out)
}

fn read_bounded(resp: Response, limit: u64, url: &str) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(RegistryError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    let mut buf = Vec::new();
    resp.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| RegistryError::Read {
            url: url.to_string(),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(RegistryError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    Ok(buf)
}

fn error_excerpt(resp: Response) -> String {
    let mut buf = Vec::new();
    let _ = resp.take(MAX_ERROR_BODY).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_may_use_http() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "quay.io",
            "localhost.evil.com",
            "10.0.0.1:5000",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
        let c = Client::new(Options {
            insecure: vec!["reg.lan:5000".into()],
            ..Options::default()
        });
        assert!(c.insecure_allowed("reg.lan:5000"));
        assert!(!c.insecure_allowed("reg.lan"));
    }
}
