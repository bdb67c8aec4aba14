//! `skiff run` with real namespaces and mounts (as root), on images built from busybox-static.

mod common;
use common::*;
use std::os::unix::process::ExitStatusExt;

fn setup(env: &Env, repo: &str, spec: &Spec, extra: &[Entry]) -> String {
    let reg = env.registry();
    let img = busybox_image(spec, extra);
    push(&reg.url(), repo, "v1", &img);
    let r = format!("{}/{repo}:v1", reg.host());
    ok(env.skiff(&["pull", &r]));
    std::mem::forget(reg); // the registry stays up for the test's life (killed with the process group)
    r
}

#[test]
fn the_payload_sees_its_rootfs_on_skiffs_pid() {
    let env = Env::new();
    let r = setup(&env, "run/basic", &Spec::default(), &[]);
    let o = env.skiff(&[
        "run",
        "--pull=never",
        &r,
        "--",
        "-c",
        "cat /etc/os-release; echo pid=$$; ls /",
    ]);
    let out = ok(o);
    assert!(out.contains("NAME=skiff-busybox"), "{out}");
    assert!(
        !out.contains("work\n") && !out.contains("root\nsbin"),
        "host dirs are not visible: {out}"
    );
    let child = env
        .skiff_cmd(&[
            "run",
            "--pull=never",
            &r,
            "--exec",
            "/bin/sh",
            "--",
            "-c",
            "echo $$",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        ok(o).trim(),
        pid.to_string(),
        "the payload runs on skiff's own PID"
    );
}
