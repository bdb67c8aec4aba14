//! Platform names (`os/arch[/variant]`) and the choice of one entry from an index.

use std::fmt;
use std::str::FromStr;

use super::{Descriptor, IndexEntry};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform skiff itself was built for: the one it can exec.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    pub(super) fn from_oci(p: &oci_spec::image::Platform) -> Self {
        Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone().filter(|v| !v.is_empty()),
        }
    }

    /// arm64 images often omit the `v8` variant; treat the two spellings as one.
    fn normalized_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            (_, v) => v,
        }
    }

    /// Whether an image for `self` satisfies a request for `wanted`: a request without a
    /// variant takes any variant.
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none()
                || self.normalized_variant() == wanted.normalized_variant())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Why a platform could not be parsed or chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("invalid platform {0:?}: expected OS/ARCH[/VARIANT], e.g. linux/arm64/v8")]
    Syntax(String),
    #[error("no image for platform {wanted}; the index offers: {}", if .offered.is_empty() { "(no platforms)".to_string() } else { .offered.join(", ") })]
    NotOffered {
        wanted: Box<Platform>,
        offered: Vec<String>,
    },
    #[error("an index entry points at another index; nested indexes are not supported")]
    NestedIndex,
    #[error("the image is for {image}, not {wanted}")]
    Mismatch {
        image: Box<Platform>,
        wanted: Box<Platform>,
    },
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(PlatformError::Syntax(s.to_string())),
        }
    }
}

/// Picks the index entry for `wanted`, or lists what the index offers.
pub fn select<'a>(
    entries: &'a [IndexEntry],
    wanted: &Platform,
) -> Result<&'a Descriptor, PlatformError> {
    entries
        .iter()
        .find(|e| e.platform.as_ref().is_some_and(|p| p.satisfies(wanted)))
        .map(|e| &e.descriptor)
        .ok_or_else(|| PlatformError::NotOffered {
            wanted: Box::new(wanted.clone()),
            offered: entries
                .iter()
                .filter_map(|e| e.platform.as_ref().map(|p| p.to_string()))
                .collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let p: Platform = "linux/arm64".parse().unwrap();
        let v8: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(p.satisfies(&v8) && v8.satisfies(&p));
        let arm7: Platform = "linux/arm/v7".parse().unwrap();
        let arm6: Platform = "linux/arm/v6".parse().unwrap();
        assert!(!arm6.satisfies(&arm7));
        assert!(arm6.satisfies(&"linux/arm".parse().unwrap()));
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "Linux/AMD64",
            "a/b/c/d",
            "linux/../x",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        assert_eq!(Platform::host().os, "linux");
    }
}
