//! Operations on one repository: manifests and blobs, tried on each endpoint (mirrors first),
//! with auth challenges answered and interrupted blob downloads resumed.

use std::io::Read;

use reqwest::blocking::Response;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use super::{error_excerpt, read_bounded, Endpoint, RegistryError, Repo};
use crate::manifest::{self, Descriptor};
use crate::reference::Digest;
use crate::store::Ingest;

/// A manifest body as fetched, with what the registry said it was.
pub struct FetchedManifest {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    /// The `Docker-Content-Digest` header, when it names a sha256 digest.
    pub advertised: Option<Digest>,
}

/// The digest a response advertises. One skiff cannot check (another algorithm) is logged and
/// left aside; the body is verified against the pin or by hashing in any case.
fn advertised_digest(resp: &Response, url: &str) -> Option<Digest> {
    let v = resp.headers().get("docker-content-digest")?.to_str().ok()?;
    match v.trim().parse::<Digest>() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::debug!(url, header = v, error = %e, "ignoring a Docker-Content-Digest skiff cannot check");
            None
        }
    }
}

impl Repo<'_> {
    fn scope(&self) -> String {
        format!("repository:{}:pull", self.repository)
    }

    /// GET with auth: on 401, answer the challenge once and retry.
    fn get(
        &self,
        ep: &Endpoint,
        path: &str,
        headers: &[(reqwest::header::HeaderName, String)],
    ) -> Result<(String, Response), RegistryError> {
        self.request(&reqwest::Method::GET, ep, path, headers)
    }

    /// A request with auth: on 401, answer the challenge once and retry.
    fn request(
        &self,
        method: &reqwest::Method,
        ep: &Endpoint,
        path: &str,
        headers: &[(reqwest::header::HeaderName, String)],
    ) -> Result<(String, Response), RegistryError> {
        let scope = self.scope();
        let (url, resp) = self.client.send(method, ep, path, &scope, headers)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok((url, resp));
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !self
            .client
            .authenticate(ep, &self.repository, &scope, challenge.as_deref())?
        {
            return Err(RegistryError::Unauthorized {
                url,
                body: error_excerpt(resp),
            });
        }
        let (url, resp) = self.client.send(method, ep, path, &scope, headers)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized {
                url,
                body: error_excerpt(resp),
            });
        }
        Ok((url, resp))
    }

    /// Tries each endpoint (mirrors first) until one succeeds.
    fn each_endpoint<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&Endpoint) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut errors = Vec::new();
        let n = self.endpoints.len();
        for (i, ep) in self.endpoints.iter().enumerate() {
            match f(ep) {
                Ok(v) => return Ok(v),
                // A verification failure is not the endpoint's fault to retry around silently:
                // but a lying mirror must not block the real registry, so go on and report.
                Err(e) if i + 1 < n => {
                    tracing::warn!(mirror = %ep.host, error = %crate::logging::chain(&e), "mirror failed, trying the next endpoint");
                    errors.push(format!("{}: {}", ep.host, crate::logging::chain(&e)));
                }
                Err(e) if errors.is_empty() => return Err(e),
                Err(e) => {
                    errors.push(format!("{}: {}", ep.host, crate::logging::chain(&e)));
                    return Err(RegistryError::AllEndpoints {
                        what: what.to_string(),
                        errors,
                    });
                }
            }
        }
        unreachable!("a repository always has its own registry as an endpoint")
    }

    /// Fetches a manifest by tag or digest.
    pub fn manifest(&self, reference: &str) -> Result<FetchedManifest, RegistryError> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        self.each_endpoint(&path, |ep| {
            let (url, resp) = self.get(ep, &path, &[(ACCEPT, manifest::ACCEPT.to_string())])?;
            match resp.status() {
                StatusCode::OK => {
                    let content_type = resp
                        .headers()
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let advertised = advertised_digest(&resp, &url);
                    let body = read_bounded(resp, manifest::MAX_DOCUMENT_BYTES, &url)?;
                    Ok(FetchedManifest {
                        body,
                        content_type,
                        advertised,
                    })
                }
                StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                    what: format!("manifest {}:{reference}", self.repository),
                    url,
                }),
                status => Err(RegistryError::Status {
                    url,
                    status,
                    body: error_excerpt(resp),
                }),
            }
        })
    }

    /// What a tag (or digest) names now, from a HEAD and its `Docker-Content-Digest`: one
    /// request and no body. `None` when the registry answers without the header (the caller
    /// then GETs the manifest and hashes it).
    pub fn head_manifest(&self, reference: &str) -> Result<Option<Digest>, RegistryError> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        self.each_endpoint(&path, |ep| {
            let accept = [(ACCEPT, manifest::ACCEPT.to_string())];
            let (url, resp) = self.request(&reqwest::Method::HEAD, ep, &path, &accept)?;
            match resp.status() {
                StatusCode::OK => Ok(advertised_digest(&resp, &url)),
                StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                    what: format!("manifest {}:{reference}", self.repository),
                    url,
                }),
                status => Err(RegistryError::Status {
                    url,
                    status,
                    body: String::new(),
                }),
            }
        })
    }

    /// Fetches a small blob (a config) whole, bounded by its descriptor's size.
    pub fn small_blob(&self, d: &Descriptor) -> Result<Vec<u8>, RegistryError> {
        let limit = d
            .size
            .unwrap_or(manifest::MAX_DOCUMENT_BYTES)
            .min(manifest::MAX_DOCUMENT_BYTES);
        let path = format!("/v2/{}/blobs/{}", self.repository, d.digest);
        self.each_endpoint(&path, |ep| {
            let (url, resp) = self.get(ep, &path, &[])?;
            check_blob_status(&url, resp, &d.digest).and_then(|r| read_bounded(r, limit, &url))
        })
    }

    /// Streams a blob into `ingest`, resuming from what it already holds with a Range request,
    /// and again after a connection drops mid-body (bounded by the retry count).
    pub fn fetch_blob(
        &self,
        d: &Descriptor,
        ingest: &mut Ingest,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), RegistryError> {
        let path = format!("/v2/{}/blobs/{}", self.repository, d.digest);
        self.each_endpoint(&path, |ep| {
            let mut drops = 0;
            loop {
                match self.fetch_once(ep, &path, d, ingest, progress) {
                    Ok(()) => return Ok(()),
                    Err(e @ RegistryError::Read { .. }) if drops < self.client.opts.retries => {
                        drops += 1;
                        tracing::warn!(digest = %d.digest, offset = ingest.offset(), error = %crate::logging::chain(&e), "download interrupted, resuming");
                        std::thread::sleep(self.client.backoff(drops, None));
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }

    fn fetch_once(
        &self,
        ep: &Endpoint,
        path: &str,
        d: &Descriptor,
        ingest: &mut Ingest,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), RegistryError> {
        let offset = ingest.offset();
        if d.size.is_some_and(|s| s == offset) {
            return Ok(());
        }
        let headers = if offset > 0 {
            vec![(RANGE, format!("bytes={offset}-"))]
        } else {
            vec![]
        };
        let (url, resp) = self.get(ep, path, &headers)?;
        let store_err = |source| RegistryError::Store {
            digest: d.digest.clone(),
            url: url.clone(),
            source,
        };
        let mut resp = match resp.status() {
            StatusCode::PARTIAL_CONTENT if offset > 0 => resp,
            StatusCode::OK => {
                if offset > 0 {
                    tracing::debug!(%url, "registry ignored the Range request; starting over");
                    ingest.restart().map_err(store_err)?;
                    progress(0);
                }
                resp
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // What we hold is not a prefix the registry recognises: start over.
                ingest.restart().map_err(store_err)?;
                return Err(RegistryError::Read {
                    url,
                    source: std::io::Error::other("range not satisfiable; restarting download"),
                });
            }
            _ => return check_blob_status(&url, resp, &d.digest).map(|_| ()),
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(RegistryError::Read { url, source }),
            };
            ingest.write(&buf[..n]).map_err(store_err)?;
            progress(ingest.offset());
        }
    }
}

fn check_blob_status(
    url: &str,
    resp: Response,
    digest: &Digest,
) -> Result<Response, RegistryError> {
    match resp.status() {
        s if s.is_success() => Ok(resp),
        StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
            what: format!("blob {digest}"),
            url: url.to_string(),
        }),
        status => Err(RegistryError::Status {
            url: url.to_string(),
            status,
            body: error_excerpt(resp),
        }),
    }
}
