//! The Ignition/Butane configs generated from units/ and a binary: structure, hash, contents.

mod common;
use common::*;
use sha2::{Digest as _, Sha512};

fn generate(env: &Env) -> (std::path::PathBuf, String) {
    generate_with(env, &[])
}

/// Runs packaging/mkignition.py over units/ with `args`.
fn mkignition(args: &[&str]) -> std::process::Output {
    std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/mkignition.py"
        ))
        .args(args)
        .args(["--units", concat!(env!("CARGO_MANIFEST_DIR"), "/units")])
        .output()
        .unwrap()
}

fn generate_with(env: &Env, extra: &[&str]) -> (std::path::PathBuf, String) {
    let bin = env.path().join("skiff-bin");
    std::fs::write(&bin, b"not really a binary").unwrap();
    let out = env.path().join("out");
    let mut args = vec![
        "--binary",
        bin.to_str().unwrap(),
        "--url",
        "https://releases.example/skiff",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = mkignition(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (
        out,
        format!("sha512-{:x}", Sha512::digest(b"not really a binary")),
    )
}

fn unit_text(name: &str) -> String {
    std::fs::read_to_string(format!("{}/units/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn ignition_configs_install_skiff_units_user_tmpfiles_and_polkit() {
    let env = Env::new();
    let (out, hash) = generate(&env);
    for (file, version) in [("container-linux.ign", "2.3.0"), ("flatcar.ign", "3.3.0")] {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(file)).unwrap()).unwrap();
        assert_eq!(v["ignition"]["version"], version, "{file}");
        let files = v["storage"]["files"].as_array().unwrap();
        let bin = files
            .iter()
            .find(|f| f["path"] == "/opt/bin/skiff")
            .expect("the binary");
        assert_eq!(bin["mode"], 0o755);
        assert_eq!(bin["contents"]["verification"]["hash"], hash.as_str());
        assert_eq!(bin["contents"]["source"], "https://releases.example/skiff");
        let tmpfiles = files
            .iter()
            .find(|f| f["path"] == "/etc/tmpfiles.d/fleet.conf")
            .expect("tmpfiles");
        assert!(tmpfiles["contents"]["source"]
            .as_str()
            .unwrap()
            .contains("%2Frun%2Ffleet"));
        let polkit = files
            .iter()
            .find(|f| f["path"] == "/etc/polkit-1/rules.d/60-fleet.rules")
            .expect("polkit");
        assert!(polkit["contents"]["source"]
            .as_str()
            .unwrap()
            .contains("manage-units"));
        assert_eq!(v["passwd"]["users"][0]["name"], "fleet");
        assert_eq!(v["passwd"]["groups"][0]["name"], "fleet");
        let units = v["systemd"]["units"].as_array().unwrap();
        for name in [
            "etcd-member.service",
            "fleet.service",
            "fleet.socket",
            "kubelet.service",
        ] {
            let u = units
                .iter()
                .find(|u| u["name"] == name)
                .unwrap_or_else(|| panic!("{file}: {name}"));
            assert_eq!(
                u["contents"],
                unit_text(name).as_str(),
                "{file}: {name} is the file from units/"
            );
            assert_eq!(u["enabled"], name != "kubelet.service", "{file}: {name}");
        }
        // The update timer is installed, off until an operator enables it.
        for name in ["skiff-update.service", "skiff-update.timer"] {
            let u = units.iter().find(|u| u["name"] == name).unwrap();
            assert_eq!(u["contents"], unit_text(name).as_str(), "{file}: {name}");
            assert_eq!(u["enabled"], false, "{file}: {name}");
        }
    }
    let bu = std::fs::read_to_string(out.join("flatcar.bu")).unwrap();
    assert!(bu.starts_with("variant: flatcar\nversion: 1.0.0\n"));
    assert!(
        bu.contains(&format!("hash: {hash}"))
            && bu.contains("- name: fleet.socket")
            && bu.contains("ExecStart=/opt/bin/skiff run --profile etcd")
    );
}

#[test]
fn ignition_configs_can_install_a_signature_policy_and_its_keys() {
    let env = Env::new();
    let policy = env.path().join("policy.json");
    let text = r#"{"default":[{"type":"reject"}],"transports":{"docker":{"quay.io/coreos":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/etc/pki/containers/coreos.gpg"}]}}}"#;
    std::fs::write(&policy, text).unwrap();
    let key = env.path().join("coreos.gpg");
    let key_bytes = [0x99u8, 0x01, 0x0d, 0xff, 0x00, 0x0a];
    std::fs::write(&key, key_bytes).unwrap();
    let rd = env.path().join("coreos.yaml");
    std::fs::write(
        &rd,
        "docker:\n  quay.io/coreos:\n    lookaside: https://sigs.example/coreos\n",
    )
    .unwrap();
    let (out, _) = generate_with(
        &env,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--registries-d",
            rd.to_str().unwrap(),
        ],
    );
    use base64::Engine as _;
    let b64 = |b: &[u8]| {
        format!(
            "data:;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(b)
        )
    };
    for file in ["container-linux.ign", "flatcar.ign"] {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(file)).unwrap()).unwrap();
        let files = v["storage"]["files"].as_array().unwrap();
        let source = |path: &str| {
            files
                .iter()
                .find(|f| f["path"] == path)
                .unwrap_or_else(|| panic!("{file}: {path}"))["contents"]["source"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(source("/etc/containers/policy.json"), b64(text.as_bytes()));
        assert_eq!(
            source("/etc/pki/containers/coreos.gpg"),
            b64(&key_bytes),
            "binary keys survive"
        );
        assert!(source("/etc/containers/registries.d/coreos.yaml").starts_with("data:;base64,"));
    }
    let bu = std::fs::read_to_string(out.join("flatcar.bu")).unwrap();
    assert!(bu.contains("- path: /etc/containers/policy.json") && bu.contains(&b64(&key_bytes)));
    // The policy installed is one skiff reads.
    skiff::trust::Policy::load(&policy).unwrap();
    // A policy that is not JSON is refused before it reaches a host.
    std::fs::write(&policy, "{not json").unwrap();
    let o = mkignition(&[
        "--binary",
        policy.to_str().unwrap(),
        "--url",
        "https://x",
        "--out",
        out.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
}

#[test]
fn units_follow_the_rules() {
    for name in ["etcd-member.service", "fleet.service", "kubelet.service"] {
        let u = unit_text(name);
        assert!(
            u.contains("Restart=")
                && u.contains("TimeoutStartSec=")
                && u.contains("EnvironmentFile=-/etc/skiff/"),
            "{name}"
        );
        assert!(
            !u.contains("ExecStartPre") && !u.contains("ExecStop"),
            "{name}: no pod to clean up"
        );
        assert!(
            u.contains("ExecStart=/opt/bin/skiff run --profile"),
            "{name}"
        );
    }
    let has = |u: &str, line: &str| unit_text(u).lines().any(|l| l.trim() == line);
    assert!(has("etcd-member.service", "Type=notify"));
    assert!(
        has("fleet.service", "Type=simple"),
        "fleetd never sends READY=1"
    );
    let timer = unit_text("skiff-update.timer");
    for line in [
        "OnCalendar=daily",
        "Persistent=true",
        "WantedBy=timers.target",
    ] {
        assert!(timer.lines().any(|l| l.trim() == line), "{line}");
    }
    assert!(timer.contains("RandomizedDelaySec="));
    assert!(has("skiff-update.service", "Type=oneshot"));
    assert!(
        !unit_text("skiff-update.service").contains("[Install]"),
        "started by the timer only"
    );
    let socket = unit_text("fleet.socket");
    assert!(
        socket.contains("SocketMode=0660") && socket.contains("ListenStream=/var/run/fleet.sock")
    );
}
