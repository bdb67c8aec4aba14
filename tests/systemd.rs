//! End to end under a real systemd: a minimal Debian (debootstrap, cached) booted with
//! systemd-nspawn, skiff and the units from units/ installed in it, images served by a registry
//! on the host's loopback (the container shares the host's network).
//!
//! Checks that etcd-member.service (Type=notify) is active only once etcd is ready, serves
//! etcdctl, stops cleanly, comes back after its payload is killed, and starts with the registry
//! down; and that fleet.socket hands its socket to a socket-activated payload.

mod common;
use common::container::*;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_test_that_fails_mid_way_leaves_no_container_running() {
    let _one = ONE_CONTAINER.lock().unwrap_or_else(|p| p.into_inner());
    let env = Env::new();
    let root = OverlayRoot::new(env.path());
    let seen = std::sync::Mutex::new(None);
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let c = Container::boot(&root.path, &env.path().join("nspawn.log"));
        *seen.lock().unwrap() = Some((c.nspawn.id(), c.pid.unwrap()));
        c.ok("false");
    }));
    assert!(failed.is_err(), "the inner check fails on purpose");
    let (nspawn, init) = seen.into_inner().unwrap().expect("the container booted");
    assert!(!alive(nspawn), "systemd-nspawn {nspawn} is gone");
    assert!(!alive(init), "the container's init {init} is gone");
}

const FLEETD_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
/* A stand-in for fleetd: takes its API socket from systemd (fd 3) and answers each client. */
int main(void) {
    const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID"), *names = getenv("LISTEN_FDNAMES");
    if (!fds || !pid || atoi(fds) != 1 || atoi(pid) != getpid()) { fprintf(stderr, "no socket activation\n"); return 2; }
    for (;;) {
        int c = accept(3, NULL, NULL);
        if (c < 0) return 3;
        char msg[256];
        int n = snprintf(msg, sizeof msg, "fleetd: activated pid=%d LISTEN_FDS=%s names=%s\n", getpid(), fds, names ? names : "");
        if (write(c, msg, n) != n) return 4;
        close(c);
    }
}
"#;

const SOCKCAT_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 3; }
    char buf[512];
    ssize_t n;
    while ((n = read(s, buf, sizeof buf)) > 0) fwrite(buf, 1, n, stdout);
    return 0;
}
"#;

fn install(root: &Path, path: &str, bytes: &[u8], mode: u32) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn units_under_a_real_systemd() {
    let env = Env::new();
    let mut reg = env.registry();
    let helpers = env.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let etcd = etcd_image(&["/usr/local/bin/etcd"]);
    push(&reg.url(), "coreos/etcd", "v3-test", &etcd);
    let fleetd = static_c(&helpers, "fleetd", FLEETD_C);
    let fleet = busybox_image(
        &Spec {
            cmd: vec!["/usr/local/bin/fleetd".into()],
            ..Spec::default()
        },
        &[
            Entry::Dir("usr", 0o755),
            Entry::Dir("usr/local", 0o755),
            Entry::Dir("usr/local/bin", 0o755),
            Entry::File("usr/local/bin/fleetd".into(), fleetd, 0o755),
        ],
    );
    push(&reg.url(), "coreos/fleet", "v1-test", &fleet);

    let _one = ONE_CONTAINER.lock().unwrap_or_else(|p| p.into_inner());
    let overlay = OverlayRoot::new(env.path());
    let root = overlay.path.clone();
    install(
        &root,
        "/opt/bin/skiff",
        &std::fs::read(env!("CARGO_BIN_EXE_skiff")).unwrap(),
        0o755,
    );
    install(
        &root,
        "/opt/bin/sockcat",
        &static_c(&helpers, "sockcat", SOCKCAT_C),
        0o755,
    );
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("units");
    for u in [
        "etcd-member.service",
        "fleet.service",
        "fleet.socket",
        "kubelet.service",
    ] {
        install(
            &root,
            &format!("/etc/systemd/system/{u}"),
            &std::fs::read(units.join(u)).unwrap(),
            0o644,
        );
    }
    let (client, peer) = (registry::free_port(), registry::free_port());
    let etcd_env = format!(
        "ETCD_IMAGE_URL=docker://{host}/coreos/etcd\nETCD_IMAGE_TAG=v3-test\nETCD_USER=root\nETCD_NAME=e2e\n\
         ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:{client}\nETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:{client}\n\
         ETCD_LISTEN_PEER_URLS=http://127.0.0.1:{peer}\nETCD_INITIAL_ADVERTISE_PEER_URLS=http://127.0.0.1:{peer}\n\
         ETCD_INITIAL_CLUSTER=e2e=http://127.0.0.1:{peer}\n",
        host = reg.host()
    );
    install(
        &root,
        "/etc/skiff/etcd-member.env",
        etcd_env.as_bytes(),
        0o644,
    );
    install(
        &root,
        "/etc/skiff/fleet.env",
        format!("FLEET_IMAGE={}/coreos/fleet:v1-test\n", reg.host()).as_bytes(),
        0o644,
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap()
        + "fleet:x:500:500:fleet:/:/usr/sbin/nologin\n";
    install(&root, "/etc/passwd", passwd.as_bytes(), 0o644);
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap() + "fleet:x:500:\n";
    install(&root, "/etc/group", group.as_bytes(), 0o644);

    let c = Container::boot(&root, &env.path().join("nspawn.log"));
    // `verify` exits non-zero on any error; /var/run is only a notice (it is /run).
    c.ok("systemd-analyze verify --man=no /etc/systemd/system/etcd-member.service /etc/systemd/system/fleet.service /etc/systemd/system/fleet.socket /etc/systemd/system/kubelet.service");

    // Type=notify: `systemctl start` returns once etcd has said READY=1, and only then.
    c.ok("timeout 180 systemctl start etcd-member.service");
    assert_eq!(c.prop("etcd-member.service", "ActiveState"), "active");
    let main_pid = c.prop("etcd-member.service", "MainPID");
    assert_eq!(
        c.ok(&format!("cat /proc/{main_pid}/comm")).trim(),
        "etcd",
        "MainPID is etcd itself: skiff exec'd in place"
    );
    let etcdctl = |args: &[&str]| {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=http://127.0.0.1:{client}"))
            .args(args)
            .output()
            .unwrap()
    };
    ok(etcdctl(&["put", "skiff", "works"]));
    assert_eq!(
        ok(etcdctl(&["get", "--print-value-only", "skiff"])).trim(),
        "works"
    );

    // Killed payload: Restart=on-failure brings it back.
    c.ok("systemctl kill -s SIGKILL etcd-member.service");
    c.wait_for(Duration::from_secs(60), "etcd-member to come back", || {
        let pid = c.prop("etcd-member.service", "MainPID");
        c.prop("etcd-member.service", "ActiveState") == "active" && pid != "0" && pid != main_pid
    });
    assert_eq!(
        ok(etcdctl(&["get", "--print-value-only", "skiff"])).trim(),
        "works"
    );

    // A clean stop.
    c.ok("systemctl stop etcd-member.service");
    assert_eq!(c.prop("etcd-member.service", "ActiveState"), "inactive");
    assert_eq!(c.prop("etcd-member.service", "Result"), "success");

    // fleet.socket hands the socket to the payload (fd 3), activated on the first client.
    c.ok("systemctl start fleet.socket");
    let answer = c.ok("timeout 120 /opt/bin/sockcat /var/run/fleet.sock");
    assert!(
        answer.contains("fleetd: activated")
            && answer.contains("LISTEN_FDS=1")
            && answer.contains("names=fleet.socket"),
        "{answer}"
    );
    assert_eq!(c.prop("fleet.service", "ActiveState"), "active");
    assert_eq!(c.ok("stat -c %a /var/run/fleet.sock").trim(), "660");

    // The registry goes away, as at a reboot without network: the units still start.
    // (fleet.service Wants= etcd-member, so the socket activation above started it again.)
    c.ok("systemctl stop fleet.service fleet.socket etcd-member.service");
    assert_eq!(c.prop("etcd-member.service", "ActiveState"), "inactive");
    reg.stop();
    c.ok("timeout 120 systemctl start etcd-member.service");
    assert_eq!(
        ok(etcdctl(&["get", "--print-value-only", "skiff"])).trim(),
        "works"
    );
    // --pull=missing (the default): the store serves the start without a request.
    let journal = c.ok("journalctl -u etcd-member.service --no-pager");
    assert!(!journal.contains("connection failed"), "{journal}");
    c.ok("systemctl stop etcd-member.service");
}

/// The loop devices whose backing file is `image` (util-linux matches the file's device and
/// inode, so this holds whichever mount namespace attached it).
fn loops_of(image: &Path) -> Vec<String> {
    let o = Command::new("losetup")
        .arg("-j")
        .arg(image)
        .output()
        .unwrap();
    stdout(&o)
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect()
}

/// Loop devices are machine-wide: whatever still holds the image when the test ends (a failed
/// assertion with the extension merged, a container killed mid-way) is detached here.
struct DetachLoops(std::path::PathBuf);

impl Drop for DetachLoops {
    fn drop(&mut self) {
        for dev in loops_of(&self.0) {
            let _ = Command::new("losetup").arg("-d").arg(&dev).status();
        }
    }
}

/// The systemd-sysext image under a booted systemd, on a host whose os-release says ID=flatcar
/// and SYSEXT_LEVEL=1.0 (the container's /etc/os-release; its /usr stays Debian's): merged, its
/// units loaded and one run, then unmerged. The image sits where the Ignition config puts it,
/// /opt/extensions/skiff/skiff-VERSION-x86-64.raw linked as /etc/extensions/skiff.raw, and the
/// container's systemd-sysext attaches it itself: it gets /dev/loop-control and the /dev/loopN
/// nodes (nspawn's /dev has none), and the host sees the loop device it attached.
#[test]
fn the_sysext_merges_its_units_run_an_image_and_unmerge_leaves_the_store() {
    let env = Env::new();
    let reg = env.registry();
    let helpers = env.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let fleetd = static_c(&helpers, "fleetd", FLEETD_C);
    let fleet = busybox_image(
        &Spec {
            cmd: vec!["/usr/local/bin/fleetd".into()],
            ..Spec::default()
        },
        &[
            Entry::Dir("usr", 0o755),
            Entry::Dir("usr/local", 0o755),
            Entry::Dir("usr/local/bin", 0o755),
            Entry::File("usr/local/bin/fleetd".into(), fleetd, 0o755),
        ],
    );
    push(&reg.url(), "coreos/fleet", "v1-test", &fleet);
    // The test's own skiff build (the container is the same Debian as this machine).
    let image = common::sysext::mksysext(
        env.path(),
        Path::new(env!("CARGO_BIN_EXE_skiff")),
        "x86_64",
        "0.0.1",
    );
    let name = image.file_name().unwrap().to_str().unwrap().to_string();

    let _one = ONE_CONTAINER.lock().unwrap_or_else(|p| p.into_inner());
    let overlay = OverlayRoot::new(env.path());
    let root = overlay.path.clone();
    // Outside the overlay (bound in read-only), so the loop devices that hold it can be found
    // from the host on every path, after the container's root is gone too.
    let placed = env.path().join("opt-extensions-skiff");
    std::fs::create_dir_all(&placed).unwrap();
    let image = {
        let to = placed.join(&name);
        std::fs::copy(&image, &to).unwrap();
        to
    };
    let _detach = DetachLoops(image.clone());
    std::fs::create_dir_all(root.join("etc/extensions")).unwrap();
    std::os::unix::fs::symlink(
        format!("/opt/extensions/skiff/{name}"),
        root.join("etc/extensions/skiff.raw"),
    )
    .unwrap();
    assert!(name.ends_with("-x86-64.raw"), "{name}");
    let _ = std::fs::remove_file(root.join("etc/os-release"));
    install(
        &root,
        "/etc/os-release",
        b"NAME=\"Flatcar Container Linux by Kinvolk\"\nID=flatcar\nID_LIKE=coreos\nVERSION_ID=4230.2.0\nSYSEXT_LEVEL=1.0\n",
        0o644,
    );
    install(
        &root,
        "/opt/bin/sockcat",
        &static_c(&helpers, "sockcat", SOCKCAT_C),
        0o755,
    );
    install(
        &root,
        "/etc/skiff/fleet.env",
        format!("FLEET_IMAGE={}/coreos/fleet:v1-test\n", reg.host()).as_bytes(),
        0o644,
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap()
        + "fleet:x:500:500:fleet:/:/usr/sbin/nologin\n";
    install(&root, "/etc/passwd", passwd.as_bytes(), 0o644);
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap() + "fleet:x:500:\n";
    install(&root, "/etc/group", group.as_bytes(), 0o644);

    let c = Container::boot_with(
        &root,
        &env.path().join("nspawn.log"),
        &[
            format!("--bind-ro={}:/opt/extensions/skiff", placed.display()),
            "--bind=/dev/loop-control".into(),
        ],
    );
    // The kernel hands out the lowest free loop device, machine-wide, and makes it when none is
    // free: give the container the nodes (the host's devtmpfs has only those made so far).
    c.ok("for i in $(seq 0 255); do test -e /dev/loop$i || mknod -m 0660 /dev/loop$i b 7 $i; done");
    c.ok("test ! -e /usr/bin/skiff && test ! -e /usr/lib/systemd/system/fleet.service");
    assert!(loops_of(&image).is_empty());
    c.ok("systemd-sysext merge");
    assert_eq!(
        loops_of(&image).len(),
        1,
        "the container's systemd-sysext attached the image to a loop device"
    );
    let status = c.ok("systemd-sysext status");
    assert!(status.contains("skiff"), "{status}");
    c.ok("test -x /usr/bin/skiff && /usr/bin/skiff --version");
    assert_eq!(
        c.ok("readlink /usr/lib/coreos/etcd-wrapper").trim(),
        "/usr/bin/skiff"
    );
    c.ok("test -e /usr/share/man/man1/skiff-run.1 && test -e /usr/share/bash-completion/completions/skiff");
    c.ok("systemctl daemon-reload");
    // Debian's /lib is a link to usr/lib, which systemd lists first.
    for unit in [
        "fleet.service",
        "fleet.socket",
        "etcd-member.service",
        "skiff-kubelet.service",
    ] {
        let path = c.prop(unit, "FragmentPath");
        assert!(
            [
                format!("/lib/systemd/system/{unit}"),
                format!("/usr/lib/systemd/system/{unit}")
            ]
            .contains(&path),
            "{unit}: {path}"
        );
    }
    assert!(c
        .ok("systemctl cat fleet.service")
        .contains("ExecStart=/usr/bin/skiff run --profile fleet"));
    c.ok("systemd-analyze verify --man=no /usr/lib/systemd/system/fleet.service /usr/lib/systemd/system/fleet.socket /usr/lib/systemd/system/etcd-member.service /usr/lib/systemd/system/skiff-kubelet.service");
    // A unit from the extension runs an image: fleet.socket activates fleet.service, whose
    // ExecStart is the extension's /usr/bin/skiff.
    c.ok("systemctl start fleet.socket");
    let answer = c.ok("timeout 120 /opt/bin/sockcat /var/run/fleet.sock");
    assert!(answer.contains("fleetd: activated"), "{answer}");
    assert_eq!(c.prop("fleet.service", "ActiveState"), "active");
    let store = c.ok("ls /var/lib/skiff");
    c.ok("systemctl stop fleet.service fleet.socket");

    c.ok("systemd-sysext unmerge");
    assert_eq!(
        loops_of(&image),
        Vec::<String>::new(),
        "unmerge let the loop device go"
    );
    c.ok("test ! -e /usr/bin/skiff && test ! -e /usr/lib/coreos/etcd-wrapper && test ! -e /usr/lib/systemd/system/fleet.service");
    c.ok("systemctl daemon-reload");
    assert_eq!(c.prop("fleet.service", "LoadState"), "not-found");
    assert_eq!(c.ok("ls /var/lib/skiff"), store, "the store stays");
    // And back: refresh merges it again. An extension whose extension-release says
    // ARCHITECTURE=arm64 (the arm64 image's, as mksysext writes it) is left out on this x86-64
    // host.
    c.ok("mkdir -p /run/extensions/skiffarm/usr/lib/extension-release.d /run/extensions/skiffarm/usr/bin && echo arm > /run/extensions/skiffarm/usr/bin/skiff-arm64-marker && printf 'ID=flatcar\\nSYSEXT_LEVEL=1.0\\nARCHITECTURE=arm64\\n' > /run/extensions/skiffarm/usr/lib/extension-release.d/extension-release.skiffarm");
    c.ok("systemd-sysext refresh && test -x /usr/bin/skiff");
    assert_eq!(
        loops_of(&image).len(),
        1,
        "refresh attached the image again"
    );
    c.ok("test ! -e /usr/bin/skiff-arm64-marker");
    // The same extension saying x86-64 is merged: the architecture was the reason.
    c.ok("sed -i s/=arm64/=x86-64/ /run/extensions/skiffarm/usr/lib/extension-release.d/extension-release.skiffarm && systemd-sysext refresh");
    c.ok("test -e /usr/bin/skiff-arm64-marker && test -x /usr/bin/skiff");
}
