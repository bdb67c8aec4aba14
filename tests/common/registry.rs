//! A real docker-registry (Debian's distribution 2.8) on 127.0.0.1, one per test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The TCP ports on 127.0.0.1 that process `pid` itself listens on (its socket inodes matched
/// against /proc/net/tcp).
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    l.strip_prefix("socket:[")
                        .and_then(|r| r.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    // The process's own network namespace's table.
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            let (addr, port) = local.split_once(':')?;
            (*state == "0A" && addr == "0100007F" && inodes.iter().any(|i| i == *inode))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

#[derive(Default, Clone)]
pub struct Config {
    /// (certificate, key) PEM paths.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// An htpasswd file (bcrypt).
    pub htpasswd: Option<PathBuf>,
    /// (realm URL, root cert bundle) for `auth: token`.
    pub token: Option<(String, PathBuf)>,
    /// A network namespace to serve from (`ip netns exec NAME`).
    pub netns: Option<String>,
}

pub struct Registry {
    child: Child,
    pub port: u16,
    pub storage: PathBuf,
    pub log: PathBuf,
    config: Config,
    dir: PathBuf,
}

impl Registry {
    /// Starts a registry over `storage` (which several registries may share: one open for
    /// pushing, another with auth or TLS for pulling).
    /// It binds a port of its own choosing (`:0`), so no other listener can be taken for it.
    pub fn start(dir: &Path, storage: &Path, config: Config) -> Registry {
        Self::start_on(dir, storage, config, 0)
    }

    /// Starts a registry on `port` (0: any free one).
    pub fn start_on(dir: &Path, storage: &Path, config: Config, port: u16) -> Registry {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::fs::create_dir_all(dir).unwrap();
        let mut yml = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((cert, key)) = &config.tls {
            yml += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        if let Some(h) = &config.htpasswd {
            yml += &format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                h.display()
            );
        }
        if let Some((realm, bundle)) = &config.token {
            yml += &format!(
                "auth:\n  token:\n    realm: {realm}\n    service: skiff-test\n    issuer: skiff-test-issuer\n    rootcertbundle: {}\n",
                bundle.display()
            );
        }
        yml += "compatibility:\n  schema1:\n    enabled: true\n";
        let cfg = dir.join(format!("registry-{n}.yml"));
        std::fs::write(&cfg, yml).unwrap();
        let log = dir.join(format!("registry-{n}.log"));
        let mut cmd = match &config.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "docker-registry"]);
                c
            }
            None => Command::new("docker-registry"),
        };
        let child = cmd
            .arg("serve")
            .arg(&cfg)
            // The access log (one line a request) goes to stdout; both land in `log`.
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
            .spawn()
            .expect("docker-registry is installed (.ci/run installs it)");
        let mut reg = Registry {
            child,
            port,
            storage: storage.to_path_buf(),
            log,
            config,
            dir: dir.to_path_buf(),
        };
        reg.port = reg.wait_ready(port);
        reg
    }

    /// Waits until this registry's own process listens (on `port`, or on the one it chose),
    /// and returns that port; fails at once, with its log, if it exits.
    fn wait_ready(&mut self, port: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "registry exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Some(p) = listening_ports(self.child.id())
                .into_iter()
                .find(|p| port == 0 || *p == port)
            {
                return p;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "registry did not start listening: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same registry again on the same port (after `stop`).
    pub fn restart(&mut self) {
        self.stop();
        *self = Registry::start_on(&self.dir, &self.storage, self.config.clone(), self.port);
    }

    /// Lines of the access log that mention `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
