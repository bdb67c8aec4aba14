//! `skiff update --lock etcd` across a fleet: three booted Debian hosts (nspawn, sharing the
//! host's network) and Debian's etcd on the host's loopback, with real images from a real
//! registry. One boot of three hosts serves every check; each round records, from each host,
//! when its unit's main process started (systemd's ExecMainStartTimestamp) and when its gate
//! passed (the `released` record in etcd), and asserts on those intervals.
//!
//! Three hosts at once: each booted Debian is ~40 MiB of memory and a few seconds of CPU to
//! boot; the machine (2 shared cores, 24 GiB) holds three easily, and three is the smallest
//! fleet where "at most two at once" is a real limit.

mod common;
use common::container::*;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APP_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
static int notify(const char *msg) {
    const char *p = getenv("NOTIFY_SOCKET");
    if (!p) return -1;
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, p, sizeof a.sun_path - 1);
    if (a.sun_path[0] == '@') a.sun_path[0] = 0;
    socklen_t len = sizeof(sa_family_t) + strlen(p);
    return sendto(s, msg, strlen(msg), 0, (struct sockaddr *)&a, len);
}
int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "ready";
    if (!strcmp(mode, "exit")) { fprintf(stderr, "app: exiting at once\n"); return 1; }
    if (notify("READY=1") < 0) { perror("notify"); return 2; }
    for (;;) pause();
}
"#;

const APP_UNIT: &str = "[Unit]
Description=an app run by skiff

[Service]
Type=notify
EnvironmentFile=/etc/skiff/app.env
ExecStart=/opt/bin/skiff run ${APP_IMAGE}
Restart=on-failure
RestartSec=1
TimeoutStartSec=8
";

/// The lease TTL in these tests: short, so a dead host's slot frees within the test.
const TTL: u64 = 6;

fn install(root: &Path, path: &str, bytes: &[u8], mode: u32) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn app_image(app: &[u8], mode: &str, version: &str) -> Image {
    busybox_image(
        &Spec {
            cmd: vec!["/bin/app".into(), mode.into()],
            ..Spec::default()
        },
        &[
            Entry::File("bin/app".into(), app.to_vec(), 0o755),
            file("version", format!("{version}\n").as_bytes(), 0o644),
        ],
    )
}

/// Debian's etcd on 127.0.0.1, data in the test's directory; stopped and started again on
/// the same ports and data.
struct Etcd {
    child: Option<Child>,
    args: Vec<String>,
    dir: PathBuf,
    port: u16,
    url: String,
}

impl Etcd {
    fn start(dir: &Path, tls: Option<&(PathBuf, PathBuf, PathBuf)>) -> Etcd {
        let mut m = Etcd::members(dir, 1, tls);
        m[0].resume();
        m.remove(0)
    }

    /// A cluster of `n` members (not started).
    fn members(dir: &Path, n: usize, tls: Option<&(PathBuf, PathBuf, PathBuf)>) -> Vec<Etcd> {
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| (registry::free_port(), registry::free_port()))
            .collect();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("n{i}=http://127.0.0.1:{peer}"))
            .collect();
        let cluster = cluster.join(",");
        let mut out = Vec::new();
        for (i, (port, peer)) in ports.into_iter().enumerate() {
            let dir = dir.join(format!("n{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("{scheme}://127.0.0.1:{port}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut args: Vec<String> = [
                format!("--name=n{i}"),
                format!("--data-dir={}", dir.join("data").display()),
                format!("--listen-client-urls={url}"),
                format!("--advertise-client-urls={url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={cluster}"),
            ]
            .to_vec();
            if let Some((ca, cert, key)) = tls {
                args.extend([
                    "--client-cert-auth".to_string(),
                    format!("--trusted-ca-file={}", ca.display()),
                    format!("--cert-file={}", cert.display()),
                    format!("--key-file={}", key.display()),
                ]);
            }
            out.push(Etcd {
                child: None,
                args,
                dir,
                port,
                url,
            });
        }
        out
    }

    fn ready_count(&self) -> usize {
        std::fs::read_to_string(self.dir.join("etcd.log"))
            .unwrap_or_default()
            .matches("ready to serve client requests")
            .count()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let child = Command::new("etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd (etcd-server)");
        self.child = Some(child);
    }

    /// Serving once it is part of an elected cluster.
    fn wait_ready(&self, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ready_count() <= before {
            assert!(Instant::now() < deadline, "etcd did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn resume(&mut self) {
        let before = self.ready_count();
        self.spawn();
        self.wait_ready(before);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Drops packets to a port on the host's loopback (the containers share the host's
/// network) while it lives.
struct Blackhole(u16);

impl Blackhole {
    fn rule(op: &str, port: u16) -> Vec<String> {
        let p = port.to_string();
        [
            op, "INPUT", "-i", "lo", "-p", "tcp", "--dport", &p, "-j", "DROP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
    fn new(port: u16) -> Blackhole {
        run_ok(Command::new("iptables").args(Blackhole::rule("-I", port)));
        Blackhole(port)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = Command::new("iptables")
            .args(Blackhole::rule("-D", self.0))
            .status();
    }
}

struct Host {
    c: Container,
    id: String,
}

impl Host {
    fn main_pid(&self) -> String {
        self.c.prop("app.service", "MainPID")
    }

    fn pin(&self) -> String {
        self.c.ok("cat /etc/skiff/app.env")
    }

    /// Unix microseconds when app.service's main process started.
    fn started(&self) -> u64 {
        self.c
            .ok("date -d \"$(systemctl show -P ExecMainStartTimestamp --timestamp=us+utc app.service)\" +%s%6N")
            .trim()
            .parse()
            .unwrap()
    }

    /// Starts `skiff update` in the background; `wait` collects it.
    fn start(&self, tag: &str, args: &str) {
        self.c.ok(&format!(
            "rm -f /tmp/{tag}.rc; setsid sh -c '/opt/bin/skiff update --format json --lock etcd {args} app.service >/tmp/{tag}.json 2>/tmp/{tag}.err; echo $? >/tmp/{tag}.rc' </dev/null >/dev/null 2>&1 &"
        ));
    }

    /// (status, reason) of a started update, once it ended.
    fn wait(&self, tag: &str) -> (String, String) {
        self.c.wait_for(Duration::from_secs(240), tag, || {
            self.c
                .sh(&format!("test -s /tmp/{tag}.rc"))
                .status
                .success()
        });
        let out = self.c.ok(&format!("cat /tmp/{tag}.json"));
        let err = self.c.ok(&format!("cat /tmp/{tag}.err"));
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{}: {tag}: {e}\n{out}\n{err}", self.id));
        let o = &v[0];
        (
            o["status"].as_str().unwrap_or_default().to_string(),
            format!("{}\n{err}", o["reason"].as_str().unwrap_or_default()),
        )
    }
}

/// The group's status as `skiff update --status --format json` prints it (from host `h`).
fn status(h: &Host, etcd: &str) -> serde_json::Value {
    let out = h.c.ok(&format!(
        "/opt/bin/skiff update --format json --status app.service --etcd-endpoints {etcd}"
    ));
    serde_json::from_str(&out).unwrap()
}

/// Unix microseconds of `host`'s history event `event` whose detail names `digest`.
fn event_time(st: &serde_json::Value, host: &str, event: &str, digest: &str) -> Option<u64> {
    st["history"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find_map(|e| {
            (e["host"] == host && e["event"] == event && e["detail"].as_str()?.contains(digest))
                .then(|| e["time"].as_u64())
                .flatten()
        })
}

/// Runs one update on every host at the same moment; each must end `updated`. Returns each
/// host's [restart, gate passed] interval.
fn round(hosts: &[Host], etcd: &str, tag: &str, digest: &str, args: &str) -> Vec<(u64, u64)> {
    for h in hosts {
        h.start(tag, &format!("--etcd-endpoints {etcd} {args}"));
    }
    for h in hosts {
        let (s, why) = h.wait(tag);
        assert_eq!(s, "updated", "{}: {why}", h.id);
        assert!(h.pin().contains(digest), "{}", h.id);
    }
    let st = status(&hosts[0], etcd);
    hosts
        .iter()
        .map(|h| {
            let start = h.started();
            let acquired = event_time(&st, &h.id, "acquired", digest).expect("acquired");
            let passed = event_time(&st, &h.id, "released", digest).expect("released");
            assert!(
                acquired <= start && start <= passed,
                "{}: {acquired} {start} {passed}",
                h.id
            );
            (start, passed)
        })
        .collect()
}

/// The most intervals that hold one moment.
fn max_overlap(iv: &[(u64, u64)]) -> usize {
    iv.iter()
        .map(|(s, _)| iv.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap_or(0)
}

/// A client certificate signed by the test CA.
fn client_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, csr, crt) = (
        dir.join("client.key"),
        dir.join("client.csr"),
        dir.join("client.crt"),
    );
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=skiff-host",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    );
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    run_ok(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(dir.join("ca.crt"))
            .arg("-CAkey")
            .arg(dir.join("ca.key"))
            .arg("-extfile")
            .arg(dir.join("client.cnf"))
            .arg("-out")
            .arg(&crt),
    );
    (crt, key)
}

#[test]
fn a_fleet_rolls_forward_a_few_hosts_at_a_time_and_halts_at_the_first_failure() {
    let env = Env::new();
    let reg = env.registry();
    let host = reg.host();
    let helpers = env.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let app = static_c(&helpers, "app", APP_C);
    let push = |img: &Image| common::push(&reg.url(), "test/app", "stable", img);
    let v1 = push(&app_image(&app, "ready", "v1"));
    let mut etcd = Etcd::start(&env.path().join("etcd"), None);
    let e = etcd.url.clone();

    let _one = ONE_CONTAINER.lock().unwrap_or_else(|p| p.into_inner());
    let skiff = std::fs::read(env!("CARGO_BIN_EXE_skiff")).unwrap();
    let mut overlays = Vec::new();
    let mut ids = Vec::new();
    for n in 0..3 {
        let dir = env.path().join(format!("host{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let o = OverlayRoot::new(&dir);
        let root = &o.path;
        install(root, "/opt/bin/skiff", &skiff, 0o755);
        install(
            root,
            "/etc/systemd/system/app.service",
            APP_UNIT.as_bytes(),
            0o644,
        );
        let pin =
            format!("# skiff-follow: {host}/test/app:stable\nAPP_IMAGE={host}/test/app@{v1}\n");
        install(root, "/etc/skiff/app.env", pin.as_bytes(), 0o644);
        let id = format!("{:032x}", 0xf_1ee7_0000_u64 + n as u64);
        install(root, "/etc/machine-id", format!("{id}\n").as_bytes(), 0o444);
        ids.push(id);
        overlays.push(o);
    }
    let logs: Vec<PathBuf> = (0..3)
        .map(|n| env.path().join(format!("host{n}.log")))
        .collect();
    let spec: Vec<(&Path, &Path)> = overlays
        .iter()
        .zip(&logs)
        .map(|(o, l)| (o.path.as_path(), l.as_path()))
        .collect();
    let hosts: Vec<Host> = Container::boot_many(&spec)
        .into_iter()
        .zip(&ids)
        .map(|(c, id)| Host { c, id: id.clone() })
        .collect();
    for h in &hosts {
        h.c.ok("timeout 120 systemctl start app.service");
        assert_eq!(
            h.c.ok("cat /etc/machine-id").trim(),
            h.id,
            "the identity in the lock"
        );
    }
    let common_args = format!("--lock-ttl {TTL} --grace 3");

    // 1. Three hosts at the same moment, --max-unavailable 1: all updated, one at a time.
    let v2 = push(&app_image(&app, "ready", "v2"));
    let iv = round(&hosts, &e, "r1", &v2, &common_args);
    let mut sorted = iv.clone();
    sorted.sort();
    for w in sorted.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "restart-to-gate intervals overlap: {sorted:?}"
        );
    }
    assert_eq!(max_overlap(&iv), 1, "{iv:?}");
    eprintln!("--max-unavailable 1: restart-to-gate intervals (unix us): {sorted:?}");

    // 2. --max-unavailable 2: never three at once.
    let v3 = push(&app_image(&app, "ready", "v3"));
    let iv = round(
        &hosts,
        &e,
        "r2",
        &v3,
        &format!("--lock-ttl {TTL} --max-unavailable 2 --grace 5"),
    );
    let most = max_overlap(&iv);
    eprintln!("--max-unavailable 2: at most {most} hosts between restart and gate at once: {iv:?}");
    // Both slots are used: the first two restart together (their pulls end within ms).
    assert_eq!(most, 2, "{iv:?}");

    // 3. A bad digest: the first host rolls back and halts the group; the others are held and
    //    their units untouched.
    let pids: Vec<String> = hosts.iter().map(Host::main_pid).collect();
    let bad = push(&app_image(&app, "exit", "bad"));
    for h in &hosts {
        h.start("r3", &format!("--etcd-endpoints {e} {common_args}"));
    }
    let results: Vec<(String, String)> = hosts.iter().map(|h| h.wait("r3")).collect();
    let rolled: Vec<usize> = (0..3).filter(|&i| results[i].0 == "rolled back").collect();
    assert_eq!(rolled.len(), 1, "{results:?}");
    let first = rolled[0];
    for (i, (s, why)) in results.iter().enumerate().filter(|(i, _)| *i != first) {
        assert_eq!(s, "held", "{why}");
        assert!(
            why.contains("is halted") && why.contains(&hosts[first].id),
            "{why}"
        );
        assert_eq!(
            hosts[i].main_pid(),
            pids[i],
            "a held host restarted nothing"
        );
        assert!(hosts[i].pin().contains(&v3));
    }
    let st = status(&hosts[1], &e);
    assert_eq!(st["halt"]["host"], hosts[first].id.as_str(), "{st}");
    assert_eq!(st["halt"]["to"], bad.as_str(), "{st}");
    assert_eq!(st["halt"]["from"], v3.as_str(), "{st}");
    let text = hosts[1].c.ok(&format!(
        "/opt/bin/skiff update --status app.service --etcd-endpoints {e}"
    ));
    assert!(
        text.contains("halted\t") && text.contains("rolled back"),
        "{text}"
    );
    // Held again on the next timer run, still without touching the unit.
    let other = (first + 1) % 3;
    hosts[other].start("r3b", &format!("--etcd-endpoints {e} {common_args}"));
    let (s, why) = hosts[other].wait("r3b");
    assert_eq!(s, "held", "{why}");
    assert_eq!(hosts[other].main_pid(), pids[other]);
    // --resume clears it.
    let out = hosts[other].c.ok(&format!(
        "/opt/bin/skiff update --resume app.service --etcd-endpoints {e}"
    ));
    assert!(out.contains("resumed"), "{out}");
    let st = status(&hosts[other], &e);
    assert!(st["halt"].is_null(), "{st}");
    assert!(
        event_time(&st, &hosts[other].id, "resumed", "").is_some(),
        "{st}"
    );
    // The next good digest goes through everywhere.
    let v4 = push(&app_image(&app, "ready", "v4"));
    round(&hosts, &e, "r4", &v4, &common_args);

    // 4. A new digest under the tag also clears a halt: a second bad one halts again, a good one
    //    after it goes through.
    let bad2 = push(&app_image(&app, "exit", "bad2"));
    hosts[0].start("r5", &format!("--etcd-endpoints {e} {common_args}"));
    assert_eq!(hosts[0].wait("r5").0, "rolled back");
    assert_eq!(status(&hosts[0], &e)["halt"]["to"], bad2.as_str());
    let v5 = push(&app_image(&app, "ready", "v5"));
    round(&hosts, &e, "r6", &v5, &common_args);
    let st = status(&hosts[0], &e);
    assert!(st["halt"].is_null(), "{st}");
    assert!(
        st["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "halt cleared"),
        "{st}"
    );

    // 5. etcd unreachable (its packets dropped, then stopped): every host held, nothing
    //    restarted, the pin unchanged.
    let v6 = push(&app_image(&app, "ready", "v6"));
    let pids: Vec<String> = hosts.iter().map(Host::main_pid).collect();
    for (tag, want) in [("r7", "timed out"), ("r8", "Connection refused")] {
        let _drop = (tag == "r7").then(|| Blackhole::new(etcd.port));
        if tag == "r8" {
            etcd.stop();
        }
        for h in &hosts {
            h.start(
                tag,
                &format!("--etcd-endpoints {e} {common_args} --lock-timeout 5"),
            );
        }
        for (i, h) in hosts.iter().enumerate() {
            let (s, why) = h.wait(tag);
            assert_eq!(s, "held", "{tag}: {why}");
            assert!(
                why.contains("could not be taken") && why.contains(want),
                "{tag}: {why}"
            );
            assert_eq!(h.main_pid(), pids[i], "{tag}");
            assert!(h.pin().contains(&v5), "{tag}");
        }
    }
    etcd.resume();
    // No quorum: a three-member cluster with two members stopped.
    let mut cluster = Etcd::members(&env.path().join("etcd3"), 3, None);
    for m in cluster.iter_mut() {
        m.spawn();
    }
    for m in &cluster {
        m.wait_ready(0);
    }
    cluster[1].stop();
    cluster[2].stop();
    hosts[0].start(
        "r8b",
        &format!(
            "--etcd-endpoints {} {common_args} --lock-timeout 5",
            cluster[0].url
        ),
    );
    let (s, why) = hosts[0].wait("r8b");
    assert_eq!(s, "held", "no quorum: {why}");
    assert!(why.contains("could not be taken"), "no quorum: {why}");
    eprintln!("no quorum: {why}");
    assert_eq!(hosts[0].main_pid(), pids[0]);
    assert!(hosts[0].pin().contains(&v5));
    drop(cluster);

    // 6. TLS with client certificates (the test's PKI); without the client certificate: held.
    let pki = pki::make_pki(&env.path().join("pki"));
    let (ccrt, ckey) = client_cert(&env.path().join("pki"));
    let tls = Etcd::start(
        &env.path().join("etcd-tls"),
        Some(&(pki.ca.clone(), pki.cert.clone(), pki.key.clone())),
    );
    for (p, name) in [
        (&pki.ca, "ca.crt"),
        (&ccrt, "client.crt"),
        (&ckey, "client.key"),
    ] {
        install(
            &overlays[2].path,
            &format!("/etc/skiff/etcd/{name}"),
            &std::fs::read(p).unwrap(),
            0o600,
        );
    }
    let h = &hosts[2];
    h.start(
        "r9",
        &format!(
            "--etcd-endpoints {} --etcd-cacert /etc/skiff/etcd/ca.crt {common_args}",
            tls.url
        ),
    );
    let (s, why) = h.wait("r9");
    assert_eq!(s, "held", "no client certificate: {why}");
    assert_eq!(h.main_pid(), pids[2]);
    let certs = "--etcd-cacert /etc/skiff/etcd/ca.crt --etcd-cert /etc/skiff/etcd/client.crt --etcd-key /etc/skiff/etcd/client.key";
    h.start(
        "r10",
        &format!("--etcd-endpoints {} {certs} {common_args}", tls.url),
    );
    let (s, why) = h.wait("r10");
    assert_eq!(s, "updated", "{why}");
    let out = h.c.ok(&format!(
        "/opt/bin/skiff update --format json --status app.service --etcd-endpoints {} {certs}",
        tls.url
    ));
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(event_time(&st, &h.id, "released", &v6).is_some(), "{st}");
    drop(tls);

    // 7. The slot holder dies mid-update (its container SIGKILLed): the others wait for its
    //    lease to end, then go. hosts[0] holds (a long gate), 1 and 2 queue behind it.
    let mut hosts = hosts;
    let v7 = push(&app_image(&app, "ready", "v7"));
    hosts[0].start(
        "r11",
        &format!("--etcd-endpoints {e} --lock-ttl {TTL} --grace 120"),
    );
    hosts[0].c.wait_for(
        Duration::from_secs(120),
        "the holder to move its pin",
        || hosts[0].pin().contains(&v7),
    );
    for h in &hosts[1..] {
        h.start(
            "r11",
            &format!("--etcd-endpoints {e} {common_args} --lock-timeout 120"),
        );
    }
    hosts[1]
        .c
        .wait_for(Duration::from_secs(60), "three hosts in the queue", || {
            status(&hosts[1], &e)["queue"]
                .as_array()
                .is_some_and(|q| q.len() == 3)
        });
    let init = hosts[0].c.pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let dead = hosts.remove(0);
    for h in &hosts {
        let (s, why) = h.wait("r11");
        assert_eq!(s, "updated", "{}: {why}", h.id);
        // The wait was logged with who held the slot.
        assert!(
            why.contains("waiting for a slot") && why.contains(&dead.id),
            "{why}"
        );
    }
    let st = status(&hosts[0], &e);
    // The holder renewed its lease every TTL/3: the lease ends no sooner than 2/3 TTL after
    // the kill, and no slot is taken before that.
    let earliest = killed + TTL * 2 / 3 * 1_000_000;
    for h in &hosts {
        let t = event_time(&st, &h.id, "acquired", &v7).unwrap();
        eprintln!(
            "{} took the slot {} ms after the holder was killed (TTL {TTL} s)",
            h.id,
            t.saturating_sub(killed) / 1000
        );
        assert!(
            t >= earliest,
            "{} took the slot {} ms after the kill",
            h.id,
            (t.saturating_sub(killed)) / 1000
        );
    }
    drop(dead);
}
