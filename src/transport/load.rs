//! `skiff load`: a source opened read-only, its image through the pull room's gate, unpacked
//! (every diff_id checked), and only then listed. A refusal keeps nothing this load stored.

use std::sync::Mutex;

use thiserror::Error;

use super::dir::DirSource;
use super::docker::DockerSource;
use super::files::{DirFiles, TarFiles};
use super::oci::{self, OciSource};
use super::{Location, TransportError};
use crate::images;
use crate::manifest::{Descriptor, Image, Platform};
use crate::pull::{self, LocalError, LocalRequest, LocalSource, Top};
use crate::reference::{Digest, Reference};
use crate::store::{Keep, Store};
use crate::trust::{Signatures, Trust};
use crate::unpack::{self, Storage};

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{location} carries no image name; give a REFERENCE to load it as")]
    NoName { location: String },
    #[error("{0:?} is not an image reference")]
    Reference(String, #[source] crate::reference::ReferenceError),
    #[error(transparent)]
    Pull(#[from] pull::PullError),
    #[error("unpacking the loaded image")]
    Unpack(#[source] unpack::UnpackError),
    #[error(transparent)]
    Images(#[from] images::ImagesError),
}

/// What to load and how.
pub struct LoadRequest<'a> {
    pub source: &'a Location,
    /// The name in the store; default: the one the source carries.
    pub reference: Option<&'a str>,
    pub platform: Platform,
    pub platform_explicit: bool,
    pub all: bool,
    pub trust: &'a Trust,
    pub storage: Storage,
}

/// A source that notes every digest it served: the store lacked those, so on a refusal they
/// are exactly what this load added.
struct Recording<'a> {
    inner: &'a dyn LocalSource,
    served: Mutex<Vec<Digest>>,
}

impl Recording<'_> {
    fn note(&self, d: &Digest) {
        self.served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(d.clone());
    }
}

impl LocalSource for Recording<'_> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn document(&self, digest: &Digest) -> Result<Vec<u8>, LocalError> {
        self.note(digest);
        self.inner.document(digest)
    }
    fn blob(&self, d: &Descriptor) -> Result<Box<dyn std::io::Read + '_>, LocalError> {
        self.note(&d.digest);
        self.inner.blob(d)
    }
    fn signatures(&self, digest: &Digest) -> Result<Signatures, LocalError> {
        self.inner.signatures(digest)
    }
}

/// An opened source: what serves its blobs, its top document, and the name it carries.
type Opened = (Box<dyn LocalSource>, Top, Option<String>);

fn open(loc: &Location) -> Result<Opened, TransportError> {
    let location = loc.to_string();
    Ok(match loc {
        Location::Oci { dir, tag } => {
            let files = DirFiles::open(dir)?;
            let c = oci::choose(&files, tag.as_deref())?;
            (Box::new(OciSource { files, location }), c.top, c.name)
        }
        Location::OciArchive { file, tag } => {
            let files = TarFiles::open(file)?;
            let c = oci::choose(&files, tag.as_deref())?;
            (Box::new(OciSource { files, location }), c.top, c.name)
        }
        Location::DockerArchive { file, reference } => {
            let files = TarFiles::open(file)?;
            let (src, top, name) = DockerSource::open(files, location, reference.as_deref())?;
            (Box::new(src), top, name)
        }
        Location::Dir { dir } => {
            let (src, top) = DirSource::open(DirFiles::open(dir)?, location)?;
            (Box::new(src), top, None)
        }
    })
}

/// Opens a source and reads what a load reads before the store is touched: the top document
/// (checked against its descriptor and parsed) and the signatures the source carries for it.
/// Returns its digest and the name it carries. For checking a disk, and for fuzzing.
pub fn probe(loc: &Location) -> Result<(Digest, Option<String>), LocalError> {
    let (src, top, name) = open(loc)?;
    let body = src.document(&top.digest)?;
    let parsed = crate::manifest::parse_document(&body, top.media_type.as_deref())?;
    if parsed.digest != top.digest {
        return Err(format!(
            "{loc}: the top document hashes to {}, not {}",
            parsed.digest, top.digest
        )
        .into());
    }
    src.signatures(&top.digest)?;
    Ok((top.digest, name))
}

/// Loads an image; returns the name it is listed under and the image.
pub fn load(store: &Store, req: &LoadRequest) -> Result<(Reference, Image), LoadError> {
    let loc = req.source.absolute();
    let (src, top, carried) = open(&loc)?;
    let name = req
        .reference
        .map(str::to_string)
        .or(carried)
        .ok_or_else(|| LoadError::NoName {
            location: loc.to_string(),
        })?;
    let reference: Reference = name
        .parse()
        .map_err(|e| LoadError::Reference(name.clone(), e))?;
    let rec = Recording {
        inner: src.as_ref(),
        served: Mutex::new(Vec::new()),
    };
    let lreq = LocalRequest {
        reference: &reference,
        top,
        platform: req.platform.clone(),
        platform_explicit: req.platform_explicit,
        all: req.all,
        trust: req.trust,
    };
    let result = pull::pull_local(store, &rec, &lreq)
        .map_err(LoadError::from)
        .and_then(|loaded| {
            // Unpacking checks every layer's diff_id; the other platforms' too, with --all.
            let settled = (|| {
                for other in &loaded.others {
                    unpack::ensure_layers(store, other).map_err(LoadError::Unpack)?;
                }
                unpack::ensure_rootfs(store, &loaded.pulled.image, req.storage)
                    .map_err(LoadError::Unpack)
            })();
            match settled {
                Ok(_) => Ok(loaded),
                Err(e) => {
                    give_back(
                        store,
                        &rec,
                        std::iter::once(&loaded.pulled.image).chain(&loaded.others),
                    );
                    Err(e)
                }
            }
        });
    let loaded = match result {
        Ok(l) => l,
        Err(e) => {
            let refused = match &e {
                LoadError::Pull(pull::PullError::Refused { image, .. }) => Some(image.as_ref()),
                _ => None,
            };
            give_back(store, &rec, refused.into_iter());
            return Err(e);
        }
    };
    // Only a complete image is listed.
    let image = loaded
        .pulled
        .record(store)
        .map_err(images::ImagesError::Record)?;
    Ok((reference, image))
}

/// Removes what a failed load stored (the blobs the source served, and the trees of `images`)
/// that no listed image needs.
fn give_back<'i>(store: &Store, rec: &Recording, images: impl Iterator<Item = &'i Image>) {
    let mut these = Keep::default();
    these.blobs.extend(
        rec.served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..),
    );
    for img in images {
        let u = images::uses(img);
        these.blobs.extend(u.blobs);
        these.trees.extend(u.trees);
    }
    let released = images::needed(store)
        .map_err(|e| crate::logging::chain(&e))
        .and_then(|keep| {
            store
                .release(&these, &keep)
                .map_err(|e| crate::logging::chain(&e))
        });
    match released {
        Ok(n) => tracing::debug!(removed = n, "removed what the failed load stored"),
        Err(e) => tracing::warn!(error = %e, "could not remove what the failed load stored"),
    }
}
