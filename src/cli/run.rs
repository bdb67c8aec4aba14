//! `skiff run` and `skiff pin`: flags and profiles merged into one run configuration.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::Cli;
use super::{open_store, pull_image, ImageArgs, PullArgs};
use crate::pull::PullPolicy;
use crate::run::DEFAULT_ETCD_SSL_DIR;

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
    pub user: Option<crate::run::UserSpec>,
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
    #[arg(long, default_value = DEFAULT_ETCD_SSL_DIR, value_name = "DIR")]
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
            flag_env_prefix: None,
        }
    }
}

/// `skiff run`: everything up to the exec; returns only on failure.
pub(super) fn run_image(cli: &Cli, args: &RunArgs) -> Result<()> {
    let store = open_store(cli)?;
    let choice = args.image.resolve()?;
    // The wrapper variables are read before anything is pulled: a refused one fails at once.
    let wrapper = match &choice.profile {
        Some(p) => Some(
            crate::wrapper::from_env(&p.prefix, &|k| std::env::var(k).ok())
                .context("the wrapper variables")?,
        ),
        None => None,
    };
    let (img, unpacked) = pull_image(cli, &store, &choice, &args.pull)?;
    let mut opts = args.options();
    if let (Some(p), Some(w)) = (choice.profile, &wrapper) {
        apply_profile(&mut opts, p, w)?;
    }
    let scratch = store.run_scratch()?;
    let prepared = crate::run::prepare(unpacked.rootfs, scratch.clone(), &img.config, &opts)?;
    let notes = wrapper.as_ref().map(|w| w.notes.as_slice()).unwrap_or(&[]);
    if args.dry_run {
        // Everything the run would do, with its real arguments; nothing is done.
        for note in notes {
            println!("wrapper {note}");
        }
        for step in &prepared.host_steps {
            println!("{step}");
        }
        for op in &prepared.ops {
            println!("{op}");
        }
        for (k, v) in crate::run::payload_env(&prepared, &opts)? {
            println!("env {k}={v}");
        }
        println!("exec {}", crate::run::describe_argv(&prepared).join(" "));
        return Ok(());
    }
    // A foreign image without a binfmt_misc handler would fail at execve with a bare ENOEXEC,
    // after every mount: say so now.
    crate::run::foreign::check(&img.platform).with_context(|| format!("running {}", img.digest))?;
    for note in notes {
        tracing::info!(variable = %note.var, argument = %note.arg, became = %note.became, "wrapper argument");
    }
    if let Some(path) = wrapper.as_ref().and_then(|w| w.uuid_file.as_deref()) {
        let uuid = crate::wrapper::save_uuid(path)?;
        tracing::info!(path = %path.display(), %uuid, "rkt is gone: wrote a pod UUID for the unit's `rkt --uuid-file` lines, which now fail harmlessly");
    }
    // gc must not remove these layers while the payload (this PID, after exec) runs.
    store.take_lease(&unpacked.trees)?;
    drop(store);
    match crate::run::run(prepared, &opts) {
        Ok(never) => match never {},
        Err(e) => Err(anyhow::Error::new(e).context(format!("running {}", img.digest))),
    }
}

/// `skiff pin`: ask the registry what the tag means now, store it, print the pinned name.
pub(super) fn pin(cli: &Cli, image: &ImageArgs, write: Option<&std::path::Path>) -> Result<()> {
    let store = open_store(cli)?;
    let choice = image.resolve()?;
    let args = PullArgs {
        pull: PullPolicy::Always,
        max_parallel: 4,
    };
    let (img, _) = pull_image(cli, &store, &choice, &args)?;
    let pinned = format!("{}@{}", choice.reference.name(), img.digest);
    println!("{pinned}");
    if let Some(path) = write {
        let bytes = match &choice.profile {
            // An environment file with the tag it follows, for `skiff update`.
            Some(p) => {
                let pinned: crate::reference::Reference = pinned.parse()?;
                let follows = match choice.reference.digest() {
                    Some(_) => None,
                    None => Some(&choice.reference),
                };
                crate::update::pinfile::render(&format!("{}_IMAGE", p.prefix), &pinned, follows)
            }
            None => format!("{pinned}\n").into_bytes(),
        };
        crate::update::pinfile::write_atomic(path, &bytes)?;
    }
    Ok(())
}

/// Puts a profile's mounts, presets, environment and user, then what the wrapper variables
/// add, under what the flags say (flags win).
fn apply_profile(
    opts: &mut crate::run::Options,
    p: crate::profiles::Resolved,
    w: &crate::wrapper::Translation,
) -> Result<()> {
    for warning in &w.warnings {
        tracing::warn!("{warning}");
    }
    let mut volumes = p.volumes;
    if let Some((host, target)) = &p.data_dir {
        // Created and owned by the service's user, as etcd-wrapper did: a step of the plan,
        // made when the run happens (never by --dry-run).
        let mut v = crate::run::VolumeSpec::new(host, target).create();
        if let Some((uid, gid)) = p.user {
            v = v.owned_by(uid, gid);
        }
        volumes.push(v);
    }
    volumes.extend(w.volumes.iter().cloned());
    volumes.append(&mut opts.volumes);
    opts.volumes = volumes;
    opts.presets.dns |= w.host_dns;
    opts.isolation.net |= w.net_none;
    opts.inherit_env |= w.inherit_env;
    for preset in &p.presets {
        use crate::profiles::Preset;
        match preset {
            Preset::Systemd => opts.presets.systemd = true,
            Preset::Dbus => opts.presets.dbus = true,
            Preset::Dns => opts.presets.dns = true,
            Preset::Certs => opts.presets.certs = true,
            Preset::Etcd => {
                let dir = opts.presets.etcd.take();
                opts.presets.etcd = Some(dir.unwrap_or_else(|| DEFAULT_ETCD_SSL_DIR.into()));
            }
        }
    }
    let mut env = p.env;
    env.extend(w.env.iter().cloned());
    env.append(&mut opts.env);
    opts.env = env;
    if opts.exec.is_none() && opts.entrypoint.is_none() {
        // X_IMAGE_ARGS replaces the profile's default (kubelet's --exec=/kubelet), as
        // `${KUBELET_IMAGE_ARGS:---exec=/kubelet}` did.
        opts.exec = w
            .exec
            .clone()
            .or(if w.image_args_set { None } else { p.exec });
    }
    if opts.user.is_none() {
        opts.user = w.user_spec(p.user)?;
    }
    opts.flag_env_prefix = p.flag_env_prefix;
    Ok(())
}
