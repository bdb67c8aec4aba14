//! The command line: clap structs turned into one validated configuration, then dispatched.

mod fleet;
mod images;
mod load;
mod progress;
mod run;
mod update;
mod verify;

pub use run::RunArgs;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::manifest::Platform;
use crate::pull::{self, PullPolicy};
use crate::reference::{Digest, Reference};
use crate::registry::{self, auth::Credentials};
use crate::store::{Store, DEFAULT_ROOT};

#[derive(Parser, Debug)]
#[command(
    name = "skiff",
    version,
    about = "Pull a verified container image and exec it in place",
    long_about = "skiff pulls a container image from a registry, verifies every byte against its \
digest, unpacks the rootfs and execs the payload in its own mount namespace."
)]
pub struct Cli {
    /// The store directory.
    #[arg(long, global = true, env = "SKIFF_ROOT", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Log level (error, warn, info, debug, trace), or levels per target (skiff=debug,info).
    #[arg(long, global = true, env = "SKIFF_LOG", default_value = "info")]
    pub log_level: String,
    /// overlay: layers shared between images; flat: one flattened tree per image (where the
    /// kernel has no overlayfs). Default: overlay when the kernel has it.
    #[arg(long, global = true, value_enum)]
    pub storage: Option<crate::unpack::Storage>,
    /// The signature policy (containers-policy.json(5)). Default: /etc/containers/policy.json
    /// when it exists; with no policy at all, every image is accepted.
    #[arg(long, global = true, value_name = "FILE", env = "SKIFF_POLICY")]
    pub policy: Option<PathBuf>,
    /// Where signatures are (containers-registries.d(5)). Default: /etc/containers/registries.d.
    #[arg(long = "registries.d", global = true, value_name = "DIR")]
    pub registries_d: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Allow plain HTTP to this registry (HOST[:PORT]); loopback registries always may.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    pub insecure: Vec<String>,
    /// Trust this CA bundle for every registry, besides the host's trust store.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Vec<PathBuf>,
    /// Per-registry CAs: DIR/HOST[:PORT]/*.crt.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = registry::DEFAULT_CERTS_DIR
    )]
    pub certs_dir: PathBuf,
    /// Credentials for the image's registry.
    #[arg(
        long,
        global = true,
        value_name = "USER:PASS",
        env = "SKIFF_CREDS",
        hide_env_values = true
    )]
    pub creds: Option<String>,
    /// Try MIRROR (HOST[:PORT]) before REGISTRY, in the order given.
    #[arg(long, global = true, value_name = "REGISTRY=MIRROR")]
    pub mirror: Vec<String>,
    /// Retries for connection errors, 429 and 5xx.
    #[arg(long, global = true, default_value_t = 4)]
    pub retries: u32,
    /// A download that sends nothing for this many seconds is cut (then resumed or retried).
    #[arg(long, global = true, default_value_t = 60, value_name = "SECONDS")]
    pub stall_timeout: u64,
    /// The total time (connecting, retries and waits together) the registry gets when the
    /// store can serve instead (--pull=newer), and a mirror gets before the next endpoint.
    #[arg(long, global = true, default_value_t = 5.0, value_name = "SECONDS")]
    pub registry_timeout: f64,
}

#[derive(Args, Debug, Clone)]
pub struct ImageArgs {
    /// The image: [REGISTRY[:PORT]/]PATH[:TAG][@sha256:DIGEST] (optional with --profile).
    #[arg(required_unless_present = "profile")]
    pub image: Option<String>,
    /// A service profile (fleet, etcd, kubelet, or /etc/skiff/profiles/NAME.json): its image,
    /// version variables, mounts and environment.
    #[arg(long)]
    pub profile: Option<String>,
    /// With --profile: the tag (overrides PREFIX_IMAGE_TAG).
    #[arg(long, requires = "profile")]
    pub tag: Option<String>,
    /// Where operators' profile files live.
    #[arg(long, default_value = crate::profiles::PROFILE_DIR, hide = true)]
    pub profile_dir: PathBuf,
    /// Pin the manifest digest (sha256:…); the registry must serve exactly this.
    #[arg(long)]
    pub digest: Option<String>,
    /// OS/ARCH[/VARIANT] to choose from a multi-platform image (default: the host's).
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct PullArgs {
    /// missing: use the store when it has the image, pull otherwise (no network for a stored
    /// image); newer: ask the registry what a tag means now, and use the store if it does not
    /// answer within --registry-timeout; always: ask the registry, fail if it cannot be reached;
    /// never: the store only.
    #[arg(long, value_enum, default_value = "missing")]
    pub pull: PullPolicy,
    /// Layers downloaded at once.
    #[arg(long, default_value_t = 4)]
    pub max_parallel: usize,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pull an image into the store, verifying every blob.
    Pull {
        #[command(flatten)]
        image: ImageArgs,
        #[command(flatten)]
        pull: PullArgs,
    },
    /// List the images in the store.
    Images {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show an image's digests, config and layers (from the store).
    Inspect {
        #[command(flatten)]
        image: ImageArgs,
    },
    /// Remove an image reference and the blobs no other reference uses.
    Rm {
        /// References to remove.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Write an image's flattened rootfs into DIR (which must be empty or absent).
    Unpack {
        /// The image: [REGISTRY[:PORT]/]PATH[:TAG][@sha256:DIGEST]
        image: String,
        /// Where to write the tree.
        dir: PathBuf,
        /// Pin the manifest digest (sha256:…).
        #[arg(long)]
        digest: Option<String>,
        /// OS/ARCH[/VARIANT] to choose from a multi-platform image.
        #[arg(long)]
        platform: Option<String>,
        #[command(flatten)]
        pull: PullArgs,
    },
    /// Run an image's payload in place: pull if needed, mount, exec.
    Run(Box<RunArgs>),
    /// Resolve a tag (or a profile's image) to its digest, so every host runs identical bytes.
    Pin {
        #[command(flatten)]
        image: ImageArgs,
        /// Write PREFIX_IMAGE=…@sha256:… (with --profile) or the pinned reference to FILE, for a
        /// unit's EnvironmentFile=.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
    },
    /// Remove blobs and layers that no reference uses and no running payload holds.
    Gc,
    /// Load an image from an image layout or archive (air-gapped hosts), verified as a pull.
    Load(load::LoadArgs),
    /// Save a stored image as an image layout or archive, for hosts without a registry.
    Save(load::SaveArgs),
    /// Move units to what their pin file's tag means now; judge each by its health and roll
    /// back by itself (results: unchanged, pending, updated, rolled back, failed).
    Update(update::UpdateArgs),
    /// Put a unit's previous pin back and restart it, through the same health gate.
    Rollback {
        unit: String,
        #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
        grace: f64,
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        format: String,
    },
    /// Re-check every blob against its digest and every unpacked tree against its record.
    Verify {
        /// Rebuild damaged trees from their blobs (no network); drop damaged blobs and fetch
        /// damaged layer blobs again.
        #[arg(long)]
        repair: bool,
        /// Trees' metadata and sizes only: no content is read.
        #[arg(long)]
        quick: bool,
    },
}

/// An image argument resolved once: the reference (pin applied), the platform, and the
/// profile with skiff's environment applied. Everything after the command line takes this.
#[derive(Clone, Debug)]
pub struct ImageChoice {
    pub reference: Reference,
    pub platform: Platform,
    /// Whether the platform was asked for (a mismatch is then an error, not a warning).
    pub platform_explicit: bool,
    pub profile: Option<crate::profiles::Resolved>,
}

impl ImageArgs {
    /// Resolves the profile (reading it and the environment once), the reference with its
    /// `--digest` pin, and the platform.
    pub fn resolve(&self) -> Result<ImageChoice> {
        let profile = match &self.profile {
            Some(name) => {
                let profile = crate::profiles::load(name, &self.profile_dir)?;
                let vars: Vec<(String, String)> = std::env::vars().collect();
                // The wrappers' deprecated names still count (KUBELET_VERSION, KUBELET_ACI).
                let env = |k: &str| crate::wrapper::aliased(k, &|k| std::env::var(k).ok());
                Some(profile.resolve(
                    self.tag.as_deref(),
                    &env,
                    &vars,
                    &crate::profiles::host_user,
                )?)
            }
            None => None,
        };
        let image = match (&self.image, &profile) {
            (Some(i), _) => i.clone(),
            (None, Some(p)) => p.image.clone(),
            (None, None) => anyhow::bail!("give an IMAGE or --profile"),
        };
        let mut reference: Reference = image
            .parse()
            .with_context(|| format!("parsing image reference {image:?}"))?;
        if let Some(d) = &self.digest {
            let d: Digest = d.parse().context("parsing --digest")?;
            reference = reference.with_digest(d).map_err(|(a, b)| {
                anyhow::anyhow!("the reference pins {a} but --digest says {b}; give one pin")
            })?;
        }
        let (platform, platform_explicit) = match &self.platform {
            Some(p) => (p.parse().context("parsing --platform")?, true),
            None => (Platform::host(), false),
        };
        Ok(ImageChoice {
            reference,
            platform,
            platform_explicit,
            profile,
        })
    }
}

impl RegistryArgs {
    pub fn client(&self) -> Result<registry::Client> {
        let creds = self
            .creds
            .as_deref()
            .map(Credentials::parse)
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("parsing --creds")?;
        let mirrors = self
            .mirror
            .iter()
            .map(|m| {
                m.split_once('=')
                    .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .with_context(|| format!("--mirror {m:?}: expected REGISTRY=MIRROR"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(registry::Client::new(registry::Options {
            insecure: self.insecure.clone(),
            tls_ca: self.tls_ca.clone(),
            certs_dir: self.certs_dir.clone(),
            creds,
            mirrors,
            retries: self.retries,
            stall_timeout: std::time::Duration::from_secs(self.stall_timeout.max(1)),
            budget: std::time::Duration::try_from_secs_f64(self.registry_timeout.max(0.1))
                .context("--registry-timeout")?,
            ..registry::Options::default()
        }))
    }
}

impl Cli {
    /// The signature policy and registries.d, resolved once for this run.
    pub fn trust(&self) -> Result<crate::trust::Trust> {
        Ok(crate::trust::Trust::load(
            self.policy.as_deref(),
            self.registries_d.as_deref(),
        )?)
    }

    pub fn storage(&self) -> crate::unpack::Storage {
        self.storage.unwrap_or_else(crate::unpack::Storage::detect)
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Pull { image, pull } => {
            let store = open_store(&cli)?;
            let (img, _) = pull_image(&cli, &store, &image.resolve()?, pull)?;
            println!("{}", img.digest);
            Ok(())
        }
        Command::Images { json } => images::list(&open_store(&cli)?, *json),
        Command::Inspect { image } => {
            let store = open_store(&cli)?;
            let choice = image.resolve()?;
            images::inspect(
                &store,
                &cli.trust()?,
                &choice.reference,
                image.platform.as_deref(),
            )
        }
        Command::Rm { images } => images::remove(&open_store(&cli)?, images),
        Command::Unpack {
            image,
            dir,
            digest,
            platform,
            pull,
        } => {
            let store = open_store(&cli)?;
            let args = ImageArgs {
                image: Some(image.clone()),
                profile: None,
                tag: None,
                profile_dir: crate::profiles::PROFILE_DIR.into(),
                digest: digest.clone(),
                platform: platform.clone(),
            };
            let (img, _) = pull_image(&cli, &store, &args.resolve()?, pull)?;
            images::unpack_to(&store, &img, dir)
        }
        Command::Run(args) => run::run_image(&cli, args),
        Command::Pin { image, write } => run::pin(&cli, image, write.as_deref()),
        Command::Gc => images::gc(&open_store(&cli)?),
        Command::Update(args) => update::update(&cli, args),
        Command::Rollback {
            unit,
            grace,
            format,
        } => update::rollback(&cli, unit, *grace, format),
        Command::Verify { repair, quick } => {
            verify::verify(&cli, &open_store(&cli)?, *quick, *repair)
        }
        Command::Load(args) => load::load(&cli, args),
        Command::Save(args) => load::save(&cli, args),
    }
}

pub fn open_store(cli: &Cli) -> Result<Store> {
    Store::open(&cli.root).with_context(|| format!("opening the store at {}", cli.root.display()))
}

/// Pulls an image per the flags; what `pull` and `run` share.
pub fn pull_image(
    cli: &Cli,
    store: &Store,
    image: &ImageChoice,
    args: &PullArgs,
) -> Result<(pull::Image, crate::unpack::Unpacked)> {
    let r = &image.reference;
    let client = cli.registry.client()?;
    let reporter = progress::Reporter::new();
    let req = pull::Request {
        reference: r,
        platform: image.platform.clone(),
        platform_explicit: image.platform_explicit,
        policy: args.pull,
        max_parallel: args.max_parallel.max(1),
        trust: &cli.trust()?,
    };
    let result = crate::images::obtain(store, client, &req, cli.storage(), &reporter);
    reporter.done();
    result.with_context(|| format!("pulling {r}"))
}

/// The exit status for an error that ended skiff before any payload ran: 125 (as podman and
/// docker use for "the launcher failed"), 127 when the command is not in the image.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<update::UnitsFailed>().is_some() {
        // Every unit was reported; some rolled back or failed.
        return 1;
    }
    match e.downcast_ref::<crate::run::RunError>() {
        Some(crate::run::RunError::CommandNotFound { .. }) => 127,
        _ => 125,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    fn image_args(argv: &[&str]) -> ImageArgs {
        let mut full = vec!["skiff", "pull"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Pull { image, .. } => image,
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_image_argument_resolves_once_with_its_pin_and_platform() {
        let hex = "a".repeat(64);
        let c = image_args(&[
            "reg.lan/app:v1",
            "--digest",
            &format!("sha256:{hex}"),
            "--platform",
            "linux/arm64",
        ])
        .resolve()
        .unwrap();
        assert_eq!(
            c.reference.digest().map(|d| d.hex().to_string()),
            Some(hex.clone())
        );
        assert_eq!(c.platform.to_string(), "linux/arm64");
        assert!(c.platform_explicit && c.profile.is_none());
        // Two pins that disagree, a bad platform, a bad reference: each a clear error.
        let other = "b".repeat(64);
        let conflict = image_args(&[
            &format!("reg.lan/app@sha256:{hex}"),
            "--digest",
            &format!("sha256:{other}"),
        ]);
        assert!(format!("{:#}", conflict.resolve().unwrap_err()).contains("give one pin"));
        let bad = image_args(&["reg.lan/app:v1", "--platform", "Linux"]);
        assert!(format!("{:#}", bad.resolve().unwrap_err()).contains("OS/ARCH"));
        let bad = image_args(&["reg.lan/APP"]);
        assert!(bad.resolve().is_err());
    }

    #[test]
    fn a_profile_resolves_to_its_image_and_typed_settings() {
        let mut args = image_args(&["--profile", "fleet", "--tag", "v9"]);
        args.profile_dir = "/nonexistent".into();
        let c = args.resolve().unwrap();
        assert_eq!(c.reference.to_string(), "quay.io/coreos/fleet:v9");
        let p = c.profile.unwrap();
        assert_eq!(p.prefix, "FLEET");
        assert!(p.presets.contains(&crate::profiles::Preset::Systemd));
        assert!(p
            .volumes
            .iter()
            .any(|v| v.target == "/etc/fleet" && v.readonly));
    }
}
