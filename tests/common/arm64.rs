//! Foreign-architecture images from Debian's packages, made with umoci and pushed with skopeo,
//! and the machine-wide qemu-aarch64 binfmt_misc handler (qemu-user-static, with the F flag so
//! the interpreter is found after pivot_root), which a test may turn off only under a lock.

use std::fs::File;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::run_ok;

pub const HANDLER: &str = "/proc/sys/fs/binfmt_misc/qemu-aarch64";
const LOCK: &str = "/run/lock/skiff-test-binfmt-aarch64.lock";

/// Debian's busybox-static for arm64.
pub fn busybox() -> PathBuf {
    debian_package(
        "busybox-static-arm64",
        "deb [arch=arm64] http://deb.debian.org/debian bookworm main",
        "arm64",
        "busybox-static:arm64",
    )
    .join("bin/busybox")
}

/// qemu-aarch64 from Debian's bookworm-backports (qemu-user 10): bookworm's qemu-user-static
/// (7.2) has no openat2, which skiff resolves every path inside a rootfs with, so the aarch64
/// skiff itself runs under this one; its payloads go through the machine's binfmt_misc handler.
pub fn qemu_aarch64() -> PathBuf {
    debian_package(
        "qemu-user-bookworm-backports",
        "deb http://deb.debian.org/debian bookworm-backports main",
        "amd64",
        "qemu-user",
    )
    .join("usr/bin/qemu-aarch64")
}

/// A Debian package unpacked (`dpkg-deb -x`) under /var/cache/skiff-test/NAME, fetched once
/// with `apt-get download` through a private apt state: the host's dpkg architectures, sources
/// and package lists stay as they are.
fn debian_package(name: &str, source: &str, arch: &str, package: &str) -> PathBuf {
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let cache = Path::new("/var/cache/skiff-test").join(name);
    if cache.exists() {
        return cache;
    }
    let work = cache.with_extension("stage");
    let _ = std::fs::remove_dir_all(&work);
    for d in ["lists/partial", "cache/archives/partial", "deb"] {
        std::fs::create_dir_all(work.join(d)).unwrap();
    }
    let sources = work.join("sources.list");
    std::fs::write(&sources, format!("{source}\n")).unwrap();
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        for (k, v) in [
            ("APT::Architecture", arch.to_string()),
            ("APT::Architectures", arch.to_string()),
            ("Dir::Etc::SourceList", sources.display().to_string()),
            ("Dir::Etc::SourceParts", "/dev/null".to_string()),
            (
                "Dir::State::Lists",
                work.join("lists").display().to_string(),
            ),
            ("Dir::Cache", work.join("cache").display().to_string()),
            ("Dir::State::status", "/dev/null".to_string()),
            ("APT::Sandbox::User", "root".to_string()),
        ] {
            c.arg("-o").arg(format!("{k}={v}"));
        }
        run_ok(c.current_dir(work.join("deb")).args(args));
    };
    apt(&["-qq", "update"]);
    apt(&["-qq", "download", package]);
    let deb = std::fs::read_dir(work.join("deb"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("apt-get download wrote a .deb");
    let tree = work.join("tree");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
    std::fs::rename(&tree, &cache).unwrap();
    let _ = std::fs::remove_dir_all(&work);
    cache
}

/// An image of one busybox binary (and its applet links) for `arch`, built with umoci in an
/// OCI layout under `dir` and pushed with skopeo to `dest` (`HOST/REPO:TAG`); with `sign_by`
/// (a GPG fingerprint, `gnupg` its home and `sign_d` where the lookaside is), signed as it is
/// pushed. Returns the manifest's bytes as the registry serves them.
pub fn push_busybox(
    dir: &Path,
    busybox: &Path,
    arch: &str,
    dest: &str,
    sign: Option<(&str, &Path, &Path)>,
) -> Vec<u8> {
    let layout = dir.join(format!("layout-{arch}"));
    let bundle = dir.join(format!("bundle-{arch}"));
    let img = format!("{}:img", layout.display());
    if !layout.exists() {
        run_ok(
            Command::new("umoci")
                .args(["init", "--layout"])
                .arg(&layout),
        );
        run_ok(Command::new("umoci").args(["new", "--image", &img]));
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image", &img])
                .arg(&bundle),
        );
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "uname", "echo", "cat", "true"] {
            symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        run_ok(
            Command::new("umoci")
                .args(["repack", "--image", &img])
                .arg(&bundle),
        );
        run_ok(Command::new("umoci").args([
            "config",
            "--image",
            &img,
            "--os",
            "linux",
            "--architecture",
            arch,
            "--config.env",
            "PATH=/bin",
            "--config.cmd",
            "/bin/sh",
        ]));
    }
    let accept = dir.join("skopeo-accept.json");
    std::fs::write(
        &accept,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let mut copy = Command::new("skopeo");
    copy.arg("--policy").arg(&accept);
    match sign {
        Some((fpr, home, sign_d)) => {
            copy.env("GNUPGHOME", home)
                .arg("--registries.d")
                .arg(sign_d)
                .args(["copy", "--sign-by", fpr]);
        }
        None => {
            copy.arg("copy");
        }
    }
    run_ok(
        copy.args(["--dest-tls-verify=false"])
            .arg(format!("oci:{img}"))
            .arg(format!("docker://{dest}")),
    );
    run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]))
    .stdout
}

/// Makes sure binfmt_misc is mounted and qemu-user-static's aarch64 handler is registered and
/// enabled (Debian's binfmt-support registers it at boot; a container may start without it).
pub fn ensure_handler() {
    if !Path::new("/proc/sys/fs/binfmt_misc/register").exists() {
        run_ok(Command::new("mount").args([
            "-t",
            "binfmt_misc",
            "binfmt_misc",
            "/proc/sys/fs/binfmt_misc",
        ]));
    }
    if !Path::new(HANDLER).exists() {
        let conf = std::fs::read_to_string("/usr/lib/binfmt.d/qemu-aarch64.conf")
            .expect("qemu-user-static is installed");
        let line = conf.lines().find(|l| !l.starts_with('#')).unwrap();
        // A concurrent registration wins the race as well as we would.
        let _ = std::fs::write("/proc/sys/fs/binfmt_misc/register", line);
    }
    let state = std::fs::read_to_string(HANDLER).unwrap();
    assert!(
        state.starts_with("enabled") && state.contains("flags: ") && state.contains('F'),
        "qemu-aarch64 handler: {state}"
    );
}

/// Holds the handler as the test needs it, across test binaries (a file lock): shared while
/// it must stay on, exclusive while one test turns it off.
pub struct HandlerLock {
    _lock: nix::fcntl::Flock<File>,
}

fn lock(arg: nix::fcntl::FlockArg) -> HandlerLock {
    std::fs::create_dir_all("/run/lock").unwrap();
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .unwrap();
    HandlerLock {
        _lock: nix::fcntl::Flock::lock(f, arg).map_err(|(_, e)| e).unwrap(),
    }
}

/// The handler is on, and stays on until this is dropped.
pub fn handler_on() -> HandlerLock {
    let l = lock(nix::fcntl::FlockArg::LockShared);
    ensure_handler();
    l
}

/// The handler turned off (`echo 0 > …/qemu-aarch64`) and back on when this is dropped, on
/// every path: a failing assertion included, since the handler is the whole machine's.
pub struct HandlerOff {
    _lock: HandlerLock,
}

pub fn handler_off() -> HandlerOff {
    let l = lock(nix::fcntl::FlockArg::LockExclusive);
    ensure_handler();
    let off = HandlerOff { _lock: l };
    std::fs::write(HANDLER, "0").unwrap();
    assert!(std::fs::read_to_string(HANDLER)
        .unwrap()
        .starts_with("disabled"));
    off
}

impl Drop for HandlerOff {
    fn drop(&mut self) {
        let _ = std::fs::write(HANDLER, "1");
    }
}
