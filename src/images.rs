//! The images the store holds, taken as a whole: what they need, so `gc` and `rm` know what to
//! keep, and giving back what an image that could not be completed used.

use thiserror::Error;

use crate::manifest::{Image, Platform};
use crate::pull;
use crate::reference::Reference;
use crate::registry::Client;
use crate::store::{IndexEntry, Keep, Store, StoreError, Swept, TreeKey};
use crate::unpack::{ensure_rootfs, Storage, UnpackError, Unpacked};

#[derive(Debug, Error)]
pub enum ImagesError {
    #[error("{0} is not in the store (see `skiff images`)")]
    NotInStore(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pull(#[from] pull::PullError),
    #[error("unpacking")]
    Unpack(#[source] UnpackError),
    #[error("recording it in the store index")]
    Record(#[source] pull::PullError),
}

/// The image a request names, ready to run: pulled and verified, every layer unpacked as
/// `storage` serves it, and only then listed in the index.
pub fn obtain(
    store: &Store,
    client: Client,
    req: &pull::Request,
    storage: Storage,
    progress: &dyn pull::Progress,
) -> Result<(Image, Unpacked), ImagesError> {
    let pulled = match pull::pull(store, &client, req, progress) {
        Ok(p) => p,
        Err(e) => {
            if let pull::PullError::Refused { image, .. } = &e {
                // A refused image leaves nothing behind that no listed image needs.
                match release(store, image) {
                    Ok(removed) => {
                        tracing::debug!(image = %image.digest, removed, "removed what the refused image's pull stored")
                    }
                    Err(err) => {
                        tracing::warn!(error = %crate::logging::chain(&err), "could not remove what the refused image's pull stored")
                    }
                }
            }
            return Err(e.into());
        }
    };
    // The registry client (and its threads) is done before any unpacking or namespace work.
    drop(client);
    let unpacked = match ensure_rootfs(store, &pulled.image, storage) {
        Ok(u) => u,
        Err(e) => {
            if pull::is_no_space(&e) {
                // What cannot become an image on this disk only keeps it full.
                match release(store, &pulled.image) {
                    Ok(removed) => {
                        tracing::warn!(image = %pulled.image.digest, removed, "the store's filesystem is full; removed what this image had unpacked and downloaded")
                    }
                    Err(err) => {
                        tracing::warn!(error = %crate::logging::chain(&err), "could not free what the failed image used")
                    }
                }
            }
            return Err(ImagesError::Unpack(e));
        }
    };
    // Only a complete image is listed: a layer refused above leaves the index as it was.
    let image = pulled.record(store).map_err(ImagesError::Record)?;
    Ok((image, unpacked))
}

/// The blobs and trees one image uses: its documents and layers, their trees, and its flat
/// rootfs (where there is one).
pub fn uses(img: &Image) -> Keep {
    let mut k = Keep::default();
    k.blobs.extend(img.blobs());
    // Each layer's tree is under its own key or, where it depends on its lowers, its stack's
    // (see `unpack::staged`); both stay. An unmarked tree an older skiff made under the
    // layer's own key stays too while the image is listed, and goes with it.
    k.trees.extend(img.layers.iter().map(TreeKey::of_layer));
    k.trees.extend(
        crate::store::chain_ids(&img.layers)
            .into_iter()
            .map(TreeKey::Chain),
    );
    k.trees.insert(TreeKey::Flat(img.manifest.clone()));
    k
}

/// What the images in the index need, read in one pass over it.
pub fn needed(store: &Store) -> Result<Keep, ImagesError> {
    let mut keep = Keep::default();
    // Held images (a unit's current and previous, see `update`) count as listed.
    let held = store.held()?.into_iter().map(|(d, p)| {
        let entry = IndexEntry {
            manifest: d.clone(),
            digest: d,
            platform: p,
            size: 0,
            resolved: 0,
            source: None,
        };
        ("a held image".to_string(), entry)
    });
    for (name, e) in store.index().list()?.into_iter().chain(held) {
        let platform = e.platform.parse().unwrap_or_else(|_| Platform::host());
        match pull::load_digest(store, &name, &e.digest, &platform) {
            Ok(img) => {
                let u = uses(&img);
                keep.blobs.extend(u.blobs);
                keep.trees.extend(u.trees);
            }
            // A damaged image keeps what it still names rather than losing it all.
            Err(err) => {
                tracing::warn!(reference = %name, error = %crate::logging::chain(&err), "cannot read image; keeping its known blobs");
                keep.blobs.insert(e.digest);
                keep.blobs.insert(e.manifest);
            }
        }
    }
    Ok(keep)
}

/// `skiff gc`: removes blobs, trees, staging and partial downloads nothing needs or holds.
pub fn gc(store: &Store) -> Result<Swept, ImagesError> {
    Ok(store.sweep(&needed(store)?)?)
}

/// `skiff rm`: removes references, then every blob no remaining reference needs. Returns the
/// index keys removed.
pub fn remove(store: &Store, refs: &[Reference]) -> Result<Vec<String>, ImagesError> {
    let mut removed = Vec::new();
    for r in refs {
        let key = pull::index_key(r);
        if store.index().update(|refs| refs.remove(&key))?.is_none() {
            return Err(ImagesError::NotInStore(key));
        }
        removed.push(key);
    }
    store.sweep_blobs(&needed(store)?)?;
    Ok(removed)
}

/// Gives back what an image that will not be listed used (a full disk stopped it, or the
/// policy refused it): its trees and blobs that no listed image and no running payload uses.
/// Returns how many were removed.
pub fn release(store: &Store, img: &Image) -> Result<usize, ImagesError> {
    Ok(store.release(&uses(img), &needed(store)?)?)
}
