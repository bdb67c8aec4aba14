//! The CoreOS wrapper contract: skiff started as `etcd-wrapper` / `kubelet-wrapper`, with the
//! variables those scripts read (RKT_RUN_ARGS, X_IMAGE_ARGS, the deprecated KUBELET_VERSION),
//! both by hand and from units written the way Container Linux's documentation and `ct` wrote
//! them, under a booted systemd.

mod common;
use common::container::*;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A link named like the wrapper, as /opt/bin/etcd-wrapper or /usr/lib/coreos/etcd-wrapper.
fn wrapper_link(env: &Env, name: &str) -> PathBuf {
    let link = env.path().join(name);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_skiff"), &link).unwrap();
    link
}

fn wrapper_cmd(env: &Env, link: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(link);
    c.args(args)
        .env("SKIFF_ROOT", env.path().join("store"))
        .env_remove("RKT_RUN_ARGS")
        .env_remove("RKT_OPTS")
        .env_remove("ETCD_IMAGE_ARGS");
    c
}

#[test]
fn etcd_wrapper_by_name_honours_rkt_run_args_and_image_args() {
    let env = Env::new();
    let reg = env.registry();
    let img = busybox_image(&Spec::default(), &[]);
    push(&reg.url(), "coreos/etcd", "v-test", &img);
    let certs = env.path().join("tls");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.pem"), "CA").unwrap();
    let uuid = env.path().join("etcd-member-wrapper.uuid");
    let rkt_run_args = format!(
        "--uuid-file-save={uuid} \
           --volume tls-certs,kind=host,source={certs},readOnly=true\n\t--mount volume=tls-certs,target=/etc/kubernetes/tls \
         --set-env=FROM_RKT=yes --dns=host --net=host --interactive",
        uuid = uuid.display(),
        certs = certs.display()
    );
    let vars = |c: &mut Command| {
        c.env(
            "ETCD_IMAGE_URL",
            format!("docker://{}/coreos/etcd", reg.host()),
        )
        .env("ETCD_IMAGE_TAG", "v-test")
        .env("ETCD_USER", "root")
        .env("ETCD_DATA_DIR", env.path().join("data"))
        .env("RKT_RUN_ARGS", &rkt_run_args)
        .env("RKT_STAGE1_ARG", "--stage1-from-dir=stage1-fly.aci")
        .env("ETCD_IMAGE_ARGS", "--exec /bin/sh");
    };

    // --dry-run (skiff's own command line, the same variables) says what each became and
    // writes nothing.
    let mut c = env.skiff_cmd(&["run", "--profile", "etcd", "--dry-run"]);
    vars(&mut c);
    let plan = ok(c.output().unwrap());
    for line in [
        format!(
            "wrapper RKT_RUN_ARGS: --volume tls-certs,kind=host,source={},readOnly=true -> paired with --mount volume=tls-certs",
            certs.display()
        ),
        format!(
            "wrapper RKT_RUN_ARGS: --mount volume=tls-certs,target=/etc/kubernetes/tls -> --volume {}:/etc/kubernetes/tls:ro",
            certs.display()
        ),
        "wrapper RKT_RUN_ARGS: --set-env=FROM_RKT=yes -> --env FROM_RKT=yes".into(),
        "wrapper RKT_RUN_ARGS: --dns=host -> --host-dns (the host's /etc/hosts and resolv.conf)".into(),
        "wrapper ETCD_IMAGE_ARGS: --exec /bin/sh -> --exec /bin/sh".into(),
        "wrapper RKT_STAGE1_ARG: --stage1-from-dir=stage1-fly.aci -> unused: rkt's own setting, and rkt is not run".into(),
        "env FROM_RKT=yes".into(),
    ] {
        assert!(plan.lines().any(|l| l == line), "missing {line:?} in:\n{plan}");
    }
    assert!(plan.contains("/etc/kubernetes/tls"), "{plan}");
    assert!(
        plan.lines().any(|l| l.starts_with("exec /bin/sh")),
        "{plan}"
    );
    assert!(!uuid.exists(), "--dry-run writes no uuid file");

    // The link: every argument is the payload's, as "$@" was the script's.
    let link = wrapper_link(&env, "etcd-wrapper");
    let mut c = wrapper_cmd(
        &env,
        &link,
        &[
            "-c",
            "cat /etc/kubernetes/tls/ca.pem; echo; echo $FROM_RKT; touch /etc/kubernetes/tls/x 2>/dev/null || echo read-only",
        ],
    );
    vars(&mut c);
    let o = c.output().unwrap();
    let log = stderr(&o);
    assert_eq!(
        ok(o).lines().collect::<Vec<_>>(),
        ["CA", "yes", "read-only"]
    );
    let saved = std::fs::read_to_string(&uuid).expect("the uuid file is written");
    assert_eq!(saved.len(), 36, "{saved:?}");
    assert!(log.contains("rkt is gone"), "{log}");
    assert!(!certs.join("x").exists());
}

#[test]
fn refused_and_unknown_rkt_arguments_are_named() {
    let env = Env::new();
    let link = wrapper_link(&env, "etcd-wrapper");
    let klink = wrapper_link(&env, "kubelet-wrapper");
    for (link, var, value, needles) in [
        (
            &link,
            "RKT_RUN_ARGS",
            "--insecure-options=image",
            &[
                "RKT_RUN_ARGS",
                "--insecure-options",
                "never turns image verification off",
            ][..],
        ),
        (
            &link,
            "RKT_RUN_ARGS",
            "--volume a,kind=host,source=/a --mount volume=a,target=/a --port=client:2379",
            &["RKT_RUN_ARGS", "--port"],
        ),
        (
            &link,
            "RKT_RUN_ARGS",
            "--trust-keys-from-https",
            &["--trust-keys-from-https", "signature policy"],
        ),
        (
            &link,
            "RKT_RUN_ARGS",
            "--volume a,kind=host,source=/a",
            &["--volume a", "has no --mount"],
        ),
        (
            &link,
            "RKT_RUN_ARGS",
            "--mount volume=b,target=/b",
            &["names no --volume b"],
        ),
        (
            &link,
            "RKT_RUN_ARGS",
            "--volume a,kind=empty --mount volume=a,target=/a",
            &["kind=host"],
        ),
        (
            &link,
            "RKT_RUN_ARGS",
            "--volume a,kind=host,source=/a/../../etc --mount volume=a,target=/a",
            &["'..'"],
        ),
        (
            &link,
            "RKT_RUN_ARGS",
            "--set-env=A=\"b c\"",
            &["not a flag", "c\\\"", "without quote processing"],
        ),
        (
            &link,
            "RKT_RUN_ARGS",
            "--set-env=\"A=b\"",
            &["--set-env", "expected NAME=VALUE"],
        ),
        (&link, "RKT_RUN_ARGS", "--net=default", &["--net", "no CNI"]),
        (
            &link,
            "ETCD_IMAGE_ARGS",
            "--exec=/usr/local/bin/etcd --memory=128M",
            &["ETCD_IMAGE_ARGS", "--memory"],
        ),
        (
            &klink,
            "KUBELET_IMAGE_ARGS",
            "--caps-retain=CAP_SYS_ADMIN",
            &["KUBELET_IMAGE_ARGS", "--caps-retain"],
        ),
        (
            &klink,
            "RKT_OPTS",
            "--stage1-name=coreos.com/rkt/stage1-fly",
            &["RKT_OPTS", "--stage1-name", "no stage1"],
        ),
        (
            &klink,
            "RKT_RUN_ARGS",
            "--dns=8.8.8.8",
            &["--dns", "--dns=host"],
        ),
        (
            &klink,
            "RKT_RUN_ARGS",
            "--uuid-file-save",
            &["--uuid-file-save needs a value"],
        ),
    ] {
        let mut c = wrapper_cmd(&env, link, &["--name", "n1"]);
        c.env(var, value)
            .env("ETCD_USER", "root")
            .env("ETCD_DATA_DIR", env.path().join("data"))
            .env("KUBELET_IMAGE_TAG", "v1");
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(125), "{var}={value}: {o:?}");
        let err = stderr(&o);
        for n in needles {
            assert!(err.contains(n), "{var}={value}: no {n:?} in {err}");
        }
        assert!(!err.contains("pulling"), "refused before any pull: {err}");
    }
}

/// A stand-in for the kubelet (none is packaged here): it checks what the kubelet-wrapper's
/// documented unit gives the kubelet (its arguments, the RKT_RUN_ARGS volumes, the wrapper's
/// own mounts), reports to /var/log (a volume, so the host reads it) and stays up.
const KUBELET_STANDIN: &str = r#"#!/bin/sh
r=/var/log/kubelet-standin.txt
fail() { echo "FAIL $*" >> $r; exit 1; }
: > $r || exit 2
[ "$*" = "--api-servers=http://127.0.0.1:8080 --register-schedulable=false --allow-privileged=true --pod-manifest-path=/etc/kubernetes/manifests --cluster_dns=10.3.0.10 --cluster_domain=cluster.local" ] || fail "args: $*"
for m in /var/log /etc/resolv.conf /etc/kubernetes /var/lib/kubelet /run; do
  grep -q " $m " /proc/self/mountinfo || fail "no mount at $m"
done
[ -d /etc/kubernetes/manifests ] || fail "no /etc/kubernetes/manifests"
[ "$(cat /opt/cni/bin/bridge)" = "CNI" ] || fail "no /opt/cni/bin volume"
touch /opt/cni/bin/x 2>/dev/null && fail "/opt/cni/bin is writable (readOnly=true)"
grep -q "nameserver 192.0.2.53" /etc/resolv.conf || fail "resolv.conf is not the host's"
# What the kubelet does with a pod's volume: the host must see it (rshared /var/lib/kubelet).
mkdir -p /var/lib/kubelet/pods/p1 && mount -t tmpfs pod-volume /var/lib/kubelet/pods/p1 || fail "mount under /var/lib/kubelet"
echo "ok uid=$(id -u) args=$#" >> $r
exec sleep 100000
"#;

fn install(root: &Path, path: &str, bytes: &[u8], mode: u32) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn link(root: &Path, path: &str, target: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}

/// etcd-member.service as Container Linux shipped it (/usr/lib/systemd/system).
const ETCD_MEMBER: &str = r#"[Unit]
Description=etcd (System Application Container)
Wants=network-online.target network.target
After=network-online.target
Conflicts=etcd.service
Conflicts=etcd2.service

[Service]
Type=notify
Restart=on-failure
RestartSec=10s
TimeoutStartSec=0
LimitNOFILE=40000

Environment="ETCD_IMAGE_TAG=v3.3.25"
Environment="ETCD_NAME=%m"
Environment="ETCD_USER=etcd"
Environment="ETCD_DATA_DIR=/var/lib/etcd"
Environment="RKT_RUN_ARGS=--uuid-file-save=/var/lib/coreos/etcd-member-wrapper.uuid"

ExecStartPre=/usr/bin/mkdir --parents /var/lib/coreos
ExecStartPre=-/usr/bin/rkt rm --uuid-file=/var/lib/coreos/etcd-member-wrapper.uuid
ExecStart=/usr/lib/coreos/etcd-wrapper $ETCD_OPTS
ExecStop=-/usr/bin/rkt stop --uuid-file=/var/lib/coreos/etcd-member-wrapper.uuid

[Install]
WantedBy=multi-user.target
"#;

/// The drop-in `ct` wrote for an `etcd:` section, plus the operator's pin and extra volume.
fn etcd_dropin(host: &str, client: u16, peer: u16) -> String {
    format!(
        r#"[Service]
Environment="ETCD_IMAGE_TAG=v3-test"
Environment="ETCD_IMAGE_URL=docker://{host}/coreos/etcd"
Environment="RKT_RUN_ARGS=--uuid-file-save=/var/lib/coreos/etcd-member-wrapper.uuid \
  --volume tls-certs,kind=host,source=/etc/kubernetes/tls,readOnly=true \
  --mount volume=tls-certs,target=/etc/kubernetes/tls"
Environment="ETCD_OPTS=--initial-cluster-state=new"
ExecStart=
ExecStart=/usr/lib/coreos/etcd-wrapper $ETCD_OPTS \
  --name="e2e" \
  --listen-peer-urls="http://127.0.0.1:{peer}" \
  --listen-client-urls="http://127.0.0.1:{client}" \
  --initial-advertise-peer-urls="http://127.0.0.1:{peer}" \
  --initial-cluster="e2e=http://127.0.0.1:{peer}" \
  --advertise-client-urls="http://127.0.0.1:{client}"
"#
    )
}

/// kubelet.service in the kubelet-wrapper documentation's shape (deprecated KUBELET_VERSION
/// included, as units of that era had it).
fn kubelet_unit(host: &str) -> String {
    format!(
        r#"[Service]
Environment=KUBELET_VERSION=v1.10.13_coreos.0-test
Environment=KUBELET_IMAGE_URL=docker://{host}/coreos/hyperkube
Environment="RKT_RUN_ARGS=--uuid-file-save=/var/run/kubelet-pod.uuid \
  --volume var-log,kind=host,source=/var/log \
  --mount volume=var-log,target=/var/log \
  --volume dns,kind=host,source=/etc/resolv.conf \
  --mount volume=dns,target=/etc/resolv.conf \
  --volume cni-bin,kind=host,source=/opt/cni/bin,readOnly=true \
  --mount volume=cni-bin,target=/opt/cni/bin"
ExecStartPre=/usr/bin/mkdir -p /etc/kubernetes/manifests
ExecStartPre=/usr/bin/mkdir -p /var/log/containers
ExecStartPre=-/usr/bin/rkt rm --uuid-file=/var/run/kubelet-pod.uuid
ExecStart=/usr/lib/coreos/kubelet-wrapper \
  --api-servers=http://127.0.0.1:8080 \
  --register-schedulable=false \
  --allow-privileged=true \
  --pod-manifest-path=/etc/kubernetes/manifests \
  --cluster_dns=10.3.0.10 \
  --cluster_domain=cluster.local
ExecStop=-/usr/bin/rkt stop --uuid-file=/var/run/kubelet-pod.uuid
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
"#
    )
}

#[test]
fn container_linux_units_run_unchanged_under_systemd() {
    let env = Env::new();
    let reg = env.registry();
    push(
        &reg.url(),
        "coreos/etcd",
        "v3-test",
        &etcd_image(&["/usr/local/bin/etcd"]),
    );
    let kubelet = busybox_image(
        &Spec::default(),
        &[Entry::File(
            "kubelet".into(),
            KUBELET_STANDIN.as_bytes().to_vec(),
            0o755,
        )],
    );
    push(
        &reg.url(),
        "coreos/hyperkube",
        "v1.10.13_coreos.0-test",
        &kubelet,
    );

    let _one = ONE_CONTAINER.lock().unwrap_or_else(|p| p.into_inner());
    let overlay = OverlayRoot::new(env.path());
    let root = overlay.path.clone();
    install(
        &root,
        "/opt/bin/skiff",
        &std::fs::read(env!("CARGO_BIN_EXE_skiff")).unwrap(),
        0o755,
    );
    // Where the sysext puts the wrapper links (packaging's Ignition configs put them in /opt/bin).
    link(&root, "/usr/lib/coreos/etcd-wrapper", "/opt/bin/skiff");
    link(&root, "/usr/lib/coreos/kubelet-wrapper", "/opt/bin/skiff");
    let (client, peer) = (registry::free_port(), registry::free_port());
    install(
        &root,
        "/usr/lib/systemd/system/etcd-member.service",
        ETCD_MEMBER.as_bytes(),
        0o644,
    );
    install(
        &root,
        "/etc/systemd/system/etcd-member.service.d/20-clct-etcd-member.conf",
        etcd_dropin(&reg.host(), client, peer).as_bytes(),
        0o644,
    );
    install(
        &root,
        "/etc/systemd/system/kubelet.service",
        kubelet_unit(&reg.host()).as_bytes(),
        0o644,
    );
    install(&root, "/etc/kubernetes/tls/ca.pem", b"CLUSTER-CA", 0o644);
    install(&root, "/opt/cni/bin/bridge", b"CNI", 0o755);
    std::fs::create_dir_all(root.join("etc/ssl/certs")).unwrap();
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap()
        + "etcd:x:232:232:etcd user:/var/lib/etcd:/sbin/nologin\n";
    install(&root, "/etc/passwd", passwd.as_bytes(), 0o644);
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap() + "etcd:x:232:\n";
    install(&root, "/etc/group", group.as_bytes(), 0o644);

    // The host's resolv.conf, which --volume dns,…,source=/etc/resolv.conf must carry in.
    let _ = std::fs::remove_file(root.join("etc/resolv.conf"));
    install(&root, "/etc/resolv.conf", b"nameserver 192.0.2.53\n", 0o644);
    let c = Container::boot_with(
        &root,
        &env.path().join("nspawn.log"),
        &["--resolv-conf=off".into()],
    );

    // etcd-member: Type=notify, so `start` returns once etcd said READY=1.
    c.ok("timeout 180 systemctl start etcd-member.service");
    assert_eq!(c.prop("etcd-member.service", "ActiveState"), "active");
    let pid = c.prop("etcd-member.service", "MainPID");
    assert_eq!(c.ok(&format!("cat /proc/{pid}/comm")).trim(), "etcd");
    let mountinfo = c.ok(&format!("cat /proc/{pid}/mountinfo"));
    let tls = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/etc/kubernetes/tls"))
        .unwrap_or_else(|| panic!("no /etc/kubernetes/tls mount:\n{mountinfo}"));
    assert!(
        tls.split(' ').nth(5).unwrap().split(',').any(|o| o == "ro"),
        "readOnly=true: {tls}"
    );
    assert_eq!(
        c.ok(&format!("cat /proc/{pid}/root/etc/kubernetes/tls/ca.pem")),
        "CLUSTER-CA"
    );
    let uuid = c.ok("cat /var/lib/coreos/etcd-member-wrapper.uuid");
    assert_eq!(uuid.len(), 36, "{uuid:?}");
    // No rkt on the host: systemd cannot find it, and the '-' makes that harmless.
    let pre = c.prop("etcd-member.service", "ExecStartPre");
    assert!(pre.contains("path=/usr/bin/rkt"), "{pre}");
    assert_eq!(
        c.ok(&format!("stat -c %u /proc/{pid}")).trim(),
        "232",
        "ETCD_USER=etcd"
    );
    let etcdctl = |args: &[&str]| {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=http://127.0.0.1:{client}"))
            .args(args)
            .output()
            .unwrap()
    };
    ok(etcdctl(&["put", "wrapper", "contract"]));
    let journal = c.ok("journalctl -u etcd-member.service --no-pager");
    assert!(journal.contains("rkt is gone"), "{journal}");
    assert!(
        journal.contains("/usr/bin/rkt") && journal.contains("No such file"),
        "the rkt line ran and failed: {journal}"
    );
    assert!(
        journal.contains("dropping an environment variable") && journal.contains("ETCD_NAME"),
        "ETCD_NAME=%m and --name: the flag wins: {journal}"
    );
    c.ok("systemctl stop etcd-member.service");
    assert_eq!(c.prop("etcd-member.service", "Result"), "success");
    let stop = c.prop("etcd-member.service", "ExecStop");
    assert!(stop.contains("path=/usr/bin/rkt"), "{stop}");

    // kubelet: the stand-in checks its arguments and mounts and stays up.
    c.ok("timeout 180 systemctl start kubelet.service");
    c.wait_for(
        std::time::Duration::from_secs(120),
        "the kubelet stand-in's report",
        || {
            let r = stdout(&c.sh("cat /var/log/kubelet-standin.txt 2>/dev/null"));
            r.contains("ok") || r.contains("FAIL")
        },
    );
    let report = c.ok("cat /var/log/kubelet-standin.txt");
    assert_eq!(report.trim(), "ok uid=0 args=6", "{report}");
    assert_eq!(c.prop("kubelet.service", "ActiveState"), "active");
    // The unit has no mount line of its own: skiff made /var/lib/kubelet a shared mount point,
    // so the stand-in's pod mount is the host's too, as under rkt-fly.
    let host = c.ok("cat /proc/1/mountinfo");
    assert!(
        host.lines()
            .any(|l| l.split(' ').nth(4) == Some("/var/lib/kubelet/pods/p1")),
        "the pod mount reached the host:\n{host}"
    );
    assert_eq!(c.ok("cat /var/run/kubelet-pod.uuid").len(), 36);
    let journal = c.ok("journalctl -u kubelet.service --no-pager");
    assert!(
        journal.contains("KUBELET_VERSION is deprecated, use KUBELET_IMAGE_TAG instead"),
        "{journal}"
    );
    c.ok("systemctl stop kubelet.service");
    assert_eq!(c.prop("kubelet.service", "Result"), "success");
}
