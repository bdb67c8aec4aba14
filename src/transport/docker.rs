//! `docker save`'s archive (`manifest.json`: Config, RepoTags, Layers; uncompressed layer
//! tars). It holds no image manifest, so one is made from what it does hold: the config (its
//! digest is its bytes' hash) and each layer as an uncompressed tar whose digest is the diff_id
//! the config gives it, so the store's check of each layer blob is the diff_id check.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::files::{read_small, Files};
use super::{parse_json, TransportError};
use crate::manifest::{self, Descriptor, MAX_DOCUMENT_BYTES, OCI_MANIFEST};
use crate::pull::{LocalError, LocalSource, Top};
use crate::reference::Digest;
use crate::trust::Signatures;

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// One image of `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Item {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Desc<'a> {
    media_type: &'a str,
    digest: String,
    size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Desc<'a>,
    layers: Vec<Desc<'a>>,
}

/// A docker-archive serving a made manifest, its config and its layers.
pub struct DockerSource<F> {
    files: F,
    location: String,
    manifest: (Digest, Vec<u8>),
    /// Blob digest → the member holding it.
    members: BTreeMap<Digest, String>,
}

/// Refuses a `manifest.json` path that leaves the archive.
fn member_path(src: &std::path::Path, p: &str) -> Result<(), TransportError> {
    if p.is_empty() || p.starts_with('/') || p.split('/').any(|c| c == "..") {
        return Err(TransportError::Hostile {
            source_path: src.to_path_buf(),
            member: "manifest.json".into(),
            why: format!("points outside the archive: {p:?}"),
        });
    }
    Ok(())
}

/// Picks the image `wanted` names (a RepoTags entry, or `@N`), or the only one.
fn pick(
    src: &std::path::Path,
    items: Vec<Item>,
    wanted: Option<&str>,
) -> Result<Item, TransportError> {
    let choice = |why: String| TransportError::Choice {
        source_path: src.to_path_buf(),
        why,
    };
    let tags = |items: &[Item]| {
        items
            .iter()
            .flat_map(|i| i.repo_tags.clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(w) if w.starts_with('@') => {
            let n: usize = w[1..]
                .parse()
                .map_err(|_| choice(format!("{w:?} is not @INDEX")))?;
            let len = items.len();
            items
                .into_iter()
                .nth(n)
                .ok_or_else(|| choice(format!("manifest.json has {len} images; there is no @{n}")))
        }
        Some(w) => {
            let all = tags(&items);
            items
                .into_iter()
                .find(|i| {
                    i.repo_tags
                        .as_ref()
                        .is_some_and(|t| t.iter().any(|t| t == w))
                })
                .ok_or_else(|| {
                    choice(format!(
                        "manifest.json has no image tagged {w:?}; it has: {all}"
                    ))
                })
        }
        None if items.len() == 1 => Ok(items.into_iter().next().unwrap_or_else(|| unreachable!())),
        None if items.is_empty() => Err(choice("manifest.json names no image".into())),
        None => Err(choice(format!(
            "manifest.json names {} images; say which with :REF (tags: {})",
            items.len(),
            tags(&items)
        ))),
    }
}

/// Each layer as an uncompressed tar whose digest is its diff_id (the store's check of the
/// blob is then the diff_id check); a compressed one is refused by name.
fn layer_descriptors<'a, F: Files>(
    files: &F,
    paths: &[String],
    diff_ids: &[Digest],
    members: &mut BTreeMap<Digest, String>,
) -> Result<Vec<Desc<'a>>, TransportError> {
    let src = files.path();
    let mut layers = Vec::new();
    for (path, diff_id) in paths.iter().zip(diff_ids) {
        let mut o = files.open(path)?.ok_or_else(|| TransportError::Missing {
            source_path: src.to_path_buf(),
            member: path.clone(),
        })?;
        let mut magic = [0u8; 4];
        let n = o
            .reader
            .read(&mut magic)
            .map_err(|e| TransportError::read(src, path, e))?;
        if magic[..n].starts_with(&[0x1f, 0x8b])
            || magic[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        {
            return Err(TransportError::Hostile {
                source_path: src.to_path_buf(),
                member: path.clone(),
                why: "is compressed; a docker-archive holds uncompressed layer tars".into(),
            });
        }
        members.insert(diff_id.clone(), path.clone());
        layers.push(Desc {
            media_type: OCI_LAYER_TAR,
            digest: diff_id.to_string(),
            size: o.size,
        });
    }
    Ok(layers)
}

impl<F: Files> DockerSource<F> {
    /// Reads `manifest.json` and the config, and makes the manifest. Returns the name the
    /// image carries (its first RepoTag).
    pub fn open(
        files: F,
        location: String,
        wanted: Option<&str>,
    ) -> Result<(DockerSource<F>, Top, Option<String>), TransportError> {
        let src = files.path().to_path_buf();
        let bytes = read_small(&files, "manifest.json", MAX_DOCUMENT_BYTES)?.ok_or_else(|| {
            TransportError::Missing {
                source_path: src.clone(),
                member: "manifest.json (not a docker-archive)".into(),
            }
        })?;
        let items: Vec<Item> = parse_json(&src, "manifest.json", &bytes)?;
        let item = pick(&src, items, wanted)?;
        member_path(&src, &item.config)?;
        for l in &item.layers {
            member_path(&src, l)?;
        }
        let config = read_small(&files, &item.config, MAX_DOCUMENT_BYTES)?.ok_or_else(|| {
            TransportError::Missing {
                source_path: src.clone(),
                member: item.config.clone(),
            }
        })?;
        let config_digest = Digest::of(&config);
        let hostile = |member: &str, why: String| TransportError::Hostile {
            source_path: src.clone(),
            member: member.to_string(),
            why,
        };
        // A config named by its digest (as every writer does) must hash to it.
        let stem = item
            .config
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".json");
        if stem.len() == 64
            && stem.bytes().all(|b| b.is_ascii_hexdigit())
            && stem != config_digest.hex()
        {
            return Err(hostile(
                &item.config,
                format!("hashes to {config_digest}, not the digest its name says"),
            ));
        }
        let parsed = manifest::parse_config(&config)
            .map_err(|e| hostile(&item.config, format!("is not an image config: {e}")))?;
        if parsed.diff_ids.len() != item.layers.len() {
            return Err(hostile(
                "manifest.json",
                format!(
                    "lists {} layers but the config has {} diff_ids",
                    item.layers.len(),
                    parsed.diff_ids.len()
                ),
            ));
        }
        let mut members = BTreeMap::new();
        members.insert(config_digest.clone(), item.config.clone());
        let layers = layer_descriptors(&files, &item.layers, &parsed.diff_ids, &mut members)?;
        let m = Manifest {
            schema_version: 2,
            media_type: OCI_MANIFEST,
            config: Desc {
                media_type: OCI_CONFIG,
                digest: config_digest.to_string(),
                size: config.len() as u64,
            },
            layers,
        };
        let body = serde_json::to_vec(&m).map_err(|e| TransportError::Json {
            source_path: src.clone(),
            member: "manifest.json".into(),
            source: e,
        })?;
        let digest = Digest::of(&body);
        let top = Top {
            digest: digest.clone(),
            size: Some(body.len() as u64),
            media_type: Some(OCI_MANIFEST.into()),
        };
        let name = item.repo_tags.as_ref().and_then(|t| t.first().cloned());
        Ok((
            DockerSource {
                files,
                location,
                manifest: (digest, body),
                members,
            },
            top,
            name,
        ))
    }
}

impl<F: Files> LocalSource for DockerSource<F> {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn document(&self, digest: &Digest) -> Result<Vec<u8>, LocalError> {
        if *digest == self.manifest.0 {
            return Ok(self.manifest.1.clone());
        }
        Err(Box::new(TransportError::Missing {
            source_path: self.files.path().to_path_buf(),
            member: format!("a manifest {digest}"),
        }))
    }

    fn blob(&self, d: &Descriptor) -> Result<Box<dyn Read + '_>, LocalError> {
        let missing = || TransportError::Missing {
            source_path: self.files.path().to_path_buf(),
            member: format!("blob {}", d.digest),
        };
        let name = self.members.get(&d.digest).ok_or_else(missing)?;
        Ok(self.files.open(name)?.ok_or_else(missing)?.reader)
    }

    fn signatures(&self, _digest: &Digest) -> Result<Signatures, LocalError> {
        Ok(Signatures {
            looked: vec![format!(
                "{} (a docker-archive carries no signatures)",
                self.location
            )],
            ..Signatures::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::files::DirFiles;

    fn archive_dir(manifest: &str, files: &[(&str, &[u8])]) -> (tempfile::TempDir, DirFiles) {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("manifest.json"), manifest).unwrap();
        for (n, b) in files {
            std::fs::write(t.path().join(n), b).unwrap();
        }
        let f = DirFiles::open(t.path()).unwrap();
        (t, f)
    }

    fn err(r: Result<(DockerSource<DirFiles>, Top, Option<String>), TransportError>) -> String {
        r.err().expect("refused").to_string()
    }

    #[test]
    fn hostile_manifests_are_refused_naming_what_is_wrong() {
        let layer = b"layer-bytes";
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            Digest::of(layer)
        );
        let files: &[(&str, &[u8])] = &[("c.json", config.as_bytes()), ("l.tar", layer)];
        let ok = r#"[{"Config":"c.json","RepoTags":["reg.lan/app:v1"],"Layers":["l.tar"]}]"#;
        let (_t, f) = archive_dir(ok, files);
        let (src, top, name) = DockerSource::open(f, "docker-archive:x".into(), None).unwrap();
        assert_eq!(name.as_deref(), Some("reg.lan/app:v1"));
        assert_eq!(Digest::of(&src.document(&top.digest).unwrap()), top.digest);
        let parsed = crate::manifest::parse_document(&src.manifest.1, None).unwrap();
        assert_eq!(parsed.digest, top.digest);
        for (manifest, why) in [
            (
                r#"[{"Config":"../c.json","Layers":["l.tar"]}]"#,
                "points outside",
            ),
            (
                r#"[{"Config":"c.json","Layers":["/etc/passwd"]}]"#,
                "points outside",
            ),
            (r#"[{"Config":"c.json","Layers":[]}]"#, "diff_ids"),
            (
                r#"[{"Config":"c.json","Layers":["none.tar"]}]"#,
                "none.tar is missing",
            ),
            (r#"[]"#, "names no image"),
            (r#"{"Config":1}"#, "malformed"),
        ] {
            let (_t, f) = archive_dir(manifest, files);
            let e = err(DockerSource::open(f, "x".into(), None));
            assert!(e.contains(why), "{manifest}: {e}");
        }
        let (_t, f) = archive_dir(ok, files);
        assert!(
            err(DockerSource::open(f, "x".into(), Some("reg.lan/app:v2")))
                .contains("no image tagged")
        );
        let named = format!("{}.json", "0".repeat(64));
        let m = format!(r#"[{{"Config":"{named}","Layers":["l.tar"]}}]"#);
        let (_t, f) = archive_dir(&m, &[(&named, config.as_bytes()), ("l.tar", layer)]);
        assert!(
            err(DockerSource::open(f, "x".into(), None)).contains("not the digest its name says")
        );
        let (_t, f) = archive_dir(
            ok,
            &[
                ("c.json", config.as_bytes()),
                ("l.tar", b"\x1f\x8b\x08\x00"),
            ],
        );
        assert!(err(DockerSource::open(f, "x".into(), None)).contains("compressed"));
    }
}
