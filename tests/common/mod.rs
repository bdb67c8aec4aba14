//! The shared test harness: a real registry, image builders, a fault proxy, and a runner for
//! the skiff binary.
#![allow(dead_code)]

pub mod arm64;
pub mod container;
pub mod image;
pub mod pki;
pub mod proxy;
pub mod registry;
pub mod sign;
pub mod sysext;
pub mod tree;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use image::*;

/// A network namespace of the test's own with only loopback up: a host whose routes the test
/// controls (packets to a port can be dropped, as a firewall or a dead link drops them).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("skiff-test-{}-{n}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Output {
        run_ok(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(args),
        )
    }

    /// Drops every packet to `port` on loopback: SYNs go unanswered, as to a blackholed host.
    pub fn blackhole(&self, port: u16) {
        let p = port.to_string();
        self.ok(&[
            "iptables", "-I", "INPUT", "-p", "tcp", "--dport", &p, "-j", "DROP",
        ]);
    }

    pub fn restore(&self, port: u16) {
        let p = port.to_string();
        self.ok(&[
            "iptables", "-D", "INPUT", "-p", "tcp", "--dport", &p, "-j", "DROP",
        ]);
    }
}

impl Netns {
    /// `/etc/netns/NAME/FILE`, which `ip netns exec` shows as `/etc/FILE` inside.
    pub fn etc(&self, file: &str, contents: &str) {
        let dir = PathBuf::from(format!("/etc/netns/{}", self.name));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), contents).unwrap();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
pub use registry::Registry;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub storage: PathBuf,
    pub root: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("skiff-test")
            .tempdir()
            .unwrap();
        let storage = dir.path().join("registry");
        let root = dir.path().join("store");
        Env { dir, storage, root }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An open registry over this test's storage.
    pub fn registry(&self) -> Registry {
        Registry::start(&self.path().join("reg"), &self.storage, Default::default())
    }

    /// `skiff --root <store> ARGS…`
    pub fn skiff(&self, args: &[&str]) -> Output {
        self.skiff_cmd(args).output().unwrap()
    }

    pub fn skiff_cmd(&self, args: &[&str]) -> Command {
        self.skiff_cmd_via(Command::new(env!("CARGO_BIN_EXE_skiff")), args)
    }

    /// `skiff` run inside a network namespace.
    pub fn skiff_in(&self, netns: &str, args: &[&str]) -> Command {
        let mut ip = Command::new("ip");
        ip.args(["netns", "exec", netns, env!("CARGO_BIN_EXE_skiff")]);
        self.skiff_cmd_via(ip, args)
    }

    pub fn skiff_cmd_via(&self, mut c: Command, args: &[&str]) -> Command {
        c.arg("--root").arg(&self.root).args(args);
        // The host's /etc/containers/policy.json is not the test's: every test runs under an
        // accept-all policy of its own unless it passes --policy.
        let policy = self.path().join("accept-all-policy.json");
        if !policy.exists() {
            std::fs::write(
                &policy,
                r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
            )
            .unwrap();
        }
        c.env_remove("REGISTRY_AUTH_FILE")
            .env("SKIFF_POLICY", &policy)
            .env("HOME", self.path())
            .env("XDG_RUNTIME_DIR", self.path().join("xdg-run"))
            .env("SKIFF_LOG", "info");
        c
    }
}

/// Runs a helper tool (gcc, skopeo, umoci, debootstrap, openssl) and insists that it worked.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "skiff failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Asserts failure and returns stderr.
#[track_caller]
pub fn fails(o: Output) -> String {
    assert!(
        !o.status.success(),
        "skiff should have failed:\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

/// Regular files under `dir` (recursively).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A small two-layer image with some content.
pub fn simple_image(spec: &Spec) -> (Image, Vec<Vec<u8>>) {
    let l1 = tar(&[
        Entry::Dir("etc", 0o755),
        file("etc/os-release", b"NAME=skiff-test\n", 0o644),
        file("bin/data", &noise(300_000, 1), 0o755),
    ]);
    let l2 = tar(&[file("etc/motd", b"hello from layer 2\n", 0o644)]);
    let layers = vec![l1, l2];
    (build(&layers, spec), layers)
}

/// A userland image made from Debian's busybox-static: /bin/busybox with applet links, a
/// passwd/group with a named user, and the usual mountpoints.
pub fn busybox_layer(extra: &[Entry]) -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").expect("busybox-static is installed (/bin/busybox)");
    let mut entries = vec![
        Entry::Dir("bin", 0o755),
        Entry::Dir("etc", 0o755),
        Entry::Dir("proc", 0o555),
        Entry::Dir("sys", 0o555),
        Entry::Dir("dev", 0o755),
        Entry::Dir("tmp", 0o1777),
        Entry::Dir("run", 0o755),
        Entry::Dir("home", 0o755),
        Entry::Dir("home/app", 0o755),
        Entry::File("bin/busybox".into(), bb, 0o755),
        file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n",
            0o644,
        ),
        file(
            "etc/group",
            b"root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
            0o644,
        ),
        file("etc/os-release", b"NAME=skiff-busybox\n", 0o644),
    ];
    for applet in [
        "sh", "ls", "cat", "echo", "id", "sleep", "touch", "grep", "mount", "readlink", "kill",
        "true", "false", "env", "pwd", "wc", "hostname", "stat", "ps",
    ] {
        entries.push(Entry::Symlink(
            Box::leak(format!("bin/{applet}").into_boxed_str()),
            "busybox",
        ));
    }
    entries.extend_from_slice(extra);
    tar(&entries)
}

pub fn busybox_image(spec: &Spec, extra: &[Entry]) -> Image {
    build(&[busybox_layer(extra)], spec)
}

/// Compiles a small C program statically (gcc and libc6-dev are on the machine), for payloads
/// busybox cannot play: a notify sender, an fd reporter.
pub fn static_c(dir: &Path, name: &str, source: &str) -> Vec<u8> {
    let src = dir.join(format!("{name}.c"));
    let out = dir.join(name);
    std::fs::write(&src, source).unwrap();
    run_ok(
        Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&out)
            .arg(&src),
    );
    std::fs::read(out).unwrap()
}

/// An image with Debian's etcd (etcd-server) and the libc it links, on busybox.
pub fn etcd_image(cmd: &[&str]) -> Image {
    let file = |host: &str, inside: &str| {
        Entry::File(
            inside.into(),
            std::fs::read(host).unwrap_or_else(|e| panic!("{host}: {e}")),
            0o755,
        )
    };
    let layer = busybox_layer(&[
        Entry::Dir("usr", 0o755),
        Entry::Dir("usr/local", 0o755),
        Entry::Dir("usr/local/bin", 0o755),
        Entry::Dir("lib", 0o755),
        Entry::Dir("lib/x86_64-linux-gnu", 0o755),
        Entry::Dir("lib64", 0o755),
        Entry::Dir("var", 0o755),
        Entry::Dir("var/lib", 0o755),
        Entry::Dir("var/lib/etcd", 0o700),
        file("/usr/bin/etcd", "usr/local/bin/etcd"),
        file(
            "/lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
        ),
        file("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
    ]);
    build(
        &[layer],
        &Spec {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Spec::default()
        },
    )
}
