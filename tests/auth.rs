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
