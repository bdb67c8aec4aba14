//! The CoreOS wrapper contract: skiff started as `etcd-wrapper` or `kubelet-wrapper` behaves as
//! `skiff run --profile etcd|kubelet -- "$@"`, and the variables those scripts read
//! (`RKT_RUN_ARGS`, `X_IMAGE_ARGS`, the deprecated `KUBELET_VERSION`, `KUBELET_ACI`,
//! `RKT_OPTS`) are honoured or refused by name, never ignored.

pub mod rkt;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::run::{UserSpec, VolumeSpec};
pub use rkt::RktError;

/// The names skiff answers to as a wrapper, and the profile each one runs.
const ENTRY_POINTS: &[(&str, &str)] = &[
    ("etcd-wrapper", "etcd"),
    ("kubelet-wrapper", "kubelet"),
    ("fleet-wrapper", "fleet"),
];

/// Deprecated variables the kubelet-wrapper still read, and the names that replaced them.
const DEPRECATED: &[(&str, &str)] = &[
    ("KUBELET_VERSION", "KUBELET_IMAGE_TAG"),
    ("KUBELET_ACI", "KUBELET_IMAGE_URL"),
    ("RKT_OPTS", "RKT_RUN_ARGS"),
];

/// rkt's own variables: nothing in skiff corresponds, so they are accepted and said to be unused.
const RKT_ONLY: &[&str] = &["RKT", "RKT_GLOBAL_ARGS", "RKT_STAGE1_ARG"];

#[derive(Debug, thiserror::Error)]
pub enum WrapperError {
    #[error(transparent)]
    Rkt(#[from] RktError),
    #[error("{var}: --mount volume={name} names no --volume {name}")]
    NoVolume { var: String, name: String },
    #[error("{var}: --volume {name} is given twice")]
    DuplicateVolume { var: String, name: String },
    #[error("{var}: --volume {name} has no --mount volume={name},target=PATH (rkt would use the image's mount point of that name; OCI images have none)")]
    Unmounted { var: String, name: String },
    #[error("{var}: --volume {name}")]
    Volume {
        var: String,
        name: String,
        #[source]
        source: crate::run::VolumeError,
    },
    #[error("--group={0} needs a --user too (skiff runs as USER:GROUP)")]
    GroupWithoutUser(String),
    #[error(transparent)]
    User(#[from] crate::run::UserError),
    #[error("writing the pod UUID file {path} (--uuid-file-save)")]
    UuidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The profile an argv[0] asks for: `etcd-wrapper` (or a path ending in it) is `etcd`.
pub fn entry_point(argv0: &std::ffi::OsStr) -> Option<&'static str> {
    let base = Path::new(argv0).file_name()?;
    ENTRY_POINTS
        .iter()
        .find(|(n, _)| base == std::ffi::OsStr::new(n))
        .map(|(_, p)| *p)
}

/// The command line skiff parses: as given, or for a wrapper name
/// `skiff run --profile NAME -- ARGS…` (every argument is the payload's, as with the scripts).
pub fn argv(args: Vec<OsString>) -> Vec<OsString> {
    let Some(profile) = args.first().and_then(|a| entry_point(a)) else {
        return args;
    };
    let mut out: Vec<OsString> = ["skiff", "run", "--profile", profile, "--"]
        .iter()
        .map(OsString::from)
        .collect();
    out.extend(args.into_iter().skip(1));
    out
}

/// A variable as the wrapper scripts read it: `KUBELET_IMAGE_TAG` falls back to the deprecated
/// `KUBELET_VERSION`, `KUBELET_IMAGE_URL` to `KUBELET_ACI`.
pub fn aliased(key: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    set(key).or_else(|| {
        DEPRECATED
            .iter()
            .find(|(_, new)| *new == key && *new != "RKT_RUN_ARGS")
            .and_then(|(old, _)| set(old))
    })
}

/// What the wrapper variables ask for, merged into a run by the CLI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Translation {
    pub volumes: Vec<VolumeSpec>,
    /// `NAME=VALUE` (rkt's `--set-env`).
    pub env: Vec<String>,
    pub exec: Option<String>,
    /// `X_IMAGE_ARGS` was set: it replaces the script's default image arguments (the
    /// kubelet-wrapper's `--exec=/kubelet`), as `${KUBELET_IMAGE_ARGS:-…}` did.
    pub image_args_set: bool,
    pub user: Option<String>,
    pub group: Option<String>,
    /// The host's resolv.conf and hosts (`--dns=host`, `--hosts-entry=host`).
    pub host_dns: bool,
    pub net_none: bool,
    pub inherit_env: bool,
    pub uuid_file: Option<PathBuf>,
    /// What each argument became, in order, for `--dry-run` and the log.
    pub notes: Vec<Note>,
    /// Deprecated variables in use, each naming its replacement.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub var: String,
    pub arg: String,
    pub became: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.var, self.arg, self.became)
    }
}

/// Reads `RKT_RUN_ARGS`, `RKT_OPTS` and `PREFIX_IMAGE_ARGS` (and notes rkt's own variables).
pub fn from_env(
    prefix: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Translation, WrapperError> {
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let mut t = Translation::default();
    for (old, new) in DEPRECATED {
        if set(old).is_some() {
            t.warnings
                .push(format!("{old} is deprecated, use {new} instead"));
        }
    }
    for var in RKT_ONLY {
        if let Some(v) = set(var) {
            t.notes.push(Note {
                var: var.to_string(),
                arg: v,
                became: "unused: rkt's own setting, and rkt is not run".into(),
            });
        }
    }
    let image_args = format!("{prefix}_IMAGE_ARGS");
    let mut parsed = Vec::new();
    for var in ["RKT_RUN_ARGS", "RKT_OPTS", image_args.as_str()] {
        if let Some(v) = set(var) {
            parsed.extend(rkt::parse(var, &v)?);
            t.image_args_set |= var == image_args;
        }
    }
    t.absorb(&parsed)?;
    Ok(t)
}

impl Translation {
    fn note(&mut self, p: &rkt::Parsed, became: String) {
        self.notes.push(Note {
            var: p.var.clone(),
            arg: p.text.clone(),
            became,
        });
    }

    fn absorb(&mut self, parsed: &[rkt::Parsed]) -> Result<(), WrapperError> {
        use rkt::Arg;
        let volumes = volumes_by_name(parsed)?;
        let mut mounted: Vec<&str> = Vec::new();
        for p in parsed {
            match &p.arg {
                Arg::Volume { name, .. } => {
                    self.note(p, format!("paired with --mount volume={name}"));
                }
                Arg::Mount { volume, target } => {
                    let (vp, source, ro, rec) = volumes
                        .iter()
                        .find(|(n, ..)| n == volume)
                        .map(|(_, vp, s, ro, rec)| (vp, s, *ro, *rec))
                        .ok_or_else(|| WrapperError::NoVolume {
                            var: p.var.clone(),
                            name: volume.clone(),
                        })?;
                    let spec = format!(
                        "{}:{target}:{}{}",
                        source.display(),
                        if ro { "ro" } else { "rw" },
                        if rec { ",rbind" } else { "" }
                    );
                    let v: VolumeSpec = spec.parse().map_err(|source| WrapperError::Volume {
                        var: vp.var.clone(),
                        name: volume.clone(),
                        source,
                    })?;
                    self.volumes.push(v);
                    mounted.push(volume);
                    self.note(p, format!("--volume {spec}"));
                }
                Arg::Exec(e) => {
                    self.exec = Some(e.clone());
                    self.note(p, format!("--exec {e}"));
                }
                Arg::User(u) => {
                    self.user = Some(u.clone());
                    self.note(
                        p,
                        format!("--user {u} (unless the profile's user variable is set)"),
                    );
                }
                Arg::Group(g) => {
                    self.group = Some(g.clone());
                    self.note(p, format!("the group of --user: {g}"));
                }
                Arg::SetEnv(e) => {
                    self.env.push(e.clone());
                    self.note(p, format!("--env {e}"));
                }
                Arg::DnsHost | Arg::HostsEntryHost => {
                    self.host_dns = true;
                    self.note(
                        p,
                        "--host-dns (the host's /etc/hosts and resolv.conf)".into(),
                    );
                }
                Arg::NetHost => {
                    self.net_none = false;
                    self.note(p, "--net=host (skiff's default)".into());
                }
                Arg::NetNone => {
                    self.net_none = true;
                    self.note(p, "--net=none".into());
                }
                Arg::Interactive(on) => self.note(
                    p,
                    if *on {
                        "nothing to do: skiff execs in place, stdin is already the payload's"
                    } else {
                        "nothing to do"
                    }
                    .into(),
                ),
                Arg::InheritEnv(on) => {
                    self.inherit_env = *on;
                    self.note(p, format!("--inherit-env={on}"));
                }
                Arg::UuidFileSave(path) => {
                    self.uuid_file = Some(path.clone());
                    self.note(
                        p,
                        format!("a pod UUID written to {} (rkt is gone: `rkt stop/rm --uuid-file` lines find the file and fail harmlessly)", path.display()),
                    );
                }
            }
        }
        if let Some((_, p, ..)) = volumes
            .iter()
            .find(|(n, ..)| !mounted.contains(&n.as_str()))
        {
            let Arg::Volume { name, .. } = &p.arg else {
                unreachable!("volumes_by_name keeps only volumes")
            };
            return Err(WrapperError::Unmounted {
                var: p.var.clone(),
                name: name.clone(),
            });
        }
        Ok(())
    }

    /// The user to run as: the profile's (host) user keeps its uid, as the scripts put their
    /// own `--user=$(id -u …)` last; a `--group` applies to it. Without one, `--user[:--group]`.
    pub fn user_spec(
        &self,
        profile_user: Option<(u32, u32)>,
    ) -> Result<Option<UserSpec>, WrapperError> {
        let parse = |s: String| s.parse::<UserSpec>().map(Some);
        Ok(match (profile_user, &self.user, &self.group) {
            (Some((uid, gid)), _, None) => Some(UserSpec::ids(uid, gid)),
            (Some((uid, _)), _, Some(g)) => parse(format!("{uid}:{g}"))?,
            (None, Some(u), None) => parse(u.clone())?,
            (None, Some(u), Some(g)) => parse(format!("{u}:{g}"))?,
            (None, None, Some(g)) => return Err(WrapperError::GroupWithoutUser(g.clone())),
            (None, None, None) => None,
        })
    }
}

type NamedVolume<'a> = (String, &'a rkt::Parsed, PathBuf, bool, bool);

fn volumes_by_name(parsed: &[rkt::Parsed]) -> Result<Vec<NamedVolume<'_>>, WrapperError> {
    let mut out: Vec<NamedVolume> = Vec::new();
    for p in parsed {
        if let rkt::Arg::Volume {
            name,
            source,
            readonly,
            recursive,
        } = &p.arg
        {
            if out.iter().any(|(n, ..)| n == name) {
                return Err(WrapperError::DuplicateVolume {
                    var: p.var.clone(),
                    name: name.clone(),
                });
            }
            out.push((name.clone(), p, source.clone(), *readonly, *recursive));
        }
    }
    Ok(out)
}

/// Writes a fresh pod UUID (v4, as rkt printed it) where `--uuid-file-save` says, whole or not
/// at all: a temporary file renamed over the old one.
pub fn save_uuid(path: &Path) -> Result<String, WrapperError> {
    let err = |source| WrapperError::UuidFile {
        path: path.to_path_buf(),
        source,
    };
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(err)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    let name = path
        .file_name()
        .ok_or_else(|| err(std::io::ErrorKind::InvalidInput.into()))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(uuid.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(uuid)
}

#[cfg(test)]
mod tests;
