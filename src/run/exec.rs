//! The last steps before the payload: its command line, environment and identity, the fds it
//! may keep, and `execve` on skiff's own PID.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::user::Identity;
use super::{caps, RunError};
use crate::manifest::RuntimeConfig;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables systemd hands a service that must reach the payload unchanged.
pub const SYSTEMD_PASSTHROUGH: [&str; 5] = [
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
];

/// The command: Entrypoint + Cmd + ARGs (the rkt wrappers' semantics); `--exec` replaces the
/// whole command, `--entrypoint` replaces the Entrypoint and drops the Cmd.
pub fn command(
    cfg: &RuntimeConfig,
    exec: Option<&str>,
    entrypoint: Option<&str>,
    args: &[String],
) -> Result<Vec<String>, RunError> {
    let mut argv: Vec<String> = match (exec, entrypoint) {
        (Some(e), _) | (None, Some(e)) => vec![e.to_string()],
        (None, None) => cfg.entrypoint.iter().chain(&cfg.cmd).cloned().collect(),
    };
    argv.extend(args.iter().cloned());
    if argv.is_empty() || argv[0].is_empty() {
        return Err(RunError::NoCommand);
    }
    Ok(argv)
}

/// Sets `NAME=VALUE` in `env`, replacing an earlier value.
fn set(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(e) => e.1 = value.to_string(),
        None => env.push((name.to_string(), value.to_string())),
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && !n.contains('=') && !n.contains('\0')
}

/// One `--env` or env-file item: `NAME=VALUE`, or `NAME` to pass the host's value through.
pub fn apply_env_item(
    env: &mut Vec<(String, String)>,
    item: &str,
    host: &dyn Fn(&str) -> Option<String>,
) -> Result<(), RunError> {
    match item.split_once('=') {
        Some((k, v)) if valid_name(k) && !v.contains('\0') => set(env, k, v),
        None if valid_name(item) => {
            if let Some(v) = host(item) {
                set(env, item, &v);
            }
        }
        _ => return Err(EnvError::Item(item.to_string()).into()),
    }
    Ok(())
}

/// Env files: `NAME=VALUE` lines; blank lines and `#` comments are skipped.
pub fn env_file_items(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
}

/// The payload's environment: (inherited) < image Env < env files < --env, plus systemd's
/// variables, which always pass through.
pub fn environment(
    image_env: &[String],
    inherited: Option<Vec<(String, String)>>,
    items: &[String],
    host: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, RunError> {
    let mut env = inherited.unwrap_or_default();
    for e in image_env {
        if let Some((k, v)) = e.split_once('=') {
            if valid_name(k) {
                set(&mut env, k, v);
            }
        }
    }
    for item in items {
        apply_env_item(&mut env, item, host)?;
    }
    for k in SYSTEMD_PASSTHROUGH {
        if let Some(v) = host(k) {
            set(&mut env, k, &v);
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        set(&mut env, "PATH", DEFAULT_PATH);
    }
    Ok(env)
}

/// The flag a `PREFIX_X_Y` variable also arrives as: `--x-y` (etcd's rule: dashes for
/// underscores, lower case).
fn flag_of(var: &str, prefix: &str) -> Option<String> {
    let rest = var.strip_prefix(prefix)?.strip_prefix('_')?;
    (!rest.is_empty()).then(|| rest.to_ascii_lowercase().replace('_', "-"))
}

/// Drops every `PREFIX_X` variable whose flag `--x` (or Go's `-x`, with or without `=value`)
/// is on the command line: etcd 3.4+ exits when a setting arrives both ways. Returns the names
/// dropped, for the log.
pub fn drop_shadowed(
    env: &mut Vec<(String, String)>,
    prefix: &str,
    argv: &[String],
) -> Vec<String> {
    let on_command_line = |flag: &str| {
        argv.iter().skip(1).any(|a| {
            let name = a.strip_prefix("--").or_else(|| a.strip_prefix('-'));
            name.is_some_and(|n| {
                n == flag || n.strip_prefix(flag).is_some_and(|r| r.starts_with('='))
            })
        })
    };
    let mut dropped = Vec::new();
    env.retain(|(k, _)| match flag_of(k, prefix) {
        Some(flag) if on_command_line(&flag) => {
            dropped.push(k.clone());
            false
        }
        _ => true,
    });
    dropped
}

/// Finds the program as the payload's PATH would (called inside the new root).
pub fn lookup(argv0: &str, env: &[(String, String)]) -> Result<PathBuf, RunError> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    };
    if argv0.contains('/') {
        let p = PathBuf::from(argv0);
        return if is_exec(&p) {
            Ok(p)
        } else {
            Err(RunError::CommandNotFound {
                command: argv0.into(),
                path: None,
            })
        };
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(argv0))
        .find(|p| is_exec(p))
        .ok_or_else(|| RunError::CommandNotFound {
            command: argv0.into(),
            path: Some(path.to_string()),
        })
}

/// How many socket-activation fds systemd gave *this* process (LISTEN_PID must be ours).
pub fn listen_fds() -> i32 {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .filter(|n| (0..=4096).contains(n))
        .unwrap_or(0)
}

fn cstr(s: &str, what: &'static str) -> Result<CString, RunError> {
    CString::new(s).map_err(|_| {
        EnvError::Nul {
            what,
            value: s.to_string(),
        }
        .into()
    })
}

/// An environment item or exec argument that cannot be passed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("invalid environment item {0:?}: expected NAME=VALUE or NAME")]
    Item(String),
    #[error("{what} {value:?} contains a NUL byte")]
    Nul { what: &'static str, value: String },
}

pub struct Final<'a> {
    pub program: PathBuf,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub identity: &'a Identity,
    pub workdir: &'a str,
    pub cap_drop: u64,
    pub cap_add: u64,
    pub no_new_privs: bool,
    /// Socket-activation fds to keep (3..3+n), counted before any fork.
    pub listen_fds: i32,
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> RunError {
    move |source| RunError::Exec { what, source }
}

/// Becomes the payload. Only returns on failure.
pub fn exec(f: Final) -> Result<Infallible, RunError> {
    let argv: Vec<CString> = f
        .argv
        .iter()
        .map(|a| cstr(a, "argument"))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = f
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}"), "environment variable"))
        .collect::<Result<_, _>>()?;
    let program =
        CString::new(f.program.as_os_str().as_bytes()).map_err(|_| RunError::NoCommand)?;
    nix::unistd::chdir(f.workdir).map_err(|e| RunError::Workdir {
        dir: f.workdir.to_string(),
        source: e,
    })?;
    if f.cap_drop != 0 {
        caps::drop_caps(f.cap_drop).map_err(sys("dropping capabilities"))?;
    }
    let gids: Vec<nix::unistd::Gid> = f
        .identity
        .groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&gids).map_err(sys("setting supplementary groups"))?;
    nix::unistd::setresgid(
        f.identity.gid.into(),
        f.identity.gid.into(),
        f.identity.gid.into(),
    )
    .map_err(sys("setting the group id"))?;
    if f.identity.uid != 0 && f.cap_add != 0 {
        caps::keep_across_setuid().map_err(sys("keeping capabilities"))?;
    }
    nix::unistd::setresuid(
        f.identity.uid.into(),
        f.identity.uid.into(),
        f.identity.uid.into(),
    )
    .map_err(sys("setting the user id"))?;
    if f.identity.uid != 0 && f.cap_add != 0 {
        caps::raise_ambient(f.cap_add & !f.cap_drop)
            .map_err(sys("raising ambient capabilities"))?;
    }
    if f.no_new_privs {
        // SAFETY: prctl with integer arguments.
        Errno::result(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
            .map_err(sys("setting no_new_privs"))?;
    }
    close_inherited_fds(f.listen_fds)?;
    nix::unistd::execve(&program, &argv, &envp).map_err(|e| RunError::Exec {
        what: "execve",
        source: e,
    })
}

/// Every fd above stdio is closed at exec, except systemd's socket-activation fds (the lesson
/// of runc CVE-2024-21626: a leaked fd is a way out of the container).
fn close_inherited_fds(keep: i32) -> Result<(), RunError> {
    for fd in 3..3 + keep {
        // Socket-activation fds arrive without CLOEXEC; make sure of it.
        // SAFETY: fds 3.. were handed to this process by systemd; this only borrows them.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(sys("keeping a LISTEN_FDS fd"))?;
    }
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on fds of this process.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (3 + keep) as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(r)
        .map(drop)
        .map_err(sys("marking inherited fds close-on-exec"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ep: &[&str], cmd: &[&str]) -> RuntimeConfig {
        RuntimeConfig {
            entrypoint: ep.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn command_semantics() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let etcd = cfg(&[], &["/usr/local/bin/etcd"]);
        assert_eq!(
            command(&etcd, None, None, &s(&["--name=x"])).unwrap(),
            s(&["/usr/local/bin/etcd", "--name=x"])
        );
        let both = cfg(&["/ep"], &["c1"]);
        assert_eq!(
            command(&both, None, None, &s(&["a"])).unwrap(),
            s(&["/ep", "c1", "a"])
        );
        assert_eq!(
            command(&both, Some("/bin/sh"), None, &s(&["-c", "x"])).unwrap(),
            s(&["/bin/sh", "-c", "x"])
        );
        assert_eq!(
            command(&both, None, Some("/other"), &s(&["a"])).unwrap(),
            s(&["/other", "a"])
        );
        assert!(matches!(
            command(&cfg(&[], &[]), None, None, &[]),
            Err(RunError::NoCommand)
        ));
    }

    #[test]
    fn variables_a_flag_also_sets_are_dropped() {
        let argv: Vec<String> = [
            "/usr/local/bin/etcd",
            "--name",
            "n1",
            "--data-dir=/d",
            "-initial-cluster-state=new",
            "--listen-client-urls-x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut env: Vec<(String, String)> = [
            ("ETCD_NAME", "e"),
            ("ETCD_DATA_DIR", "/var/lib/etcd"),
            ("ETCD_INITIAL_CLUSTER_STATE", "existing"),
            ("ETCD_LISTEN_CLIENT_URLS", "http://x"),
            ("ETCD_", "odd"),
            ("ETCDX", "y"),
            ("PATH", "/bin"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let dropped = drop_shadowed(&mut env, "ETCD", &argv);
        assert_eq!(
            dropped,
            ["ETCD_NAME", "ETCD_DATA_DIR", "ETCD_INITIAL_CLUSTER_STATE"]
        );
        let kept: Vec<_> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kept, ["ETCD_LISTEN_CLIENT_URLS", "ETCD_", "ETCDX", "PATH"]);
        // The program's own name is not a flag.
        let mut env = vec![("ETCD_NAME".to_string(), "x".to_string())];
        assert!(drop_shadowed(&mut env, "ETCD", &["--name".to_string()]).is_empty());
    }

    #[test]
    fn environment_layers() {
        let host = |k: &str| match k {
            "FLEET_X" => Some("from-host".to_string()),
            "NOTIFY_SOCKET" => Some("/run/notify".to_string()),
            _ => None,
        };
        let env = environment(
            &[
                "PATH=/img".into(),
                "A=image".into(),
                "B=image".into(),
                "bad".into(),
            ],
            None,
            &["A=flag".into(), "FLEET_X".into(), "MISSING".into()],
            &host,
        )
        .unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A"), Some("flag"));
        assert_eq!(get("B"), Some("image"));
        assert_eq!(get("FLEET_X"), Some("from-host"));
        assert_eq!(get("MISSING"), None);
        assert_eq!(get("NOTIFY_SOCKET"), Some("/run/notify"));
        assert_eq!(get("PATH"), Some("/img"));
        for bad in ["=x", "", "A\u{0}B=1", "A=1\u{0}"] {
            assert!(
                environment(&[], None, &[bad.into()], &host).is_err(),
                "{bad:?}"
            );
        }
        let defaulted = environment(&[], None, &[], &|_| None).unwrap();
        assert_eq!(defaulted, [("PATH".to_string(), DEFAULT_PATH.to_string())]);
        let items: Vec<_> = env_file_items("# c\n\nA=1\n  \nB=2 \n").collect();
        assert_eq!(items, ["A=1", "B=2"]);
    }
}
