//! The README's first command on the machines a new user has: a booted Debian 12 on which
//! `scripts/deps` installs Debian's docker-registry (whose packaged service starts at once and
//! holds :5000), and a host where another listener holds :5000. `scripts/demo` must pass on
//! both the first time, leave the other listener alone, and leave nothing of its own running.
//! On the booted Debian, what `scripts/deps` installs must also be enough for `scripts/test`'s
//! own steps that need more than the demo (the fuzz step's C++ build).

mod common;
use common::container::*;
use common::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

fn checkout() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The demo builds into its own target dir, so it never waits for the test's own cargo.
fn demo_target() -> PathBuf {
    checkout().join(".cache/demo-target")
}

/// The pid the demo says its own registry has.
fn demo_registry_pid(out: &str) -> u32 {
    out.lines()
        .find_map(|l| {
            l.strip_prefix("== registry (pid ")?
                .split(')')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("the demo names its registry: {out}"))
}

fn assert_greeted(out: &str) {
    assert!(
        out.contains("hello from skiff demo (busybox), pid") && out.contains("args: one two"),
        "{out}"
    );
    assert!(out.contains("args: offline"), "the offline start: {out}");
}

#[test]
fn demo_passes_while_another_listener_holds_5000() {
    let _one = ONE_CONTAINER.lock().unwrap_or_else(|p| p.into_inner());
    // Ours, if :5000 is free; if something already holds it, that is the case under test too.
    let holder = std::net::TcpListener::bind("127.0.0.1:5000").ok();
    let out = std::process::Command::new(checkout().join("scripts/demo"))
        .env("CARGO_TARGET_DIR", demo_target())
        .env_remove("SKIFF_DEMO_PORT")
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "scripts/demo failed:\n{text}");
    assert_greeted(&text);
    assert!(
        !text.contains("127.0.0.1:5000/"),
        "the demo used :5000: {text}"
    );
    if let Some(l) = &holder {
        assert!(l.local_addr().is_ok(), "the other listener is untouched");
    }
    let pid = demo_registry_pid(&text);
    assert!(!alive(pid), "the demo's registry {pid} is gone");
}

/// A network of the container's own, as a new machine has (its own :5000), with a way out
/// for apt and cargo: a veth pair to the host, NAT'd out of the host's uplink. Undone when
/// dropped (the NAT rule, the host's ip_forward as it was, the namespace and its link).
struct OwnNetwork {
    ns: Netns,
    host_if: String,
    subnet: String,
    forward_was: String,
}

impl OwnNetwork {
    fn new() -> OwnNetwork {
        let ns = Netns::new();
        let n = std::process::id() % 250;
        let (host_if, inner_if) = (format!("sk{n}h"), format!("sk{n}c"));
        let subnet = format!("10.213.{n}.0/30");
        let (host_ip, inner_ip, gw) = (
            format!("10.213.{n}.1/30"),
            format!("10.213.{n}.2/30"),
            format!("10.213.{n}.1"),
        );
        let ip = |args: &[&str]| run_ok(std::process::Command::new("ip").args(args));
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &inner_if,
        ]);
        ip(&["link", "set", &inner_if, "netns", &ns.name]);
        ip(&["addr", "add", &host_ip, "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ns.ok(&["ip", "addr", "add", &inner_ip, "dev", &inner_if]);
        ns.ok(&["ip", "link", "set", &inner_if, "up"]);
        ns.ok(&["ip", "route", "add", "default", "via", &gw]);
        let forward = "/proc/sys/net/ipv4/ip_forward";
        let forward_was = std::fs::read_to_string(forward).unwrap();
        std::fs::write(forward, "1").unwrap();
        let net = OwnNetwork {
            ns,
            host_if,
            subnet,
            forward_was,
        };
        run_ok(std::process::Command::new("iptables").args(net.nat("-A")));
        net
    }

    fn nat<'a>(&'a self, op: &'a str) -> [&'a str; 11] {
        [
            "-t",
            "nat",
            op,
            "POSTROUTING",
            "-s",
            &self.subnet,
            "!",
            "-o",
            &self.host_if,
            "-j",
            "MASQUERADE",
        ]
    }

    fn nspawn_args(&self) -> Vec<String> {
        vec![
            format!("--network-namespace-path=/run/netns/{}", self.ns.name),
            "--resolv-conf=copy-host".into(),
        ]
    }
}

impl Drop for OwnNetwork {
    fn drop(&mut self) {
        let _ = std::process::Command::new("iptables")
            .args(self.nat("-D"))
            .status();
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.forward_was);
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
    }
}

#[test]
fn demo_passes_on_a_booted_debian_whose_registry_service_holds_5000() {
    let _one = ONE_CONTAINER.lock().unwrap_or_else(|p| p.into_inner());
    // Something on the host holds :5000 too (ours, if it was free): the container's packaged
    // registry must still start, in a network of its own.
    let holder = std::net::TcpListener::bind("0.0.0.0:5000").ok();
    let net = OwnNetwork::new();
    let env = Env::new();
    let root = OverlayRoot::new(env.path());
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo"));
    let rustup_home = std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{home}/.rustup"));
    // The checkout and the toolchain at the same paths inside, as on a machine set up by hand.
    let mut binds: Vec<String> = [checkout().to_str().unwrap(), &cargo_home, &rustup_home]
        .iter()
        .map(|p| format!("--bind={p}"))
        .collect();
    binds.extend(net.nspawn_args());
    for p in [&cargo_home, &rustup_home] {
        std::fs::create_dir_all(root.path.join(p.trim_start_matches('/'))).unwrap();
    }
    let c = Container::boot_with(&root.path, &env.path().join("nspawn.log"), &binds);
    let envs = format!(
        "export HOME={home} CARGO_HOME={cargo_home} RUSTUP_HOME={rustup_home} PATH={cargo_home}/bin:/usr/sbin:/usr/bin:/sbin:/bin CARGO_TARGET_DIR={}",
        demo_target().display()
    );
    let dir = checkout().display();
    // What a new user's machine does first: the packaged registry service starts and takes :5000.
    c.ok(&format!("{envs}; cd {dir} && scripts/deps"));
    c.wait_for(
        Duration::from_secs(60),
        "docker-registry.service on :5000",
        || {
            c.prop("docker-registry.service", "ActiveState") == "active"
                && stdout(&c.sh("ss -Hltn")).contains(":5000 ")
        },
    );
    let service = c.prop("docker-registry.service", "MainPID");
    let out = c.ok(&format!("{envs}; cd {dir} && scripts/demo 2>&1"));
    assert_greeted(&out);
    assert_eq!(
        c.prop("docker-registry.service", "MainPID"),
        service,
        "the packaged service is left as it was"
    );
    let pid = demo_registry_pid(&out);
    assert_ne!(
        pid.to_string(),
        service,
        "the demo ran a registry of its own"
    );
    c.ok(&format!("! [ -e /proc/{pid} ]"));
    // The fuzz step of `scripts/test` builds libFuzzer's C++ sources (libfuzzer-sys): what
    // `scripts/deps` installed must be enough for that too, on this fresh Debian.
    c.ok(&format!(
        "{envs}; cd {dir} && cargo build --locked --manifest-path fuzz/Cargo.toml -p libfuzzer-sys 2>&1"
    ));
    if let Some(l) = &holder {
        assert!(l.local_addr().is_ok(), "the host's listener is untouched");
    }
}
