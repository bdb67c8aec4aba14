//! Pulling: reference → manifest → config → layer blobs, every step verified, into the store.
//!
//! Documents addressed by digest are immutable, so once in the store they are read from there:
//! a pinned warm start touches no network. Tags are re-resolved unless the policy says not to,
//! and with `--pull=missing` a registry that cannot be reached falls back to the cached answer.

use std::str::FromStr;

use thiserror::Error;

use crate::logging::now;
pub use crate::manifest::Image;
use crate::manifest::{self, Config, Descriptor, Document, ManifestError, Platform};
use crate::reference::{Digest, Reference};
use crate::registry::{Client, RegistryError, Repo};
use crate::store::{Begin, IndexEntry, Store, StoreError};
use crate::trust::{Trust, TrustError, Verdict};

mod layers;
mod local;
mod signed;

use layers::fetch_layers;
pub use layers::is_no_space;
pub use local::{pull_local, Loaded, LocalError, LocalRequest, LocalSource, Top};
use signed::check_trust;
pub use signed::stored_verdict;

/// When to ask the registry, as `podman run --pull` means it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Always ask the registry what the reference means; fail when it cannot be reached.
    Always,
    /// Use the store when it has the image (no network at all); pull only what is absent.
    Missing,
    /// Ask the registry what a tag means now; if it cannot answer within the registry budget,
    /// use the store (with a warning).
    Newer,
    /// Never touch the network; the image must be in the store.
    Never,
}

/// A `--pull` value that is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown pull policy {0:?} (always, missing, newer, never)")]
pub struct PolicyError(String);

impl FromStr for PullPolicy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        <Self as clap::ValueEnum>::from_str(s, true).map_err(|_| PolicyError(s.to_string()))
    }
}

#[derive(Debug, Error)]
pub enum PullError {
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error("{what}")]
    Manifest {
        what: String,
        #[source]
        source: Box<ManifestError>,
    },
    #[error(
        "manifest digest mismatch for {reference}: pinned {expected}, registry served {actual}"
    )]
    PinMismatch {
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{reference}: the registry's Docker-Content-Digest says {advertised}, but the manifest it served hashes to {actual}")]
    AdvertisedMismatch {
        reference: String,
        advertised: Digest,
        actual: Digest,
    },
    #[error("{reference}")]
    Platform {
        reference: String,
        #[source]
        source: manifest::PlatformError,
    },
    #[error("{reference} is not in the store at {root}{hint}")]
    NotInStore {
        reference: String,
        root: String,
        hint: &'static str,
    },
    #[error("not enough space for {reference} in the store at {root}: its missing layers need at least {} (downloaded and unpacked), the filesystem has {} free; free some space (skiff gc, skiff rm) or use a larger --root", crate::logging::human(*.needed), crate::logging::human(*.free))]
    NoSpace {
        reference: String,
        root: String,
        needed: u64,
        free: u64,
    },
    #[error("{verdict}")]
    Refused {
        verdict: Box<Verdict>,
        /// The refused image, so what its pull stored can be given back.
        image: Box<Image>,
    },
    #[error(transparent)]
    Trust(Box<TrustError>),
    #[error("reading {location}")]
    Local {
        location: String,
        #[source]
        source: LocalError,
    },
    #[error("{registry} cannot be reached and {reference} has no cached resolution: {cause}")]
    Offline {
        registry: String,
        reference: String,
        cause: Box<PullError>,
    },
}

impl From<RegistryError> for PullError {
    fn from(e: RegistryError) -> Self {
        PullError::Registry(Box::new(e))
    }
}

impl From<TrustError> for PullError {
    fn from(e: TrustError) -> Self {
        PullError::Trust(Box::new(e))
    }
}

impl From<StoreError> for PullError {
    fn from(e: StoreError) -> Self {
        PullError::Store(Box::new(e))
    }
}

/// What a descriptor says of a manifest beyond its digest (a pin alone says nothing more).
#[derive(Clone, Copy, Default)]
struct Expected<'a> {
    size: Option<u64>,
    media_type: Option<&'a str>,
}

/// Where documents come from: the registry (through the store), a local source (an image
/// layout or archive, through the store), or the store alone.
enum Source<'a> {
    Online(&'a Store, Repo<'a>),
    Local(&'a Store, &'a dyn LocalSource),
    Offline(&'a Store),
}

impl Source<'_> {
    fn store(&self) -> &Store {
        match self {
            Source::Online(s, _) | Source::Local(s, _) | Source::Offline(s) => s,
        }
    }

    /// The one place a manifest document addressed by digest is verified: from the store if
    /// it holds it (unless `ask_registry`, for `--pull=always`, which proves the registry still
    /// serves it), else from the registry; its digest must be the pin and its size the
    /// descriptor's, and its media type must agree with the document, before it is stored.
    fn verified_manifest(
        &self,
        reference: &str,
        digest: &Digest,
        expected: Expected<'_>,
        ask_registry: bool,
    ) -> Result<manifest::Parsed, PullError> {
        let store = self.store();
        let online = !matches!(self, Source::Offline(..));
        let (body, ct) = if store.has_blob(digest) && !(ask_registry && online) {
            (store.read_blob(digest, manifest::MAX_DOCUMENT_BYTES)?, None)
        } else {
            match self {
                Source::Online(_, repo) => {
                    let f = repo.manifest(&digest.to_string())?;
                    (f.body, f.content_type)
                }
                Source::Local(_, src) => (local::document(*src, digest)?, None),
                Source::Offline(s) => return Err(missing(reference, s, digest)),
            }
        };
        let parsed = parse(reference, &body, expected.media_type.or(ct.as_deref()))?;
        if parsed.digest != *digest {
            return Err(PullError::PinMismatch {
                reference: reference.to_string(),
                expected: digest.clone(),
                actual: parsed.digest,
            });
        }
        let actual = parsed.canonical.len() as u64;
        if expected.size.is_some_and(|s| s != actual) {
            return Err(StoreError::SizeMismatch {
                digest: digest.clone(),
                expected: expected.size.unwrap_or(0),
                actual,
            }
            .into());
        }
        store.put_blob(&parsed.digest, &parsed.canonical)?;
        Ok(parsed)
    }

    fn config(&self, reference: &str, d: &Descriptor) -> Result<Config, PullError> {
        let store = self.store();
        if !store.has_blob(&d.digest) {
            match self {
                Source::Online(_, repo) => {
                    // Under the blob's ingest lock, so concurrent pulls fetch it once; the
                    // commit verifies digest and size before the config becomes visible.
                    if let Begin::Ingest(mut ingest) = store.begin_ingest(&d.digest, d.size)? {
                        let bytes = repo.small_blob(d)?;
                        ingest.restart()?;
                        ingest.write(&bytes)?;
                        ingest.commit()?;
                    }
                }
                Source::Local(s, src) => local::ingest_blob(s, *src, d)?,
                Source::Offline(s) => return Err(missing(reference, s, &d.digest)),
            }
        }
        let bytes = store.read_blob(&d.digest, manifest::MAX_DOCUMENT_BYTES)?;
        manifest::parse_config(&bytes).map_err(|source| PullError::Manifest {
            what: format!("config {} of {reference}", d.digest),
            source: Box::new(source),
        })
    }
}

fn parse(
    reference: &str,
    body: &[u8],
    declared: Option<&str>,
) -> Result<manifest::Parsed, PullError> {
    manifest::parse_document(body, declared).map_err(|source| PullError::Manifest {
        what: format!("manifest of {reference}"),
        source: Box::new(source),
    })
}

/// Why a blob the store should have is not usable: something planted in its place (said as
/// such), or simply absent.
fn missing(reference: &str, store: &Store, d: &Digest) -> PullError {
    match store.open_blob(d) {
        Err(e @ StoreError::Unexpected { .. }) => e.into(),
        _ => not_in_store(reference, store),
    }
}

fn not_in_store(reference: &str, store: &Store) -> PullError {
    PullError::NotInStore {
        reference: reference.to_string(),
        root: store.root().display().to_string(),
        hint: "; pull it first, or run with --pull=missing",
    }
}

/// From a top-level document to the platform's image.
fn resolve_document(
    src: &Source,
    reference: &str,
    top: manifest::Parsed,
    wanted: &Platform,
    platform_explicit: bool,
) -> Result<Image, PullError> {
    let digest = top.digest.clone();
    let (manifest_digest, doc) = match top.document {
        Document::Index(entries) => {
            let d = manifest::select_platform(&entries, wanted).map_err(|source| {
                PullError::Platform {
                    reference: reference.to_string(),
                    source,
                }
            })?;
            let expected = Expected {
                size: d.size,
                media_type: Some(&d.media_type),
            };
            let child = src.verified_manifest(reference, &d.digest, expected, false)?;
            (child.digest, child.document)
        }
        other => (digest.clone(), other),
    };
    let (config_digest, config, layers, platform, schema1) = match doc {
        Document::Manifest(m) => {
            let cfg = src.config(reference, &m.config)?;
            let layers = m.layers(&cfg).map_err(|source| PullError::Manifest {
                what: format!("manifest {manifest_digest} of {reference}"),
                source: Box::new(source),
            })?;
            (
                Some(m.config.digest.clone()),
                cfg.runtime,
                layers,
                cfg.platform,
                false,
            )
        }
        Document::Schema1(s) => (None, s.config, s.layers, s.platform, true),
        Document::Index(_) => {
            return Err(PullError::Platform {
                reference: reference.to_string(),
                source: manifest::PlatformError::NestedIndex,
            })
        }
    };
    if !platform.satisfies(wanted) {
        if platform_explicit {
            return Err(PullError::Platform {
                reference: reference.to_string(),
                source: manifest::PlatformError::Mismatch {
                    image: Box::new(platform),
                    wanted: Box::new(wanted.clone()),
                },
            });
        }
        tracing::warn!(%reference, image = %platform, host = %wanted, "image platform differs from the host's");
    }
    Ok(Image {
        digest,
        manifest: manifest_digest,
        config_digest,
        platform,
        config,
        layers,
        schema1,
    })
}

/// What to pull and how.
pub struct Request<'a> {
    pub reference: &'a Reference,
    pub platform: Platform,
    /// Whether the platform was asked for (a mismatch is then an error, not a warning).
    pub platform_explicit: bool,
    pub policy: PullPolicy,
    pub max_parallel: usize,
    /// The signature policy in force for this run.
    pub trust: &'a Trust,
}

/// Progress of layer downloads, shown on a terminal or logged.
pub trait Progress: Sync {
    fn start(&self, digest: &Digest, size: Option<u64>, resumed_at: u64);
    fn advance(&self, digest: &Digest, bytes: u64);
    fn finish(&self, digest: &Digest);
}

/// The key a reference is filed under in the store index: its tag, or the whole reference
/// when it is pinned without one.
pub fn index_key(r: &Reference) -> String {
    r.tagged_name().unwrap_or_else(|| r.to_string())
}

/// A pulled image whose blobs are all in the store, and what the index should record once the
/// image is complete (unpacked): until `record`, `images` does not list it.
#[must_use = "the index names the image only after `record`"]
pub struct Pulled {
    pub image: Image,
    entry: Option<(String, IndexEntry)>,
}

impl Pulled {
    /// An image to be filed under `key`, resolved now; `origin` says where a load read it.
    fn new(image: Image, key: String, origin: Option<String>) -> Pulled {
        let entry = IndexEntry {
            digest: image.digest.clone(),
            manifest: image.manifest.clone(),
            platform: image.platform.to_string(),
            size: image.size(),
            resolved: now(),
            source: origin,
        };
        Pulled {
            image,
            entry: Some((key, entry)),
        }
    }

    /// Files the reference under its (new) resolution: call once every layer is unpacked.
    pub fn record(self, store: &Store) -> Result<Image, PullError> {
        if let Some((key, entry)) = self.entry {
            store.index().set(&key, entry)?;
        }
        Ok(self.image)
    }
}

/// Resolves a reference to an image whose blobs are all in the store, fetching what is needed.
pub fn pull(
    store: &Store,
    client: &Client,
    req: &Request,
    progress: &dyn Progress,
) -> Result<Pulled, PullError> {
    let r = req.reference;
    let key = index_key(r);
    let cached = store.index().get(&key)?;
    // Which image the reference means under the policy, and whether the registry said so.
    let (image, asked, stored) = match resolve(store, client, req, cached.as_ref())? {
        Resolution::Stored(image) => (image, false, true),
        Resolution::Resolved { image, asked } => (image, asked, false),
    };
    // Who signed it, under the policy in force now: before any layer is fetched, and at
    // every start (offline, from the signatures the store keeps).
    let fetch = |digests: &[Digest], budgeted: bool| {
        signed::fetch_signatures(client, req, digests, budgeted)
    };
    let may_fetch = req.policy != PullPolicy::Never;
    check_trust(store, req.trust, r, &image, may_fetch.then_some(&fetch))?;
    if stored {
        return Ok(Pulled { image, entry: None });
    }
    // The layer blobs the store lacks, each verified as it streams in.
    fetch_layers(store, client, r, &image, req.max_parallel, progress)?;
    // A warm start records nothing (no fsync on the way to the payload).
    let unchanged = cached
        .as_ref()
        .is_some_and(|c| c.digest == image.digest && c.manifest == image.manifest);
    if unchanged && !asked {
        return Ok(Pulled { image, entry: None });
    }
    Ok(Pulled::new(image, key, None))
}

/// How a reference resolved under the pull policy.
enum Resolution {
    /// The store has the whole image: nothing to fetch, nothing to record.
    Stored(Image),
    /// Its documents are in the store now (from there or the registry); `asked` when the
    /// registry said what the tag means (the index then records when).
    Resolved { image: Image, asked: bool },
}

/// `podman run --pull`'s meanings: a digest's documents never change, so the store serves
/// what it holds; a tag goes to the registry under `always`, under `newer` within the budget,
/// and under `missing` only when the store has no complete copy.
fn resolve(
    store: &Store,
    client: &Client,
    req: &Request,
    cached: Option<&IndexEntry>,
) -> Result<Resolution, PullError> {
    let r = req.reference;
    let name = r.to_string();
    let asked = |image| Ok(Resolution::Resolved { image, asked: true });
    match (r.digest(), req.policy) {
        (_, PullPolicy::Never) => {
            let digest = match (r.digest(), cached) {
                (Some(d), _) => d.clone(),
                (None, Some(c)) => c.digest.clone(),
                (None, None) => return Err(not_in_store(&name, store)),
            };
            Ok(Resolution::Stored(load_complete(
                store, &name, &digest, req,
            )?))
        }
        (Some(d), policy) => {
            let src = Source::Online(store, client.repo(r));
            let top =
                src.verified_manifest(&name, d, Expected::default(), policy == PullPolicy::Always)?;
            let image = resolve_document(&src, &name, top, &req.platform, req.platform_explicit)?;
            Ok(Resolution::Resolved {
                image,
                asked: false,
            })
        }
        (None, PullPolicy::Missing) => {
            match cached.map(|c| load_complete(store, &name, &c.digest, req)) {
                // In the store: no network at all, not even a HEAD.
                Some(Ok(image)) => Ok(Resolution::Stored(image)),
                Some(Err(e)) => {
                    tracing::info!(reference = %name, error = %crate::logging::chain(&e), "the store's copy is incomplete; pulling");
                    asked(resolve_online(client, store, req)?)
                }
                None => asked(resolve_online(client, store, req)?),
            }
        }
        (None, PullPolicy::Newer) => match cached {
            Some(c) => newer_or_cached(store, client, req, c),
            None => asked(resolve_online(client, store, req)?),
        },
        (None, PullPolicy::Always) => asked(resolve_tag(store, client, req)?),
    }
}

/// `--pull=newer` with a cached resolution: the registry gets the budget to say what the tag
/// means now; if it cannot be reached, the store's copy starts, with a warning.
fn newer_or_cached(
    store: &Store,
    client: &Client,
    req: &Request,
    c: &IndexEntry,
) -> Result<Resolution, PullError> {
    match client.within_budget(|| resolve_tag(store, client, req)) {
        Ok(image) => Ok(Resolution::Resolved { image, asked: true }),
        Err(e) if is_unreachable(&e) => {
            let name = req.reference.to_string();
            tracing::warn!(reference = %name, registry = %req.reference.registry(), error = %crate::logging::chain(&e),
                digest = %c.digest, resolved = %crate::logging::rfc3339(c.resolved),
                age = %crate::logging::ago(c.resolved, now()),
                "registry unreachable; using the cached resolution");
            Ok(Resolution::Stored(load_complete(
                store, &name, &c.digest, req,
            )?))
        }
        Err(e) => Err(e),
    }
}

/// Resolves a tag the store has no usable copy of; "unreachable" says there is none.
fn resolve_online(client: &Client, store: &Store, req: &Request) -> Result<Image, PullError> {
    resolve_tag(store, client, req).map_err(|e| {
        if is_unreachable(&e) {
            PullError::Offline {
                registry: req.reference.registry().to_string(),
                reference: req.reference.to_string(),
                cause: Box::new(e),
            }
        } else {
            e
        }
    })
}

fn resolve_tag(store: &Store, client: &Client, req: &Request) -> Result<Image, PullError> {
    let r = req.reference;
    let name = r.to_string();
    let repo = client.repo(r);
    let fetched = repo.manifest(&r.manifest_ref())?;
    let top = parse(&name, &fetched.body, fetched.content_type.as_deref())?;
    // A registry (or a proxy) that advertises one digest and serves other bytes is lying
    // about what the tag means.
    if let Some(advertised) = &fetched.advertised {
        if *advertised != top.digest {
            return Err(PullError::AdvertisedMismatch {
                reference: name,
                advertised: advertised.clone(),
                actual: top.digest,
            });
        }
    }
    store.put_blob(&top.digest, &top.canonical)?;
    let src = Source::Online(store, repo);
    resolve_document(&src, &name, top, &req.platform, req.platform_explicit)
}

/// Errors that mean "the registry could not be reached", as opposed to "it said no".
fn is_unreachable(e: &PullError) -> bool {
    matches!(e, PullError::Registry(e) if e.is_unreachable())
}

/// Fetches the layer blobs of a stored image that the store lacks (`verify --repair` dropped
/// them as damaged), from the image's own repository, each verified as it streams in.
pub fn refetch_layers(
    store: &Store,
    client: &Client,
    r: &Reference,
    image: &Image,
    progress: &dyn Progress,
) -> Result<(), PullError> {
    fetch_layers(store, client, r, image, 4, progress)
}

/// An image from the store alone, with every layer blob present: what `never` runs and what
/// `missing`/`newer` fall back to.
fn load_complete(
    store: &Store,
    name: &str,
    digest: &Digest,
    req: &Request,
) -> Result<Image, PullError> {
    let img = load_for(store, name, digest, &req.platform, req.platform_explicit)?;
    if let Some(l) = img.layers.iter().find(|l| !store.has_blob(&l.blob.digest)) {
        return Err(PullError::NotInStore {
            reference: format!("layer {} of {name}", l.blob.digest),
            root: store.root().display().to_string(),
            hint: "; pull it first, or run with --pull=missing",
        });
    }
    Ok(img)
}

/// Loads an image from the store alone (for `inspect`, `run --pull=never`, `gc`).
pub fn load(store: &Store, reference: &Reference, platform: &Platform) -> Result<Image, PullError> {
    let name = reference.to_string();
    let digest = match reference.digest() {
        Some(d) => d.clone(),
        None => match store.index().get(&index_key(reference))? {
            Some(e) => e.digest,
            None => return Err(not_in_store(&name, store)),
        },
    };
    load_digest(store, &name, &digest, platform)
}

/// Loads the image an index entry names.
pub fn load_digest(
    store: &Store,
    name: &str,
    digest: &Digest,
    platform: &Platform,
) -> Result<Image, PullError> {
    load_for(store, name, digest, platform, false)
}

/// The one offline load: the documents `digest` names, from the store, for `platform`.
fn load_for(
    store: &Store,
    name: &str,
    digest: &Digest,
    platform: &Platform,
    platform_explicit: bool,
) -> Result<Image, PullError> {
    let src = Source::Offline(store);
    let top = src.verified_manifest(name, digest, Expected::default(), false)?;
    resolve_document(&src, name, top, platform, platform_explicit)
}
