//! Air-gapped hosts: `skiff load` of what skopeo, podman and umoci write, in a network
//! namespace with nothing but `lo` (no registry), then `run` from the store; `skiff save`
//! read back by skopeo and by skiff; hostile sources made by editing a real tool's output.

mod common;
use common::sign::Gpg;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

struct World {
    env: Env,
    reg: Registry,
    ns: Netns,
    accept: PathBuf,
    digest: String,
}

impl World {
    fn new() -> World {
        let env = Env::new();
        let reg = env.registry();
        // OCI, so that skopeo's oci: and dir: copies keep the registry's manifest as it is.
        let img = busybox_image(
            &Spec {
                format: Format::Oci,
                ..Spec::default()
            },
            &[],
        );
        let digest = push(&reg.url(), "src/app", "v1", &img);
        let accept = env.path().join("accept.json");
        std::fs::write(
            &accept,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        World {
            env,
            reg,
            ns: Netns::new(),
            accept,
            digest,
        }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.env.path().join(name)
    }

    /// `skopeo copy` of the registry's image (or `src`) to `dest`, with extra flags.
    fn skopeo_copy(&self, extra: &[&str], src: Option<&str>, dest: &str) {
        let from = format!("docker://{}/src/app:v1", self.reg.host());
        run_ok(
            Command::new("skopeo")
                .arg("--policy")
                .arg(&self.accept)
                .args(["copy", "--src-tls-verify=false"])
                .args(extra)
                .arg(src.unwrap_or(&from))
                .arg(dest),
        );
    }

    /// skiff inside the namespace with no route to any registry.
    fn offline(&self, root: &Path, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns.name, env!("CARGO_BIN_EXE_skiff")])
            .arg("--root")
            .arg(root)
            .args(args)
            .env_remove("REGISTRY_AUTH_FILE")
            .env("SKIFF_POLICY", &self.accept)
            .env("HOME", self.env.path())
            .env("XDG_RUNTIME_DIR", self.env.path().join("xdg-run"))
            .env("SKIFF_LOG", "info")
            .output()
            .unwrap()
    }

    /// Loads `source` as `reference` offline, then starts its payload offline.
    fn load_and_run(
        &self,
        root: &Path,
        source: &str,
        reference: Option<&str>,
        expect_name: &str,
    ) -> String {
        let mut args = vec!["load", source];
        args.extend(reference);
        let digest = ok(self.offline(root, &args)).trim().to_string();
        let out = self.offline(
            root,
            &[
                "run",
                "--pull=missing",
                expect_name,
                "--",
                "-c",
                "echo started offline",
            ],
        );
        assert_eq!(ok(out).trim(), "started offline", "{source}");
        digest
    }

    fn images_json(&self, root: &Path) -> Vec<serde_json::Value> {
        serde_json::from_str(&ok(self.offline(root, &["images", "--json"]))).unwrap()
    }
}

fn blob_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn what_skopeo_and_umoci_write_loads_offline_and_runs() {
    let w = World::new();
    let root = w.p("store");
    w.skopeo_copy(&[], None, &format!("oci:{}:v1", w.p("layout").display()));
    w.skopeo_copy(
        &[],
        None,
        &format!("oci-archive:{}:v1", w.p("o.tar").display()),
    );
    w.skopeo_copy(
        &[],
        None,
        &format!(
            "docker-archive:{}:load.test/docker:v1",
            w.p("d.tar").display()
        ),
    );
    w.skopeo_copy(&[], None, &format!("dir:{}", w.p("dir").display()));
    let cases = [
        (
            format!("oci:{}:v1", w.p("layout").display()),
            Some("load.test/oci:v1"),
            "load.test/oci:v1",
        ),
        (
            format!("oci-archive:{}:v1", w.p("o.tar").display()),
            Some("load.test/archive:v1"),
            "load.test/archive:v1",
        ),
        // The name the archive carries is the default.
        (
            format!("docker-archive:{}", w.p("d.tar").display()),
            None,
            "load.test/docker:v1",
        ),
        (
            format!("dir:{}", w.p("dir").display()),
            Some("load.test/dir:v1"),
            "load.test/dir:v1",
        ),
    ];
    for (source, reference, name) in &cases {
        let digest = w.load_and_run(&root, source, *reference, name);
        if !source.starts_with("docker-archive") {
            assert_eq!(digest, w.digest, "{source} keeps the registry's manifest");
        }
    }
    // umoci's own layers and manifests: a repack of skopeo's layout.
    let layout = w.p("layout");
    let bundle = w.p("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:v1", layout.display()))
            .arg(&bundle),
    );
    std::fs::write(bundle.join("rootfs/etc/motd"), "repacked by umoci\n").unwrap();
    run_ok(
        Command::new("umoci")
            .args(["repack", "--image"])
            .arg(format!("{}:umoci", layout.display()))
            .arg(&bundle),
    );
    w.load_and_run(
        &root,
        &format!("oci:{}:umoci", layout.display()),
        Some("load.test/umoci:v1"),
        "load.test/umoci:v1",
    );
    let out = w.offline(
        &root,
        &[
            "run",
            "--pull=never",
            "load.test/umoci:v1",
            "--",
            "-c",
            "cat /etc/motd",
        ],
    );
    assert_eq!(ok(out), "repacked by umoci\n");
    // `images` says where each came from.
    let listed = w.images_json(&root);
    for (source, _, name) in &cases {
        let e = listed
            .iter()
            .find(|e| e["reference"] == *name)
            .unwrap_or_else(|| panic!("{name} listed"));
        assert_eq!(e["source"], *source, "{name}");
    }
    let table = ok(w.offline(&root, &["images"]));
    assert!(
        table.contains("SOURCE") && table.contains(&format!("dir:{}", w.p("dir").display())),
        "{table}"
    );
}

#[test]
fn podman_save_archives_load_offline() {
    if Command::new("podman").arg("--version").output().is_err() {
        panic!("podman is not installed (scripts/deps installs it)");
    }
    let w = World::new();
    let pm = w.p("podman");
    let podman = |args: &[&str]| {
        run_ok(
            Command::new("podman")
                .arg("--root")
                .arg(pm.join("root"))
                .arg("--runroot")
                .arg(pm.join("run"))
                .args([
                    "--storage-driver",
                    "vfs",
                    "--cgroup-manager",
                    "cgroupfs",
                    "--events-backend",
                    "none",
                ])
                .args(args),
        )
    };
    let image = format!("{}/src/app:v1", w.reg.host());
    let policy = w.accept.display().to_string();
    podman(&[
        "pull",
        "--tls-verify=false",
        "--signature-policy",
        &policy,
        &image,
    ]);
    let (o, d) = (w.p("podman-oci.tar"), w.p("podman-docker.tar"));
    podman(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        &o.display().to_string(),
        &image,
    ]);
    podman(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        &d.display().to_string(),
        &image,
    ]);
    let root = w.p("store");
    // Both carry the image's name: no REFERENCE needed.
    let digest = w.load_and_run(&root, &format!("oci-archive:{}", o.display()), None, &image);
    assert!(digest.starts_with("sha256:"));
    std::fs::remove_dir_all(&root).unwrap();
    w.load_and_run(
        &root,
        &format!("docker-archive:{}", d.display()),
        None,
        &image,
    );
    // And podman reads what skiff saves, in both formats, under the name skiff gave it.
    std::fs::remove_dir_all(&pm).unwrap();
    for (i, format) in ["oci-archive", "docker-archive"].iter().enumerate() {
        let f = w.p(&format!("skiff-saved-{i}.tar"));
        ok(w.offline(
            &root,
            &["save", &image, &format!("{format}:{}", f.display())],
        ));
        let out = podman(&["load", "-i", &f.display().to_string()]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&image),
            "{format}: {out:?}"
        );
    }
}

/// A policy that trusts only `key` for `scope`.
fn signed_by(path: &Path, scope: &str, key: &Path) -> PathBuf {
    std::fs::write(
        path,
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{scope}":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}"}}]}}}}}}"#,
            key.display()
        ),
    )
    .unwrap();
    path.to_path_buf()
}

#[test]
fn signatures_in_a_dir_copy_are_checked_kept_and_saved() {
    let w = World::new();
    let gpg = Gpg::new(w.env.path());
    let fpr = gpg.gen_key("EDDSA", "carrier");
    let key = w.p("carrier.gpg");
    gpg.export(&fpr, &key, false);
    let name = "load.test/signed/app:v1";
    let signed = w.p("signed");
    run_ok(
        gpg.cmd("skopeo")
            .arg("--policy")
            .arg(&w.accept)
            .args([
                "copy",
                "--src-tls-verify=false",
                "--sign-by",
                &fpr,
                "--sign-identity",
                name,
            ])
            .arg(format!("docker://{}/src/app:v1", w.reg.host()))
            .arg(format!("dir:{}", signed.display())),
    );
    assert!(signed.join("signature-1").exists());
    let policy = signed_by(&w.p("policy.json"), "load.test/signed", &key);
    let pol = policy.display().to_string();
    let root = w.p("store");
    let src = format!("dir:{}", signed.display());
    // Unsigned under signedBy: refused, nothing kept.
    w.skopeo_copy(&[], None, &format!("dir:{}", w.p("unsigned").display()));
    let e = fails(w.offline(
        &root,
        &[
            "--policy",
            &pol,
            "load",
            &format!("dir:{}", w.p("unsigned").display()),
            name,
        ],
    ));
    assert!(e.contains("refuses") && e.contains("signature"), "{e}");
    assert_eq!(blob_count(&root), 0, "a refused load keeps nothing");
    // Signed for another identity: refused too.
    let e = fails(w.offline(
        &root,
        &["--policy", &pol, "load", &src, "load.test/signed/other:v1"],
    ));
    assert!(e.contains("does not match"), "{e}");
    assert_eq!(blob_count(&root), 0);
    // Signed: loaded, and every later start re-checks the kept signature offline.
    ok(w.offline(&root, &["--policy", &pol, "load", &src, name]));
    let out = w.offline(
        &root,
        &[
            "--policy",
            &pol,
            "run",
            "--pull=missing",
            name,
            "--",
            "-c",
            "echo trusted",
        ],
    );
    let err = stderr(&out);
    assert_eq!(ok(out).trim(), "trusted");
    assert!(err.contains("signature verified"), "{err}");
    // save dir: writes the kept signature; a host across the gap loads it under its policy.
    let saved = w.p("saved");
    ok(w.offline(&root, &["save", name, &format!("dir:{}", saved.display())]));
    assert_eq!(
        std::fs::read(saved.join("signature-1")).unwrap(),
        std::fs::read(signed.join("signature-1")).unwrap()
    );
    run_ok(
        Command::new("skopeo")
            .args(["inspect"])
            .arg(format!("dir:{}", saved.display())),
    );
    let other = w.p("store2");
    ok(w.offline(
        &other,
        &[
            "--policy",
            &pol,
            "load",
            &format!("dir:{}", saved.display()),
            name,
        ],
    ));
    ok(w.offline(
        &other,
        &[
            "--policy",
            &pol,
            "run",
            "--pull=never",
            name,
            "--",
            "-c",
            "true",
        ],
    ));
}

fn skopeo_digest(src: &str) -> String {
    let out = run_ok(Command::new("skopeo").args(["inspect", "--format", "{{.Digest}}", src]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn saved_images_are_read_by_skopeo_and_load_back_bit_identical() {
    let w = World::new();
    let root = w.p("store");
    w.skopeo_copy(&[], None, &format!("oci:{}:v1", w.p("layout").display()));
    let name = "load.test/app:v1";
    ok(w.offline(
        &root,
        &["load", &format!("oci:{}:v1", w.p("layout").display()), name],
    ));
    let dests = [
        format!("oci:{}:v1", w.p("out-oci").display()),
        format!("oci-archive:{}:v1", w.p("out.tar").display()),
        format!("docker-archive:{}:{name}", w.p("out-docker.tar").display()),
        format!("dir:{}", w.p("out-dir").display()),
    ];
    for (i, d) in dests.iter().enumerate() {
        ok(w.offline(&root, &["save", name, d]));
        // skopeo reads it, and copies it on.
        let digest = skopeo_digest(d);
        if !d.starts_with("docker-archive") {
            assert_eq!(digest, w.digest, "{d}");
        }
        run_ok(
            Command::new("skopeo")
                .arg("--policy")
                .arg(&w.accept)
                .arg("copy")
                .arg(d)
                .arg(format!("oci:{}:copy", w.p(&format!("copy{i}")).display())),
        );
        // skiff loads it again, into a store of its own: the same blobs, byte for byte.
        let again = w.p(&format!("again{i}"));
        let digest = ok(w.offline(&again, &["load", d, name])).trim().to_string();
        if d.starts_with("docker-archive") {
            // The archive keeps uncompressed layers: its manifest is made on load, the same
            // each time.
            let twice = w.p(&format!("twice{i}"));
            let saved2 = w.p("out-docker2.tar");
            ok(w.offline(
                &again,
                &[
                    "save",
                    name,
                    &format!("docker-archive:{}", saved2.display()),
                ],
            ));
            let d2 = ok(w.offline(
                &twice,
                &[
                    "load",
                    &format!("docker-archive:{}", saved2.display()),
                    name,
                ],
            ));
            assert_eq!(d2.trim(), digest);
            assert_eq!(
                std::fs::read(&saved2).unwrap(),
                std::fs::read(w.p("out-docker.tar")).unwrap()
            );
            continue;
        }
        assert_eq!(digest, w.digest, "{d}");
        for f in files_under(&root.join("blobs/sha256")) {
            let copy = again.join("blobs/sha256").join(f.file_name().unwrap());
            assert_eq!(
                std::fs::read(&f).unwrap(),
                std::fs::read(&copy).unwrap(),
                "{d}: {}",
                f.display()
            );
        }
    }
    // A second image saved into the same layout keeps the first one's entry (as skopeo does).
    ok(w.offline(
        &root,
        &[
            "save",
            name,
            &format!("oci:{}:v2", w.p("out-oci").display()),
        ],
    ));
    assert_eq!(
        skopeo_digest(&format!("oci:{}:v1", w.p("out-oci").display())),
        w.digest
    );
    assert_eq!(
        skopeo_digest(&format!("oci:{}:v2", w.p("out-oci").display())),
        w.digest
    );
}

/// Rewrites one member of a tar archive with Python's tarfile (another writer than skiff's).
fn edit_tar(src: &Path, dest: &Path, script: &str) {
    run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(format!(
                r#"
import tarfile, io, sys
src = tarfile.open(sys.argv[1]); out = tarfile.open(sys.argv[2], "w", format=tarfile.GNU_FORMAT)
def add(name, data):
    ti = tarfile.TarInfo(name); ti.size = len(data); out.addfile(ti, io.BytesIO(data))
members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
{script}
out.close()
"#
            ))
            .arg(src)
            .arg(dest),
    );
}

#[test]
fn hostile_sources_are_refused_naming_the_file_and_nothing_is_kept() {
    let w = World::new();
    let root = w.p("store");
    let layout = w.p("layout");
    let archive = w.p("o.tar");
    let docker = w.p("d.tar");
    w.skopeo_copy(&[], None, &format!("oci:{}:v1", layout.display()));
    w.skopeo_copy(&[], None, &format!("oci-archive:{}:v1", archive.display()));
    w.skopeo_copy(
        &[],
        None,
        &format!("docker-archive:{}:load.test/d:v1", docker.display()),
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_hex = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&manifest_hex)).unwrap(),
    )
    .unwrap();
    let config_hex = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let layer_hex = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let copy_layout = |name: &str| {
        let d = w.p(name);
        run_ok(Command::new("cp").arg("-a").arg(&layout).arg(&d));
        d
    };
    let planted = w.p("host-secret");
    std::fs::write(&planted, "not for the image\n").unwrap();
    let mut cases: Vec<(String, &str)> = Vec::new();
    // Archive members that climb out or are absolute.
    let t = w.p("dotdot.tar");
    edit_tar(&archive, &t, "for m, d in members:\n    out.addfile(m, io.BytesIO(d) if d is not None else None)\nadd('../../evil', b'x')");
    cases.push((format!("oci-archive:{}:v1", t.display()), "climbs out"));
    let t = w.p("abs.tar");
    edit_tar(&archive, &t, "for m, d in members:\n    out.addfile(m, io.BytesIO(d) if d is not None else None)\nadd('/etc/evil', b'x')");
    cases.push((format!("oci-archive:{}:v1", t.display()), "absolute"));
    // A blob that is a symlink out of the archive.
    let t = w.p("symlink.tar");
    edit_tar(
        &archive,
        &t,
        &format!("for m, d in members:\n    if m.name.endswith('{config_hex}'):\n        ti = tarfile.TarInfo(m.name); ti.type = tarfile.SYMTYPE; ti.linkname = '../../../..{}'; out.addfile(ti)\n    else:\n        out.addfile(m, io.BytesIO(d) if d is not None else None)", planted.display()),
    );
    cases.push((
        format!("oci-archive:{}:v1", t.display()),
        "outside the archive",
    ));
    // A blob that is a symlink, or a hard link, out of a layout directory.
    let d = copy_layout("sym-layout");
    let blob = d.join("blobs/sha256").join(&config_hex);
    std::fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink(&planted, &blob).unwrap();
    cases.push((format!("oci:{}:v1", d.display()), "symlink"));
    let d = copy_layout("hard-layout");
    let blob = d.join("blobs/sha256").join(&config_hex);
    std::fs::remove_file(&blob).unwrap();
    std::fs::hard_link(&planted, &blob).unwrap();
    cases.push((format!("oci:{}:v1", d.display()), "hard links"));
    // index.json naming one tag twice, and naming a blob the layout lacks.
    let d = copy_layout("twice-layout");
    let mut twice = index.clone();
    let mut other = index["manifests"][0].clone();
    other["digest"] = serde_json::json!(format!("sha256:{config_hex}"));
    twice["manifests"].as_array_mut().unwrap().push(other);
    std::fs::write(d.join("index.json"), serde_json::to_vec(&twice).unwrap()).unwrap();
    cases.push((format!("oci:{}:v1", d.display()), "twice"));
    let d = copy_layout("absent-layout");
    std::fs::remove_file(d.join("blobs/sha256").join(&manifest_hex)).unwrap();
    cases.push((format!("oci:{}:v1", d.display()), "not in the layout"));
    // A manifest larger than the bound (its descriptor rewritten to match it).
    let d = copy_layout("big-layout");
    let mut big = manifest.clone();
    big["annotations"] = serde_json::json!({"padding": "x".repeat(5 << 20)});
    let big = serde_json::to_vec(&big).unwrap();
    let big_hex = sha(&big).trim_start_matches("sha256:").to_string();
    std::fs::write(d.join("blobs/sha256").join(&big_hex), &big).unwrap();
    let mut idx = index.clone();
    idx["manifests"][0]["digest"] = serde_json::json!(format!("sha256:{big_hex}"));
    idx["manifests"][0]["size"] = serde_json::json!(big.len());
    std::fs::write(d.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    cases.push((format!("oci:{}:v1", d.display()), "bytes allowed"));
    // A layer whose bytes were changed.
    let d = copy_layout("tampered-layout");
    let layer = d.join("blobs/sha256").join(&layer_hex);
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    cases.push((format!("oci:{}:v1", d.display()), "digest mismatch"));
    // A docker-archive whose manifest.json points outside.
    let t = w.p("outside.tar");
    edit_tar(
        &docker,
        &t,
        "import json\nfor m, d in members:\n    if m.name == 'manifest.json':\n        j = json.loads(d); j[0]['Layers'][0] = '../../etc/passwd'; add('manifest.json', json.dumps(j).encode())\n    else:\n        out.addfile(m, io.BytesIO(d) if d is not None else None)",
    );
    cases.push((format!("docker-archive:{}", t.display()), "points outside"));
    // Truncated archives: in a layer, and in the archive's middle.
    let bytes = std::fs::read(&archive).unwrap();
    let t = w.p("truncated.tar");
    std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
    cases.push((format!("oci-archive:{}:v1", t.display()), "truncated"));
    let bytes = std::fs::read(&docker).unwrap();
    let t = w.p("truncated-docker.tar");
    std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
    cases.push((format!("docker-archive:{}", t.display()), "truncated"));
    for (source, why) in &cases {
        let e = fails(w.offline(&root, &["load", source, "load.test/hostile:v1"]));
        let file = source.split(':').nth(1).unwrap();
        assert!(e.contains(file) && e.contains(why), "{source}: {e}");
        assert_eq!(blob_count(&root), 0, "{source}: nothing kept");
        assert!(w.images_json(&root).is_empty(), "{source}: nothing listed");
        assert!(
            files_under(&root.join("ingest"))
                .iter()
                .all(|f| !f.to_string_lossy().ends_with(".partial")),
            "{source}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&planted).unwrap(),
        "not for the image\n"
    );
    // And the next load of an honest source works.
    w.load_and_run(
        &root,
        &format!("oci-archive:{}:v1", archive.display()),
        Some("load.test/ok:v1"),
        "load.test/ok:v1",
    );
}

#[test]
fn a_multi_platform_index_loads_the_hosts_platform_or_all() {
    let w = World::new();
    let oci = || Spec {
        format: Format::Oci,
        ..Spec::default()
    };
    let amd = busybox_image(&oci(), &[]);
    let arm = busybox_image(
        &Spec {
            arch: "arm64",
            ..oci()
        },
        &[file("etc/arch", b"arm64\n", 0o644)],
    );
    push(&w.reg.url(), "src/multi", "arm", &arm);
    push(&w.reg.url(), "src/multi", "amd", &amd);
    let idx = index(&[(&amd, "amd64", None), (&arm, "arm64", Some("v8"))]);
    push_manifest(
        &w.reg.url(),
        "src/multi",
        "v1",
        &idx,
        "application/vnd.oci.image.index.v1+json",
    );
    let layout = w.p("multi");
    let src = format!("docker://{}/src/multi:v1", w.reg.host());
    w.skopeo_copy(
        &["--all"],
        Some(&src),
        &format!("oci:{}:v1", layout.display()),
    );
    let source = format!("oci:{}:v1", layout.display());
    let name = "load.test/multi:v1";
    let inspect = |root: &Path, platform: &str| -> serde_json::Value {
        serde_json::from_str(&ok(
            w.offline(root, &["inspect", name, "--platform", platform])
        ))
        .unwrap()
    };
    // The host's platform by default: the arm64 image is not in the store.
    let host = w.p("host");
    assert_eq!(
        ok(w.offline(&host, &["load", &source, name])).trim(),
        sha(&idx)
    );
    assert_eq!(inspect(&host, "linux/amd64")["Manifest"], amd.digest());
    assert!(!host
        .join("blobs/sha256")
        .join(sha(&arm.blobs[0]).trim_start_matches("sha256:"))
        .exists());
    // --platform, and --all.
    let one = w.p("arm");
    ok(w.offline(&one, &["load", "--platform", "linux/arm64", &source, name]));
    assert_eq!(inspect(&one, "linux/arm64")["Manifest"], arm.digest());
    let all = w.p("all");
    ok(w.offline(&all, &["load", "--all", &source, name]));
    assert_eq!(inspect(&all, "linux/arm64")["Manifest"], arm.digest());
    assert_eq!(inspect(&all, "linux/amd64")["Manifest"], amd.digest());
    // A REFERENCE pinned by digest must name what the source holds.
    let pinned = format!("load.test/multi@{}", amd.digest());
    let e = fails(w.offline(&w.p("pinned"), &["load", &source, &pinned]));
    assert!(e.contains("pinned") && e.contains(&sha(&idx)), "{e}");
    assert_eq!(blob_count(&w.p("pinned")), 0);
    // skopeo's dir: copy of every platform keeps the instances beside the index.
    let dir = format!("dir:{}", w.p("multi-dir").display());
    w.skopeo_copy(&["--all"], Some(&src), &dir);
    let from_dir = w.p("from-dir");
    ok(w.offline(&from_dir, &["load", "--all", &dir, name]));
    assert_eq!(inspect(&from_dir, "linux/arm64")["Manifest"], arm.digest());
    assert_eq!(inspect(&from_dir, "linux/amd64")["Manifest"], amd.digest());
    let e = fails(w.offline(
        &w.p("none"),
        &["load", "--platform", "linux/s390x", &source, name],
    ));
    assert!(
        e.contains("linux/s390x") && e.contains("linux/arm64"),
        "{e}"
    );
}

/// Peak RSS (KiB) of `cmd`, run as the only child of a fresh Python process.
fn peak_rss_kib(cmd: &mut Command) -> (std::process::Output, u64) {
    let mut py = Command::new("python3");
    py.args([
        "-c",
        "import resource, subprocess, sys\n\
         p = subprocess.run(sys.argv[1:])\n\
         print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n\
         sys.exit(p.returncode)",
    ]);
    py.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    let out = py.output().unwrap();
    let rss = stderr(&out)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("the peak RSS");
    (out, rss)
}

#[test]
fn a_large_archive_loads_with_flat_memory() {
    let w = World::new();
    const SIZE: usize = 128 << 20;
    let layer = tar(&[file("data.bin", &noise(SIZE, 7), 0o644)]);
    let spec = Spec {
        format: Format::Oci,
        comp: Comp::None,
        ..Spec::default()
    };
    let img = build(&[layer], &spec);
    push(&w.reg.url(), "src/big", "v1", &img);
    let archive = w.p("big.tar");
    let src = format!("docker://{}/src/big:v1", w.reg.host());
    w.skopeo_copy(
        &[],
        Some(&src),
        &format!("oci-archive:{}:v1", archive.display()),
    );
    drop(img);
    let root = &w.env.root;
    let mut load = w.env.skiff_cmd(&[
        "load",
        &format!("oci-archive:{}:v1", archive.display()),
        "load.test/big:v1",
    ]);
    let (out, rss) = peak_rss_kib(&mut load);
    ok(out);
    let archive_kib = std::fs::metadata(&archive).unwrap().len() / 1024;
    // Streamed: the archive is never held, whole or in part beyond a buffer.
    assert!(
        rss < archive_kib / 3,
        "peak RSS {rss} KiB for a {archive_kib} KiB archive"
    );
    assert!(!root.join("tmp").read_dir().unwrap().any(|e| e
        .unwrap()
        .metadata()
        .is_ok_and(|m| m.len() > (SIZE / 2) as u64)));
}
