//! `images`, `inspect`, `rm`: what the store holds, read without the network.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::manifest::Platform;
use crate::pull;
use crate::reference::{Digest, Reference};
use crate::store::Store;
use crate::unpack;

pub fn list(store: &Store, as_json: bool) -> Result<()> {
    let entries = store.index().list()?;
    if as_json {
        let v: Vec<_> = entries
            .iter()
            .map(|(r, e)| {
                json!({"reference": r, "digest": e.digest.to_string(), "manifest": e.manifest.to_string(),
                       "platform": e.platform, "size": e.size, "resolved": e.resolved})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<50} {:<19} {:<14} {:>9}  PULLED",
        "REFERENCE", "DIGEST", "PLATFORM", "SIZE"
    );
    for (r, e) in entries {
        println!(
            "{:<50} {:<19} {:<14} {:>9}  {}",
            r,
            &e.digest.to_string()[..19],
            e.platform,
            crate::logging::human(e.size),
            crate::logging::ago(e.resolved, crate::logging::now())
        );
    }
    Ok(())
}

/// The platform an image was pulled for, so `inspect` shows what `run` would use.
fn stored_platform(store: &Store, r: &Reference, explicit: Option<&str>) -> Result<Platform> {
    if let Some(p) = explicit {
        return p.parse().map_err(anyhow::Error::msg);
    }
    let key = pull::index_key(r);
    Ok(store
        .index()
        .get(&key)?
        .and_then(|e| e.platform.parse().ok())
        .unwrap_or_else(Platform::host))
}

pub fn inspect(store: &Store, r: &Reference, platform: Option<&str>) -> Result<()> {
    let platform = stored_platform(store, r, platform)?;
    let img = pull::load(store, r, &platform).with_context(|| format!("inspecting {r}"))?;
    let layers: Vec<_> = img
        .layers
        .iter()
        .map(|l| {
            json!({
                "Digest": l.blob.digest.to_string(),
                "Size": l.blob.size,
                "MediaType": l.blob.media_type,
                "DiffID": l.diff_id.as_ref().map(|d| d.to_string())
                    .unwrap_or_else(|| "not available (schema1 has no diff_ids)".into()),
            })
        })
        .collect();
    let out = json!({
        "Name": r.to_string(),
        "Digest": img.digest.to_string(),
        "Manifest": img.manifest.to_string(),
        "ConfigDigest": img.config_digest.as_ref().map(|d| d.to_string()),
        "Schema1": img.schema1,
        "Platform": img.platform.to_string(),
        "Config": {
            "Entrypoint": img.config.entrypoint,
            "Cmd": img.config.cmd,
            "Env": img.config.env,
            "User": img.config.user,
            "WorkingDir": img.config.working_dir,
        },
        "Layers": layers,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Removes references, then every blob that no remaining reference needs.
pub fn remove(store: &Store, images: &[String]) -> Result<()> {
    for i in images {
        let r: Reference = i.parse().with_context(|| format!("parsing {i:?}"))?;
        let key = pull::index_key(&r);
        let removed = store.index().update(|refs| refs.remove(&key))?;
        if removed.is_none() {
            anyhow::bail!("{key} is not in the store (see `skiff images`)");
        }
        println!("{key}");
    }
    collect_blobs(store, &referenced(store)?.blobs)
}

/// What the references in the index still need, read in one pass over the index.
#[derive(Default)]
struct Referenced {
    blobs: BTreeSet<Digest>,
    layers: BTreeSet<String>,
    /// Manifest digests (hex), which name flat rootfs trees.
    manifests: BTreeSet<String>,
}

fn referenced(store: &Store) -> Result<Referenced> {
    let mut keep = Referenced::default();
    for (name, e) in store.index().list()? {
        let platform = e.platform.parse().unwrap_or_else(|_| Platform::host());
        match pull::load_digest(store, &name, &e.digest, &platform) {
            Ok(img) => {
                keep.layers.extend(img.layers.iter().map(unpack::layer_key));
                keep.manifests.insert(img.manifest.hex().to_string());
                keep.blobs.extend(img.blobs());
            }
            // A damaged image keeps what it still names rather than losing it all.
            Err(err) => {
                tracing::warn!(reference = %name, error = %err, "cannot read image; keeping its known blobs");
                keep.blobs.insert(e.digest);
                keep.blobs.insert(e.manifest);
            }
        }
    }
    Ok(keep)
}

fn collect_blobs(store: &Store, keep: &BTreeSet<Digest>) -> Result<()> {
    for d in store.list_blobs()? {
        if !keep.contains(&d) {
            store.remove_blob(&d)?;
            tracing::debug!(digest = %d, "removed unreferenced blob");
        }
    }
    Ok(())
}

/// After a full disk stopped `img`: removes its layer trees and layer blobs that no listed
/// image and no running payload uses, so the next (smaller) pull has room. Other images'
/// files, complete or in progress, are not touched.
pub fn release(store: &Store, img: &pull::Image) -> Result<()> {
    let keep = referenced(store)?;
    let in_use = store.layers_in_use()?;
    let mut freed = 0;
    for l in &img.layers {
        let key = unpack::layer_key(l);
        if !keep.layers.contains(&key)
            && !in_use.contains(&key)
            && store.has_tree(&store.layer_path(&key))
        {
            store.remove_layer(&key)?;
            freed += 1;
        }
        if !keep.blobs.contains(&l.blob.digest) {
            store.remove_blob(&l.blob.digest)?;
            freed += 1;
        }
    }
    tracing::warn!(image = %img.digest, removed = freed, "the store's filesystem is full; removed what this image had unpacked and downloaded");
    Ok(())
}

/// `skiff unpack`: the flattened rootfs in a fresh directory.
pub fn unpack_to(store: &Store, img: &pull::Image, dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                anyhow::bail!(
                    "{} is not empty; skiff unpack writes only into an empty or new directory",
                    dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    }
    let layers: Vec<_> = img
        .layers
        .iter()
        .map(|l| store.layer_path(&unpack::layer_key(l)))
        .collect();
    unpack::flatten(&layers, dir)
        .with_context(|| format!("writing the rootfs into {}", dir.display()))
}

/// Removes blobs, layer trees and stale staging that nothing references.
pub fn gc(store: &Store) -> Result<()> {
    let Referenced {
        blobs,
        layers: mut keep_layers,
        manifests: keep_manifests,
    } = referenced(store)?;
    collect_blobs(store, &blobs)?;
    let in_use = store.layers_in_use()?;
    keep_layers.extend(in_use.iter().cloned());
    let mut removed = 0;
    for key in store.list_layers()? {
        if !keep_layers.contains(&key) {
            store.remove_layer(&key)?;
            removed += 1;
        }
    }
    // Flat trees are filed by manifest digest; leases name them `rootfs/<hex>`.
    for key in store.list_flat()? {
        let used = keep_manifests.contains(&key) || in_use.contains(&format!("rootfs/{key}"));
        if !used {
            store.remove_flat(&key)?;
            removed += 1;
        }
    }
    store.clean_stale_staging();
    let partials = store.clean_unheld()?;
    tracing::info!(
        trees = removed,
        partial_bytes = partials,
        "garbage collected"
    );
    Ok(())
}

/// Re-hashes every blob; reports damage and, with `repair`, drops the damaged blobs.
pub fn verify(store: &Store, repair: bool) -> Result<()> {
    let mut damaged = Vec::new();
    let blobs = store.list_blobs()?;
    for d in &blobs {
        if !store.check_blob(d)? {
            println!("damaged: {d}");
            damaged.push(d.clone());
        }
    }
    if damaged.is_empty() {
        println!("{} blobs verified", blobs.len());
        return Ok(());
    }
    if repair {
        for d in &damaged {
            store.remove_blob(d)?;
        }
        println!(
            "removed {} damaged blobs; pull again to fetch them",
            damaged.len()
        );
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} blobs are damaged; run `skiff verify --repair`, then pull again",
            damaged.len(),
            blobs.len()
        )
    }
}
