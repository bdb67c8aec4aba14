//! Signatures under the operator's policy, checked against what skopeo decides.
//!
//! GPG signatures are made by Debian's `skopeo copy --sign-by` with keys from
//! `gpg --batch --gen-key`, read from a `file://` lookaside and from one served by Python's
//! http.server. For every row, skiff's verdict must equal `skopeo --policy P --registries.d D
//! copy`'s on the same image, and the expected one.
//!
//! cosign attachments are written from the cosign specification with keys and signatures made
//! by `openssl`. Debian's skopeo is built with sigstore disabled for verifying too ("Debian-local
//! change: sigstore disabled"), so those rows are checked against the expected verdicts only.

mod common;
use common::sign::*;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The test's keys, lookaside and signed repositories.
struct World {
    env: Env,
    reg: Registry,
    gpg: Gpg,
    /// Trusted: RSA, Ed25519, ECDSA. Untrusted: another RSA key.
    rsa: String,
    ed: String,
    ec: String,
    other: String,
    lookaside: PathBuf,
    /// For skopeo's signing: writes into `lookaside`.
    sign_d: PathBuf,
    accept_all: PathBuf,
    digest: String,
}

fn skopeo(w: &World, args: &[&str]) -> Command {
    let mut c = w.gpg.cmd("skopeo");
    c.args(args);
    c
}

impl World {
    fn new() -> World {
        let env = Env::new();
        let reg = env.registry();
        let gpg = Gpg::new(env.path());
        let rsa = gpg.gen_key("RSA", "trusted-rsa");
        let ed = gpg.gen_key("EDDSA", "trusted-ed25519");
        let ec = gpg.gen_key("ECDSA", "trusted-ecdsa");
        let other = gpg.gen_key("RSA", "untrusted");
        let lookaside = env.path().join("lookaside");
        std::fs::create_dir_all(&lookaside).unwrap();
        let sign_d = registries_d(
            &env.path().join("sign.d"),
            &format!("file://{}", lookaside.display()),
            false,
        );
        let accept_all = env.path().join("accept.json");
        std::fs::write(
            &accept_all,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        let img = busybox_image(&Spec::default(), &[]);
        let digest = push(&reg.url(), "src/app", "v1", &img);
        World {
            env,
            reg,
            gpg,
            rsa,
            ed,
            ec,
            other,
            lookaside,
            sign_d,
            accept_all,
            digest,
        }
    }

    fn image(&self, repo: &str) -> String {
        format!("{}/{repo}:v1", self.reg.host())
    }

    /// Copies the source image to `repo`, signed by `key` (for `identity`) with skopeo.
    fn publish(&self, repo: &str, key: Option<&str>, identity: Option<&str>) {
        let mut c = skopeo(self, &["--policy"]);
        c.arg(&self.accept_all)
            .arg("--registries.d")
            .arg(&self.sign_d);
        c.args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"]);
        if let Some(k) = key {
            c.args(["--sign-by", k]);
        }
        if let Some(i) = identity {
            c.args(["--sign-identity", i]);
        }
        c.arg(format!("docker://{}", self.image("src/app")));
        c.arg(format!("docker://{}", self.image(repo)));
        run_ok(&mut c);
    }

    /// The lookaside file of signature `n` of `repo`'s image.
    fn signature_file(&self, repo: &str, n: usize) -> PathBuf {
        self.lookaside.join(format!(
            "{repo}@sha256={}/signature-{n}",
            self.digest.trim_start_matches("sha256:")
        ))
    }

    fn key_file(&self, fpr: &str) -> PathBuf {
        let p = self.env.path().join(format!("{fpr}.gpg"));
        if !p.exists() {
            // One armored, the others binary: both forms appear in the wild.
            self.gpg.export(fpr, &p, fpr == self.ed);
        }
        p
    }

    fn policy(&self, name: &str, text: &str) -> PathBuf {
        let p = self.env.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A policy that rejects everything but `namespace` (under this registry), which must be
    /// signed by the key `fpr`.
    fn trusting(&self, name: &str, namespace: &str, fpr: &str) -> PathBuf {
        self.policy(
            name,
            &format!(
                r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{}/{namespace}":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}"}}]}}}}}}"#,
                self.reg.host(),
                self.key_file(fpr).display()
            ),
        )
    }

    /// A registries.d that reads this test's lookaside through `file://`.
    fn file_d(&self) -> PathBuf {
        registries_d(
            &self.env.path().join("file.d"),
            &format!("file://{}", self.lookaside.display()),
            false,
        )
    }

    /// skopeo's verdict: whether `copy` out of the registry is allowed.
    fn skopeo_accepts(&self, policy: &Path, rd: &Path, image: &str) -> (bool, String) {
        let out_dir = tempfile::tempdir().unwrap();
        let out = skopeo(self, &["--policy"])
            .arg(policy)
            .arg("--registries.d")
            .arg(rd)
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{image}"))
            .arg(format!("dir:{}", out_dir.path().join("x").display()))
            .output()
            .unwrap();
        (out.status.success(), stderr(&out))
    }

    /// skiff's verdict: whether `pull` into a fresh store succeeds; with its stderr and store.
    fn skiff_accepts(
        &self,
        policy: &Path,
        rd: &Path,
        image: &str,
        tag: &str,
    ) -> (bool, String, PathBuf) {
        let root = self.env.path().join(format!("store-{tag}"));
        let out = skiff_under(&self.env, &root, policy, rd, &["pull", image])
            .output()
            .unwrap();
        (out.status.success(), stderr(&out), root)
    }
}

/// skiff with a store of its own at `root`.
fn skiff_at(env: &Env, root: &Path, args: &[&str]) -> Command {
    let mut all = vec!["--root", root.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut c = Command::new(env!("CARGO_BIN_EXE_skiff"));
    c.args(all)
        .env("HOME", env.path())
        .env("SKIFF_LOG", "info")
        .env_remove("REGISTRY_AUTH_FILE");
    c
}

/// skiff with its own store at `root`, under `policy` and the registries.d `rd`.
fn skiff_under(env: &Env, root: &Path, policy: &Path, rd: &Path, args: &[&str]) -> Command {
    let mut all = vec![
        "--policy",
        policy.to_str().unwrap(),
        "--registries.d",
        rd.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    skiff_at(env, root, &all)
}

/// (repo, signing key, signed identity, tamper, expected verdict, what skiff must say)
type GpgRow<'a> = (
    &'a str,
    Option<&'a str>,
    Option<String>,
    bool,
    bool,
    &'a str,
);
/// An attachment's (payload, signature) pairs.
type Attached = Vec<(Vec<u8>, String)>;

/// A refused pull leaves no layer, no blob and no index entry.
fn assert_nothing_kept(root: &Path, what: &str) {
    let layers: Vec<_> = files_under(&root.join("layers"));
    assert!(layers.is_empty(), "{what}: layers left: {layers:?}");
    let blobs = files_under(&root.join("blobs"));
    assert!(blobs.is_empty(), "{what}: blobs left: {blobs:?}");
    let sigs = files_under(&root.join("signatures"));
    assert!(sigs.is_empty(), "{what}: signatures left: {sigs:?}");
    let index = std::fs::read_to_string(root.join("index.json")).unwrap_or_default();
    assert!(!index.contains("/ns/"), "{what}: index: {index}");
}

#[test]
fn gpg_verdicts_match_skopeo() {
    let w = World::new();
    let host = w.reg.host();
    // Trusted keys that stop being usable after signing: one expires, one is revoked.
    let expiring = w.gpg.gen_key("RSA", "expiring");
    let revoked = w.gpg.gen_key("RSA", "revoked");
    // (repo, signing key, signed identity, tamper, expected, what skiff must say)
    let rows: &[GpgRow] = &[
        ("ns/trusted-rsa", Some(&w.rsa), None, false, true, ""),
        ("ns/trusted-ed25519", Some(&w.ed), None, false, true, ""),
        ("ns/trusted-ecdsa", Some(&w.ec), None, false, true, ""),
        (
            "ns/unsigned",
            None,
            None,
            false,
            false,
            "no signature found at",
        ),
        (
            "ns/other-key",
            Some(&w.other),
            None,
            false,
            false,
            "which the policy does not trust",
        ),
        (
            "ns/other-identity",
            Some(&w.rsa),
            Some(format!("{host}/ns/elsewhere:v1")),
            false,
            false,
            "does not match",
        ),
        (
            "ns/tampered",
            Some(&w.rsa),
            None,
            true,
            false,
            "GPG signature 1",
        ),
        ("ns/open/unsigned", None, None, false, true, ""),
        (
            "ns/closed/signed",
            Some(&w.rsa),
            None,
            false,
            false,
            "rejects every image",
        ),
        (
            "ns/expired-key",
            Some(&expiring),
            None,
            false,
            false,
            "which expired at",
        ),
        (
            "ns/revoked-key",
            Some(&revoked),
            None,
            false,
            false,
            "which is revoked",
        ),
        // gpg.conf's default-sig-expire gives this one signature a lifetime of one second.
        (
            "ns/expired-signature",
            Some(&w.rsa),
            None,
            false,
            false,
            "expired at",
        ),
    ];
    for (repo, key, identity, tamper, ..) in rows {
        let short_lived = repo.ends_with("expired-signature");
        if short_lived {
            std::fs::write(
                w.gpg.home.join("gpg.conf"),
                "default-sig-expire seconds=1\n",
            )
            .unwrap();
        }
        w.publish(repo, *key, identity.as_deref());
        if short_lived {
            std::fs::remove_file(w.gpg.home.join("gpg.conf")).unwrap();
        }
        if *tamper {
            let f = w.signature_file(repo, 1);
            let mut bytes = std::fs::read(&f).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x20;
            std::fs::write(&f, bytes).unwrap();
        }
    }
    run_ok(
        w.gpg
            .cmd("gpg")
            .args(["--batch", "--quick-set-expire", &expiring, "seconds=1"]),
    );
    let cert = std::fs::read_to_string(w.gpg.home.join(format!("openpgp-revocs.d/{revoked}.rev")))
        .unwrap();
    let cert_file = w.env.path().join("revoke.asc");
    std::fs::write(&cert_file, cert.replace(":-----BEGIN", "-----BEGIN")).unwrap();
    run_ok(
        w.gpg
            .cmd("gpg")
            .args(["--batch", "--import"])
            .arg(&cert_file),
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let policy = w.policy(
        "policy.json",
        &format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{
                "{host}/ns":[{{"type":"signedBy","keyType":"GPGKeys","keyPaths":["{}","{}","{}","{}","{}"]}}],
                "{host}/ns/open":[{{"type":"insecureAcceptAnything"}}],
                "{host}/ns/closed":[{{"type":"reject"}}]}}}}}}"#,
            w.key_file(&w.rsa).display(),
            w.key_file(&w.ed).display(),
            w.key_file(&w.ec).display(),
            w.key_file(&expiring).display(),
            w.key_file(&revoked).display()
        ),
    );
    let server = FileServer::start(&w.lookaside);
    let by_file = registries_d(
        &w.env.path().join("file.d"),
        &format!("file://{}", w.lookaside.display()),
        false,
    );
    let by_http = registries_d(&w.env.path().join("http.d"), &server.url(), false);
    for (i, (repo, _, _, _, expected, says)) in rows.iter().enumerate() {
        for (j, rd) in [&by_file, &by_http].into_iter().enumerate() {
            let image = w.image(repo);
            let (skopeo_ok, skopeo_err) = w.skopeo_accepts(&policy, rd, &image);
            let (skiff_ok, skiff_err, root) =
                w.skiff_accepts(&policy, rd, &image, &format!("{i}-{j}"));
            let row = format!("{repo} via {}", rd.display());
            assert_eq!(skopeo_ok, *expected, "skopeo on {row}: {skopeo_err}");
            assert_eq!(
                skiff_ok, skopeo_ok,
                "skiff disagrees with skopeo on {row}: {skiff_err}"
            );
            if !skiff_ok {
                assert!(skiff_err.contains(says), "{row}: {skiff_err}");
                // The refusal names the image and the scope that applied.
                assert!(
                    skiff_err.contains(&image) && skiff_err.contains("scope transports.docker"),
                    "{row}: {skiff_err}"
                );
                assert_nothing_kept(&root, &row);
            }
        }
    }
    // The signature verdicts name the key that verified them.
    let root = w.env.path().join("store-0-0");
    let out = ok(skiff_at(
        &w.env,
        &root,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "inspect",
            &w.image("ns/trusted-rsa"),
        ],
    )
    .output()
    .unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Policy"]["Accepted"], true, "{out}");
    assert_eq!(v["Signatures"][0]["VerifiedBy"], w.rsa.as_str(), "{out}");
    assert_eq!(
        v["Signatures"][0]["Identity"],
        w.image("ns/trusted-rsa"),
        "{out}"
    );
    drop(server);
}

#[test]
fn cosign_verdicts_follow_the_specification() {
    let w = World::new();
    let host = w.reg.host();
    let dir = w.env.path();
    let (key, public) = p256_key(dir, "cosign");
    let (other_key, _) = p256_key(dir, "other");
    let img = busybox_image(&Spec::default(), &[]);
    assert_eq!(img.digest(), w.digest);
    // (repo, attachment signatures, expected, what skiff must say)
    let good = |repo: &str, k: &Path| {
        let p = cosign_payload(&format!("{host}/{repo}:v1"), &w.digest);
        let s = p256_sign(dir, k, &p);
        vec![(p, s)]
    };
    let tampered = {
        let p = cosign_payload(&format!("{host}/ns/tampered:v1"), &w.digest);
        let s = p256_sign(dir, &key, &p);
        let mut p2 = p.clone();
        let at = p2.iter().position(|b| *b == b'v').unwrap();
        p2[at] = b'w';
        vec![(p2, s)]
    };
    let rows: Vec<(&str, Attached, bool, &str)> = vec![
        ("ns/good", good("ns/good", &key), true, ""),
        ("ns/unsigned", vec![], false, "no signature found at"),
        (
            "ns/other-key",
            good("ns/other-key", &other_key),
            false,
            "not signed by any key the policy trusts",
        ),
        (
            "ns/other-identity",
            good("ns/elsewhere", &key),
            false,
            "does not match",
        ),
        (
            "ns/tampered",
            tampered,
            false,
            "not signed by any key the policy trusts",
        ),
        // GPG-signed in the lookaside too: the cosign signature is what counts here.
        ("ns/also-gpg", good("ns/also-gpg", &key), true, ""),
        // A bad signature first, then a good one: one accepted signature is enough.
        (
            "ns/second-good",
            [
                good("ns/second-good", &other_key),
                good("ns/second-good", &key),
            ]
            .concat(),
            true,
            "",
        ),
    ];
    for (repo, sigs, ..) in &rows {
        if *repo == "ns/also-gpg" {
            w.publish(repo, Some(&w.rsa), None);
        } else {
            push(&w.reg.url(), repo, "v1", &img);
        }
        if !sigs.is_empty() {
            push_attachment(&w.reg.url(), repo, &w.digest, sigs);
        }
    }
    let policy = w.policy(
        "cosign.json",
        &format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{host}/ns":[{{"type":"sigstoreSigned","keyPath":"{}"}}]}}}}}}"#,
            public.display()
        ),
    );
    let rd = registries_d(
        &dir.join("cosign.d"),
        &format!("file://{}", w.lookaside.display()),
        true,
    );
    for (i, (repo, _, expected, says)) in rows.iter().enumerate() {
        let image = w.image(repo);
        let (skiff_ok, skiff_err, root) =
            w.skiff_accepts(&policy, &rd, &image, &format!("cosign-{i}"));
        assert_eq!(skiff_ok, *expected, "{repo}: {skiff_err}");
        if !skiff_ok {
            assert!(skiff_err.contains(says), "{repo}: {skiff_err}");
            assert_nothing_kept(&root, repo);
        }
    }
    // Without use-sigstore-attachments, attachments are not read: refused, and skiff says why.
    let no_attach = registries_d(
        &dir.join("noattach.d"),
        &format!("file://{}", w.lookaside.display()),
        false,
    );
    let image = w.image("ns/good");
    let (accepted, err, _) = w.skiff_accepts(&policy, &no_attach, &image, "cosign-noattach");
    assert!(
        !accepted && err.contains("use-sigstore-attachments"),
        "{err}"
    );
}

#[test]
fn offline_starts_re_verify_against_todays_policy() {
    let mut w = World::new();
    w.publish("ns/app", Some(&w.rsa), None);
    let server = FileServer::start(&w.lookaside);
    let rd = registries_d(&w.env.path().join("http.d"), &server.url(), false);
    let p_rsa = w.trusting("rsa.json", "ns", &w.rsa);
    let p_other = w.trusting("other.json", "ns", &w.other);
    let image = w.image("ns/app");
    let skiff = |policy: &Path, args: &[&str]| {
        skiff_under(&w.env, &w.env.root, policy, &rd, args)
            .output()
            .unwrap()
    };
    ok(skiff(&p_rsa, &["pull", &image]));
    // The registry and the lookaside server go away, as on a host that rebooted offline.
    drop(server);
    w.reg.stop();
    let out = skiff(
        &p_rsa,
        &[
            "run",
            "--pull=never",
            &image,
            "--",
            "-c",
            "echo verified offline",
        ],
    );
    assert_eq!(ok(out).trim(), "verified offline");
    let out = skiff(
        &p_rsa,
        &["run", &image, "--", "-c", "echo missing policy too"],
    );
    assert_eq!(ok(out).trim(), "missing policy too");
    // Today's policy trusts another key: the stored signature no longer suffices.
    let out = skiff(
        &p_other,
        &[
            "run",
            "--pull=never",
            &image,
            "--",
            "-c",
            "echo must not run",
        ],
    );
    assert_eq!(out.status.code(), Some(125));
    let err = fails(out);
    assert!(
        err.contains(&format!(
            "signed by key {}, which the policy does not trust",
            w.rsa
        )),
        "{err}"
    );
    assert!(!stdout(&skiff(
        &p_other,
        &["run", "--pull=never", &image, "--", "-c", "echo x"]
    ))
    .contains('x'));
    // Under --pull=missing skiff asks the (dead) lookaside, then refuses just the same.
    let err = fails(skiff(
        &p_other,
        &["run", &image, "--", "-c", "echo must not run"],
    ));
    assert!(
        err.contains("does not trust") || err.contains("unreadable"),
        "{err}"
    );
    // And back under the first policy, it starts again.
    let out = skiff(
        &p_rsa,
        &["run", "--pull=never", &image, "--", "-c", "echo back"],
    );
    assert_eq!(ok(out).trim(), "back");
}

#[test]
fn hostile_signatures_and_policies_are_refused_and_nothing_is_kept() {
    let w = World::new();
    let host = w.reg.host();
    let policy = w.trusting("policy.json", "ns", &w.rsa);
    let rd = w.file_d();
    w.publish("ns/good", Some(&w.rsa), None);
    let good_sig = std::fs::read(w.signature_file("ns/good", 1)).unwrap();

    // A policy with a misspelt field rejects the whole policy, naming the field.
    let typo = w.policy(
        "typo.json",
        &format!(r#"{{"default":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}","signedIdentty":{{}}}}]}}"#, w.key_file(&w.rsa).display()),
    );
    let (accepted, err, root) = w.skiff_accepts(&typo, &rd, &w.image("ns/good"), "typo");
    assert!(
        !accepted && err.contains("unknown field \"signedIdentty\"") && err.contains("typo.json"),
        "{err}"
    );
    assert_nothing_kept(&root, "typo");

    // A 100 MB "signature" is not read whole: refused, nothing kept.
    w.publish("ns/huge", None, None);
    let huge = w.signature_file("ns/huge", 1);
    std::fs::create_dir_all(huge.parent().unwrap()).unwrap();
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let (accepted, err, root) = w.skiff_accepts(&policy, &rd, &w.image("ns/huge"), "huge");
    assert!(!accepted && err.contains("larger than"), "{err}");
    assert_nothing_kept(&root, "huge");

    // A truncated OpenPGP packet.
    w.publish("ns/truncated", None, None);
    let f = w.signature_file("ns/truncated", 1);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, &good_sig[..good_sig.len() / 3]).unwrap();
    let (accepted, err, root) =
        w.skiff_accepts(&policy, &rd, &w.image("ns/truncated"), "truncated");
    assert!(!accepted && err.contains("GPG signature 1"), "{err}");
    assert_nothing_kept(&root, "truncated");

    // A good signature of another manifest, put where this one's would be.
    let img2 = busybox_image(
        &Spec {
            cmd: vec!["/bin/true".into()],
            ..Spec::default()
        },
        &[],
    );
    let d2 = push(&w.reg.url(), "ns/good", "v2", &img2);
    let f = w.lookaside.join(format!(
        "ns/good@sha256={}/signature-1",
        d2.trim_start_matches("sha256:")
    ));
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, &good_sig).unwrap();
    let image = format!("{host}/ns/good:v2");
    let (accepted, err, root) = w.skiff_accepts(&policy, &rd, &image, "other-digest");
    assert!(
        !accepted
            && err.contains(&format!(
                "signed for docker-manifest-digest {}, not this manifest {d2}",
                w.digest
            )),
        "{err}"
    );
    assert_nothing_kept(&root, "other-digest");
    assert!(!w.skopeo_accepts(&policy, &rd, &image).0);

    // After all that, the same store pulls a good image (the next command works), and
    // `skiff pin` prints a digest only for what the policy accepts.
    let out = skiff_under(&w.env, &root, &policy, &rd, &["pin", &w.image("ns/good")])
        .output()
        .unwrap();
    assert!(ok(out).contains(&w.digest));
    let out = skiff_under(&w.env, &root, &policy, &rd, &["pin", &w.image("ns/huge")])
        .output()
        .unwrap();
    assert!(fails(out).contains("larger than"));

    // An image pulled before the policy asked for signatures: --pull=never has none to check
    // and says so; a plain run fetches them, verifies, and starts.
    let before = w.env.path().join("store-before-policy");
    let accept = w.policy(
        "accept.json",
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    );
    let image = w.image("ns/good");
    ok(
        skiff_under(&w.env, &before, &accept, &rd, &["pull", &image])
            .output()
            .unwrap(),
    );
    let never = ["run", "--pull=never", &image, "--", "-c", "echo x"];
    let err = fails(
        skiff_under(&w.env, &before, &policy, &rd, &never)
            .output()
            .unwrap(),
    );
    assert!(err.contains("no signature kept in the store"), "{err}");
    let run = ["run", &image, "--", "-c", "echo now signed"];
    let out = skiff_under(&w.env, &before, &policy, &rd, &run)
        .output()
        .unwrap();
    assert_eq!(ok(out).trim(), "now signed");

    // Damaged kept signatures are ignored (with a warning) and fetched again.
    let kept = root.join(format!(
        "signatures/sha256/{}",
        w.digest.trim_start_matches("sha256:")
    ));
    std::fs::write(&kept, b"{\"simple\": [garbage").unwrap();
    let image = w.image("ns/good");
    let out = skiff_under(
        &w.env,
        &root,
        &policy,
        &rd,
        &["run", &image, "--", "-c", "echo healed"],
    )
    .output()
    .unwrap();
    let err = stderr(&out);
    assert_eq!(ok(out).trim(), "healed");
    assert!(err.contains("damaged"), "{err}");
    let healed = std::fs::read(&kept).unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&healed).is_ok());
}

#[test]
fn profiles_work_unchanged_under_a_policy() {
    let mut w = World::new();
    let host = w.reg.host();
    w.publish("coreos/etcd", Some(&w.rsa), None);
    w.publish("coreos/fleet", None, None);
    let policy = w.trusting("policy.json", "coreos", &w.rsa);
    let rd = w.file_d();
    let data = w.env.path().join("etcd-data");
    let ssl = w.env.path().join("ssl");
    std::fs::create_dir_all(&ssl).unwrap();
    let skiff = |args: &[&str], image: Option<&str>| {
        let mut c = skiff_under(&w.env, &w.env.root, &policy, &rd, args);
        c.env("ETCD_IMAGE_URL", format!("docker://{host}/coreos/etcd"))
            .env("ETCD_IMAGE_TAG", "v1")
            .env("ETCD_USER", "0")
            .env("ETCD_DATA_DIR", &data)
            .env("ETCD_SSL_DIR", &ssl)
            .env("FLEET_IMAGE_URL", format!("docker://{host}/coreos/fleet"))
            .env("FLEET_IMAGE_TAG", "v1");
        if let Some(i) = image {
            c.env("ETCD_IMAGE", i);
        }
        c.output().unwrap()
    };
    let out = skiff(
        &[
            "run",
            "--profile",
            "etcd",
            "--exec",
            "/bin/sh",
            "--",
            "-c",
            "echo signed etcd",
        ],
        None,
    );
    assert_eq!(ok(out).trim(), "signed etcd");
    let pinned = ok(skiff(&["pin", "--profile", "etcd"], None));
    assert_eq!(pinned.trim(), format!("{host}/coreos/etcd@{}", w.digest));
    // An unsigned profile image is refused like any other.
    let err = fails(skiff(
        &["run", "--profile", "fleet", "--exec", "/bin/true"],
        None,
    ));
    assert!(
        err.contains("refuses")
            && err.contains("coreos/fleet:v1")
            && err.contains("no signature found"),
        "{err}"
    );
    // The pinned reference starts offline: its repository is what the signature names.
    w.reg.stop();
    let out = skiff(
        &["run", "--profile", "etcd", "--exec", "/bin/true"],
        Some(pinned.trim()),
    );
    ok(out);
}

/// A multi-platform index signed by `skopeo copy --all --sign-by` (the index and each
/// platform's manifest). containers/image checks only the platform's manifest; skiff also takes
/// a signature on the index, which pins the platform's manifest by digest (what `cosign sign`
/// of a multi-platform tag makes). The one place skiff's verdict differs from skopeo's, on
/// purpose: an index signed alone.
#[test]
fn a_signed_multi_platform_index() {
    let w = World::new();
    let host = w.reg.host();
    let amd = busybox_image(&Spec::default(), &[]);
    let arm = busybox_image(
        &Spec {
            arch: "arm64",
            ..Spec::default()
        },
        &[],
    );
    push(&w.reg.url(), "src/multi", "amd64", &amd);
    push(&w.reg.url(), "src/multi", "arm64", &arm);
    let index = index(&[(&amd, "amd64", None), (&arm, "arm64", None)]);
    let index_digest = sha(&index);
    push_manifest(
        &w.reg.url(),
        "src/multi",
        "v1",
        &index,
        "application/vnd.oci.image.index.v1+json",
    );
    let policy = w.trusting("policy.json", "ns", &w.rsa);
    let rd = w.file_d();
    // (repo, keep the index's signature, keep the platforms', skopeo's verdict, skiff's)
    let rows = [
        ("ns/all", true, true, true, true),
        ("ns/index-only", true, false, false, true),
        ("ns/platforms-only", false, true, true, true),
    ];
    for (i, (repo, keep_index, keep_platforms, skopeo_expected, skiff_expected)) in
        rows.into_iter().enumerate()
    {
        let mut c = skopeo(&w, &["--policy"]);
        c.arg(&w.accept_all).arg("--registries.d").arg(&w.sign_d);
        c.args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ]);
        c.args(["--sign-by", &w.rsa]);
        c.arg(format!("docker://{host}/src/multi:v1"));
        c.arg(format!("docker://{host}/{repo}:v1"));
        run_ok(&mut c);
        for dir in std::fs::read_dir(w.lookaside.join(repo.split('/').next().unwrap())).unwrap() {
            let dir = dir.unwrap().path();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with(repo.rsplit('/').next().unwrap()) {
                continue;
            }
            let is_index = name.ends_with(index_digest.trim_start_matches("sha256:"));
            if (is_index && !keep_index) || (!is_index && !keep_platforms) {
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
        let image = w.image(repo);
        let (skopeo_ok, skopeo_err) = w.skopeo_accepts(&policy, &rd, &image);
        let (skiff_ok, skiff_err, _) = w.skiff_accepts(&policy, &rd, &image, &format!("multi-{i}"));
        assert_eq!(skopeo_ok, skopeo_expected, "skopeo on {repo}: {skopeo_err}");
        assert_eq!(skiff_ok, skiff_expected, "skiff on {repo}: {skiff_err}");
    }
}
