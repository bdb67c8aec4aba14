//! `skiff verify`: every blob against its digest, every tree against its record; with
//! `--repair`, damaged trees rebuilt from their blobs (no network) and only damaged layer blobs
//! fetched again.

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use super::Cli;
use crate::manifest::{Image, Platform};
use crate::pull;
use crate::reference::{Digest, Reference};
use crate::store::{Store, TreeKey};

pub fn verify(cli: &Cli, store: &Store, quick: bool, repair: bool) -> Result<()> {
    if repair {
        // What a killed repair (or unpack) left in staging.
        store.clean_stale_staging();
    }
    let mut wrong = 0usize;
    let mut unrepaired = 0usize;
    // Blobs (a quick check re-hashes only the blobs a damaged tree is rebuilt from).
    let blobs = store.list_blobs()?;
    let mut dropped: BTreeSet<Digest> = BTreeSet::new();
    if !quick {
        for d in &blobs {
            if !store.check_blob(d)? {
                println!("damaged: blob {d}");
                wrong += 1;
                if repair {
                    store.remove_blob(d)?;
                    dropped.insert(d.clone());
                } else {
                    unrepaired += 1;
                }
            }
        }
    }
    let mut images: Vec<(String, Image)> = Vec::new();
    for (name, e) in store.index().list()? {
        let platform: Platform = e.platform.parse().unwrap_or_else(|_| Platform::host());
        match pull::load_digest(store, &name, &e.digest, &platform) {
            Ok(img) => images.push((name, img)),
            Err(err) => {
                println!(
                    "damaged: image {name}: {}; pull it again",
                    crate::logging::chain(&err)
                );
                wrong += 1;
                unrepaired += 1;
            }
        }
    }
    let mut seen: BTreeSet<TreeKey> = BTreeSet::new();
    let mut trees = 0usize;
    for (name, img) in &images {
        let mut damaged = Vec::new();
        // Each position's tree as unpacking resolves it: the layer's own where it is
        // self-contained, its stack's (chain-<ChainID>) where it depends on its lowers.
        let keys = crate::unpack::layer_keys(store, img);
        for key in keys.iter().flatten() {
            let key = key.clone();
            if !seen.insert(key.clone()) {
                continue;
            }
            trees += 1;
            let problems = store.check_tree(&key, quick)?;
            if !problems.is_empty() {
                report(&key, &problems);
                wrong += 1;
                damaged.push(key);
            }
        }
        let flat = TreeKey::Flat(img.manifest.clone());
        let flat_damaged = if store.has_tree(&store.tree_path(&flat)) && seen.insert(flat.clone()) {
            trees += 1;
            let problems = store.check_tree(&flat, quick)?;
            if !problems.is_empty() {
                report(&flat, &problems);
                wrong += 1;
            }
            !problems.is_empty()
        } else {
            false
        };
        if damaged.is_empty()
            && !flat_damaged
            && !img.layers.iter().any(|l| dropped.contains(&l.blob.digest))
        {
            continue;
        }
        if !repair {
            unrepaired += damaged.len() + usize::from(flat_damaged);
            continue;
        }
        // The blobs a rebuild reads must be sound; only those that are not are fetched again.
        for (l, _) in img
            .layers
            .iter()
            .zip(&keys)
            .filter(|(_, k)| k.as_ref().is_some_and(|k| damaged.contains(k)))
        {
            if quick && store.has_blob(&l.blob.digest) && !store.check_blob(&l.blob.digest)? {
                println!("damaged: blob {}", l.blob.digest);
                wrong += 1;
                store.remove_blob(&l.blob.digest)?;
            }
        }
        if img.layers.iter().any(|l| !store.has_blob(&l.blob.digest)) {
            let r: Reference = name
                .parse()
                .with_context(|| format!("parsing the stored reference {name:?}"))?;
            let client = cli.registry.client()?;
            pull::refetch_layers(store, &client, &r, img, &super::progress::Reporter::new())
                .with_context(|| format!("fetching the damaged layer blobs of {name} again"))?;
            println!("fetched again: the damaged layer blobs of {name}");
        }
        crate::unpack::rebuild_layers(store, img, &damaged)
            .with_context(|| format!("rebuilding the damaged trees of {name}"))?;
        if flat_damaged || (!damaged.is_empty() && store.has_tree(&store.tree_path(&flat))) {
            crate::unpack::rebuild_flat(store, img)
                .with_context(|| format!("rebuilding the flat rootfs of {name}"))?;
        }
        for key in damaged.iter().chain(flat_damaged.then_some(&flat)) {
            let left = store.check_tree(key, false)?;
            if left.is_empty() {
                println!("repaired: tree {key}");
            } else {
                report(key, &left);
                unrepaired += 1;
            }
        }
    }
    // Trees no listed image uses: gc removes them; a damaged one goes now under --repair.
    for key in store.list_trees()? {
        if seen.contains(&key) {
            continue;
        }
        trees += 1;
        let problems = store.check_tree(&key, quick)?;
        if !problems.is_empty() {
            report(&key, &problems);
            wrong += 1;
            if repair {
                store.remove_tree(&key)?;
                println!("removed: tree {key} (no image uses it)");
            } else {
                unrepaired += 1;
            }
        }
    }
    if unrepaired > 0 {
        anyhow::bail!(
            "{unrepaired} damaged item(s) in the store{}",
            if repair {
                " could not be repaired"
            } else {
                "; run `skiff verify --repair` (it rebuilds trees from their blobs and fetches only damaged blobs again)"
            }
        );
    }
    store.mark_clean()?;
    if wrong > 0 {
        println!("repaired {wrong} damaged item(s)");
    }
    if !quick {
        println!("{} blobs verified", blobs.len());
    }
    println!(
        "{trees} trees match their records{}",
        if quick { " (metadata and sizes)" } else { "" }
    );
    Ok(())
}

fn report(key: &TreeKey, problems: &[String]) {
    for p in problems {
        println!("damaged: tree {key}: {p}");
    }
}
