//! A minimal Debian (debootstrap, cached) booted under a real systemd with systemd-nspawn, for
//! the tests of units and of the README's first commands.

use super::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CACHE: &str = "/var/cache/skiff-test/bookworm";

/// The debootstrap tree, built once per machine (a minute or so) and then reused.
pub fn base_tree() -> PathBuf {
    let cache = PathBuf::from(std::env::var("SKIFF_TEST_ROOTFS").unwrap_or_else(|_| CACHE.into()));
    if cache.join("usr/lib/systemd/systemd").exists() {
        return cache;
    }
    let stage = cache.with_extension("stage");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    let mirror = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("URIs: ").map(|u| u.trim().to_string()))
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    run_ok(
        Command::new("debootstrap")
            .args([
                "--variant=minbase",
                "--include=systemd,systemd-sysv,dbus,iproute2",
                "bookworm",
            ])
            .arg(&stage)
            .arg(&mirror),
    );
    std::fs::rename(&stage, &cache).unwrap();
    cache
}

/// Leftover cgroups of earlier containers would make systemd-nspawn refuse to start.
fn clean_cgroups() {
    fn walk(dir: &Path) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path());
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
    for base in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"] {
        walk(Path::new(base));
    }
}

/// The container's init: the child of systemd-nspawn that is PID 1 in its own PID namespace
/// and runs systemd. nspawn forks short-lived helpers first, so the first child is not it.
pub fn container_init(nspawn: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let ns_pid_1 = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .is_some_and(|v| v.split_whitespace().last() == Some("1"));
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            ns_pid_1 && comm.trim() == "systemd"
        })
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            != Some("Z")
    })
}

/// A booted container. Dropping it powers it off through its own init, and kills what is
/// left on every path (a failed boot or a failed assertion included), so nothing stays running.
pub struct Container {
    pub nspawn: Child,
    /// The container's init, once found.
    pub pid: Option<u32>,
    root: PathBuf,
    log: PathBuf,
}

impl Container {
    pub fn boot(root: &Path, log: &Path) -> Container {
        Self::boot_with(root, log, &[])
    }

    /// Boots with extra systemd-nspawn options (`--bind=…`).
    pub fn boot_with(root: &Path, log: &Path, extra: &[String]) -> Container {
        clean_cgroups();
        Self::spawn(root, log, extra)
    }

    /// Several containers up at once (fleet tests): the cgroup cleanup runs once, before the
    /// first, since a later one would remove the empty cgroups of those already running.
    pub fn boot_many(hosts: &[(&Path, &Path)]) -> Vec<Container> {
        clean_cgroups();
        hosts
            .iter()
            .map(|(root, log)| Self::spawn(root, log, &[]))
            .collect()
    }

    fn spawn(root: &Path, log: &Path, extra: &[String]) -> Container {
        let nspawn = Command::new("systemd-nspawn")
            .args(["--register=no", "--keep-unit", "-b", "--console=passive"])
            .args(extra)
            .arg("-D")
            .arg(root)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .expect("systemd-nspawn (systemd-container)");
        let mut c = Container {
            nspawn,
            pid: None,
            root: root.to_path_buf(),
            log: log.to_path_buf(),
        };
        // Generous: a loaded machine (the bench running beside the tests) boots slowly.
        let deadline = Instant::now() + Duration::from_secs(120);
        while c.pid.is_none() {
            if let Ok(Some(status)) = c.nspawn.try_wait() {
                panic!(
                    "systemd-nspawn exited ({status}) before the container booted{}",
                    c.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no container init appeared{}",
                c.output()
            );
            c.pid = container_init(c.nspawn.id());
            std::thread::sleep(Duration::from_millis(50));
        }
        c.wait_for(
            Duration::from_secs(180),
            "systemd to finish booting",
            || {
                let s = stdout(&c.sh("systemctl is-system-running"));
                matches!(s.trim(), "running" | "degraded")
            },
        );
        c
    }

    /// What the container said: the journal (when it can be asked) and nspawn's console.
    pub fn output(&self) -> String {
        let journal = match self.pid.filter(|p| alive(*p)) {
            Some(_) => stdout(&self.sh("journalctl -n 80 --no-pager")),
            None => "(no running container to ask)".into(),
        };
        format!(
            "\njournal:\n{journal}\nconsole:\n{}\nnspawn:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default()
        )
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let pid = self.pid.expect("the container has booted");
        Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-a", "--"])
            .args(args)
            .output()
            .unwrap()
    }

    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["/bin/sh", "-c", script])
    }

    #[track_caller]
    pub fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "in the container: {script}\nstdout: {}\nstderr: {}{}",
            stdout(&o),
            stderr(&o),
            self.output()
        );
        stdout(&o)
    }

    pub fn prop(&self, unit: &str, p: &str) -> String {
        stdout(&self.sh(&format!("systemctl show -P {p} {unit}")))
            .trim()
            .to_string()
    }

    #[track_caller]
    pub fn wait_for(&self, limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.filter(|p| alive(*p)) {
            let _ = self.sh("systemctl poweroff");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && alive(pid) {
                if let Ok(Some(_)) = self.nspawn.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            // Killing a PID namespace's init kills everything in it.
            if alive(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        // An init that never showed itself: kill whatever nspawn started.
        if let Ok(children) =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.nspawn.id()))
        {
            for p in children
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        let _ = nix::mount::umount2(&self.root, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Containers boot one at a time: nspawn and the cgroup cleanup are machine-wide.
pub static ONE_CONTAINER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An overlay on the cached tree (so the cache stays clean), unmounted when dropped.
pub struct OverlayRoot {
    pub path: PathBuf,
}

impl OverlayRoot {
    pub fn new(dir: &Path) -> OverlayRoot {
        let base = base_tree();
        let (upper, work, root) = (dir.join("upper"), dir.join("work"), dir.join("root"));
        for d in [&upper, &work, &root] {
            std::fs::create_dir_all(d).unwrap();
        }
        nix::mount::mount(
            Some("overlay"),
            &root,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(
                format!(
                    "lowerdir={},upperdir={},workdir={}",
                    base.display(),
                    upper.display(),
                    work.display()
                )
                .as_str(),
            ),
        )
        .unwrap();
        OverlayRoot { path: root }
    }
}

impl Drop for OverlayRoot {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}
