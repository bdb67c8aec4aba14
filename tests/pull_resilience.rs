//! What a pull does when things go wrong: a registry that lies, drops connections, fails,
//! is down, or is raced by other skiff processes.

mod common;
use common::proxy::{Fault, Proxy};
use common::*;

fn setup(env: &Env) -> (Registry, Image) {
    let reg = env.registry();
    let (img, _) = simple_image(&Spec::default());
    push(&reg.url(), "faulty/app", "v1", &img);
    (reg, img)
}

fn layer_path(env: &Env, blob: &[u8]) -> std::path::PathBuf {
    env.root.join("blobs/sha256").join(&sha(blob)[7..])
}

#[test]
fn a_lying_registry_is_caught_and_nothing_stays() {
    let env = Env::new();
    let (reg, img) = setup(&env);
    let proxy = Proxy::start(reg.port, Fault::FlipBlobByte);
    let r = format!("{}/faulty/app:v1", proxy.host());
    let err = fails(env.skiff(&["pull", &r]));
    assert!(err.contains("digest mismatch"), "{err}");
    let named = img
        .blobs
        .iter()
        .chain([&img.config])
        .any(|b| err.contains(&sha(b)));
    assert!(named, "the error names the expected digest: {err}");
    for b in &img.blobs {
        assert!(!layer_path(&env, b).exists());
    }
    let partials: Vec<_> = files_under(&env.root.join("ingest"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "partial"))
        .collect();
    assert!(
        partials.is_empty(),
        "bad bytes are not kept for resuming: {partials:?}"
    );

    proxy.set(Fault::ExtendBlob);
    let err = fails(env.skiff(&["pull", &r]));
    assert!(
        err.contains("longer than") || err.contains("more than"),
        "{err}"
    );
    assert!(img.blobs.iter().all(|b| !layer_path(&env, b).exists()));

    proxy.set(Fault::None);
    ok(env.skiff(&["pull", &r]));
    assert!(img.blobs.iter().all(|b| layer_path(&env, b).exists()));
}

#[test]
fn a_cut_download_resumes_with_a_range_request_in_the_next_process() {
    let env = Env::new();
    let (reg, img) = setup(&env);
    let big = &img.blobs[0];
    let proxy = Proxy::start(reg.port, Fault::CutBlobAfter(100_000));
    let r = format!("{}/faulty/app:v1", proxy.host());
    let err = fails(env.skiff(&["pull", "--retries=0", "--max-parallel=1", &r]));
    assert!(err.contains("blobs/sha256:"), "{err}");
    let partial = env
        .root
        .join("ingest")
        .join(format!("{}.partial", &sha(big)[7..]));
    assert_eq!(
        std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0),
        100_000,
        "the partial is kept"
    );
    assert!(!layer_path(&env, big).exists());

    proxy.set(Fault::None);
    let before = proxy.requests().len();
    ok(env.skiff(&["pull", &r]));
    let after: Vec<_> = proxy.requests()[before..].to_vec();
    let resumed = after
        .iter()
        .find(|s| s.path.ends_with(&sha(big)) && s.method == "GET")
        .expect("big blob fetched");
    assert_eq!(resumed.range.as_deref(), Some("bytes=100000-"), "{after:?}");
    assert_eq!(resumed.status, 206);
    assert_eq!(
        std::fs::read(layer_path(&env, big)).unwrap(),
        *big,
        "resumed blob is bit-identical"
    );
    assert!(!partial.exists());
}

#[test]
fn a_download_cut_mid_body_resumes_within_the_same_pull() {
    let env = Env::new();
    let (reg, img) = setup(&env);
    let proxy = Proxy::start(reg.port, Fault::CutBlobAfter(120_000));
    let r = format!("{}/faulty/app:v1", proxy.host());
    ok(env.skiff(&["pull", "--retries=4", &r]));
    let big = sha(&img.blobs[0]);
    let gets = proxy.blob_downloads(&big);
    assert!(
        gets.len() >= 2 && gets[1].range.as_deref() == Some("bytes=120000-"),
        "{gets:?}"
    );
    assert_eq!(
        std::fs::read(layer_path(&env, &img.blobs[0])).unwrap(),
        img.blobs[0]
    );
}

#[test]
fn server_errors_and_429_are_retried_with_bounds() {
    let env = Env::new();
    let (reg, _img) = setup(&env);
    let proxy = Proxy::start(reg.port, Fault::Status(503, 2));
    let r = format!("{}/faulty/app:v1", proxy.host());
    ok(env.skiff(&["pull", &r]));
    let env2 = Env::new();
    proxy.set(Fault::TooMany(1));
    let o = env2.skiff(&["pull", &r]);
    assert!(stderr(&o).contains("429"), "{}", stderr(&o));
    ok(o);
    let env3 = Env::new();
    proxy.set(Fault::Status(500, 100));
    let err = fails(env3.skiff(&["pull", "--retries=2", &r]));
    assert!(err.contains("500"), "{err}");
    let tries = proxy.requests().iter().filter(|s| s.status == 500).count();
    assert!(tries <= 3 + 100 - 97, "bounded: {tries}");
}

#[test]
fn concurrent_pulls_download_each_blob_once() {
    let env = Env::new();
    let (reg, img) = setup(&env);
    let proxy = Proxy::start(reg.port, Fault::None);
    let r = format!("{}/faulty/app:v1", proxy.host());
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.skiff_cmd(&["pull", &r])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(ok(o).trim(), img.digest());
    }
    for b in &img.blobs {
        let n = proxy.blob_downloads(&sha(b)).len();
        assert_eq!(n, 1, "layer {} downloaded {n} times", sha(b));
    }
    let n = proxy.blob_downloads(&sha(&img.config)).len();
    assert_eq!(n, 1, "the config was downloaded {n} times");
    ok(env.skiff(&["images"]));
}

#[test]
fn a_manifest_that_is_not_what_the_registry_advertises_is_refused() {
    let env = Env::new();
    let (reg, img) = setup(&env);
    let proxy = Proxy::start(reg.port, Fault::WrongManifestDigest);
    let r = format!("{}/faulty/app:v1", proxy.host());
    let err = fails(env.skiff(&["pull", &r]));
    assert!(
        err.contains("Docker-Content-Digest")
            && err.contains(&format!("sha256:{}", "0".repeat(64)))
            && err.contains(&img.digest()),
        "the error names both digests: {err}"
    );
    assert!(!ok(env.skiff(&["images"])).contains("faulty/app"));
    for b in &img.blobs {
        assert!(
            proxy.blob_downloads(&sha(b)).is_empty(),
            "no layer was fetched"
        );
    }
    // An honest answer from the same registry then pulls.
    proxy.set(Fault::None);
    assert_eq!(ok(env.skiff(&["pull", &r])).trim(), img.digest());
}

#[test]
fn pull_policies_and_offline_boot() {
    let env = Env::new();
    let (mut reg, img) = setup(&env);
    let r = format!("{}/faulty/app:v1", reg.host());
    let err = fails(env.skiff(&["pull", "--pull=never", &r]));
    assert!(err.contains("not in the store"), "{err}");
    ok(env.skiff(&["pull", &r]));
    reg.stop();
    // The registry is gone, as on a host that rebooted offline: `missing` uses the store
    // without asking; `newer` asks, and falls back at once on a refused connection.
    let o = env.skiff(&["pull", "--pull=missing", &r]);
    assert!(
        !stderr(&o).contains("127.0.0.1"),
        "no request: {}",
        stderr(&o)
    );
    assert_eq!(ok(o).trim(), img.digest());
    let o = env.skiff(&["pull", "--pull=newer", &r]);
    assert!(
        stderr(&o).contains("using the cached resolution"),
        "{}",
        stderr(&o)
    );
    assert_eq!(ok(o).trim(), img.digest());
    ok(env.skiff(&["pull", "--pull=never", &r]));
    let err = fails(env.skiff(&["pull", "--pull=always", "--retries=0", &r]));
    assert!(err.contains(&reg.host()), "{err}");
    // A pinned digest in the store needs no network at all, even with --pull=missing.
    let pinned = format!("{}/faulty/app@{}", reg.host(), img.digest());
    ok(env.skiff(&["pull", "--retries=0", &pinned]));
    // ...but --pull=always asks the registry even for a pinned digest it holds.
    fails(env.skiff(&["pull", "--pull=always", "--retries=0", &pinned]));
    // An uncached tag offline is a clear error.
    let err = fails(env.skiff(&[
        "pull",
        "--retries=0",
        &format!("{}/faulty/other:v1", reg.host()),
    ]));
    assert!(err.contains("no cached resolution"), "{err}");
    reg.restart();
    ok(env.skiff(&["pull", "--pull=always", &r]));
    let pinned = format!("{}/faulty/app@{}", reg.host(), img.digest());
    assert_eq!(
        ok(env.skiff(&["pull", "--pull=always", &pinned])).trim(),
        img.digest()
    );
}

#[test]
fn schema1_signed_manifest_from_skopeo() {
    let env = Env::new();
    let (reg, img) = setup(&env);
    let src = format!("docker://{}/faulty/app:v1", reg.host());
    let dst = format!("docker://{}/faulty/app:s1", reg.host());
    run_ok(std::process::Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--format",
        "v2s1",
        &src,
        &dst,
    ]));
    // What the registry says the digest is: the canonical payload's.
    let resp = http()
        .get(format!("{}/v2/faulty/app/manifests/s1", reg.url()))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        )
        .send()
        .unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("prettyjws"));
    let registry_digest = resp.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let r = format!("{}/faulty/app:s1", reg.host());
    assert_eq!(ok(env.skiff(&["pull", &r])).trim(), registry_digest);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(env.skiff(&["inspect", &r]))).unwrap();
    assert_eq!(inspect["Schema1"], true);
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    let layers: Vec<String> = inspect["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        layers,
        img.blobs.iter().map(|b| sha(b)).collect::<Vec<_>>(),
        "bottom layer first"
    );
    assert!(inspect["Layers"][0]["DiffID"]
        .as_str()
        .unwrap()
        .contains("schema1"));
    // Pinning the schema1 digest works the same way.
    ok(env.skiff(&[
        "pull",
        &format!("{}/faulty/app@{registry_digest}", reg.host()),
    ]));
}
