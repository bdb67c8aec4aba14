//! Images carried on a disk: `load` from, and `save` to, the formats skopeo and podman write
//! (containers-transports(5): `oci:`, `oci-archive:`, `docker-archive:`, `dir:`).
//!
//! A source is one more way to produce blobs: it only reads files (never outside itself) and
//! hands documents and blob streams to the pull room, whose store gate verifies them exactly
//! as it verifies a registry's.

mod dir;
mod docker;
mod files;
mod load;
mod oci;
mod save;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use dir::parse_signature as parse_dir_signature;
pub use load::{load, probe, LoadError, LoadRequest};
pub use save::{save, SaveError};

/// Where an image is (or goes), in containers-transports(5) syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `oci:DIR[:TAG]`: an OCI image layout.
    Oci { dir: PathBuf, tag: Option<String> },
    /// `oci-archive:FILE[:TAG]`: an OCI image layout in a tar archive.
    OciArchive { file: PathBuf, tag: Option<String> },
    /// `docker-archive:FILE[:REF]`: `docker save`'s format (`manifest.json`).
    DockerArchive {
        file: PathBuf,
        reference: Option<String>,
    },
    /// `dir:DIR`: skopeo's directory of blobs, manifest and signatures.
    Dir { dir: PathBuf },
}

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("{0:?} is not a source skiff reads: use oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF] or dir:DIR")]
    Syntax(String),
    #[error("opening {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a readable tar archive")]
    NotTar {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {member} in {source_path}")]
    Read {
        source_path: PathBuf,
        member: String,
        #[source]
        source: io::Error,
    },
    #[error("{source_path}: {member:?} {why}")]
    Hostile {
        source_path: PathBuf,
        member: String,
        why: String,
    },
    #[error("{source_path}: {member} is {size} bytes, more than the {limit} bytes allowed")]
    TooLarge {
        source_path: PathBuf,
        member: String,
        size: u64,
        limit: u64,
    },
    #[error("{source_path}: {member} is missing")]
    Missing {
        source_path: PathBuf,
        member: String,
    },
    #[error("{source_path}: {member} is malformed")]
    Json {
        source_path: PathBuf,
        member: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{source_path}: {why}")]
    Choice { source_path: PathBuf, why: String },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl TransportError {
    pub(crate) fn read(source_path: &Path, member: &str, source: io::Error) -> TransportError {
        TransportError::Read {
            source_path: source_path.to_path_buf(),
            member: member.to_string(),
            source,
        }
    }

    pub(crate) fn write(path: &Path) -> impl FnOnce(io::Error) -> TransportError + '_ {
        move |source| TransportError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn split_once_nonempty(rest: &str) -> (&str, Option<String>) {
    match rest.split_once(':') {
        Some((p, t)) if !t.is_empty() => (p, Some(t.to_string())),
        Some((p, _)) => (p, None),
        None => (rest, None),
    }
}

impl std::str::FromStr for Location {
    type Err = TransportError;

    /// `TRANSPORT:PATH[:EXTRA]`; as containers/image does, the path ends at the first `:`.
    fn from_str(s: &str) -> Result<Location, TransportError> {
        let bad = || TransportError::Syntax(s.to_string());
        let (transport, rest) = s.split_once(':').ok_or_else(bad)?;
        let (path, extra) = split_once_nonempty(rest);
        if path.is_empty() {
            return Err(bad());
        }
        let p = PathBuf::from(path);
        Ok(match transport {
            "oci" => Location::Oci { dir: p, tag: extra },
            "oci-archive" => Location::OciArchive {
                file: p,
                tag: extra,
            },
            "docker-archive" => Location::DockerArchive {
                file: p,
                reference: extra,
            },
            "dir" if extra.is_none() => Location::Dir { dir: p },
            _ => return Err(bad()),
        })
    }
}

impl Location {
    /// The same location with an absolute path, as the store index records it.
    pub fn absolute(&self) -> Location {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        match self {
            Location::Oci { dir, tag } => Location::Oci {
                dir: abs(dir),
                tag: tag.clone(),
            },
            Location::OciArchive { file, tag } => Location::OciArchive {
                file: abs(file),
                tag: tag.clone(),
            },
            Location::DockerArchive { file, reference } => Location::DockerArchive {
                file: abs(file),
                reference: reference.clone(),
            },
            Location::Dir { dir } => Location::Dir { dir: abs(dir) },
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, p, extra) = match self {
            Location::Oci { dir, tag } => ("oci", dir, tag),
            Location::OciArchive { file, tag } => ("oci-archive", file, tag),
            Location::DockerArchive { file, reference } => ("docker-archive", file, reference),
            Location::Dir { dir } => ("dir", dir, &None),
        };
        write!(f, "{t}:{}", p.display())?;
        if let Some(e) = extra {
            write!(f, ":{e}")?;
        }
        Ok(())
    }
}

/// Parses a JSON document of the source, naming it when it is malformed.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    source: &Path,
    member: &str,
    bytes: &[u8],
) -> Result<T, TransportError> {
    serde_json::from_slice(bytes).map_err(|e| TransportError::Json {
        source_path: source.to_path_buf(),
        member: member.to_string(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_as_containers_transports_says() {
        let l: Location = "oci:/mnt/layout:v1".parse().unwrap();
        assert_eq!(
            l,
            Location::Oci {
                dir: "/mnt/layout".into(),
                tag: Some("v1".into())
            }
        );
        let l: Location = "docker-archive:/mnt/a.tar:quay.io/coreos/etcd:v3.5"
            .parse()
            .unwrap();
        assert_eq!(
            l,
            Location::DockerArchive {
                file: "/mnt/a.tar".into(),
                reference: Some("quay.io/coreos/etcd:v3.5".into())
            }
        );
        assert_eq!(
            l.to_string(),
            "docker-archive:/mnt/a.tar:quay.io/coreos/etcd:v3.5"
        );
        let l: Location = "oci-archive:x.tar".parse().unwrap();
        assert_eq!(l.to_string(), "oci-archive:x.tar");
        assert!(matches!("dir:/d".parse().unwrap(), Location::Dir { .. }));
        for bad in [
            "",
            "oci",
            "oci:",
            "docker://quay.io/x",
            "dir:/d:tag",
            "tarball:/x",
            ":x",
        ] {
            assert!(bad.parse::<Location>().is_err(), "{bad}");
        }
    }
}
