//! Profiles: drop-in replacements for the CoreOS wrappers (fleet-wrapper, etcd-wrapper,
//! kubelet-wrapper). A profile names the default image, the variables that pick its version,
//! and the mounts and environment of the service, so a unit stays one line.
//!
//! Built-in profiles are data, in the same shape as an operator's own profile files
//! (`/etc/skiff/profiles/NAME.json`), and both may use `${VAR}` / `${VAR:-default}` from
//! skiff's environment (what `Environment=` and `EnvironmentFile=` set).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::run::{VolumeError, VolumeSpec};

pub const PROFILE_DIR: &str = "/etc/skiff/profiles";

#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("unknown profile {name:?}: not built in (fleet, etcd, kubelet) and no {path} exists")]
    Unknown { name: String, path: PathBuf },
    #[error("reading profile {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed profile {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("profile {profile}")]
    Expand {
        profile: String,
        #[source]
        source: ExpandError,
    },
    #[error("profile {profile}")]
    Volume {
        profile: String,
        #[source]
        source: VolumeError,
    },
    #[error("profile {profile}: ${var} names user {user:?}, which the host does not have")]
    NoUser {
        profile: String,
        var: String,
        user: String,
    },
}

/// A host service a profile binds in (as `--host-*` would).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Systemd,
    Dbus,
    Dns,
    Certs,
    Etcd,
}

/// A data directory the profile creates on the host and hands to the payload's user.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct DataDir {
    /// Host path (expanded), e.g. `${ETCD_DATA_DIR:-/var/lib/etcd}`.
    pub host: String,
    /// Where it appears inside.
    pub target: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// `PREFIX_IMAGE`, `PREFIX_IMAGE_URL`, `PREFIX_IMAGE_TAG` pick the image; `PREFIX_*` pass
    /// through to the payload.
    pub prefix: String,
    /// The repository, as `PREFIX_IMAGE_URL` defaults to.
    pub image: String,
    pub default_tag: String,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub presets: Vec<Preset>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub exec: Option<String>,
    /// A variable naming the host user to run as (and to own `data_dir`).
    #[serde(default)]
    pub user_var: Option<String>,
    #[serde(default)]
    pub user_default: Option<String>,
    #[serde(default)]
    pub data_dir: Option<DataDir>,
    /// The program reads `PREFIX_X` as its flag `--x` and refuses to get both (etcd 3.4+):
    /// such variables are dropped when the command line has the flag.
    #[serde(default)]
    pub env_flags: bool,
}

fn builtin(name: &str) -> Option<&'static str> {
    Some(match name {
        "fleet" => include_str!("profiles/fleet.json"),
        "etcd" => include_str!("profiles/etcd.json"),
        "kubelet" => include_str!("profiles/kubelet.json"),
        _ => return None,
    })
}

/// Finds a profile: an operator's file overrides a built-in of the same name.
pub fn load(name: &str, dir: &Path) -> Result<Profile, ProfileError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let path = dir.join(format!("{name}.json"));
    if !valid {
        return Err(ProfileError::Unknown {
            name: name.to_string(),
            path,
        });
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ProfileError::Read { path, source: e })
        }
        Err(_) => match builtin(name) {
            Some(t) => t.to_string(),
            None => {
                return Err(ProfileError::Unknown {
                    name: name.to_string(),
                    path,
                })
            }
        },
    };
    serde_json::from_str(&text).map_err(|source| ProfileError::Parse { path, source })
}

/// Why a profile field could not be expanded, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("{0:?}: expected ${{VAR}} or ${{VAR:-default}}")]
    Syntax(String),
    #[error("{field:?}: bad variable name {var:?}")]
    Name { field: String, var: String },
    #[error("{field:?}: ${var} is not set")]
    Unset { field: String, var: String },
}

/// Expands `${VAR}` and `${VAR:-default}`; a bare `$` and an unknown `${VAR}` are errors,
/// so a typo never silently becomes an empty path.
pub fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let body = after
            .strip_prefix('{')
            .and_then(|a| a.find('}').map(|j| &a[..j]))
            .ok_or_else(|| ExpandError::Syntax(s.to_string()))?;
        let (var, default) = match body.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (body, None),
        };
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ExpandError::Name {
                field: s.to_string(),
                var: var.to_string(),
            });
        }
        match (env(var).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(ExpandError::Unset {
                    field: s.to_string(),
                    var: var.to_string(),
                })
            }
        }
        rest = &after[body.len() + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What a profile decides for one run, with the environment applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The profile's variable prefix (`ETCD`), for `PREFIX_IMAGE=` lines.
    pub prefix: String,
    /// The image reference (without a `--digest` pin, which the caller adds).
    pub image: String,
    pub volumes: Vec<VolumeSpec>,
    pub presets: Vec<Preset>,
    /// `NAME=VALUE` items and pass-through names.
    pub env: Vec<String>,
    pub exec: Option<String>,
    pub user: Option<(u32, u32)>,
    pub data_dir: Option<(PathBuf, String)>,
    /// The prefix whose variables the program also reads as flags (see `Profile::env_flags`).
    pub flag_env_prefix: Option<String>,
}

impl Profile {
    /// Applies `--tag` and the environment: `PREFIX_IMAGE` wins, else
    /// `PREFIX_IMAGE_URL:tag` (tag: `--tag`, then `PREFIX_IMAGE_TAG`, then the default), as the
    /// CoreOS wrappers did (a `docker://` prefix on the URL is accepted and dropped).
    pub fn resolve(
        &self,
        tag: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
        vars: &[(String, String)],
        lookup_user: &dyn Fn(&str) -> Option<(u32, u32)>,
    ) -> Result<Resolved, ProfileError> {
        let err = |source: ExpandError| ProfileError::Expand {
            profile: self.name.clone(),
            source,
        };
        let p = &self.prefix;
        let var = |k: &str| env(&format!("{p}_{k}")).filter(|v| !v.is_empty());
        let image = match (tag, var("IMAGE")) {
            (None, Some(full)) => full,
            _ => {
                let url = var("IMAGE_URL").unwrap_or_else(|| self.image.clone());
                let url = url.strip_prefix("docker://").unwrap_or(&url).to_string();
                let tag = tag
                    .map(str::to_string)
                    .or_else(|| var("IMAGE_TAG"))
                    .unwrap_or_else(|| self.default_tag.clone());
                format!("{url}:{tag}")
            }
        };
        let ex = |s: &String| expand(s, env).map_err(err);
        let volumes = self
            .volumes
            .iter()
            .map(|v| {
                ex(v)?.parse().map_err(|source| ProfileError::Volume {
                    profile: self.name.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<VolumeSpec>, _>>()?;
        // PREFIX_* pass through (but not the wrapper's own: the image and its rkt arguments); the
        // profile's own settings come after, so they win (ETCD_DATA_DIR is the path inside).
        let own = [
            format!("{p}_IMAGE"),
            format!("{p}_IMAGE_URL"),
            format!("{p}_IMAGE_TAG"),
            format!("{p}_IMAGE_ARGS"),
        ];
        let mut env_items: Vec<String> = vars
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{p}_")) && !own.contains(k))
            .map(|(k, _)| k.clone())
            .collect();
        for e in &self.env {
            env_items.push(ex(e)?);
        }
        let user = match &self.user_var {
            Some(v) => {
                let name = env(v)
                    .filter(|u| !u.is_empty())
                    .or_else(|| self.user_default.clone())
                    .unwrap_or_else(|| "root".into());
                Some(lookup_user(&name).ok_or_else(|| ProfileError::NoUser {
                    profile: self.name.clone(),
                    var: v.clone(),
                    user: name,
                })?)
            }
            None => None,
        };
        let data_dir = match &self.data_dir {
            Some(d) => Some((PathBuf::from(ex(&d.host)?), d.target.clone())),
            None => None,
        };
        Ok(Resolved {
            prefix: self.prefix.clone(),
            image,
            volumes,
            presets: self.presets.clone(),
            env: env_items,
            exec: self.exec.clone(),
            user,
            data_dir,
            flag_env_prefix: self.env_flags.then(|| self.prefix.clone()),
        })
    }
}

/// The host's user (for `ETCD_USER`): the host's passwd, since the data directory is the host's.
pub fn host_user(name: &str) -> Option<(u32, u32)> {
    if let Ok(uid) = name.parse::<u32>() {
        return Some((uid, uid));
    }
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn builtins_parse_and_expand() {
        for name in ["fleet", "etcd", "kubelet"] {
            let p = load(name, Path::new("/nonexistent")).unwrap();
            let r = p.resolve(None, &|_| None, &[], &|_| Some((0, 0))).unwrap();
            assert!(r.image.contains(':'), "{name}: {}", r.image);
            assert!(!r.volumes.is_empty() || name == "fleet", "{name}");
        }
    }

    #[test]
    fn fleet_image_variables_as_the_wrapper_had_them() {
        let p = load("fleet", Path::new("/nonexistent")).unwrap();
        let none = |_: &str| Some((0, 0));
        let r = p.resolve(None, &|_| None, &[], &none).unwrap();
        assert_eq!(r.image, "quay.io/coreos/fleet:v1.0.0");
        let e = env_of(&[("FLEET_IMAGE_TAG", "v0.13.0")]);
        assert_eq!(
            p.resolve(None, &e, &[], &none).unwrap().image,
            "quay.io/coreos/fleet:v0.13.0"
        );
        assert_eq!(
            p.resolve(Some("v2"), &e, &[], &none).unwrap().image,
            "quay.io/coreos/fleet:v2",
            "--tag wins"
        );
        let e = env_of(&[
            ("FLEET_IMAGE_URL", "docker://mirror.lan/fleet"),
            ("FLEET_IMAGE_TAG", "t"),
        ]);
        assert_eq!(
            p.resolve(None, &e, &[], &none).unwrap().image,
            "mirror.lan/fleet:t"
        );
        let e = env_of(&[("FLEET_IMAGE", "reg.lan/f@sha256:abc")]);
        assert_eq!(
            p.resolve(None, &e, &[], &none).unwrap().image,
            "reg.lan/f@sha256:abc"
        );
        let v = vars(&[
            ("FLEET_METADATA", "x"),
            ("FLEET_IMAGE_TAG", "t"),
            ("OTHER", "y"),
        ]);
        let r = p.resolve(None, &|_| None, &v, &none).unwrap();
        assert!(r.env.contains(&"FLEET_METADATA".to_string()));
        assert!(!r
            .env
            .iter()
            .any(|e| e.starts_with("FLEET_IMAGE") || e == "OTHER"));
        assert!(r
            .volumes
            .iter()
            .any(|v| v.source == Path::new("/run/fleet/units")
                && v.target == "/run/fleet/units"
                && v.create));
    }

    #[test]
    fn etcd_user_and_data_dir() {
        let p = load("etcd", Path::new("/nonexistent")).unwrap();
        let e = env_of(&[
            ("ETCD_USER", "etcd"),
            ("ETCD_DATA_DIR", "/srv/etcd"),
            ("ETCD_SSL_DIR", "/etc/ssl/mine"),
        ]);
        let r = p
            .resolve(None, &e, &[], &|u| (u == "etcd").then_some((232, 232)))
            .unwrap();
        assert_eq!(r.user, Some((232, 232)));
        assert_eq!(
            r.data_dir,
            Some((PathBuf::from("/srv/etcd"), "/var/lib/etcd".to_string()))
        );
        assert!(
            r.volumes
                .iter()
                .any(|v| v.source == Path::new("/etc/ssl/mine")
                    && v.target == "/etc/ssl/certs"
                    && v.readonly),
            "{:?}",
            r.volumes
        );
        let missing = p.resolve(None, &env_of(&[("ETCD_USER", "ghost")]), &[], &|_| None);
        assert!(matches!(missing, Err(ProfileError::NoUser { .. })));
    }

    #[test]
    fn expansion_is_strict() {
        let e = env_of(&[("A", "1"), ("EMPTY", "")]);
        assert_eq!(expand("x${A}y", &e).unwrap(), "x1y");
        assert_eq!(expand("${B:-d}", &e).unwrap(), "d");
        assert_eq!(expand("${EMPTY:-d}", &e).unwrap(), "d");
        assert_eq!(expand("plain", &e).unwrap(), "plain");
        for bad in ["$A", "${B}", "${", "${A", "${}", "${A B}", "${../x}"] {
            assert!(expand(bad, &e).is_err(), "{bad}");
        }
    }

    #[test]
    fn operator_files_override_and_hostile_names_are_refused() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("fleet.json"),
            r#"{"name":"fleet","prefix":"FLEET","image":"reg.lan/fleet","default_tag":"mine"}"#,
        )
        .unwrap();
        assert_eq!(load("fleet", t.path()).unwrap().image, "reg.lan/fleet");
        std::fs::write(
            t.path().join("bad.json"),
            r#"{"name":"bad","prefix":"B","image":"x","default_tag":"t","unknown":1}"#,
        )
        .unwrap();
        assert!(matches!(
            load("bad", t.path()),
            Err(ProfileError::Parse { .. })
        ));
        assert!(matches!(
            load("../etc/passwd", t.path()),
            Err(ProfileError::Unknown { .. })
        ));
        assert!(matches!(
            load("nope", t.path()),
            Err(ProfileError::Unknown { .. })
        ));
    }
}
