//! `--volume HOST:TARGET[:ro|rw][,rbind][,create]`, parsed and checked against the host.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::plan::{HostStep, Volume};
use super::RunError;
use crate::fs::root::{InnerPath, NodeKind};

/// Why a volume cannot be mounted, naming the spec or the host path.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {spec:?}: {why}")]
    Spec { spec: String, why: String },
    #[error("host path {source_path} for {target}{hint}")]
    Host {
        source_path: PathBuf,
        target: String,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("reading /proc/self/mountinfo")]
    Mountinfo(#[source] std::io::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    pub source: PathBuf,
    pub target: String,
    pub readonly: bool,
    pub recursive: bool,
    pub create: bool,
    /// A missing source is skipped rather than an error.
    pub optional: bool,
    /// Mount events propagate both ways (kubelet's /var/lib/kubelet).
    pub shared: bool,
    /// Hand the source to this uid:gid (a profile's data directory, owned by its service user).
    pub owner: Option<(u32, u32)>,
}

impl FromStr for VolumeSpec {
    type Err = VolumeError;
    fn from_str(s: &str) -> Result<Self, VolumeError> {
        let bad = |why: String| VolumeError::Spec {
            spec: s.to_string(),
            why,
        };
        let mut parts = s.splitn(3, ':');
        let (src, dst, opts) = (parts.next().unwrap_or(""), parts.next(), parts.next());
        let dst = dst.ok_or_else(|| bad("expected HOST:TARGET[:OPTIONS]".into()))?;
        if !src.starts_with('/') || !dst.starts_with('/') {
            return Err(bad("both paths must be absolute".into()));
        }
        if InnerPath::parse(dst.as_bytes())
            .map_err(|e| bad(format!("target {e}")))?
            .is_none()
        {
            return Err(bad("the target cannot be the root".into()));
        }
        if src.split('/').any(|c| c == "..") {
            return Err(bad("the host path has a '..' component".into()));
        }
        let mut v = VolumeSpec::new(src, dst);
        for o in opts.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => v.readonly = true,
                "rw" => v.readonly = false,
                "rbind" => v.recursive = true,
                "bind" => v.recursive = false,
                "create" => v.create = true,
                "optional" => v.optional = true,
                "rshared" => {
                    v.shared = true;
                    v.recursive = true;
                }
                other => {
                    return Err(bad(format!(
                        "unknown option {other:?} (ro, rw, rbind, rshared, create, optional)"
                    )))
                }
            }
        }
        Ok(v)
    }
}

impl VolumeSpec {
    pub fn new(source: impl Into<PathBuf>, target: &str) -> Self {
        VolumeSpec {
            source: source.into(),
            target: target.to_string(),
            readonly: false,
            recursive: false,
            create: false,
            optional: false,
            shared: false,
            owner: None,
        }
    }

    /// Created if missing and handed to `uid:gid` at every run.
    pub fn owned_by(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    pub fn ro(mut self) -> Self {
        self.readonly = true;
        self
    }

    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    pub fn create(mut self) -> Self {
        self.create = true;
        self
    }

    /// Checks the host side (before any namespace exists) and changes nothing: what must be
    /// made there comes back as a step, applied only when the run happens. `Ok(None)`: optional
    /// and absent.
    pub fn resolve(&self) -> Result<Option<(Volume, Vec<HostStep>)>, RunError> {
        let (kind, missing) = match std::fs::metadata(&self.source) {
            Ok(m) if m.is_dir() => (NodeKind::Dir, false),
            Ok(_) => (NodeKind::File, false),
            Err(_) if self.optional => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.create => {
                (NodeKind::Dir, true)
            }
            Err(e) => {
                return Err(VolumeError::Host {
                    source_path: self.source.clone(),
                    target: self.target.clone(),
                    hint: if e.kind() == std::io::ErrorKind::NotFound {
                        " (add ,create to make it)"
                    } else {
                        ""
                    },
                    source: e,
                }
                .into())
            }
        };
        let mut steps = Vec::new();
        if missing || self.owner.is_some() {
            steps.push(HostStep::Dir {
                path: self.source.clone(),
                create: missing,
                owner: self.owner,
            });
        }
        let source = if missing {
            self.source.clone()
        } else {
            std::fs::canonicalize(&self.source).unwrap_or_else(|_| self.source.clone())
        };
        if self.shared {
            steps.extend(shared_step(&source, missing)?);
        }
        Ok(Some((
            Volume {
                source,
                target: self.target.clone(),
                kind,
                readonly: self.readonly,
                recursive: self.recursive,
                shared: self.shared,
            },
            steps,
        )))
    }
}

/// An `rshared` source must be a shared mount point of its own: then only it stays a peer of
/// the host's, and nothing else skiff mounts can propagate out. Where it is not one yet (a
/// plain directory, as kubelet-wrapper's /var/lib/kubelet was under rkt-fly), the run makes it
/// one; `None`: it already is.
fn shared_step(source: &Path, missing: bool) -> Result<Option<HostStep>, RunError> {
    let mounts = if missing {
        Vec::new()
    } else {
        let text =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(VolumeError::Mountinfo)?;
        super::mountinfo::parse(&text)
    };
    // The last line for a mount point is the one on top, the one a bind would take.
    Ok(
        match mounts.into_iter().rev().find(|m| m.mount_point == source) {
            Some(m) if m.shared => None,
            Some(_) => Some(HostStep::SharedMountPoint {
                path: source.to_path_buf(),
                bind: false,
            }),
            None => Some(HostStep::SharedMountPoint {
                path: source.to_path_buf(),
                bind: true,
            }),
        },
    )
}

/// Where a host symlink really points, as an absolute path.
pub fn resolve_link(link: &Path) -> Option<PathBuf> {
    let t = std::fs::read_link(link).ok()?;
    let abs = if t.is_absolute() {
        t
    } else {
        link.parent()?.join(t)
    };
    std::fs::canonicalize(&abs).ok().or(Some(abs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let v: VolumeSpec = "/etc/fleet:/etc/fleet:ro".parse().unwrap();
        assert!(v.readonly && !v.recursive);
        let v: VolumeSpec = "/var/lib/kubelet:/var/lib/kubelet:rw,rbind,create"
            .parse()
            .unwrap();
        assert!(!v.readonly && v.recursive && v.create);
        let v: VolumeSpec = "/a:/b".parse().unwrap();
        assert_eq!(v.target, "/b");
    }

    #[test]
    fn hostile_volumes() {
        for bad in [
            "",
            "/a",
            "a:/b",
            "/a:b",
            "/a:/",
            "/a:/../etc",
            "/a:/b:rx",
            "/a/../../etc:/b",
            "/a:/b/../../x",
            "/a:/b\u{0}c",
        ] {
            assert!(bad.parse::<VolumeSpec>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_sources() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("nope");
        let spec = VolumeSpec::new(&missing, "/x");
        let e = spec.resolve().unwrap_err().to_string();
        assert!(e.contains("add ,create"), "{e}");
        assert!(spec.clone().optional().resolve().unwrap().is_none());
        let (v, step) = spec
            .clone()
            .create()
            .resolve()
            .unwrap()
            .expect("to be created");
        assert_eq!(v.kind, NodeKind::Dir);
        assert!(!missing.exists(), "resolving changes nothing on the host");
        assert_eq!(
            step,
            vec![HostStep::Dir {
                path: missing.clone(),
                create: true,
                owner: None
            }]
        );
        let (_, step) = spec
            .clone()
            .create()
            .owned_by(7, 8)
            .resolve()
            .unwrap()
            .unwrap();
        assert!(step[0].to_string().contains("chown 7:8"));
        // rshared and missing: made, then bound onto itself and shared, in that order.
        let mut shared = spec.create();
        shared.shared = true;
        let (_, step) = shared.resolve().unwrap().unwrap();
        assert_eq!(
            step.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                format!("host: mkdir -p {}", missing.display()),
                format!(
                    "host: mount --rbind {0} {0}; mount --make-shared {0}",
                    missing.display()
                ),
            ]
        );
        assert!(!missing.exists(), "resolving changes nothing on the host");
    }
}
