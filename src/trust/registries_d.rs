//! containers-registries.d(5): where an image's signatures live. Every `*.yaml` in the
//! directory, merged (a namespace defined in two files is an error), with `default-docker` and
//! per-namespace `docker:` entries giving a `lookaside` (`sigstore`, its old name) and
//! `use-sigstore-attachments`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::policy::{identity, namespaces};
use super::TrustError;
use crate::reference::{Digest, Reference};

pub const DEFAULT_REGISTRIES_D: &str = "/etc/containers/registries.d";
/// Where containers/image looks when nothing is configured (for root), so skiff reads the
/// signatures `skopeo copy --sign-by` wrote there.
pub const BUILTIN_LOOKASIDE: &str = "file:///var/lib/containers/sigstore";
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
struct Namespace {
    lookaside: Option<String>,
    sigstore: Option<String>,
    #[serde(rename = "use-sigstore-attachments")]
    use_sigstore_attachments: Option<bool>,
}

impl Namespace {
    fn lookaside(&self) -> Option<&str> {
        self.lookaside
            .as_deref()
            .or(self.sigstore.as_deref())
            .filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(rename = "default-docker")]
    default_docker: Option<Namespace>,
    docker: Option<BTreeMap<String, Namespace>>,
}

/// The merged configuration of a registries.d directory.
#[derive(Clone, Debug, Default)]
pub struct RegistriesD {
    default_docker: Option<Namespace>,
    docker: BTreeMap<String, (Namespace, PathBuf)>,
}

/// Where to look for an image's signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sources {
    /// The lookaside base URL (`file://`, `http://`, `https://`).
    pub lookaside: String,
    /// Whether to read cosign attachments (`sha256-HEX.sig` in the image's repository).
    pub attachments: bool,
}

impl RegistriesD {
    /// Reads and merges `dir/*.yaml` (in name order). A missing directory is empty.
    pub fn load(dir: &Path) -> Result<RegistriesD, TrustError> {
        let mut out = RegistriesD::default();
        let mut default_from: Option<PathBuf> = None;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => {
                return Err(TrustError::RegistriesRead {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for path in files {
            let bytes = super::read_bounded(&path, MAX_FILE_BYTES).map_err(|source| {
                TrustError::RegistriesRead {
                    path: path.clone(),
                    source,
                }
            })?;
            let file = parse_file(&bytes, &path)?;
            if let Some(d) = file.default_docker {
                if let Some(first) = &default_from {
                    return Err(TrustError::Registries {
                        path,
                        why: format!("\"default-docker\" is also defined in {}", first.display()),
                    });
                }
                default_from = Some(path.clone());
                out.default_docker = Some(d);
            }
            for (ns, cfg) in file.docker.unwrap_or_default() {
                if let Some((_, first)) = out.docker.get(&ns) {
                    return Err(TrustError::Registries {
                        path,
                        why: format!("{ns:?} is also defined in {}", first.display()),
                    });
                }
                out.docker.insert(ns, (cfg, path.clone()));
            }
        }
        Ok(out)
    }

    /// The namespaces that apply to `image`, most specific first, then `default-docker`.
    fn applicable(&self, image: &Reference) -> impl Iterator<Item = &Namespace> {
        let keys: Vec<String> = std::iter::once(identity(image))
            .chain(namespaces(image))
            .collect();
        keys.into_iter()
            .filter_map(|k| self.docker.get(&k).map(|(ns, _)| ns))
            .chain(self.default_docker.iter())
    }

    /// Where `image`'s signatures are: the most specific lookaside configured, else the built-in
    /// default; attachments when the most specific namespace that says so says yes.
    pub fn sources(&self, image: &Reference) -> Sources {
        let lookaside = self
            .applicable(image)
            .find_map(|ns| ns.lookaside())
            .unwrap_or(BUILTIN_LOOKASIDE)
            .to_string();
        let attachments = self
            .applicable(image)
            .find_map(|ns| ns.use_sigstore_attachments)
            .unwrap_or(false);
        Sources {
            lookaside,
            attachments,
        }
    }
}

fn parse_file(bytes: &[u8], path: &Path) -> Result<File, TrustError> {
    let bad = |why: String| TrustError::Registries {
        path: path.to_path_buf(),
        why,
    };
    // An empty (or all-comment) file configures nothing.
    let text = std::str::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(File::default());
    }
    serde_yaml_ng::from_str::<Option<File>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|e| bad(e.to_string()))
}

/// The URL of the `n`th (from 1) lookaside signature of `digest`:
/// `BASE/REPOSITORY@sha256=HEX/signature-N` (the repository without its registry host).
pub fn lookaside_url(base: &str, image: &Reference, digest: &Digest, n: usize) -> String {
    format!(
        "{}/{}@sha256={}/signature-{n}",
        base.trim_end_matches('/'),
        image.repository(),
        digest.hex()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    #[test]
    fn the_most_specific_namespace_says_where() {
        let d = dir(&[
            ("default.yaml", "default-docker:\n  sigstore: file:///var/sigs\n# a comment\n"),
            ("quay.yaml", "docker:\n  quay.io/coreos:\n    lookaside: https://sigs.lan/c\n    use-sigstore-attachments: true\n  quay.io:\n    lookaside: https://sigs.lan/q\n"),
            ("ignored.yml", "docker: [not, read]\n"),
            ("empty.yaml", "# nothing\n"),
        ]);
        let rd = RegistriesD::load(d.path()).unwrap();
        let r = |s: &str| s.parse::<Reference>().unwrap();
        assert_eq!(
            rd.sources(&r("quay.io/coreos/fleet:v1")),
            Sources {
                lookaside: "https://sigs.lan/c".into(),
                attachments: true
            }
        );
        assert_eq!(
            rd.sources(&r("quay.io/x/y:v1")),
            Sources {
                lookaside: "https://sigs.lan/q".into(),
                attachments: false
            }
        );
        assert_eq!(rd.sources(&r("reg.lan/a:1")).lookaside, "file:///var/sigs");
        let none = RegistriesD::load(Path::new("/nonexistent/registries.d")).unwrap();
        assert_eq!(none.sources(&r("reg.lan/a:1")).lookaside, BUILTIN_LOOKASIDE);
        let digest = Digest::of(b"x");
        assert_eq!(
            lookaside_url("file:///s/", &r("quay.io/coreos/fleet:v1"), &digest, 2),
            format!("file:///s/coreos/fleet@sha256={}/signature-2", digest.hex())
        );
    }

    #[test]
    fn conflicting_or_broken_files_are_refused_naming_the_file() {
        let d = dir(&[
            ("a.yaml", "default-docker:\n  lookaside: file:///a\n"),
            ("b.yaml", "default-docker:\n  lookaside: file:///b\n"),
        ]);
        let e = RegistriesD::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("b.yaml") && e.contains("a.yaml"), "{e}");
        let d = dir(&[
            ("a.yaml", "docker:\n  q.io:\n    lookaside: x\n"),
            ("b.yaml", "docker:\n  q.io:\n    lookaside: y\n"),
        ]);
        assert!(RegistriesD::load(d.path())
            .unwrap_err()
            .to_string()
            .contains("\"q.io\" is also defined"));
        let d = dir(&[("a.yaml", "docker: [1, 2\n")]);
        assert!(RegistriesD::load(d.path())
            .unwrap_err()
            .to_string()
            .contains("a.yaml"));
        let d = dir(&[(
            "a.yaml",
            "docker:\n  q.io:\n    use-sigstore-attachments: maybe\n",
        )]);
        assert!(RegistriesD::load(d.path()).is_err());
    }
}
