//! An OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), in a directory or a
//! tar archive: which manifest the tag names, and its documents and blobs by digest.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;

use super::files::{read_small, Files};
use super::{parse_json, TransportError};
use crate::manifest::{Descriptor, MAX_DOCUMENT_BYTES};
use crate::pull::{LocalError, LocalSource, Top};
use crate::reference::Digest;
use crate::trust::Signatures;

/// The annotation naming an index.json entry (its tag, or a whole reference).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and nerdctl's, BuildKit's) full image name.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Deserialize)]
struct Layout {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

#[derive(Deserialize)]
struct IndexFile {
    #[serde(default)]
    manifests: Vec<Entry>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// What a layout's index.json names for a tag: the top document, and the name the image
/// carries (a full reference, when its annotations give one).
pub struct Chosen {
    pub top: Top,
    pub name: Option<String>,
}

/// The blob path of a digest inside a layout (`blobs/sha256/<hex>`).
pub fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Reads `oci-layout` and `index.json` and picks the entry `tag` names (or the only one).
pub fn choose(files: &dyn Files, tag: Option<&str>) -> Result<Chosen, TransportError> {
    let src = files.path();
    let layout = read_small(files, "oci-layout", 4096)?.ok_or_else(|| TransportError::Missing {
        source_path: src.to_path_buf(),
        member: "oci-layout (not an OCI image layout)".into(),
    })?;
    let layout: Layout = parse_json(src, "oci-layout", &layout)?;
    if layout.version != "1.0.0" {
        return Err(TransportError::Choice {
            source_path: src.to_path_buf(),
            why: format!(
                "oci-layout says version {:?}; skiff reads 1.0.0",
                layout.version
            ),
        });
    }
    let index = read_small(files, "index.json", MAX_DOCUMENT_BYTES)?.ok_or_else(|| {
        TransportError::Missing {
            source_path: src.to_path_buf(),
            member: "index.json".into(),
        }
    })?;
    let index: IndexFile = parse_json(src, "index.json", &index)?;
    pick(files, index.manifests, tag)
}

fn pick(
    files: &dyn Files,
    entries: Vec<Entry>,
    tag: Option<&str>,
) -> Result<Chosen, TransportError> {
    let src = files.path();
    let choice = |why: String| TransportError::Choice {
        source_path: src.to_path_buf(),
        why,
    };
    let mut seen: BTreeMap<&str, &Entry> = BTreeMap::new();
    for e in &entries {
        // One tag naming two different manifests: which one is meant cannot be told.
        if let Some(name) = e.annotations.get(REF_NAME) {
            if let Some(prev) = seen.insert(name, e) {
                if prev.digest != e.digest || prev.size != e.size {
                    return Err(choice(format!(
                        "index.json names {name:?} twice ({} and {})",
                        prev.digest, e.digest
                    )));
                }
            }
        }
    }
    let matching: Vec<&Entry> = match tag {
        Some(t) => entries
            .iter()
            .filter(|e| e.annotations.get(REF_NAME).is_some_and(|n| n == t))
            .collect(),
        None => entries.iter().collect(),
    };
    let tags = || {
        let t: Vec<&str> = seen.keys().copied().collect();
        if t.is_empty() {
            "(none tagged)".to_string()
        } else {
            t.join(", ")
        }
    };
    let e = match matching.as_slice() {
        [e] => *e,
        [first, rest @ ..] if rest.iter().all(|e| e.digest == first.digest) => *first,
        [] if entries.is_empty() => return Err(choice("index.json names no image".into())),
        [] => {
            return Err(choice(format!(
                "index.json has no image tagged {:?}; it has: {}",
                tag.unwrap_or(""),
                tags()
            )))
        }
        _ => {
            return Err(choice(format!(
                "index.json names {} images; say which with :TAG (tags: {})",
                matching.len(),
                tags()
            )))
        }
    };
    let digest: Digest = e.digest.parse().map_err(|err| {
        choice(format!(
            "index.json names a bad digest {:?}: {err}",
            e.digest
        ))
    })?;
    if files.open(&blob_path(&digest))?.is_none() {
        return Err(choice(format!(
            "index.json names {digest}, which is not in the layout ({} is missing)",
            blob_path(&digest)
        )));
    }
    let name = e
        .annotations
        .get(CONTAINERD_NAME)
        .or_else(|| e.annotations.get(REF_NAME))
        .filter(|n| n.contains('/'))
        .cloned();
    Ok(Chosen {
        top: Top {
            digest,
            size: Some(e.size),
            media_type: e.media_type.clone(),
        },
        name,
    })
}

/// A layout serving its blobs by digest.
pub struct OciSource<F> {
    pub files: F,
    pub location: String,
}

impl<F: Files> LocalSource for OciSource<F> {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn document(&self, digest: &Digest) -> Result<Vec<u8>, LocalError> {
        let name = blob_path(digest);
        Ok(
            read_small(&self.files, &name, MAX_DOCUMENT_BYTES)?.ok_or_else(|| {
                TransportError::Missing {
                    source_path: self.files.path().to_path_buf(),
                    member: name,
                }
            })?,
        )
    }

    fn blob(&self, d: &Descriptor) -> Result<Box<dyn Read + '_>, LocalError> {
        let name = blob_path(&d.digest);
        let o = self
            .files
            .open(&name)?
            .ok_or_else(|| TransportError::Missing {
                source_path: self.files.path().to_path_buf(),
                member: name.clone(),
            })?;
        if d.size.is_some_and(|s| s != o.size) {
            return Err(Box::new(TransportError::Hostile {
                source_path: self.files.path().to_path_buf(),
                member: name,
                why: format!(
                    "is {} bytes but its descriptor says {}",
                    o.size,
                    d.size.unwrap_or(0)
                ),
            }));
        }
        Ok(o.reader)
    }

    fn signatures(&self, _digest: &Digest) -> Result<Signatures, LocalError> {
        Ok(Signatures {
            looked: vec![format!(
                "{} (an OCI layout carries no signatures)",
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

    fn layout(index: &str, blobs: &[&[u8]]) -> (tempfile::TempDir, DirFiles) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("blobs/sha256")).unwrap();
        std::fs::write(
            t.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::write(t.path().join("index.json"), index).unwrap();
        for b in blobs {
            let d = Digest::of(b);
            std::fs::write(t.path().join(blob_path(&d)), b).unwrap();
        }
        let f = DirFiles::open(t.path()).unwrap();
        (t, f)
    }

    fn entry(d: &Digest, tag: &str) -> String {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":2,"annotations":{{"{REF_NAME}":"{tag}"}}}}"#
        )
    }

    #[test]
    fn index_json_choices_and_hostile_indexes() {
        let (a, b) = (b"{}".as_slice(), b"[]".as_slice());
        let (da, db) = (Digest::of(a), Digest::of(b));
        let idx = format!(
            r#"{{"manifests":[{},{}]}}"#,
            entry(&da, "v1"),
            entry(&db, "v2")
        );
        let (_t, f) = layout(&idx, &[a, b]);
        assert_eq!(choose(&f, Some("v2")).unwrap().top.digest, db);
        let e = choose(&f, None).err().unwrap().to_string();
        assert!(e.contains("names 2 images") && e.contains("v1, v2"), "{e}");
        assert!(choose(&f, Some("v3"))
            .err()
            .unwrap()
            .to_string()
            .contains("no image tagged"));
        // One tag, two manifests.
        let idx = format!(
            r#"{{"manifests":[{},{}]}}"#,
            entry(&da, "v1"),
            entry(&db, "v1")
        );
        let (_t, f) = layout(&idx, &[a, b]);
        assert!(choose(&f, Some("v1"))
            .err()
            .unwrap()
            .to_string()
            .contains("twice"));
        // Naming nothing, or a blob that is not there.
        let (_t, f) = layout(r#"{"manifests":[]}"#, &[]);
        assert!(choose(&f, None)
            .err()
            .unwrap()
            .to_string()
            .contains("names no image"));
        let idx = format!(r#"{{"manifests":[{}]}}"#, entry(&da, "v1"));
        let (_t, f) = layout(&idx, &[]);
        assert!(choose(&f, None)
            .err()
            .unwrap()
            .to_string()
            .contains("not in the layout"));
        // A digest that is no digest, and an index that is no JSON.
        let (_t, f) = layout(
            r#"{"manifests":[{"digest":"sha256:../../etc","size":1}]}"#,
            &[],
        );
        assert!(choose(&f, None)
            .err()
            .unwrap()
            .to_string()
            .contains("bad digest"));
        let (_t, f) = layout("{", &[]);
        assert!(choose(&f, None)
            .err()
            .unwrap()
            .to_string()
            .contains("index.json is malformed"));
        // An index larger than any manifest may be.
        let big = format!(
            r#"{{"manifests":[], "x":"{}"}}"#,
            "a".repeat(MAX_DOCUMENT_BYTES as usize)
        );
        let (_t, f) = layout(&big, &[]);
        assert!(choose(&f, None)
            .err()
            .unwrap()
            .to_string()
            .contains("more than"));
    }
}
