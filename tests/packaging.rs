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
        // The wrapper names: skiff started as etcd-wrapper runs the etcd profile.
        let links = v["storage"]["links"].as_array().expect("links");
        for name in ["etcd-wrapper", "kubelet-wrapper"] {
            assert!(
                links
                    .iter()
                    .any(|l| l["path"] == format!("/opt/bin/{name}").as_str()
                        && l["target"] == "/opt/bin/skiff"),
                "{file}: {name}: {links:?}"
            );
        }
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
            && bu.contains(
                "  links:\n    - path: /opt/bin/etcd-wrapper\n      target: /opt/bin/skiff\n"
            )
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

/// packaging/mksysext.py for `arch` over `binary`: the image's path.
fn mksysext(env: &Env, binary: &std::path::Path, arch: &str) -> std::path::PathBuf {
    common::sysext::mksysext(env.path(), binary, arch, "1.2.3")
}

/// `unsquashfs -lls`: path -> (mode string, owner, symlink target).
fn squashfs_listing(image: &std::path::Path) -> Vec<(String, String, String, Option<String>)> {
    let o = run_ok(
        std::process::Command::new("unsquashfs")
            .arg("-lls")
            .arg(image),
    );
    stdout(&o)
        .lines()
        .filter(|l| l.contains("squashfs-root"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5]
                .trim_start_matches("squashfs-root")
                .trim_start_matches('/');
            let target = (f.len() > 7 && f[6] == "->").then(|| f[7].to_string());
            (path.to_string(), f[0].to_string(), f[1].to_string(), target)
        })
        .collect()
}

#[test]
fn a_sysext_image_per_architecture_with_sha256sums_and_a_sysupdate_transfer() {
    let env = Env::new();
    let bin = env.path().join("skiff-bin");
    std::fs::write(&bin, b"\x7fELF stand-in for the static binary").unwrap();
    let x86 = mksysext(&env, &bin, "x86_64");
    let arm = mksysext(&env, &bin, "aarch64");
    assert_eq!(x86.file_name().unwrap(), "skiff-1.2.3-x86-64.raw");
    assert_eq!(arm.file_name().unwrap(), "skiff-1.2.3-arm64.raw");
    let man_pages: Vec<String> = std::fs::read_dir(env.path().join("docs/man"))
        .unwrap()
        .map(|e| {
            format!(
                "usr/share/man/man1/{}",
                e.unwrap().file_name().to_string_lossy()
            )
        })
        .collect();
    assert!(man_pages.iter().any(|m| m.ends_with("/skiff-run.1")));
    for (image, arch) in [(&x86, "x86-64"), (&arm, "arm64")] {
        let listing = squashfs_listing(image);
        let files: Vec<&str> = listing
            .iter()
            .filter(|(_, mode, _, _)| !mode.starts_with('d'))
            .map(|(p, _, _, _)| p.as_str())
            .collect();
        let mut want = vec![
            "usr/bin/skiff",
            "usr/lib/coreos/etcd-wrapper",
            "usr/lib/coreos/kubelet-wrapper",
            "usr/lib/extension-release.d/extension-release.skiff",
            "usr/lib/systemd/system/etcd-member.service",
            "usr/lib/systemd/system/fleet.service",
            "usr/lib/systemd/system/fleet.socket",
            "usr/lib/systemd/system/skiff-kubelet.service",
            "usr/share/bash-completion/completions/skiff",
            "usr/share/fish/vendor_completions.d/skiff.fish",
            "usr/share/zsh/site-functions/_skiff",
        ];
        want.extend(man_pages.iter().map(String::as_str));
        want.sort();
        let mut got = files.clone();
        got.sort();
        assert_eq!(got, want, "{}", image.display());
        for (path, mode, owner, target) in &listing {
            assert_eq!(owner, "root/root", "{path}");
            match path.as_str() {
                "usr/bin/skiff" => assert_eq!(mode, "-rwxr-xr-x"),
                "usr/lib/coreos/etcd-wrapper" | "usr/lib/coreos/kubelet-wrapper" => {
                    assert_eq!(target.as_deref(), Some("/usr/bin/skiff"), "{path}")
                }
                _ if mode.starts_with('d') => assert_eq!(mode, "drwxr-xr-x", "{path}"),
                _ => assert_eq!(mode, "-rw-r--r--", "{path}"),
            }
        }
        let cat = |p: &str| {
            stdout(&run_ok(
                std::process::Command::new("unsquashfs")
                    .args(["-cat"])
                    .arg(image)
                    .arg(p),
            ))
        };
        assert_eq!(
            cat("usr/lib/extension-release.d/extension-release.skiff"),
            format!("ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE={arch}\n")
        );
        let etcd = cat("usr/lib/systemd/system/etcd-member.service");
        assert!(
            etcd.contains("ExecStart=/usr/bin/skiff run --profile etcd")
                && !etcd.contains("/opt/bin"),
            "{etcd}"
        );
        assert_eq!(
            cat("usr/lib/systemd/system/skiff-kubelet.service"),
            unit_text("kubelet.service").replace("/opt/bin/skiff", "/usr/bin/skiff")
        );
        // systemd's own reader: under the name it is linked as, a system extension.
        let link = env.path().join("skiff.raw");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(image, &link).unwrap();
        let d = stdout(&run_ok(
            std::process::Command::new("systemd-dissect").arg(&link),
        ));
        assert!(
            d.contains("ID=flatcar") && d.contains("✓ extension for system"),
            "{d}"
        );
    }
    // SHA256SUMS covers both images, as coreutils checks it.
    let out = env.path().join("out");
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 2, "{sums}");
    run_ok(
        std::process::Command::new("sha256sum")
            .args(["--strict", "-c", "SHA256SUMS"])
            .current_dir(&out),
    );
    let transfer = std::fs::read_to_string(out.join("skiff.conf")).unwrap();
    for line in [
        "[Source]",
        "Type=url-file",
        "Path=https://releases.example/skiff/",
        "MatchPattern=skiff-@v-%a.raw",
        "[Target]",
        "Type=regular-file",
        "Path=/opt/extensions/skiff",
        "CurrentSymlink=/etc/extensions/skiff.raw",
    ] {
        assert!(transfer.lines().any(|l| l == line), "{line}: {transfer}");
    }
    // The pattern takes exactly the names written (%a is systemd's architecture name).
    for name in ["skiff-1.2.3-x86-64.raw", "skiff-1.2.3-arm64.raw"] {
        assert!(sums.contains(&format!("  {name}\n")), "{sums}");
    }
}

#[test]
fn flatcar_configs_install_the_sysext_per_architecture() {
    let env = Env::new();
    let bin = env.path().join("skiff-bin");
    std::fs::write(&bin, b"stand-in").unwrap();
    let policy = env.path().join("policy.json");
    std::fs::write(&policy, r#"{"default":[{"type":"reject"}]}"#).unwrap();
    let key = env.path().join("k.gpg");
    std::fs::write(&key, [0x99u8, 0x01]).unwrap();
    let rd = env.path().join("r.yaml");
    std::fs::write(&rd, "docker: {}\n").unwrap();
    let images = [
        mksysext(&env, &bin, "x86_64"),
        mksysext(&env, &bin, "aarch64"),
    ];
    let out = env.path().join("ign");
    let mut args = vec![
        "--release-url".to_string(),
        "https://releases.example/skiff".into(),
        "--out".into(),
        out.display().to_string(),
        "--policy".into(),
        policy.display().to_string(),
        "--key".into(),
        key.display().to_string(),
        "--registries-d".into(),
        rd.display().to_string(),
    ];
    for i in &images {
        args.extend(["--sysext".to_string(), i.display().to_string()]);
    }
    let o = mkignition(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (image, arch) in images.iter().zip(["x86-64", "arm64"]) {
        let name = image.file_name().unwrap().to_str().unwrap();
        let placed = format!("/opt/extensions/skiff/{name}");
        let hash = format!("sha512-{:x}", Sha512::digest(std::fs::read(image).unwrap()));
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("flatcar-{arch}.ign"))).unwrap(),
        )
        .unwrap();
        assert_eq!(v["ignition"]["version"], "3.3.0");
        let files = v["storage"]["files"].as_array().unwrap();
        let file = |p: &str| {
            files
                .iter()
                .find(|f| f["path"] == p)
                .unwrap_or_else(|| panic!("{arch}: {p}"))
        };
        let raw = file(&placed);
        assert_eq!(raw["contents"]["verification"]["hash"], hash.as_str());
        assert_eq!(
            raw["contents"]["source"],
            format!("https://releases.example/skiff/{name}").as_str()
        );
        let transfer = file("/etc/sysupdate.skiff.d/skiff.conf")["contents"]["source"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(transfer.contains("CurrentSymlink%3D%2Fetc%2Fextensions%2Fskiff.raw"));
        file("/etc/sysupdate.d/noop.conf");
        for p in [
            "/etc/tmpfiles.d/fleet.conf",
            "/etc/polkit-1/rules.d/60-fleet.rules",
            "/etc/containers/policy.json",
            "/etc/pki/containers/k.gpg",
            "/etc/containers/registries.d/r.yaml",
        ] {
            file(p);
        }
        let links = v["storage"]["links"].as_array().unwrap();
        let link = |p: &str| {
            links
                .iter()
                .find(|l| l["path"] == p)
                .unwrap_or_else(|| panic!("{arch}: link {p}"))["target"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(link("/etc/extensions/skiff.raw"), placed);
        assert_eq!(
            link("/etc/systemd/system/multi-user.target.wants/etcd-member.service"),
            "/usr/lib/systemd/system/etcd-member.service"
        );
        assert_eq!(
            link("/etc/systemd/system/sockets.target.wants/fleet.socket"),
            "/usr/lib/systemd/system/fleet.socket"
        );
        link("/etc/systemd/system/multi-user.target.wants/fleet.service");
        assert!(!links
            .iter()
            .any(|l| l["path"].as_str().unwrap().contains("kubelet")));
        let units = v["systemd"]["units"].as_array().unwrap();
        let timer = units
            .iter()
            .find(|u| u["name"] == "systemd-sysupdate.timer")
            .unwrap();
        assert_eq!(timer["enabled"], true);
        let service = units
            .iter()
            .find(|u| u["name"] == "systemd-sysupdate.service")
            .unwrap();
        let dropins: Vec<&str> = service["dropins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["contents"].as_str().unwrap())
            .collect();
        assert!(dropins
            .iter()
            .any(|d| d.contains("systemd-sysupdate -C skiff update")));
        assert!(dropins.iter().any(|d| d.contains("restart systemd-sysext")));
        // The Butane file says the same: parsed as YAML, its files, links and units are the
        // JSON's (Butane's flatcar 1.0.0 variant maps one to one onto Ignition 3.3.0 here).
        let bu: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(out.join(format!("flatcar-{arch}.bu"))).unwrap(),
        )
        .unwrap();
        assert_eq!(bu["variant"].as_str(), Some("flatcar"));
        assert_eq!(bu["version"].as_str(), Some("1.0.0"));
        let paths = |list: &serde_yaml_ng::Value| -> Vec<String> {
            list.as_sequence()
                .unwrap()
                .iter()
                .map(|f| f["path"].as_str().unwrap().to_string())
                .collect()
        };
        let json_paths = |list: &serde_json::Value| -> Vec<String> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|f| f["path"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            paths(&bu["storage"]["files"]),
            json_paths(&v["storage"]["files"])
        );
        assert_eq!(
            paths(&bu["storage"]["links"]),
            json_paths(&v["storage"]["links"])
        );
        let bu_raw = bu["storage"]["files"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|f| f["path"].as_str() == Some(placed.as_str()))
            .unwrap();
        assert_eq!(
            bu_raw["contents"]["verification"]["hash"].as_str(),
            Some(hash.as_str())
        );
        let bu_transfer = bu["storage"]["files"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|f| f["path"].as_str() == Some("/etc/sysupdate.skiff.d/skiff.conf"))
            .unwrap()["contents"]["inline"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            bu_transfer,
            std::fs::read_to_string(env.path().join("out/skiff.conf")).unwrap()
        );
    }
    // A name that is not skiff-VERSION-ARCH.raw, or --sysext without --release-url: refused.
    let o = mkignition(&[
        "--sysext",
        bin.to_str().unwrap(),
        "--release-url",
        "https://x",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let o = mkignition(&[
        "--sysext",
        images[0].to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
}
