//! Pulling from a real docker-registry on 127.0.0.1: formats, pins, verification, store.

mod common;
use common::*;

#[test]
fn pull_docker_v2_then_inspect_images_and_rm() {
    let env = Env::new();
    let reg = env.registry();
    let (img, _) = simple_image(&Spec {
        cmd: vec!["/bin/app".into(), "-x".into()],
        ..Spec::default()
    });
    let digest = push(&reg.url(), "test/app", "v1", &img);
    let r = format!("{}/test/app:v1", reg.host());
    let out = ok(env.skiff(&["pull", &r]));
    assert_eq!(out.trim(), digest);
    for b in img.blobs.iter().chain([&img.config, &img.manifest]) {
        let p = env.root.join("blobs/sha256").join(&sha(b)[7..]);
        assert_eq!(std::fs::read(&p).unwrap(), *b, "{}", p.display());
    }
    let images = ok(env.skiff(&["images"]));
    assert!(
        images.contains(&r) && images.contains(&digest[..19]),
        "{images}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(env.skiff(&["inspect", &r]))).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(
        inspect["Config"]["Cmd"],
        serde_json::json!(["/bin/app", "-x"])
    );
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    ok(env.skiff(&["rm", &r]));
    assert!(!ok(env.skiff(&["images"])).contains(&r));
    assert!(
        files_under(&env.root.join("blobs")).is_empty(),
        "rm drops unreferenced blobs"
    );
    let err = fails(env.skiff(&["inspect", &r]));
    assert!(err.contains("not in the store"), "{err}");
}

#[test]
fn oci_index_chooses_the_platform() {
    let env = Env::new();
    let reg = env.registry();
    let amd = simple_image(&Spec {
        format: Format::Oci,
        arch: "amd64",
        cmd: vec!["amd".into()],
        ..Spec::default()
    })
    .0;
    let arm = build(
        &[tar(&[file("arm", b"arm64 bytes", 0o644)])],
        &Spec {
            format: Format::Oci,
            comp: Comp::Zstd,
            arch: "arm64",
            cmd: vec!["arm".into()],
            ..Spec::default()
        },
    );
    push(&reg.url(), "multi/img", "amd-only", &amd);
    push(&reg.url(), "multi/img", "arm-only", &arm);
    let idx = index(&[(&arm, "arm64", Some("v8")), (&amd, "amd64", None)]);
    push_manifest(
        &reg.url(),
        "multi/img",
        "latest",
        &idx,
        "application/vnd.oci.image.index.v1+json",
    );
    let r = format!("{}/multi/img", reg.host());
    assert_eq!(ok(env.skiff(&["pull", &r])).trim(), sha(&idx));
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(env.skiff(&["inspect", &r]))).unwrap();
    assert_eq!(inspect["Manifest"], amd.digest().as_str());
    assert_eq!(inspect["Config"]["Cmd"][0], "amd");
    assert!(
        !env.root
            .join("blobs/sha256")
            .join(&sha(&arm.blobs[0])[7..])
            .exists(),
        "the arm layer is not fetched"
    );
    ok(env.skiff(&["pull", "--platform", "linux/arm64", &r]));
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(env.skiff(&["inspect", &r]))).unwrap();
    assert_eq!(inspect["Manifest"], arm.digest().as_str());
    assert_eq!(
        inspect["Layers"][0]["MediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let err = fails(env.skiff(&["pull", "--platform", "linux/s390x", &r]));
    assert!(
        err.contains("linux/arm64/v8") && err.contains("linux/amd64") && err.contains("s390x"),
        "{err}"
    );
}

#[test]
fn pinned_digest_must_match() {
    let env = Env::new();
    let reg = env.registry();
    let (img, _) = simple_image(&Spec::default());
    let digest = push(&reg.url(), "pin/me", "v1", &img);
    let good = format!("{}/pin/me:v1@{digest}", reg.host());
    assert_eq!(ok(env.skiff(&["pull", &good])).trim(), digest);
    // --digest is the same pin, as a flag.
    ok(env.skiff(&[
        "pull",
        "--digest",
        &digest,
        &format!("{}/pin/me:v1", reg.host()),
    ]));

    let env2 = Env {
        storage: env.storage.clone(),
        ..Env::new()
    };
    let wrong = sha(b"not the manifest");
    let err = fails(env2.skiff(&[
        "pull",
        "--digest",
        &wrong,
        &format!("{}/pin/me:v1", reg.host()),
    ]));
    // The registry answers 404 for an unknown digest, or we detect a different one; either way
    // nothing lands in the store.
    assert!(err.contains(&wrong), "{err}");
    assert!(files_under(&env2.root.join("blobs")).is_empty());
    let conflicting = fails(env2.skiff(&["pull", "--digest", &wrong, &good]));
    assert!(conflicting.contains("give one pin"), "{conflicting}");
}

#[test]
fn bad_references_are_refused_before_any_network() {
    let env = Env::new();
    for (r, part) in [
        ("Quay.io/../x", "repository component"),
        ("quay.io/a:b:c", "repository component"),
        ("quay.io/a:-bad", "tag"),
        ("quay.io/a@sha256:1234", "digest"),
    ] {
        let err = fails(env.skiff(&["pull", r]));
        assert!(err.contains(part), "{r}: {err}");
    }
}

#[test]
fn docker_manifest_list() {
    let env = Env::new();
    let reg = env.registry();
    let amd = simple_image(&Spec::default()).0;
    push(&reg.url(), "list/img", "amd", &amd);
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": amd.manifest_type, "size": amd.manifest.len(), "digest": amd.digest(),
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    }))
    .unwrap();
    push_manifest(
        &reg.url(),
        "list/img",
        "latest",
        &list,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    );
    let r = format!("{}/list/img", reg.host());
    assert_eq!(ok(env.skiff(&["pull", &r])).trim(), sha(&list));
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(env.skiff(&["inspect", &r]))).unwrap();
    assert_eq!(inspect["Manifest"], amd.digest().as_str());
}
