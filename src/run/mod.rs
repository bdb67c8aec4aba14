//! `skiff run`: a private mount namespace over the image's layers, the host paths a system
//! service needs, then `execve` of the payload on skiff's own PID.

mod apply;
mod caps;
mod exec;
pub mod foreign;
mod mountinfo;
pub mod plan;
mod presets;
mod supervise;
mod user;
pub mod volume;

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use thiserror::Error;

use crate::fs::root::RootError;
use crate::manifest::RuntimeConfig;
pub use presets::{Presets, DEFAULT_ETCD_SSL_DIR};
pub use user::{Spec as UserSpec, UserError};
pub use volume::{VolumeError, VolumeSpec};

#[derive(Debug, Error)]
pub enum RunError {
    #[error(
        "skiff run needs root (it creates a mount namespace); run it as root or from a system unit"
    )]
    NotRoot,
    #[error("skiff has {0} threads at namespace time; unshare(CLONE_NEWNS) needs exactly one")]
    Threads(usize),
    #[error("mount op `{op}` failed")]
    Mount {
        op: String,
        #[source]
        source: Errno,
    },
    #[error("--writable needs overlayfs (storage is flat)")]
    WritableNeedsOverlay,
    #[error("the mount plan has no pivot_root")]
    NoPivot,
    #[error("the kernel has no overlayfs (modprobe overlay)")]
    NoOverlayfs,
    #[error("mount target {0:?} is the root itself")]
    RootTarget(String),
    #[error(transparent)]
    Caps(#[from] caps::CapError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("{op} {path}")]
    HostStep {
        op: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Path(#[from] RootError),
    #[error("unshare({what})")]
    Unshare {
        what: String,
        #[source]
        source: Errno,
    },
    #[error("the image has no command: give one after `--`, or use --exec")]
    NoCommand,
    #[error("command {command:?} not found in the image{}", .path.as_ref().map(|p| format!(" (PATH={p})")).unwrap_or_default())]
    CommandNotFound {
        command: String,
        path: Option<String>,
    },
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Env(#[from] exec::EnvError),
    #[error("working directory {dir:?} is not in the image")]
    Workdir {
        dir: String,
        #[source]
        source: Errno,
    },
    #[error("{what}")]
    Exec {
        what: &'static str,
        #[source]
        source: Errno,
    },
    #[error(transparent)]
    Foreign(#[from] foreign::ForeignError),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Namespaces beyond the mount namespace, for manual runs.
#[derive(Clone, Debug, Default)]
pub struct Isolation {
    pub pid: bool,
    pub net: bool,
    pub uts: bool,
    pub hostname: Option<String>,
}

/// Everything `run` needs besides the image, validated.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub volumes: Vec<VolumeSpec>,
    pub presets: Presets,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub inherit_env: bool,
    pub user: Option<UserSpec>,
    pub workdir: Option<String>,
    pub exec: Option<String>,
    pub entrypoint: Option<String>,
    pub args: Vec<String>,
    pub writable: bool,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privs: bool,
    pub isolation: Isolation,
    /// A profile's variable prefix (etcd's `ETCD`): a `PREFIX_X` the command line also sets as
    /// `--x` is dropped before the exec.
    pub flag_env_prefix: Option<String>,
}

/// What the pure half of `run` decided, before any namespace exists.
pub struct Prepared {
    /// Host changes, made only when the run happens (not by `--dry-run`).
    pub host_steps: Vec<plan::HostStep>,
    pub ops: Vec<plan::MountOp>,
    argv: Vec<String>,
    env_items: Vec<String>,
    config: RuntimeConfig,
    cap_drop: u64,
    cap_add: u64,
    listen_fds: i32,
}

fn host_var(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Resolves host paths and computes the mount plan and command; nothing is changed yet.
pub fn prepare(
    rootfs: plan::Rootfs,
    scratch: PathBuf,
    config: &RuntimeConfig,
    opts: &Options,
) -> Result<Prepared, RunError> {
    if opts.writable && matches!(rootfs, plan::Rootfs::Flat(_)) {
        return Err(RunError::WritableNeedsOverlay);
    }
    let argv = exec::command(
        config,
        opts.exec.as_deref(),
        opts.entrypoint.as_deref(),
        &opts.args,
    )?;
    let presets::Resolved {
        mut volumes,
        symlinks,
        env: mut env_items,
    } = presets::resolve(&opts.presets, &host_var)?;
    let mut host_steps = Vec::new();
    for v in &opts.volumes {
        if let Some((vol, steps)) = v.resolve()? {
            volumes.push(vol);
            host_steps.extend(steps);
        }
    }
    for f in &opts.env_files {
        let text = std::fs::read_to_string(f).map_err(|source| RunError::Read {
            path: f.clone(),
            source,
        })?;
        env_items.extend(exec::env_file_items(&text).map(str::to_string));
    }
    env_items.extend(opts.env.iter().cloned());
    let input = plan::Input {
        rootfs,
        scratch,
        writable: opts.writable,
        volumes,
        symlinks,
    };
    Ok(Prepared {
        host_steps,
        ops: plan::plan(&input),
        argv,
        env_items,
        config: config.clone(),
        cap_drop: caps::parse(&opts.cap_drop)?,
        cap_add: caps::parse(&opts.cap_add)?,
        listen_fds: exec::listen_fds(),
    })
}

/// Makes one host change the plan asked for.
fn apply_host_step(step: &plan::HostStep) -> Result<(), RunError> {
    let fail = |op: String, path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::HostStep { op, path, source }
    };
    match step {
        plan::HostStep::Dir {
            path,
            create,
            owner,
        } => {
            if *create {
                std::fs::create_dir_all(path).map_err(fail("creating".into(), path))?;
            }
            if let Some((uid, gid)) = owner {
                nix::unistd::chown(path, Some((*uid).into()), Some((*gid).into())).map_err(
                    |e| fail(format!("chown {uid}:{gid}"), path)(std::io::Error::from(e)),
                )?;
            }
        }
        plan::HostStep::SharedMountPoint { path, bind } => {
            use nix::mount::{mount, MsFlags};
            let none: Option<&str> = None;
            if *bind {
                mount(
                    Some(path),
                    path,
                    none,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    none,
                )
                .map_err(|e| fail("bind-mounting onto itself".into(), path)(e.into()))?;
            }
            mount(none, path, none, MsFlags::MS_SHARED, none)
                .map_err(|e| fail("making shared".into(), path)(e.into()))?;
            tracing::info!(
                path = %path.display(),
                "made {} a shared mount point of its own (an rshared volume's source)",
                path.display()
            );
        }
    }
    Ok(())
}

/// The payload's environment as the exec sets it (and `--dry-run` prints it), before the
/// image's user database adds HOME: variables a flag on the command line shadows are dropped,
/// and said so.
pub fn payload_env(p: &Prepared, opts: &Options) -> Result<Vec<(String, String)>, RunError> {
    let inherited = opts.inherit_env.then(|| std::env::vars().collect());
    let mut env = exec::environment(&p.config.env, inherited, &p.env_items, &host_var)?;
    if let Some(prefix) = &opts.flag_env_prefix {
        for var in exec::drop_shadowed(&mut env, prefix, &p.argv) {
            tracing::info!(variable = %var, "dropping an environment variable the command line also sets as a flag");
        }
    }
    Ok(env)
}

/// The command line as the exec will pass it (`--dry-run`).
pub fn describe_argv(p: &Prepared) -> &[String] {
    &p.argv
}

fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Threads:")
                    .map(|n| n.trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

/// The threads this process has when only skiff's own one is left: one, or two under user-mode
/// emulation (an aarch64 skiff run by qemu-user on an x86-64 kernel shares its process with
/// the emulator's RCU thread). The kernel's architecture, which qemu-user does not emulate,
/// differs from the one skiff was built for only then.
fn expected_threads() -> usize {
    match std::fs::read_to_string("/proc/sys/kernel/arch") {
        Ok(k) if k.trim() != std::env::consts::ARCH => 2,
        _ => 1,
    }
}

/// Enters the namespaces, mounts, and execs the payload. Returns only on failure (or, with a
/// private PID namespace, never: the supervisor exits with the payload's status).
pub fn run(p: Prepared, opts: &Options) -> Result<Infallible, RunError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(RunError::NotRoot);
    }
    for step in &p.host_steps {
        apply_host_step(step)?;
    }
    // Namespace membership is per thread and CLONE_NEWNS refuses a shared fs context: the
    // pull's threads must all be gone by now. They were joined, but a joined thread can still
    // be leaving the kernel (and still share our fs context) for a moment: wait it out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    let expected = expected_threads();
    let mut threads = thread_count();
    while threads != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
        threads = thread_count();
    }
    if threads != expected {
        return Err(RunError::Threads(threads));
    }
    let iso = &opts.isolation;
    let mut flags = CloneFlags::CLONE_NEWNS;
    if iso.pid {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    if iso.net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if iso.uts || iso.hostname.is_some() {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    nix::sched::unshare(flags).map_err(|source| RunError::Unshare {
        what: format!("{flags:?}"),
        source,
    })?;
    if iso.pid {
        // The first child is PID 1 of the new namespace; this process waits for it outside.
        supervise::fork_and_wait()?;
    }
    if iso.net {
        bring_up_loopback();
    }
    apply::apply(&p.ops, &mut apply::Linux::default())?;
    if let Some(h) = &iso.hostname {
        nix::unistd::sethostname(h).map_err(|source| RunError::Exec {
            what: "sethostname",
            source,
        })?;
    }
    if iso.pid {
        // PID 1 stays as a minimal init: reaps, forwards signals, exits with the payload's status.
        supervise::fork_and_wait()?;
    }
    become_payload(p, opts)
}

/// Inside the new root: identity, environment, program, exec.
fn become_payload(p: Prepared, opts: &Options) -> Result<Infallible, RunError> {
    // The flag or profile, else the image's User, else root.
    let spec = match (&opts.user, &p.config.user) {
        (Some(s), _) => s.clone(),
        (None, Some(image)) => image.parse()?,
        (None, None) => UserSpec {
            user: user::Who::Id(0),
            group: None,
        },
    };
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let identity = user::resolve(&spec, &read("/etc/passwd"), &read("/etc/group"))?;
    let mut env = payload_env(&p, opts)?;
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push((
            "HOME".into(),
            identity.home.clone().unwrap_or_else(|| "/".into()),
        ));
    }
    if let Some(pid) = supervise::payload_pid_override() {
        // Socket activation names the payload's PID; in a private PID namespace that changed.
        if env.iter().any(|(k, _)| k == "LISTEN_PID") {
            env.retain(|(k, _)| k != "LISTEN_PID");
            env.push(("LISTEN_PID".into(), pid.to_string()));
        }
    }
    let workdir = opts
        .workdir
        .clone()
        .or(p.config.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    let program = exec::lookup(&p.argv[0], &env)?;
    exec::exec(exec::Final {
        program,
        argv: &p.argv,
        env: &env,
        identity: &identity,
        workdir: &workdir,
        cap_drop: p.cap_drop,
        cap_add: p.cap_add,
        no_new_privs: opts.no_new_privs,
        listen_fds: p.listen_fds,
    })
}

/// A fresh network namespace has only a down loopback; bring it up (best effort: `--net=none`
/// payloads that never use it lose nothing).
fn bring_up_loopback() {
    // SAFETY: a plain socket + ioctl(SIOCSIFFLAGS) on "lo" with a zeroed, NUL-terminated ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        req.ifr_ifru.ifru_flags =
            (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(s, libc::SIOCSIFFLAGS as _, &req) != 0 {
            tracing::debug!("could not bring up lo in the new network namespace");
        }
        libc::close(s);
    }
}
