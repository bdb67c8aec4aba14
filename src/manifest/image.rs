//! An image resolved to the bytes it runs from: what pull hands on to unpack and run.

use super::{Layer, Platform, RuntimeConfig};
use crate::reference::Digest;

/// An image resolved to the bytes it runs from.
#[derive(Clone, Debug)]
pub struct Image {
    /// What the reference resolved to (an index or a manifest).
    pub digest: Digest,
    /// The platform's image manifest.
    pub manifest: Digest,
    pub config_digest: Option<Digest>,
    pub platform: Platform,
    pub config: RuntimeConfig,
    /// Bottom layer first.
    pub layers: Vec<Layer>,
    pub schema1: bool,
}

impl Image {
    pub fn size(&self) -> u64 {
        self.layers.iter().filter_map(|l| l.blob.size).sum()
    }

    /// Every blob the image needs, for `gc`.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut out = vec![self.digest.clone(), self.manifest.clone()];
        out.extend(self.config_digest.clone());
        out.extend(self.layers.iter().map(|l| l.blob.digest.clone()));
        out
    }
}
