//! `images`, `inspect`, `rm`: what the store holds, read without the network.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::manifest::Platform;
use crate::pull;
use crate::reference::Reference;
use crate::store::Store;
use crate::unpack;

pub fn list(store: &Store, as_json: bool) -> Result<()> {
    let entries = store.index().list()?;
    if as_json {
        let v: Vec<_> = entries
            .iter()
            .map(|(r, e)| {
                json!({"reference": r, "digest": e.digest.to_string(), "manifest": e.manifest.to_string(),
                       "platform": e.platform, "size": e.size, "resolved": e.resolved,
                       "source": source_of(r, e)})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<50} {:<19} {:<14} {:>9}  {:<14}  SOURCE",
        "REFERENCE", "DIGEST", "PLATFORM", "SIZE", "PULLED"
    );
    for (r, e) in entries {
        println!(
            "{:<50} {:<19} {:<14} {:>9}  {:<14}  {}",
            r,
            &e.digest.to_string()[..19],
            e.platform,
            crate::logging::human(e.size),
            crate::logging::ago(e.resolved, crate::logging::now()),
            source_of(&r, &e)
        );
    }
    Ok(())
}

/// Where an image came from: the source it was loaded from, else its registry.
fn source_of(reference: &str, e: &crate::store::IndexEntry) -> String {
    e.source.clone().unwrap_or_else(|| {
        let registry = reference
            .parse::<Reference>()
            .map(|r| r.registry().to_string())
            .unwrap_or_default();
        format!("docker://{registry}")
    })
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

/// The policy's verdict on a stored image and each signature it checked, as JSON.
fn signatures_json(
    verdict: Option<&crate::trust::Verdict>,
) -> (serde_json::Value, serde_json::Value) {
    let Some(v) = verdict else {
        return (serde_json::Value::Null, json!([]));
    };
    let mut sigs = Vec::new();
    for o in &v.outcomes {
        for c in &o.checks {
            sigs.push(match &c.result {
                Ok(a) => json!({"Signature": c.signature, "Requirement": o.requirement, "Kind": a.kind,
                                "VerifiedBy": a.key, "Identity": a.identity, "Digest": a.digest.to_string()}),
                Err(why) => json!({"Signature": c.signature, "Requirement": o.requirement, "VerifiedBy": null, "Error": why}),
            });
        }
    }
    let policy = json!({"Path": v.policy.display().to_string(), "Scope": v.scope.to_string(),
                        "Accepted": v.accepted(), "Verdict": v.to_string()});
    (policy, json!(sigs))
}

pub fn inspect(
    store: &Store,
    trust: &crate::trust::Trust,
    r: &Reference,
    platform: Option<&str>,
) -> Result<()> {
    let platform = stored_platform(store, r, platform)?;
    let img = pull::load(store, r, &platform).with_context(|| format!("inspecting {r}"))?;
    let verdict = pull::stored_verdict(store, trust, r, &img)
        .with_context(|| format!("checking the signatures of {r}"))?;
    let (policy, signatures) = signatures_json(verdict.as_ref());
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
        "Policy": policy,
        "Signatures": signatures,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `skiff rm`: the references, then the blobs no remaining reference needs.
pub fn remove(store: &Store, images: &[String]) -> Result<()> {
    let refs = images
        .iter()
        .map(|i| {
            i.parse::<Reference>()
                .with_context(|| format!("parsing {i:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    for key in crate::images::remove(store, &refs)? {
        println!("{key}");
    }
    Ok(())
}

/// `skiff unpack`: the flattened rootfs in a fresh directory.
pub fn unpack_to(store: &Store, img: &pull::Image, dir: &Path) -> Result<()> {
    unpack::unpack_into(store, img, dir)
        .with_context(|| format!("writing the rootfs into {}", dir.display()))
}

/// `skiff gc`.
pub fn gc(store: &Store) -> Result<()> {
    let swept = crate::images::gc(store)?;
    tracing::info!(
        blobs = swept.blobs,
        trees = swept.trees,
        partial_bytes = swept.partial_bytes,
        "garbage collected"
    );
    Ok(())
}
