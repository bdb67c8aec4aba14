//! Unpacked trees the store holds, named by what they are: one layer's (by its diff_id, or for
//! schema1, which has none, by its blob), one layer's over the layers below it (by the OCI
//! ChainID of the stack it tops), or an image's flattened rootfs (by its manifest).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::manifest::Layer;
use crate::reference::Digest;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TreeKey {
    /// `layers/<diff_id hex>`
    Layer(Digest),
    /// `layers/blob-<blob hex>`: a schema1 layer, whose config has no diff_ids.
    Schema1Layer(Digest),
    /// `layers/chain-<ChainID hex>`: a layer whose tree depends on the layers below it
    /// (directories it implies take their metadata, hard links and whiteouts reach into
    /// them), so it is one tree per lower stack; see `chain_ids`.
    Chain(Digest),
    /// `rootfs/<manifest hex>`: the flattened tree `--storage=flat` runs from.
    Flat(Digest),
}

const SCHEMA1: &str = "blob-";
const CHAIN: &str = "chain-";

/// The OCI image spec's ChainID of each layer of `layers` (bottom first): the bottom layer's is
/// its diff_id, each other's `sha256(ChainID(below) + " " + diff_id)`. A schema1 layer, which
/// has no diff_id, stands for itself by its blob digest.
pub fn chain_ids(layers: &[Layer]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(layers.len());
    for l in layers {
        let id = l.diff_id.as_ref().unwrap_or(&l.blob.digest);
        let chain = match out.last() {
            None => id.clone(),
            Some(below) => Digest::of(format!("{below} {id}").as_bytes()),
        };
        out.push(chain);
    }
    out
}

impl TreeKey {
    pub fn of_layer(l: &Layer) -> TreeKey {
        match &l.diff_id {
            Some(d) => TreeKey::Layer(d.clone()),
            None => TreeKey::Schema1Layer(l.blob.digest.clone()),
        }
    }

    /// Where the tree lives under the store root.
    pub fn path(&self, root: &Path) -> PathBuf {
        match self {
            TreeKey::Layer(d) => root.join("layers").join(d.hex()),
            TreeKey::Schema1Layer(d) => root.join("layers").join(format!("{SCHEMA1}{}", d.hex())),
            TreeKey::Chain(d) => root.join("layers").join(format!("{CHAIN}{}", d.hex())),
            TreeKey::Flat(d) => root.join("rootfs").join(d.hex()),
        }
    }

    /// The name its lock and staging directories go by in `tmp/`.
    pub fn lock_name(&self) -> String {
        match self {
            TreeKey::Layer(d) => d.hex().to_string(),
            TreeKey::Schema1Layer(d) => format!("{SCHEMA1}{}", d.hex()),
            TreeKey::Chain(d) => format!("{CHAIN}{}", d.hex()),
            TreeKey::Flat(d) => format!("flat-{}", d.hex()),
        }
    }

    /// The key of a directory entry of `layers/`, if it names one.
    pub fn from_layer_dir(name: &str) -> Option<TreeKey> {
        if let Some(hex) = name.strip_prefix(CHAIN) {
            return Digest::from_hex(hex).ok().map(TreeKey::Chain);
        }
        match name.strip_prefix(SCHEMA1) {
            Some(hex) => Digest::from_hex(hex).ok().map(TreeKey::Schema1Layer),
            None => Digest::from_hex(name).ok().map(TreeKey::Layer),
        }
    }

    /// The key of a directory entry of `rootfs/`, if it names one.
    pub fn from_flat_dir(name: &str) -> Option<TreeKey> {
        Digest::from_hex(name).ok().map(TreeKey::Flat)
    }

    /// Parses a lease line (as `Display` writes it, or as skiff 0.1 did: a bare layer key or
    /// `rootfs/HEX`, so an upgrade never frees a tree a running payload uses).
    pub fn from_lease(line: &str) -> Option<TreeKey> {
        match line.split_once(' ') {
            Some(("layer", name)) => TreeKey::from_layer_dir(name),
            Some(("flat", name)) => TreeKey::from_flat_dir(name),
            Some(_) => None,
            None => match line.strip_prefix("rootfs/") {
                Some(hex) => TreeKey::from_flat_dir(hex),
                None => TreeKey::from_layer_dir(line),
            },
        }
    }
}

/// `layer HEX`, `layer blob-HEX`, `layer chain-HEX` or `flat HEX`: one line of a lease.
impl fmt::Display for TreeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeKey::Layer(d) => write!(f, "layer {}", d.hex()),
            TreeKey::Schema1Layer(d) => write!(f, "layer {SCHEMA1}{}", d.hex()),
            TreeKey::Chain(d) => write!(f, "layer {CHAIN}{}", d.hex()),
            TreeKey::Flat(d) => write!(f, "flat {}", d.hex()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Compression, Descriptor};

    #[test]
    fn keys_round_trip_through_paths_and_leases() {
        let blob = Digest::of(b"blob");
        let diff = Digest::of(b"diff");
        let mut l = Layer {
            blob: Descriptor {
                media_type: "x".into(),
                digest: blob.clone(),
                size: None,
            },
            compression: Compression::Gzip,
            diff_id: Some(diff.clone()),
        };
        let root = Path::new("/s");
        assert_eq!(
            TreeKey::of_layer(&l).path(root),
            root.join("layers").join(diff.hex())
        );
        l.diff_id = None;
        let k = TreeKey::of_layer(&l);
        assert_eq!(
            k.path(root),
            root.join(format!("layers/blob-{}", blob.hex()))
        );
        for k in [
            k,
            TreeKey::Layer(diff.clone()),
            TreeKey::Chain(diff.clone()),
            TreeKey::Flat(blob.clone()),
        ] {
            assert_eq!(TreeKey::from_lease(&k.to_string()), Some(k.clone()));
            let dir = k.path(root);
            let name = dir.file_name().unwrap().to_str().unwrap();
            let back = if dir.starts_with("/s/rootfs") {
                TreeKey::from_flat_dir(name)
            } else {
                TreeKey::from_layer_dir(name)
            };
            assert_eq!(back, Some(k));
        }
        assert_eq!(TreeKey::from_lease("rootfs/abc"), None);
        assert_eq!(
            TreeKey::from_lease(&format!("rootfs/{}", blob.hex())),
            Some(TreeKey::Flat(blob.clone())),
            "a lease an older skiff wrote"
        );
        assert_eq!(TreeKey::from_layer_dir("junk"), None);
        assert_eq!(
            TreeKey::Chain(diff.clone()).path(root),
            root.join(format!("layers/chain-{}", diff.hex()))
        );
    }

    #[test]
    fn chain_ids_are_the_image_specs() {
        let layer = |d: &Digest| Layer {
            blob: Descriptor {
                media_type: "x".into(),
                digest: Digest::of(b"blob"),
                size: None,
            },
            compression: Compression::Gzip,
            diff_id: Some(d.clone()),
        };
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let ids = chain_ids(&[layer(&a), layer(&b)]);
        assert_eq!(ids[0], a, "the bottom layer's ChainID is its diff_id");
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert_ne!(chain_ids(&[layer(&b), layer(&b)])[1], ids[1]);
    }
}
