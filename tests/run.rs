//! `skiff run` with real namespaces and mounts (as root), on images built from busybox-static.

mod common;
use common::*;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;

struct Setup {
    env: Env,
    _reg: Registry,
    r: String,
}

fn setup(repo: &str, spec: &Spec, extra: &[Entry]) -> Setup {
    let env = Env::new();
    let reg = env.registry();
    let img = busybox_image(spec, extra);
    push(&reg.url(), repo, "v1", &img);
    let r = format!("{}/{repo}:v1", reg.host());
    ok(env.skiff(&["pull", &r]));
    Setup { env, _reg: reg, r }
}

impl Setup {
    fn run(&self, args: &[&str], cmd: &[&str]) -> std::process::Output {
        let mut a = vec!["run", "--pull=never"];
        a.extend_from_slice(args);
        a.push(&self.r);
        a.push("--");
        a.extend_from_slice(cmd);
        self.env.skiff(&a)
    }

    fn sh(&self, args: &[&str], script: &str) -> std::process::Output {
        let mut a = args.to_vec();
        a.extend(["--exec", "/bin/sh"]);
        self.run(&a, &["-c", script])
    }
}

fn mountinfo() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').skip(3).take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn the_payload_sees_its_rootfs_on_skiffs_pid() {
    let s = setup("run/basic", &Spec::default(), &[]);
    let before = mountinfo();
    let out = ok(s.sh(&[], "cat /etc/os-release; ls /"));
    assert!(out.contains("NAME=skiff-busybox"), "{out}");
    assert!(
        !out.contains("work\n") && !out.contains("usr\n"),
        "host dirs are not visible: {out}"
    );
    let child = s
        .env
        .skiff_cmd(&[
            "run",
            "--pull=never",
            "--exec",
            "/bin/sh",
            &s.r,
            "--",
            "-c",
            "echo $$",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert_eq!(
        ok(child.wait_with_output().unwrap()).trim(),
        pid.to_string(),
        "the payload runs on skiff's own PID"
    );
    assert_eq!(
        mountinfo(),
        before,
        "no mount leaks into the host's mount table"
    );
}

#[test]
fn exit_status_is_the_payloads() {
    let s = setup("run/exit", &Spec::default(), &[]);
    assert_eq!(s.sh(&[], "exit 0").status.code(), Some(0));
    assert_eq!(s.sh(&[], "exit 1").status.code(), Some(1));
    assert_eq!(s.sh(&[], "exit 42").status.code(), Some(42));
    let killed = s.sh(&[], "kill -9 $$").status;
    assert_eq!(
        killed.signal(),
        Some(9),
        "killed by SIGKILL, as the payload was"
    );
    // As a shell (or systemd) reports it.
    let bin = env!("CARGO_BIN_EXE_skiff");
    let o = std::process::Command::new("sh")
        .args(["-c", &format!("{bin} --root {} run --pull=never --exec /bin/sh {} -- -c 'kill -9 $$'; echo status=$?", s.env.root.display(), s.r)])
        .output()
        .unwrap();
    assert!(stdout(&o).contains("status=137"), "{}", stdout(&o));
}

#[test]
fn the_cached_rootfs_is_never_written() {
    let s = setup("run/ro", &Spec::default(), &[]);
    let layers = s.env.root.join("layers");
    let before = tree::describe(&layers);
    let err = stderr(&s.sh(&[], "touch /etc/pwned && echo wrote"));
    assert!(err.contains("Read-only file system"), "{err}");
    let out = ok(s.sh(
        &["--writable"],
        "echo data > /etc/new && cat /etc/new && rm /bin/cat && echo removed",
    ));
    assert!(out.contains("data") && out.contains("removed"), "{out}");
    assert_eq!(
        tree::describe(&layers),
        before,
        "the layer trees are unchanged"
    );
    ok(s.sh(&[], "test -e /bin/cat && test ! -e /etc/new"));
}

#[test]
fn volumes_appear_with_their_modes() {
    let s = setup("run/vol", &Spec::default(), &[]);
    let rw = s.env.path().join("rw");
    let ro = s.env.path().join("ro");
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("f"), b"host file").unwrap();
    let vrw = format!("{}:/data", rw.display());
    let vro = format!("{}:/run/cfg:ro", ro.display());
    let out = ok(s.sh(
        &["-v", &vrw, "-v", &vro],
        "echo hi > /data/out; cat /run/cfg/f; touch /run/cfg/x 2>&1 || echo ro-refused",
    ));
    assert!(
        out.contains("host file") && out.contains("ro-refused"),
        "{out}"
    );
    assert_eq!(std::fs::read(rw.join("out")).unwrap(), b"hi\n");
    assert!(!ro.join("x").exists());
    let missing = format!("{}:/m", s.env.path().join("nope").display());
    let err = fails(s.sh(&["-v", &missing], "true"));
    assert!(err.contains("nope") && err.contains("create"), "{err}");
    let created = format!("{}:/m:rw,create", s.env.path().join("made").display());
    ok(s.sh(&["-v", &created], "touch /m/y"));
    assert!(s.env.path().join("made/y").exists());
}

const NOTIFY_C: &str = r#"
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(void) {
    const char *p = getenv("NOTIFY_SOCKET");
    if (!p) return 2;
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, p, sizeof a.sun_path - 1);
    if (a.sun_path[0] == '@') a.sun_path[0] = 0;
    socklen_t len = sizeof(sa_family_t) + strlen(p);
    return sendto(s, "READY=1", 7, 0, (struct sockaddr *)&a, len) == 7 ? 0 : 3;
}
"#;

const FDS_C: &str = r#"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    DIR *d = opendir("/proc/self/fd");
    int me = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (atoi(e->d_name) == me) continue;
        printf("%s\n", e->d_name);
    }
    closedir(d);
    fflush(stdout);
    const char *lp = getenv("LISTEN_PID");
    fprintf(stderr, "LISTEN_PID %s\n", lp && atoi(lp) == getpid() ? "ours" : "other");
    return write(3, "hello-fd3", 9) == 9 ? 0 : 3;
}
"#;

fn helpers(dir: &std::path::Path) -> Vec<Entry> {
    vec![
        Entry::File(
            "bin/notify".into(),
            static_c(dir, "notify", NOTIFY_C),
            0o755,
        ),
        Entry::File("bin/fds".into(), static_c(dir, "fds", FDS_C), 0o755),
    ]
}

#[test]
fn notify_socket_reaches_the_listener() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup("run/notify", &Spec::default(), &helpers(tmp.path()));
    let sock = s.env.path().join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    listener
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let o = s
        .env
        .skiff_cmd(&["run", "--pull=never", "--exec", "/bin/notify", &s.r])
        .env("NOTIFY_SOCKET", &sock)
        .output()
        .unwrap();
    ok(o);
    let mut buf = [0u8; 64];
    let n = listener.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    // An abstract socket works as is (the network namespace is shared).
    let name = format!("skiff-test-{}", std::process::id());
    let addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap();
    let abs = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
    abs.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    ok(s.env
        .skiff_cmd(&["run", "--pull=never", "--exec", "/bin/notify", &s.r])
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .output()
        .unwrap());
    let n = abs.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
}

fn listen_fds_case(extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup("run/fds", &Spec::default(), &helpers(tmp.path()));
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let leaked = std::fs::File::open("/etc/hostname").unwrap();
    let (fd3, fd4) = (theirs.as_raw_fd(), leaked.as_raw_fd());
    let bin = env!("CARGO_BIN_EXE_skiff");
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=fleet exec \"$@\"",
        "sh",
        bin,
        "--root",
    ])
    .arg(&s.env.root)
    .args(["run", "--pull=never", "--exec", "/bin/fds"])
    .args(extra)
    .arg(&s.r);
    unsafe {
        cmd.pre_exec(move || {
            // fd 3: the activation socket; fd 4: something skiff's parent leaked.
            if libc::dup2(fd3, 3) < 0 || libc::dup2(fd4, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    drop(theirs);
    let err = stderr(&o);
    let out = ok(o);
    let fds: Vec<&str> = out.lines().collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "only stdio and the LISTEN_FDS fd are open inside"
    );
    let mut got = String::new();
    ours.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello-fd3");
    err
}

#[test]
fn listen_fds_pass_through_and_nothing_else_leaks() {
    let err = listen_fds_case(&[]);
    assert!(err.contains("LISTEN_PID ours"), "{err}");
}

#[test]
fn listen_pid_follows_the_payload_into_a_private_pid_namespace() {
    let err = listen_fds_case(&["--pid=private"]);
    assert!(err.contains("LISTEN_PID ours"), "{err}");
}

#[test]
fn user_by_name_from_the_images_passwd() {
    let s = setup(
        "run/user",
        &Spec {
            user: Some("app".into()),
            ..Spec::default()
        },
        &[],
    );
    let out = ok(s.sh(&[], "id -u; id -g; id -G; echo $HOME"));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1000", "1000", "1000 10", "/home/app"]
    );
    assert_eq!(
        ok(s.sh(&["--user", "0:10"], "id -u; id -g"))
            .lines()
            .collect::<Vec<_>>(),
        ["0", "10"]
    );
    let err = fails(s.sh(&["--user", "nobody"], "true"));
    assert!(
        err.contains("nobody") && err.contains("/etc/passwd"),
        "{err}"
    );
    let err = fails(s.sh(&["--user", "99999999999"], "true"));
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn argument_semantics() {
    let s = setup(
        "run/args",
        &Spec {
            entrypoint: vec!["/bin/echo".into(), "ep".into()],
            cmd: vec!["cmd".into()],
            ..Spec::default()
        },
        &[],
    );
    assert_eq!(ok(s.run(&[], &[])).trim(), "ep cmd");
    assert_eq!(
        ok(s.run(&[], &["a", "b"])).trim(),
        "ep cmd a b",
        "ARGs are appended"
    );
    assert_eq!(
        ok(s.run(&["--exec", "/bin/echo"], &["x"])).trim(),
        "x",
        "--exec replaces the whole command"
    );
    assert_eq!(
        ok(s.run(&["--entrypoint", "echo"], &["y"])).trim(),
        "y",
        "--entrypoint drops the Cmd"
    );
    let o = s.run(&["--exec", "/no/such"], &[]);
    assert_eq!(o.status.code(), Some(127));
    assert!(
        stderr(&o).contains("\"/no/such\" not found in the image"),
        "{}",
        stderr(&o)
    );
    let o = s.run(&["--exec", "nosuch"], &[]);
    assert!(stderr(&o).contains("PATH="), "{}", stderr(&o));
    let plan = ok(s.run(&["--dry-run", "-v", "/etc:/host-etc:ro"], &["z"]));
    assert!(
        plan.contains("overlay")
            && plan.contains("pivot_root")
            && plan.contains("/host-etc (ro)")
            && plan.contains("exec /bin/echo ep cmd z"),
        "{plan}"
    );
}

#[test]
fn gc_keeps_the_layers_of_a_running_payload() {
    let s = setup("run/gc", &Spec::default(), &[]);
    let mut child = s
        .env
        .skiff_cmd(&[
            "run",
            "--pull=never",
            "--exec",
            "/bin/sleep",
            &s.r,
            "--",
            "30",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    ok(s.env.skiff(&["rm", &s.r]));
    ok(s.env.skiff(&["gc"]));
    assert_eq!(
        std::fs::read_dir(s.env.root.join("layers"))
            .unwrap()
            .count(),
        1,
        "the running payload's layer stays"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    ok(s.env.skiff(&["gc"]));
    assert_eq!(
        std::fs::read_dir(s.env.root.join("layers"))
            .unwrap()
            .count(),
        0,
        "and goes once the payload is gone"
    );
}

#[test]
fn optional_isolation() {
    let s = setup("run/iso", &Spec::default(), &[]);
    let out = ok(s.sh(&["--pid=private"], "echo $$; ps | wc -l"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "2", "PID 1 is skiff's minimal init: {out}");
    assert_eq!(s.sh(&["--pid=private"], "exit 7").status.code(), Some(7));
    assert_eq!(
        s.sh(&["--pid=private"], "kill -9 $$").status.code(),
        Some(137)
    );
    let out = ok(s.sh(&["--net=none"], "cat /proc/net/dev"));
    assert!(out.contains("lo:") && out.lines().count() == 3, "{out}");
    assert_eq!(
        ok(s.sh(&["--hostname", "skiffy"], "hostname")).trim(),
        "skiffy"
    );
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    assert_ne!(host.trim(), "skiffy");
}

#[test]
fn presets_and_capabilities() {
    let s = setup("run/presets", &Spec::default(), &[]);
    let out = ok(s.sh(&["--host-dns"], "cat /etc/hosts"));
    assert_eq!(out, std::fs::read_to_string("/etc/hosts").unwrap());
    let eff = ok(s.sh(
        &["--cap-drop", "CAP_NET_RAW"],
        "grep CapEff /proc/self/status; grep CapBnd /proc/self/status",
    ));
    for line in eff.lines() {
        let hex = line.split_whitespace().nth(1).unwrap();
        let mask = u64::from_str_radix(hex, 16).unwrap();
        assert_eq!(mask & (1 << 13), 0, "NET_RAW dropped from {line}");
    }
    let out = ok(s.sh(
        &["--user", "app", "--cap-add", "NET_BIND_SERVICE"],
        "grep CapAmb /proc/self/status",
    ));
    let amb = u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(amb, 1 << 10, "{out}");
    let err = fails(s.sh(&["--cap-drop", "CAP_BOGUS"], "true"));
    assert!(err.contains("CAP_BOGUS"), "{err}");
}

#[test]
fn flat_storage_where_overlayfs_is_missing() {
    let s = setup("run/flat", &Spec::default(), &[]);
    ok(s.env.skiff(&["--storage=flat", "pull", &s.r]));
    let flat = s.env.root.join("rootfs");
    let trees: Vec<_> = std::fs::read_dir(&flat)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(trees.len(), 1);
    let before = tree::describe(&trees[0]);
    let out = ok(s.env.skiff(&[
        "--storage=flat",
        "run",
        "--pull=never",
        "--host-dns",
        "--exec",
        "/bin/sh",
        &s.r,
        "--",
        "-c",
        "cat /etc/os-release; cat /etc/hosts; touch /x || echo ro",
    ]));
    assert!(
        out.contains("skiff-busybox") && out.contains("localhost") && out.contains("ro"),
        "{out}"
    );
    // What the image had is untouched; skiff may only have added empty mountpoints (the tree
    // cannot be unioned without overlayfs), and the payload wrote nothing.
    let after = tree::describe(&trees[0]);
    for (path, node) in &before {
        assert_eq!(after.get(path), Some(node), "{path}");
    }
    for (path, node) in &after {
        if !before.contains_key(path) {
            assert!(
                node.size == 0 && (node.kind == "file" || node.kind == "dir"),
                "{path}: {node:?}"
            );
        }
    }
    assert!(!after.contains_key("x"));
    let err = fails(
        s.env
            .skiff(&["--storage=flat", "run", "--pull=never", "--writable", &s.r]),
    );
    assert!(err.contains("overlayfs"), "{err}");
    ok(s.env.skiff(&["rm", &s.r]));
    ok(s.env.skiff(&["gc"]));
    assert_eq!(std::fs::read_dir(&flat).unwrap().count(), 0);
}

#[test]
fn missing_preset_paths_are_clear_errors() {
    let s = setup("run/systemd", &Spec::default(), &[]);
    if std::path::Path::new("/run/systemd/system").exists() {
        return; // on a systemd host the preset has what it needs
    }
    let err = fails(s.sh(&["--host-systemd"], "true"));
    assert!(err.contains("/run/systemd/system"), "{err}");
}

#[test]
fn rshared_volumes_propagate_mounts_back_to_the_host() {
    let s = setup("run/shared", &Spec::default(), &[]);
    let dir = s.env.path().join("kubelet");
    std::fs::create_dir_all(&dir).unwrap();
    // As on a systemd host, where / is shared: the source is a shared mount.
    let sh = |c: &str| {
        assert!(
            std::process::Command::new("sh")
                .args(["-c", c])
                .status()
                .unwrap()
                .success(),
            "{c}"
        )
    };
    sh(&format!(
        "mount --bind {0} {0} && mount --make-shared {0}",
        dir.display()
    ));
    let vol = format!("{}:/var/lib/kubelet:rw,rshared", dir.display());
    let out = ok(s.sh(&["--writable", "-v", &vol], "mkdir -p /var/lib/kubelet/pod && mount -t tmpfs tmpfs /var/lib/kubelet/pod && echo mounted"));
    assert!(out.contains("mounted"));
    let host_sees = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(&format!("{}/pod", dir.display())));
    sh(&format!(
        "umount {0}/pod 2>/dev/null; umount {0}",
        dir.display()
    ));
    assert!(host_sees, "a mount made inside appears on the host");
}

#[test]
fn rshared_makes_a_plain_source_a_shared_mount_point_of_its_own() {
    // kubelet-wrapper's /var/lib/kubelet under rkt-fly was a plain directory: the unit must
    // run unchanged, and the kubelet's mounts must still reach the host.
    let s = setup("run/notshared", &Spec::default(), &[]);
    let dir = s.env.path().join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    let vol = format!("{}:/k:rw,rshared", dir.display());
    let is_mount_point = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap()))
    };
    let dry = ok(s
        .env
        .skiff(&["run", "--pull=never", "--dry-run", "-v", &vol, &s.r]));
    assert!(
        dry.contains(&format!(
            "host: mount --rbind {0} {0}; mount --make-shared {0}",
            dir.display()
        )),
        "{dry}"
    );
    assert!(!is_mount_point(), "--dry-run changes nothing on the host");
    let out = ok(s.sh(
        &["--writable", "-v", &vol],
        "mkdir -p /k/pod && mount -t tmpfs tmpfs /k/pod && echo mounted",
    ));
    assert!(out.contains("mounted"));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let own = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap()))
        .map(str::to_string);
    let host_sees = mountinfo
        .lines()
        .any(|l| l.contains(&format!("{}/pod", dir.display())));
    let _ = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("umount {0}/pod 2>/dev/null; umount {0}", dir.display()),
        ])
        .status();
    let own = own.expect("the source is a mount point of its own after the run");
    assert!(own.contains(" shared:"), "and a shared one: {own}");
    assert!(host_sees, "a mount made inside appears on the host");
    // Once shared, the next start changes nothing more.
}

#[test]
fn a_relative_store_root_works() {
    // Regression: run changes directory (for short overlay options) while using store paths.
    let s = setup("run/relroot", &Spec::default(), &[]);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .current_dir(s.env.path())
        .args([
            "--root",
            "store",
            "run",
            "--pull=never",
            "--exec",
            "/bin/true",
            &s.r,
        ])
        .output()
        .unwrap();
    ok(o);
}

/// A path and its owner and mode (`None`: absent).
type PathState = (std::path::PathBuf, Option<(u32, u32, u32)>);

/// Every path a dry run could touch, with what it holds (absent paths included).
fn snapshot(paths: &[&std::path::Path]) -> Vec<PathState> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(p).ok();
            (p.to_path_buf(), m.map(|m| (m.uid(), m.gid(), m.mode())))
        })
        .collect()
}

#[test]
fn a_dry_run_prints_everything_and_changes_nothing() {
    let s = setup("run/dry", &Spec::default(), &[]);
    let new_volume = s.env.path().join("volumes/new");
    let data = s.env.path().join("etcd-data");
    let owned = s.env.path().join("owned");
    std::fs::create_dir(&owned).unwrap();
    let before = (mountinfo(), snapshot(&[&new_volume, &data, &owned]));
    let vol = format!("{}:/data:create", new_volume.display());
    let out = ok(s
        .env
        .skiff_cmd(&[
            "run",
            "--pull=never",
            "--dry-run",
            "--profile",
            "etcd",
            "-v",
            &vol,
            "--env",
            "ETCD_NAME=dry",
            "--exec",
            "/bin/sh",
            &s.r,
            "--",
            "--name",
            "n1",
        ])
        .env("ETCD_IMAGE", &s.r)
        .env("ETCD_USER", "1000")
        .env("ETCD_DATA_DIR", &data)
        .output()
        .unwrap());
    assert_eq!(
        (mountinfo(), snapshot(&[&new_volume, &data, &owned])),
        before,
        "a dry run leaves the host's mounts and directories as they were"
    );
    for want in [
        format!("host: mkdir -p {}", new_volume.display()),
        format!("host: mkdir -p {}; chown 1000:", data.display()),
        "lowerdir=".to_string(),
        "pivot_root".to_string(),
        "env ETCD_DATA_DIR=/var/lib/etcd".to_string(),
        "exec /bin/sh --name n1".to_string(),
    ] {
        assert!(out.contains(&want), "the plan shows {want:?}:\n{out}");
    }
    assert!(
        !out.contains("env ETCD_NAME="),
        "the env the exec gets, with the variable the flag shadows dropped:\n{out}"
    );
}
