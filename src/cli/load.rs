//! `load` and `save`: images carried across an air gap (the transports room does the work).

use anyhow::{Context, Result};
use clap::Args;

use super::{open_store, Cli};
use crate::manifest::Platform;
use crate::reference::Reference;
use crate::transport::{self, Location};

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF] or dir:DIR
    /// (containers-transports(5)).
    pub source: String,
    /// The name it gets in the store (default: the name the source carries).
    pub reference: Option<String>,
    /// OS/ARCH[/VARIANT] to choose from a multi-platform image (default: the host's).
    #[arg(long, conflicts_with = "all")]
    pub platform: Option<String>,
    /// Every platform of a multi-platform image.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// The stored image: [REGISTRY[:PORT]/]PATH[:TAG][@sha256:DIGEST]
    pub image: String,
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF] or dir:DIR.
    pub dest: String,
    /// OS/ARCH[/VARIANT] of a multi-platform image (default: the one it was pulled for).
    #[arg(long)]
    pub platform: Option<String>,
}

pub fn load(cli: &Cli, args: &LoadArgs) -> Result<()> {
    let store = open_store(cli)?;
    let source: Location = args.source.parse()?;
    let (platform, platform_explicit) = match &args.platform {
        Some(p) => (p.parse().context("parsing --platform")?, true),
        None => (Platform::host(), false),
    };
    let req = transport::LoadRequest {
        source: &source,
        reference: args.reference.as_deref(),
        platform,
        platform_explicit,
        all: args.all,
        trust: &cli.trust()?,
        storage: cli.storage(),
    };
    let (reference, image) =
        transport::load(&store, &req).with_context(|| format!("loading {source}"))?;
    tracing::info!(reference = %reference, digest = %image.digest, source = %source, "loaded");
    println!("{}", image.digest);
    Ok(())
}

pub fn save(cli: &Cli, args: &SaveArgs) -> Result<()> {
    let store = open_store(cli)?;
    let reference: Reference = args
        .image
        .parse()
        .with_context(|| format!("parsing image reference {:?}", args.image))?;
    let dest: Location = args.dest.parse()?;
    let platform = match &args.platform {
        Some(p) => p.parse().context("parsing --platform")?,
        None => store
            .index()
            .get(&crate::pull::index_key(&reference))?
            .and_then(|e| e.platform.parse().ok())
            .unwrap_or_else(Platform::host),
    };
    transport::save(&store, &reference, &platform, &dest)
        .with_context(|| format!("saving {reference} to {dest}"))
}
