//! The command line: clap structs turned into one validated configuration, then dispatched.

mod images;
mod progress;

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
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, global = true, env = "SKIFF_LOG", default_value = "info")]
    pub log_level: String,
    /// overlay: layers shared between images; flat: one flattened tree per image (where the
    /// kernel has no overlayfs). Default: overlay when the kernel has it.
    #[arg(long, global = true, value_enum)]
    pub storage: Option<crate::unpack::Storage>,
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
        default_value = "/etc/skiff/certs.d"
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
    /// always: ask the registry; missing: ask for tags, use the store when offline; never: store only.
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
    /// Re-check every blob in the store against its digest.
    Verify {
        /// Drop damaged blobs (a later pull fetches them again).
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub pull: PullArgs,
    /// Bind HOST at TARGET: HOST:TARGET[:ro|rw][,rbind][,create] (repeatable).
    #[arg(long, short = 'v', value_name = "HOST:TARGET[:OPTS]")]
    pub volume: Vec<crate::run::VolumeSpec>,
    /// NAME=VALUE, or NAME to pass the host's value through (repeatable).
    #[arg(long, short = 'e', value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Read NAME=VALUE lines from FILE (repeatable).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Start from skiff's whole environment (the image's Env still applies on top).
    #[arg(long)]
    pub inherit_env: bool,
    /// USER[:GROUP], by name from the image's /etc/passwd and /etc/group, or numeric.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Working directory inside the image.
    #[arg(long, short = 'w')]
    pub workdir: Option<String>,
    /// Replace the whole command (Entrypoint and Cmd); ARGs are appended.
    #[arg(long, value_name = "CMD", conflicts_with = "entrypoint")]
    pub exec: Option<String>,
    /// Replace the Entrypoint and drop the Cmd; ARGs are appended.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Bind /run/systemd/system, the journal sockets, /etc/machine-id.
    #[arg(long)]
    pub host_systemd: bool,
    /// Bind the system D-Bus socket and set DBUS_SYSTEM_BUS_ADDRESS.
    #[arg(long)]
    pub host_dbus: bool,
    /// Bind the etcd certificate directory (--etcd-dir) and /run/etcd.
    #[arg(long)]
    pub host_etcd: bool,
    #[arg(long, default_value = "/etc/ssl/etcd", value_name = "DIR")]
    pub etcd_dir: PathBuf,
    /// Bind /etc/hosts and a resolv.conf that follows the host's.
    #[arg(long)]
    pub host_dns: bool,
    /// Bind /etc/ssl/certs and /usr/share/ca-certificates.
    #[arg(long)]
    pub host_certs: bool,
    /// A fresh writable layer on tmpfs, gone at exit (default: read-only rootfs).
    #[arg(long)]
    pub writable: bool,
    /// Hostname in a private UTS namespace.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Drop a capability (CAP_NET_RAW, net_raw, ALL); repeatable.
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give a non-root payload user a capability (ambient); repeatable.
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Set no_new_privs: setuid binaries and file capabilities grant nothing.
    #[arg(long)]
    pub no_new_privileges: bool,
    /// Print the mount plan and the command; mount and exec nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// host (default): share the host's PID namespace; private: skiff stays as a minimal init.
    #[arg(long, value_parser = ["host", "private"], default_value = "host")]
    pub pid: String,
    /// host (default) or none (a network namespace with only loopback).
    #[arg(long, value_parser = ["host", "none"], default_value = "host")]
    pub net: String,
    /// host (default) or private.
    #[arg(long, value_parser = ["host", "private"], default_value = "host")]
    pub uts: String,
    /// Arguments appended to the command (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

impl RunArgs {
    pub fn options(&self) -> crate::run::Options {
        crate::run::Options {
            volumes: self.volume.clone(),
            presets: crate::run::Presets {
                systemd: self.host_systemd,
                dbus: self.host_dbus,
                etcd: self.host_etcd.then(|| self.etcd_dir.clone()),
                dns: self.host_dns,
                certs: self.host_certs,
            },
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            inherit_env: self.inherit_env,
            user: self.user.clone(),
            workdir: self.workdir.clone(),
            exec: self.exec.clone(),
            entrypoint: self.entrypoint.clone(),
            args: self.args.clone(),
            writable: self.writable,
            cap_drop: self.cap_drop.clone(),
            cap_add: self.cap_add.clone(),
            no_new_privs: self.no_new_privileges,
            isolation: crate::run::Isolation {
                pid: self.pid == "private",
                net: self.net == "none",
                uts: self.uts == "private",
                hostname: self.hostname.clone(),
            },
        }
    }
}

impl ImageArgs {
    /// The profile, resolved against skiff's environment.
    pub fn profile(&self) -> Result<Option<crate::profiles::Resolved>> {
        let Some(name) = &self.profile else {
            return Ok(None);
        };
        let profile = crate::profiles::load(name, &self.profile_dir)?;
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let env = |k: &str| std::env::var(k).ok();
        Ok(Some(profile.resolve(
            self.tag.as_deref(),
            &env,
            &vars,
            &crate::profiles::host_user,
        )?))
    }

    /// The image as given, or as the profile names it.
    pub fn image_name(&self) -> Result<String> {
        match (&self.image, self.profile()?) {
            (Some(i), _) => Ok(i.clone()),
            (None, Some(p)) => Ok(p.image),
            (None, None) => anyhow::bail!("give an IMAGE or --profile"),
        }
    }
}

/// Parses an image argument with its `--digest` pin.
pub fn reference(args: &ImageArgs) -> Result<Reference> {
    let image = args.image_name()?;
    let mut r: Reference = image
        .parse()
        .with_context(|| format!("parsing image reference {image:?}"))?;
    if let Some(d) = &args.digest {
        let d: Digest = d.parse().context("parsing --digest")?;
        r = r.with_digest(d).map_err(|(a, b)| {
            anyhow::anyhow!("the reference pins {a} but --digest says {b}; give one pin")
        })?;
    }
    Ok(r)
}

pub fn platform(args: &ImageArgs) -> Result<(Platform, bool)> {
    match &args.platform {
        Some(p) => Ok((p.parse().map_err(anyhow::Error::msg)?, true)),
        None => Ok((Platform::host(), false)),
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
            ..registry::Options::default()
        }))
    }
}

impl Cli {
    pub fn storage(&self) -> crate::unpack::Storage {
        self.storage.unwrap_or_else(crate::unpack::Storage::detect)
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Pull { image, pull } => {
            let store = open_store(&cli)?;
            let img = pull_image(&cli, &store, image, pull)?;
            println!("{}", img.digest);
            Ok(())
        }
        Command::Images { json } => images::list(&open_store(&cli)?, *json),
        Command::Inspect { image } => {
            let store = open_store(&cli)?;
            let r = reference(image)?;
            images::inspect(&store, &r, image.platform.as_deref())
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
            let img = pull_image(&cli, &store, &args, pull)?;
            images::unpack_to(&store, &img, dir)
        }
        Command::Run(args) => run_image(&cli, args),
        Command::Pin { image, write } => pin(&cli, image, write.as_deref()),
        Command::Gc => images::gc(&open_store(&cli)?),
        Command::Verify { repair } => images::verify(&open_store(&cli)?, *repair),
    }
}

pub fn open_store(cli: &Cli) -> Result<Store> {
    Store::open(&cli.root).with_context(|| format!("opening the store at {}", cli.root.display()))
}

/// Pulls an image per the flags; what `pull` and `run` share.
pub fn pull_image(
    cli: &Cli,
    store: &Store,
    image: &ImageArgs,
    args: &PullArgs,
) -> Result<pull::Image> {
    let r = reference(image)?;
    let (platform, platform_explicit) = platform(image)?;
    let client = cli.registry.client()?;
    let reporter = progress::Reporter::new();
    let req = pull::Request {
        reference: &r,
        platform,
        platform_explicit,
        policy: args.pull,
        max_parallel: args.max_parallel.max(1),
    };
    let result = pull::pull(store, &client, &req, &reporter);
    reporter.done();
    let img = result.with_context(|| format!("pulling {r}"))?;
    // The registry client (and its threads) is done before any unpacking or namespace work.
    drop(client);
    crate::unpack::ensure_layers(store, &img).with_context(|| format!("unpacking {r}"))?;
    if cli.storage() == crate::unpack::Storage::Flat {
        crate::unpack::ensure_flat(store, &img).with_context(|| format!("flattening {r}"))?;
    }
    Ok(img)
}

/// `skiff run`: everything up to the exec; returns only on failure.
fn run_image(cli: &Cli, args: &RunArgs) -> Result<()> {
    let store = open_store(cli)?;
    let img = pull_image(cli, &store, &args.image, &args.pull)?;
    let mut opts = args.options();
    if let Some(p) = args.image.profile()? {
        apply_profile(&mut opts, p)?;
    }
    let (keys, rootfs) = match cli.storage() {
        crate::unpack::Storage::Overlay => {
            let keys: Vec<String> = img.layers.iter().map(crate::unpack::layer_key).collect();
            let layers = keys.iter().map(|k| store.layer_path(k)).collect();
            (keys, crate::run::plan::Rootfs::Overlay(layers))
        }
        crate::unpack::Storage::Flat => {
            let key = img.manifest.hex().to_string();
            let tree = store.flat_path(&key);
            (
                vec![format!("rootfs/{key}")],
                crate::run::plan::Rootfs::Flat(tree),
            )
        }
    };
    let scratch = store.run_scratch()?;
    let prepared = crate::run::prepare(rootfs, scratch.clone(), &img.config, &opts)?;
    if args.dry_run {
        for op in &prepared.ops {
            println!("{op}");
        }
        println!("exec {}", crate::run::describe_command(&img.config, &opts)?);
        return Ok(());
    }
    // gc must not remove these layers while the payload (this PID, after exec) runs.
    store.take_lease(&keys)?;
    drop(store);
    match crate::run::run(prepared, &opts) {
        Ok(never) => match never {},
        Err(e) => Err(anyhow::Error::new(e).context(format!("running {}", img.digest))),
    }
}

/// `skiff pin`: ask the registry what the tag means now, store it, print the pinned name.
fn pin(cli: &Cli, image: &ImageArgs, write: Option<&std::path::Path>) -> Result<()> {
    let store = open_store(cli)?;
    let r = reference(image)?;
    let args = PullArgs {
        pull: PullPolicy::Always,
        max_parallel: 4,
    };
    let img = pull_image(cli, &store, image, &args)?;
    let pinned = format!("{}@{}", r.name(), img.digest);
    println!("{pinned}");
    if let Some(path) = write {
        let line = match &image.profile {
            Some(name) => {
                let prefix = crate::profiles::load(name, &image.profile_dir)?.prefix;
                format!("{prefix}_IMAGE={pinned}\n")
            }
            None => format!("{pinned}\n"),
        };
        std::fs::write(path, line).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Puts a profile's mounts, presets, environment and user under what the flags say (flags win).
fn apply_profile(opts: &mut crate::run::Options, p: crate::profiles::Resolved) -> Result<()> {
    let mut volumes = p
        .volumes
        .iter()
        .map(|v| {
            v.parse::<crate::run::VolumeSpec>()
                .map_err(anyhow::Error::msg)
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some((host, target)) = &p.data_dir {
        // Created and owned by the service's user, as etcd-wrapper did.
        std::fs::create_dir_all(host).with_context(|| format!("creating {}", host.display()))?;
        if let Some((uid, gid)) = p.user {
            nix::unistd::chown(host, Some(uid.into()), Some(gid.into()))
                .with_context(|| format!("chown {uid}:{gid} {}", host.display()))?;
        }
        volumes.push(crate::run::VolumeSpec::new(host, target));
    }
    volumes.append(&mut opts.volumes);
    opts.volumes = volumes;
    for preset in &p.presets {
        match preset.as_str() {
            "systemd" => opts.presets.systemd = true,
            "dbus" => opts.presets.dbus = true,
            "dns" => opts.presets.dns = true,
            "certs" => opts.presets.certs = true,
            "etcd" => {
                opts.presets.etcd = Some(
                    opts.presets
                        .etcd
                        .clone()
                        .unwrap_or_else(|| "/etc/ssl/etcd".into()),
                )
            }
            other => anyhow::bail!(
                "profile preset {other:?} is not one of systemd, dbus, dns, certs, etcd"
            ),
        }
    }
    let mut env = p.env;
    env.append(&mut opts.env);
    opts.env = env;
    if opts.exec.is_none() && opts.entrypoint.is_none() {
        opts.exec = p.exec;
    }
    if opts.user.is_none() {
        opts.user = p.user.map(|(u, g)| format!("{u}:{g}"));
    }
    Ok(())
}

/// The exit status for an error that ended skiff before any payload ran: 125 (as podman and
/// docker use for "the launcher failed"), 127 when the command is not in the image.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<crate::run::RunError>() {
        Some(crate::run::RunError::CommandNotFound { .. }) => 127,
        _ => 125,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
