//! Images from a local source (an image layout, an archive, a `dir:` copy) through the same
//! gate as a pull: each document verified against the descriptor that names it, each blob
//! streamed into the store's ingest and verified there by the store, and the policy judged on
//! the signatures the source carries (and those the store keeps), before any layer is read.

use std::io::Read;

use super::layers::check_space;
use super::signed::check_trust;
use super::{
    index_key, resolve_document, Descriptor, Digest, Document, Expected, Image, PullError, Pulled,
    Reference, Source, Store,
};
use crate::manifest::Platform;
use crate::store::Begin;
use crate::trust::{Signatures, Trust};

/// What a source gives back when it cannot serve (it names the file and what is wrong).
pub type LocalError = Box<dyn std::error::Error + Send + Sync>;

/// One more way to produce blobs. The source only reads; every check is the store's and the
/// pull room's, as for bytes from a registry.
pub trait LocalSource {
    /// Where the bytes come from, in containers-transports(5) syntax, for messages and for the
    /// store index (`oci-archive:/mnt/etcd.tar`).
    fn location(&self) -> String;
    /// A manifest or index by digest, read bounded (the caller verifies it).
    fn document(&self, digest: &Digest) -> Result<Vec<u8>, LocalError>;
    /// A blob's bytes, streamed (the store verifies size and digest as they arrive).
    fn blob(&self, d: &Descriptor) -> Result<Box<dyn Read + '_>, LocalError>;
    /// The signatures the source carries for a manifest (none, for most formats), with
    /// `looked` saying where it looked.
    fn signatures(&self, digest: &Digest) -> Result<Signatures, LocalError>;
}

/// The top-level document a source names (its index.json entry, or what it is by itself).
#[derive(Clone, Debug)]
pub struct Top {
    pub digest: Digest,
    pub size: Option<u64>,
    pub media_type: Option<String>,
}

/// What to load and how.
pub struct LocalRequest<'a> {
    /// The name it gets in the store.
    pub reference: &'a Reference,
    pub top: Top,
    pub platform: Platform,
    pub platform_explicit: bool,
    /// Every platform of an index, not just `platform`.
    pub all: bool,
    pub trust: &'a Trust,
}

/// A loaded image (to be unpacked, then recorded) and, with `all`, the index's other
/// platforms (their blobs stored too, to be unpacked so their diff_ids are checked).
pub struct Loaded {
    pub pulled: Pulled,
    pub others: Vec<Image>,
}

fn local_err(src: &dyn LocalSource) -> impl Fn(LocalError) -> PullError + '_ {
    move |source| PullError::Local {
        location: src.location(),
        source,
    }
}

/// A document from the source (the caller's `verified_manifest` checks it).
pub(super) fn document(src: &dyn LocalSource, digest: &Digest) -> Result<Vec<u8>, PullError> {
    src.document(digest).map_err(local_err(src))
}

/// Streams one blob from the source into the store's ingest; the commit verifies it. A blob
/// the source cannot finish (a truncated archive) leaves no partial behind.
pub(super) fn ingest_blob(
    store: &Store,
    src: &dyn LocalSource,
    d: &Descriptor,
) -> Result<(), PullError> {
    let mut ingest = match store.begin_ingest(&d.digest, d.size)? {
        Begin::Present => return Ok(()),
        Begin::Ingest(i) => i,
    };
    // Local bytes are cheap to read again; a leftover partial is not worth trusting.
    ingest.restart()?;
    let copied = (|| {
        let mut r = src.blob(d).map_err(local_err(src))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(local_err(src)(Box::new(e))),
            };
            ingest.write(&buf[..n])?;
        }
    })();
    if let Err(e) = copied {
        ingest.discard();
        return Err(e);
    }
    Ok(ingest.commit()?)
}

/// With `--all`: the index's images for the platforms other than `image`'s, each once.
fn other_platforms(
    source: &Source,
    name: &str,
    top: &Digest,
    image: &Image,
    platforms: Vec<Platform>,
) -> Result<Vec<Image>, PullError> {
    let mut others: Vec<Image> = Vec::new();
    for p in platforms {
        if p.satisfies(&image.platform) && image.platform.satisfies(&p) {
            continue;
        }
        let index = source.verified_manifest(name, top, Expected::default(), false)?;
        let other = resolve_document(source, name, index, &p, true)?;
        if other.manifest != image.manifest && !others.iter().any(|o| o.manifest == other.manifest)
        {
            others.push(other);
        }
    }
    Ok(others)
}

/// Loads an image from `src` into the store: documents, the policy's verdict, then blobs.
pub fn pull_local(
    store: &Store,
    src: &dyn LocalSource,
    req: &LocalRequest,
) -> Result<Loaded, PullError> {
    let r = req.reference;
    let name = r.to_string();
    // A REFERENCE pinned by digest must name what the source holds.
    if let Some(pin) = r.digest().filter(|p| **p != req.top.digest) {
        return Err(PullError::PinMismatch {
            reference: name,
            expected: pin.clone(),
            actual: req.top.digest.clone(),
        });
    }
    let source = Source::Local(store, src);
    let expected = Expected {
        size: req.top.size,
        media_type: req.top.media_type.as_deref(),
    };
    // Read from the source even when the store has it: what is loaded is what it holds.
    let top = source.verified_manifest(&name, &req.top.digest, expected, true)?;
    let platforms: Vec<Platform> = match &top.document {
        Document::Index(entries) if req.all => {
            entries.iter().filter_map(|e| e.platform.clone()).collect()
        }
        _ => Vec::new(),
    };
    let image = resolve_document(&source, &name, top, &req.platform, req.platform_explicit)?;
    let others = other_platforms(&source, &name, &req.top.digest, &image, platforms)?;
    // The policy for REFERENCE, on the signatures the store keeps and those the source
    // carries; a refused image's documents are given back by the caller.
    let fetch = |digests: &[Digest], _budgeted: bool| {
        digests
            .iter()
            .map(|d| src.signatures(d).map_err(local_err(src)))
            .collect::<Result<Vec<_>, _>>()
    };
    check_trust(store, req.trust, r, &image, Some(&fetch))?;
    let mut todo: Vec<&Descriptor> = Vec::new();
    for l in std::iter::once(&image)
        .chain(&others)
        .flat_map(|i| &i.layers)
    {
        if !store.has_blob(&l.blob.digest) && !todo.iter().any(|d| d.digest == l.blob.digest) {
            todo.push(&l.blob);
        }
    }
    check_space(store, r, &todo)?;
    for d in todo {
        ingest_blob(store, src, d)?;
    }
    Ok(Loaded {
        pulled: Pulled::new(image, index_key(r), Some(src.location())),
        others,
    })
}
