//! Hosts in bad conditions: a registry whose packets are dropped (the test's own network
//! namespace with an iptables DROP rule, not a closed port), refused connections, a mirror
//! that is down; and what each pull policy then does. Nothing here is timed: what counts is
//! whether the network was touched (the registry's access log) and what skiff said.

mod common;
use common::*;

/// A registry serving the image inside `ns`, over storage pushed from the host side.
fn setup(env: &Env, ns: &Netns) -> (Registry, Image) {
    let host_side = env.registry();
    let img = busybox_image(&Spec::default(), &[]);
    push(&host_side.url(), "app/img", "v1", &img);
    drop(host_side);
    let reg = Registry::start(
        &env.path().join("reg-ns"),
        &env.storage,
        registry::Config {
            netns: Some(ns.name.clone()),
            ..Default::default()
        },
    );
    (reg, img)
}

/// `run --pull=newer` with a generous budget when the registry cannot be reached: the payload
/// starts from the store, with the cached-resolution warning. Returns skiff's log.
fn starts_from_store(env: &Env, ns: &Netns, global: &[&str], r: &str) -> String {
    let mut args = global.to_vec();
    args.extend([
        "run",
        "--pull=newer",
        "--registry-timeout=30",
        r,
        "--",
        "-c",
        "echo up",
    ]);
    let out = env.skiff_in(&ns.name, &args).output().unwrap();
    let err = stderr(&out);
    assert_eq!(ok(out).trim(), "up");
    assert!(err.contains("using the cached resolution"), "{err}");
    err
}

fn gets(reg: &Registry) -> usize {
    reg.log_lines("\"GET /v2/").len()
}

#[test]
fn a_blackholed_registry_and_each_pull_policy() {
    let env = Env::new();
    let ns = Netns::new();
    let (reg, img) = setup(&env, &ns);
    let r = format!("{}/app/img:v1", reg.host());
    assert_eq!(
        ok(env.skiff_in(&ns.name, &["pull", &r]).output().unwrap()).trim(),
        img.digest()
    );
    ns.blackhole(reg.port);
    let before = gets(&reg);

    // missing (the default): the store has it, so not one request.
    let out = env
        .skiff_in(&ns.name, &["run", &r, "--", "-c", "echo started"])
        .output()
        .unwrap();
    assert_eq!(ok(out).trim(), "started");
    let out = env
        .skiff_in(
            &ns.name,
            &["run", "--pull=missing", &r, "--", "-c", "echo again"],
        )
        .output()
        .unwrap();
    assert_eq!(ok(out).trim(), "again");

    // newer: asks, gets no answer within the budget, starts from the store with a warning
    // naming the registry and when the cached resolution was made.
    let out = env
        .skiff_in(
            &ns.name,
            &[
                "run",
                "--pull=newer",
                "--registry-timeout=2",
                &r,
                "--",
                "-c",
                "echo cached",
            ],
        )
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(ok(out).trim(), "cached");
    assert!(
        err.contains("using the cached resolution")
            && err.contains(&format!("registry={}", reg.host())),
        "{err}"
    );
    let resolved = err.split("resolved=").nth(1).unwrap_or("");
    assert!(
        resolved.len() > 20 && resolved.as_bytes()[4] == b'-' && resolved.as_bytes()[10] == b'T',
        "an RFC 3339 time: {err}"
    );
    assert!(
        err.contains("within the registry budget"),
        "the budget ran out: {err}"
    );

    // always: must reach the registry, and says which one it could not.
    let err = fails(
        env.skiff_in(&ns.name, &["run", "--pull=always", "--retries=0", &r])
            .output()
            .unwrap(),
    );
    assert!(err.contains(&reg.host()), "{err}");

    // Dropped packets reached nothing, so the registry saw none of the above.
    ns.restore(reg.port);
    assert_eq!(
        gets(&reg),
        before,
        "missing and newer sent nothing that arrived"
    );

    // A pinned digest in the store never touches the network but under always.
    let pinned = format!("{}/app/img@{}", reg.host(), img.digest());
    ok(env
        .skiff_in(
            &ns.name,
            &["run", "--pull=newer", &pinned, "--", "-c", "true"],
        )
        .output()
        .unwrap());
    assert_eq!(gets(&reg), before);
    ok(env
        .skiff_in(
            &ns.name,
            &["run", "--pull=always", &pinned, "--", "-c", "true"],
        )
        .output()
        .unwrap());
    assert!(gets(&reg) > before, "always asks");
}

#[test]
fn refused_connections_fall_back_at_once() {
    let env = Env::new();
    let ns = Netns::new();
    let (mut reg, _img) = setup(&env, &ns);
    let r = format!("{}/app/img:v1", reg.host());
    ok(env.skiff_in(&ns.name, &["pull", &r]).output().unwrap());
    reg.stop();
    let err = starts_from_store(&env, &ns, &[], &r);
    assert!(
        !err.contains("trying again"),
        "a refused connection is not retried under a budget: {err}"
    );
    // With nothing to fall back on, a pull keeps today's retries, and says so as it waits.
    let err = fails(
        env.skiff_in(
            &ns.name,
            &[
                "pull",
                "--retries=1",
                &format!("{}/app/other:v1", reg.host()),
            ],
        )
        .output()
        .unwrap(),
    );
    assert!(err.contains("no cached resolution"), "{err}");
}

#[test]
fn a_blackholed_mirror_gives_way_to_the_registry() {
    let env = Env::new();
    let ns = Netns::new();
    let (reg, img) = setup(&env, &ns);
    let mirror_port = 1; // nothing listens there, and its packets are dropped
    ns.blackhole(mirror_port);
    let out = env
        .skiff_in(
            &ns.name,
            &[
                "pull",
                "--registry-timeout=1",
                "--mirror",
                &format!("{}=127.0.0.1:{mirror_port}", reg.host()),
                &format!("{}/app/img:v1", reg.host()),
            ],
        )
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(ok(out).trim(), img.digest());
    assert!(
        err.contains("mirror failed, trying the next endpoint"),
        "{err}"
    );
}

#[test]
fn an_unresolvable_registry_falls_back_at_once() {
    let env = Env::new();
    let ns = Netns::new();
    let (reg, img) = setup(&env, &ns);
    let host = format!("skiff-registry.test:{}", reg.port);
    // The name resolves through the namespace's own hosts file; there is no DNS server, so
    // any lookup that the file does not answer is refused at once.
    ns.etc("resolv.conf", "nameserver 127.0.0.1\n");
    ns.etc("hosts", "127.0.0.1 localhost skiff-registry.test\n");
    let r = format!("{host}/app/img:v1");
    let insecure = format!("--insecure-registry={host}");
    let out = env
        .skiff_in(&ns.name, &[&insecure, "pull", &r])
        .output()
        .unwrap();
    assert_eq!(ok(out).trim(), img.digest());
    ns.etc("hosts", "127.0.0.1 localhost\n");
    let err = starts_from_store(&env, &ns, &[&insecure], &r);
    assert!(err.contains("dns error"), "{err}");
    assert!(
        !err.contains("trying again"),
        "a name that does not resolve is not retried: {err}"
    );
}
