//! Every auth and transport mode against a real registry: Basic (htpasswd), bearer tokens
//! (anonymous and with credentials), TLS with a test CA (flag and certs.d).

mod common;
use common::pki::*;
use common::registry::Config;
use common::*;

fn pushed(env: &Env) -> (Registry, String) {
    let open = env.registry();
    let (img, _) = simple_image(&Spec::default());
    let digest = push(&open.url(), "secure/app", "v1", &img);
    (open, digest)
}

#[test]
fn basic_auth_with_creds_flag_and_auth_files() {
    let env = Env::new();
    let (_open, digest) = pushed(&env);
    let cfg = Config {
        htpasswd: Some(htpasswd(env.path(), "alice", "s3cret")),
        ..Config::default()
    };
    let reg = Registry::start(&env.path().join("basic"), &env.storage, cfg);
    let r = format!("{}/secure/app:v1", reg.host());
    let err = fails(env.skiff(&["pull", &r]));
    assert!(err.contains("401") && err.contains("--creds"), "{err}");
    let err = fails(env.skiff(&["pull", "--creds", "alice:wrong", &r]));
    assert!(err.contains("401"), "{err}");
    assert!(
        !err.contains("wrong"),
        "the password never appears in errors: {err}"
    );
    assert_eq!(
        ok(env.skiff(&["pull", "--creds", "alice:s3cret", &r])).trim(),
        digest
    );

    // REGISTRY_AUTH_FILE, containers auth.json format.
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let file = env.path().join("auth.json");
    std::fs::write(
        &file,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let o = env
        .skiff_cmd(&["pull", "--pull=always", &r])
        .env("REGISTRY_AUTH_FILE", &file)
        .output()
        .unwrap();
    ok(o);
    // ~/.docker/config.json, with an http:// key as docker writes for insecure registries.
    std::fs::create_dir_all(env.path().join(".docker")).unwrap();
    std::fs::write(
        env.path().join(".docker/config.json"),
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    ok(env.skiff(&["pull", "--pull=always", &r]));
}

#[test]
fn bearer_token_anonymous_and_cached() {
    let env = Env::new();
    let (_open, digest) = pushed(&env);
    let issuer = start_issuer(&env.path().join("issuer"), None);
    let cfg = Config {
        token: Some((issuer.realm(), issuer.bundle.clone())),
        ..Config::default()
    };
    let reg = Registry::start(&env.path().join("token"), &env.storage, cfg);
    let r = format!("{}/secure/app:v1", reg.host());
    assert_eq!(ok(env.skiff(&["pull", &r])).trim(), digest);
    let reqs = issuer.requests.lock().unwrap().clone();
    // manifest, config and two layers share one token for the repository's pull scope.
    assert_eq!(reqs.len(), 1, "one token per scope: {reqs:?}");
    assert!(
        reqs[0]
            .query
            .contains("scope=repository%3Asecure%2Fapp%3Apull"),
        "{reqs:?}"
    );
    assert!(reqs[0].query.contains("service=skiff-test"));
    assert!(reqs[0].basic.is_none(), "anonymous");
}

#[test]
fn bearer_token_with_credentials() {
    let env = Env::new();
    let (_open, digest) = pushed(&env);
    let issuer = start_issuer(
        &env.path().join("issuer"),
        Some(("bob".into(), "pw".into())),
    );
    let cfg = Config {
        token: Some((issuer.realm(), issuer.bundle.clone())),
        ..Config::default()
    };
    let reg = Registry::start(&env.path().join("token"), &env.storage, cfg);
    let r = format!("{}/secure/app:v1", reg.host());
    let err = fails(env.skiff(&["pull", &r]));
    assert!(
        err.contains("token endpoint") && err.contains("401"),
        "{err}"
    );
    assert_eq!(
        ok(env.skiff(&["pull", "--creds", "bob:pw", &r])).trim(),
        digest
    );
}

#[test]
fn tls_with_test_ca_flag_and_certs_dir() {
    let env = Env::new();
    let (_open, digest) = pushed(&env);
    let pki = make_pki(&env.path().join("pki"));
    let cfg = Config {
        tls: Some((pki.cert.clone(), pki.key.clone())),
        ..Config::default()
    };
    let reg = Registry::start(&env.path().join("tls"), &env.storage, cfg);
    // A non-loopback name would not fall back to HTTP; loopback tries TLS first and must not
    // silently accept an unknown CA either: it falls back to plain HTTP, which this server refuses.
    let r = format!("localhost:{}/secure/app:v1", reg.port);
    let err = fails(env.skiff(&["pull", "--retries=0", &r]));
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("http://"),
        "{err}"
    );
    let ca = pki.ca.to_str().unwrap();
    assert_eq!(ok(env.skiff(&["pull", "--tls-ca", ca, &r])).trim(), digest);
    let certs = env.path().join("certs.d");
    let host_dir = certs.join(format!("localhost:{}", reg.port));
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(&pki.ca, host_dir.join("ca.crt")).unwrap();
    ok(env.skiff(&[
        "pull",
        "--pull=always",
        "--certs-dir",
        certs.to_str().unwrap(),
        &r,
    ]));
    // The per-registry CA applies to that registry only.
    let other = certs.join("elsewhere:1");
    std::fs::create_dir_all(&other).unwrap();
    let wrong_dir = env.path().join("certs2");
    std::fs::create_dir_all(wrong_dir.join("elsewhere:1")).unwrap();
    std::fs::copy(&pki.ca, wrong_dir.join("elsewhere:1/ca.crt")).unwrap();
    fails(env.skiff(&[
        "pull",
        "--pull=always",
        "--retries=0",
        "--certs-dir",
        wrong_dir.to_str().unwrap(),
        &r,
    ]));
}

#[test]
fn credential_helpers_are_asked() {
    let env = Env::new();
    let (_open, digest) = pushed(&env);
    let cfg = Config {
        htpasswd: Some(htpasswd(env.path(), "carol", "from-helper")),
        ..Config::default()
    };
    let reg = Registry::start(&env.path().join("basic"), &env.storage, cfg);
    let bin = env.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-skifftest");
    std::fs::write(&helper, "#!/bin/sh\nread server\necho \"$server\" > \"$(dirname \"$0\")/asked\"\necho '{\"ServerURL\":\"x\",\"Username\":\"carol\",\"Secret\":\"from-helper\"}'\n").unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let file = env.path().join("auth.json");
    std::fs::write(
        &file,
        format!(r#"{{"credHelpers":{{"{}":"skifftest"}}}}"#, reg.host()),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = env
        .skiff_cmd(&["pull", &format!("{}/secure/app:v1", reg.host())])
        .env("REGISTRY_AUTH_FILE", &file)
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(ok(o).trim(), digest);
    assert_eq!(
        std::fs::read_to_string(bin.join("asked")).unwrap().trim(),
        reg.host()
    );
}

#[test]
fn blob_redirects_do_not_carry_the_authorization_header() {
    use common::proxy::{Fault, Proxy};
    let env = Env::new();
    let (open, digest) = pushed(&env);
    let cfg = Config {
        htpasswd: Some(htpasswd(env.path(), "alice", "pw")),
        ..Config::default()
    };
    let reg = Registry::start(&env.path().join("basic"), &env.storage, cfg);
    // The "CDN" serves blobs without auth, as quay.io's does with signed URLs.
    let cdn = Proxy::start(open.port, Fault::None);
    let front = Proxy::start(reg.port, Fault::RedirectBlobs(cdn.port));
    ok(env.skiff(&[
        "pull",
        "--creds",
        "alice:pw",
        &format!("{}/secure/app:v1", front.host()),
    ]));
    let at_cdn = cdn.requests();
    assert!(!at_cdn.is_empty(), "blobs came from the CDN");
    assert!(
        at_cdn.iter().all(|r| !r.authorization),
        "no Authorization leaks to another host: {at_cdn:?}"
    );
    assert!(
        front.requests().iter().any(|r| r.authorization),
        "the registry itself got credentials"
    );
    assert!(env.root.join("blobs/sha256").join(&digest[7..]).exists());
}

#[test]
fn http_proxy_and_no_proxy_are_honoured() {
    use common::proxy::{Fault, Proxy};
    let env = Env::new();
    let (open, digest) = pushed(&env);
    let fwd = Proxy::start(open.port, Fault::None);
    // A name that is not loopback-literal, so no built-in bypass applies.
    let r = format!("localhost:{}/secure/app:v1", open.port);
    let o = env
        .skiff_cmd(&["pull", &r])
        .env("HTTP_PROXY", format!("http://{}", fwd.host()))
        .env("NO_PROXY", "")
        .output()
        .unwrap();
    assert_eq!(ok(o).trim(), digest);
    assert!(
        fwd.requests()
            .iter()
            .any(|s| s.path.starts_with("http://localhost")),
        "{:?}",
        fwd.requests()
    );
    let before = fwd.requests().len();
    let env2 = Env::new();
    let o = env2
        .skiff_cmd(&["pull", &r])
        .env("HTTP_PROXY", format!("http://{}", fwd.host()))
        .env("NO_PROXY", "localhost")
        .output()
        .unwrap();
    ok(o);
    assert_eq!(fwd.requests().len(), before, "NO_PROXY bypasses the proxy");
}

#[test]
fn mirrors_are_tried_first_and_fall_back() {
    use common::proxy::{Fault, Proxy};
    let env = Env::new();
    let (open, digest) = pushed(&env);
    let mirror = Proxy::start(open.port, Fault::None);
    let r = format!("{}/secure/app:v1", open.host());
    let m = format!("{}={}", open.host(), mirror.host());
    assert_eq!(ok(env.skiff(&["pull", "--mirror", &m, &r])).trim(), digest);
    assert!(mirror
        .requests()
        .iter()
        .any(|s| s.path.contains("/manifests/v1")));
    // A mirror that fails for blobs: the registry itself serves them.
    mirror.set(Fault::NoBlobs);
    let env2 = Env::new();
    let o = env2.skiff(&["pull", "--retries=0", "--mirror", &m, &r]);
    assert!(stderr(&o).contains("mirror failed"), "{}", stderr(&o));
    assert_eq!(ok(o).trim(), digest);
}
