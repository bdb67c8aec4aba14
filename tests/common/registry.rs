//! A real docker-registry (Debian's distribution 2.8) on 127.0.0.1, one per test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    pub fn start(dir: &Path, storage: &Path, config: Config) -> Registry {
        Self::start_on(dir, storage, config, free_port())
    }

    pub fn start_on(dir: &Path, storage: &Path, config: Config, port: u16) -> Registry {
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
        let cfg = dir.join(format!("registry-{port}.yml"));
        std::fs::write(&cfg, yml).unwrap();
        let log = dir.join(format!("registry-{port}.log"));
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("docker-registry is installed (.ci/run installs it)");
        let reg = Registry {
            child,
            port,
            storage: storage.to_path_buf(),
            log,
            config,
            dir: dir.to_path_buf(),
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "registry on {} did not start: {}",
            self.port,
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
