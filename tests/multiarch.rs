//! arm64 on this x86-64 machine: the aarch64 skiff binary itself under Debian's qemu-user, and a
//! real multi-platform index (amd64 and arm64 images from Debian's busybox-static of both
//! architectures, made with umoci, pushed with skopeo) run by the host's skiff through
//! binfmt_misc, and refused with a sentence, before any mount, when the handler is off.

mod common;
use common::arm64;
use common::sign::*;
use common::*;

use std::path::PathBuf;

const REFUSAL: &str =
    "this image is linux/arm64; this host cannot run it: no binfmt_misc handler for aarch64";

/// amd64 and arm64 busybox images under `multi/bb:amd64`, `:arm64`, and the index over both
/// at `multi/bb:v1`.
fn multi_platform(env: &Env, reg: &Registry) -> String {
    let host = reg.host();
    let amd = arm64::push_busybox(
        env.path(),
        std::path::Path::new("/bin/busybox"),
        "amd64",
        &format!("{host}/multi/bb:amd64"),
        None,
    );
    let arm = arm64::push_busybox(
        env.path(),
        &arm64::busybox(),
        "arm64",
        &format!("{host}/multi/bb:arm64"),
        None,
    );
    let entry = |m: &[u8], arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": m.len(), "digest": sha(m),
            "platform": {"os": "linux", "architecture": arch},
        })
    };
    let idx = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&amd, "amd64"), entry(&arm, "arm64")],
    }))
    .unwrap();
    push_manifest(
        &reg.url(),
        "multi/bb",
        "v1",
        &idx,
        "application/vnd.oci.image.index.v1+json",
    );
    format!("{host}/multi/bb:v1")
}

#[test]
fn a_multi_platform_index_runs_either_payload_and_refuses_arm64_without_a_handler() {
    let env = Env::new();
    let reg = env.registry();
    let image = multi_platform(&env, &reg);
    let _on = arm64::handler_on();
    // The default is the host's platform: the amd64 payload.
    let o = env.skiff(&[
        "run",
        "--exec",
        "sh",
        &image,
        "--",
        "-c",
        "uname -m; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "x86_64");
    // --platform linux/arm64: the arm64 busybox, through qemu-aarch64 (whose uname says so).
    let arm = |env: &Env| {
        env.skiff(&[
            "run",
            "--platform",
            "linux/arm64",
            "--exec",
            "sh",
            &image,
            "--",
            "-c",
            "uname -m; exit 5",
        ])
    };
    let o = arm(&env);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "aarch64");
    assert!(
        stderr(&o).contains("qemu-aarch64"),
        "the log names the handler: {}",
        stderr(&o)
    );
    drop(_on);

    // The handler off: the sentence, before anything is mounted (no mount op was tried).
    {
        let _off = arm64::handler_off();
        let err = fails(arm(&env));
        assert!(err.contains(REFUSAL), "{err}");
        assert!(!err.contains("mount op") && !err.contains("exec"), "{err}");
        // The amd64 payload of the same index still runs.
        let o = env.skiff(&["run", "--exec", "true", &image]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // Handler back: the next run works from the store.
    let _on = arm64::handler_on();
    let o = env.skiff(&[
        "run",
        "--pull=never",
        "--platform",
        "linux/arm64",
        "--exec",
        "uname",
        &image,
        "--",
        "-m",
    ]);
    assert_eq!(stdout(&o).trim(), "aarch64", "{}", stderr(&o));
}

/// The aarch64 release binary (packaging/build-static --target aarch64 writes it).
fn aarch64_skiff() -> PathBuf {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/out/skiff-aarch64"
    ));
    assert!(
        p.exists(),
        "{} is missing: run packaging/build-static --target aarch64 first",
        p.display()
    );
    p
}

#[test]
fn the_aarch64_binary_pulls_verifies_unpacks_and_runs_a_signed_arm64_image_under_qemu() {
    let bin = aarch64_skiff();
    let head = std::fs::read(&bin).unwrap();
    assert_eq!(&head[18..20], &183u16.to_le_bytes(), "an aarch64 ELF");
    let env = Env::new();
    let reg = env.registry();
    let gpg = Gpg::new(env.path());
    let fpr = gpg.gen_key("EDDSA", "arm64-signer");
    let key = env.path().join("signer.gpg");
    gpg.export(&fpr, &key, false);
    let lookaside = env.path().join("lookaside");
    std::fs::create_dir_all(&lookaside).unwrap();
    let sigs_d = registries_d(
        &env.path().join("registries.d"),
        &format!("file://{}", lookaside.display()),
        false,
    );
    let image = format!("{}/arm/bb:v1", reg.host());
    arm64::push_busybox(
        env.path(),
        &arm64::busybox(),
        "arm64",
        &image,
        Some((&fpr, &gpg.home, &sigs_d)),
    );
    let policy = env.path().join("policy.json");
    std::fs::write(
        &policy,
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{}/arm":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}"}}]}}}}}}"#,
            reg.host(),
            key.display()
        ),
    )
    .unwrap();
    let _on = arm64::handler_on();
    let (policy, sigs_d) = (policy.to_str().unwrap(), sigs_d.to_str().unwrap());
    let skiff = |args: &[&str]| {
        let mut all = vec!["--policy", policy, "--registries.d", sigs_d];
        all.extend_from_slice(args);
        let mut qemu = std::process::Command::new(arm64::qemu_aarch64());
        qemu.arg(&bin);
        env.skiff_cmd_via(qemu, &all).output().unwrap()
    };
    // It is the arm64 build: its own platform is arm64, so it picks that without being told.
    let o = skiff(&[
        "run",
        "--exec",
        "sh",
        &image,
        "--",
        "-c",
        "echo hello from $(uname -m); exit 42",
    ]);
    assert_eq!(o.status.code(), Some(42), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "hello from aarch64");
    let log = stderr(&o);
    assert!(log.contains("signature") || log.contains("signed"), "{log}");
    // An unsigned copy of the same image is refused by the same binary.
    let unsigned = format!("{}/arm/unsigned:v1", reg.host());
    arm64::push_busybox(env.path(), &arm64::busybox(), "arm64", &unsigned, None);
    let err = fails(skiff(&["run", "--exec", "true", &unsigned]));
    assert!(err.contains("signature"), "{err}");
}
