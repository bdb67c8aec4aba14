//! Profiles through the CLI: the etcd profile's variables, user, data directory and mounts,
//! and `skiff pin` feeding an EnvironmentFile for an offline, pinned start.

mod common;
use common::*;

#[test]
fn etcd_profile_with_wrapper_variables_and_pinning() {
    let env = Env::new();
    let mut reg = env.registry();
    let img = busybox_image(
        &Spec {
            cmd: vec!["/bin/sh".into()],
            ..Spec::default()
        },
        &[],
    );
    let digest = push(&reg.url(), "coreos/etcd", "v9", &img);
    let data = env.path().join("etcd-data");
    let ssl = env.path().join("ssl");
    std::fs::create_dir_all(&ssl).unwrap();
    std::fs::write(ssl.join("ca.pem"), b"CERT").unwrap();
    let host = reg.host();
    let vars = |c: &mut std::process::Command| {
        c.env("ETCD_IMAGE_URL", format!("docker://{host}/coreos/etcd"))
            .env("ETCD_IMAGE_TAG", "v9")
            .env("ETCD_USER", "1000")
            .env("ETCD_DATA_DIR", &data)
            .env("ETCD_SSL_DIR", &ssl)
            .env("ETCD_NAME", "node1");
    };
    let mut c = env.skiff_cmd(&["run", "--profile", "etcd", "--exec", "/bin/sh", "--", "-c",
        "id -u; echo $ETCD_NAME $ETCD_DATA_DIR; cat /etc/ssl/certs/ca.pem; echo; touch /var/lib/etcd/member && echo wrote"]);
    vars(&mut c);
    let out = ok(c.output().unwrap());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["1000", "node1 /var/lib/etcd", "CERT", "wrote"],
        "{out}"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&data).unwrap().uid(),
        1000,
        "the data dir is the service user's"
    );
    assert!(data.join("member").exists());

    let pinfile = env.path().join("etcd.env");
    let mut c = env.skiff_cmd(&[
        "pin",
        "--profile",
        "etcd",
        "--write",
        pinfile.to_str().unwrap(),
    ]);
    vars(&mut c);
    let printed = ok(c.output().unwrap());
    let expected = format!("{}/coreos/etcd@{digest}", reg.host());
    assert_eq!(printed.trim(), expected);
    let written = std::fs::read_to_string(&pinfile).unwrap();
    assert_eq!(
        written.lines().last().unwrap(),
        format!("ETCD_IMAGE={expected}")
    );
    assert!(
        written.contains(&format!("# skiff-follow: {}/coreos/etcd:", reg.host())),
        "the tag `skiff update` follows: {written}"
    );

    // The pinned digest starts with the registry gone: no network on a warm start.
    reg.stop();
    let mut c = env.skiff_cmd(&[
        "run",
        "--retries=0",
        "--profile",
        "etcd",
        "--exec",
        "/bin/true",
    ]);
    vars(&mut c);
    c.env("ETCD_IMAGE", &expected);
    ok(c.output().unwrap());
}

#[test]
fn unknown_profiles_and_missing_users_are_clear_errors() {
    let env = Env::new();
    let err = fails(env.skiff(&["run", "--profile", "nope"]));
    assert!(err.contains("unknown profile \"nope\""), "{err}");
    let err = fails(
        env.skiff_cmd(&["run", "--profile", "etcd", "--pull=never"])
            .env("ETCD_USER", "no-such-user-here")
            .output()
            .unwrap(),
    );
    assert!(err.contains("no-such-user-here"), "{err}");
}

/// Waits for `READY=1` on a notify socket, as systemd would for Type=notify.
fn ready(sock: &std::os::unix::net::UnixDatagram, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        sock.set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return true;
            }
        }
    }
    false
}

/// etcd 3.4+ exits when a setting arrives both as ETCD_X and as --x: the operator's
/// ETCD_NAME with `-- --name n1` (Flatcar's etcd-wrapper case), and the profile's own
/// ETCD_DATA_DIR with an image whose Cmd already says --data-dir. Both reach READY.
#[test]
fn etcd_reaches_ready_when_a_setting_arrives_as_variable_and_as_flag() {
    let env = Env::new();
    let reg = env.registry();
    push(
        &reg.url(),
        "coreos/etcd",
        "plain",
        &etcd_image(&["/usr/local/bin/etcd"]),
    );
    push(
        &reg.url(),
        "coreos/etcd",
        "datadir",
        &etcd_image(&["/usr/local/bin/etcd", "--data-dir=/var/lib/etcd"]),
    );
    for (tag, name, args) in [
        ("plain", "n1", vec!["--name", "n1"]),
        ("datadir", "e2e", vec![]),
    ] {
        let (client, peer) = (registry::free_port(), registry::free_port());
        let notify = env.path().join(format!("notify-{tag}"));
        let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
        let mut argv = vec!["run", "--profile", "etcd", "--"];
        argv.extend(args.iter().copied());
        let mut c = env.skiff_cmd(&argv);
        c.env("ETCD_IMAGE", format!("{}/coreos/etcd:{tag}", reg.host()))
            .env("ETCD_USER", "root")
            .env("ETCD_NAME", "e2e")
            .env("ETCD_DATA_DIR", env.path().join(format!("data-{tag}")))
            .env(
                "ETCD_LISTEN_CLIENT_URLS",
                format!("http://127.0.0.1:{client}"),
            )
            .env(
                "ETCD_ADVERTISE_CLIENT_URLS",
                format!("http://127.0.0.1:{client}"),
            )
            .env("ETCD_LISTEN_PEER_URLS", format!("http://127.0.0.1:{peer}"))
            .env(
                "ETCD_INITIAL_ADVERTISE_PEER_URLS",
                format!("http://127.0.0.1:{peer}"),
            )
            .env(
                "ETCD_INITIAL_CLUSTER",
                format!("{name}=http://127.0.0.1:{peer}"),
            )
            .env("NOTIFY_SOCKET", &notify)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(env.path().join(format!("etcd-{tag}.log"))).unwrap());
        let mut child = c.spawn().unwrap();
        let got = ready(&sock, std::time::Duration::from_secs(90));
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(env.path().join(format!("etcd-{tag}.log"))).unwrap();
        assert!(got, "{tag}: etcd did not reach READY=1:\n{log}");
        let dropped = if tag == "plain" {
            "ETCD_NAME"
        } else {
            "ETCD_DATA_DIR"
        };
        assert!(
            log.contains("the command line also sets as a flag") && log.contains(dropped),
            "{tag}: the dropped variable is logged:\n{log}"
        );
        assert!(!log.contains("conflicting environment variable"), "{log}");
    }
}
