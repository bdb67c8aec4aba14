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
    assert_eq!(
        std::fs::read_to_string(&pinfile).unwrap().trim(),
        format!("ETCD_IMAGE={expected}")
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
