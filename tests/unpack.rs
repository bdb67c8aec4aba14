//! Unpacking: exact trees (checked against umoci), whiteouts, hostile layers, sharing,
//! atomicity, gc and verify.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;

fn rich_layers() -> Vec<Vec<u8>> {
    let long = format!("deep/{}/{}", "d".repeat(120), "long-file-name-".repeat(10));
    let l1 = tar(&[
        Entry::Dir("bin", 0o755),
        Entry::Dir("tmp", 0o1777),
        Entry::Dir("secret", 0o700),
        Entry::Dir("etc", 0o755),
        file("bin/tool", &noise(5000, 7), 0o755),
        file("secret/key", b"k", 0o600),
        Entry::Rich {
            path: "bin/suid",
            data: b"#!/bin/sh\n".to_vec(),
            mode: 0o4755,
            uid: 0,
            gid: 0,
            mtime: 1_500_000_000,
            xattrs: vec![],
        },
        Entry::Rich {
            path: "bin/owned",
            data: b"x".to_vec(),
            mode: 0o2750,
            uid: 1000,
            gid: 1001,
            mtime: 1_400_000_000,
            xattrs: vec![("user.note", b"hello".to_vec())],
        },
        Entry::Rich {
            path: "bin/ping",
            data: b"cap".to_vec(),
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1_400_000_000,
            // VFS_CAP_REVISION_2 with CAP_NET_RAW permitted+effective.
            xattrs: vec![(
                "security.capability",
                vec![1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            )],
        },
        Entry::Symlink("bin/sh-link", "tool"),
        Entry::Symlink("etc/abs", "/bin/tool"),
        Entry::Hardlink("bin/tool-hard", "bin/tool"),
        Entry::Fifo("tmp/fifo"),
        Entry::CharDev("dev-null", 1, 3),
        file(&long, b"long name", 0o644),
        file("old/gone", b"to be whited out", 0o644),
        file("opaque/lower", b"hidden by opaque", 0o644),
        file("will-be-dir", b"file first", 0o644),
        Entry::Dir("will-be-file", 0o755),
        file("will-be-file/inner", b"in dir", 0o644),
        Entry::Dir("keep", 0o755),
        file("keep/a", b"a", 0o644),
    ]);
    let l2 = tar(&[
        Entry::Dir("old", 0o755),
        file("old/.wh.gone", b"", 0o644),
        Entry::Dir("opaque", 0o751),
        file("opaque/.wh..wh..opq", b"", 0o644),
        file("opaque/upper", b"from layer 2", 0o644),
        Entry::Dir("will-be-dir", 0o711),
        file("will-be-dir/x", b"now a dir", 0o644),
        file(".wh.will-be-file", b"", 0o644),
        file("will-be-file", b"now a file", 0o640),
        file("keep/b", b"b", 0o644),
    ]);
    vec![l1, l2]
}

#[test]
fn unpacked_tree_matches_umoci_entry_by_entry() {
    let env = Env::new();
    let reg = env.registry();
    let img = build(
        &rich_layers(),
        &Spec {
            format: Format::Oci,
            ..Spec::default()
        },
    );
    push(&reg.url(), "rich/img", "v1", &img);
    let r = format!("{}/rich/img:v1", reg.host());
    let out = env.skiff(&["pull", &r]);
    assert!(
        stderr(&out).contains("dev-null"),
        "device nodes are skipped with a warning naming them: {}",
        stderr(&out)
    );
    ok(out);
    let ours = env.path().join("ours");
    ok(env.skiff(&["unpack", &r, ours.to_str().unwrap()]));

    let mut theirs = tree::umoci_rootfs(env.path(), &r);
    let mine = tree::describe(&ours);
    // umoci creates device nodes as root; skiff does not, on purpose.
    assert_eq!(theirs.remove("dev-null").map(|n| n.kind), Some("char"));
    assert!(!mine.contains_key("dev-null"));
    for (path, node) in &theirs {
        assert_eq!(mine.get(path), Some(node), "entry {path}");
    }
    assert_eq!(
        mine.len(),
        theirs.len(),
        "extra entries: {:?}",
        mine.keys()
            .filter(|k| !theirs.contains_key(*k))
            .collect::<Vec<_>>()
    );
    // Spot checks of the semantics themselves.
    assert!(!ours.join("old/gone").exists());
    assert!(!ours.join("opaque/lower").exists() && ours.join("opaque/upper").exists());
    assert!(ours.join("will-be-dir").is_dir() && ours.join("will-be-file").is_file());
    assert!(ours.join("keep/a").exists() && ours.join("keep/b").exists());
    assert_eq!(
        std::fs::metadata(ours.join("bin/tool")).unwrap().ino(),
        std::fs::metadata(ours.join("bin/tool-hard")).unwrap().ino()
    );
    assert!(files_under(&ours).iter().all(|p| !p
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(".wh.")));
    // skiff unpack refuses a non-empty directory.
    let err = fails(env.skiff(&["unpack", &r, ours.to_str().unwrap()]));
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn zstd_and_uncompressed_layers() {
    let env = Env::new();
    let reg = env.registry();
    for (tag, comp) in [("zstd", Comp::Zstd), ("plain", Comp::None)] {
        let img = build(
            &[tar(&[file("hello", tag.as_bytes(), 0o644)])],
            &Spec {
                format: Format::Oci,
                comp,
                ..Spec::default()
            },
        );
        push(&reg.url(), "comp/img", tag, &img);
        let dir = env.path().join(tag);
        ok(env.skiff(&[
            "unpack",
            &format!("{}/comp/img:{tag}", reg.host()),
            dir.to_str().unwrap(),
        ]));
        assert_eq!(std::fs::read(dir.join("hello")).unwrap(), tag.as_bytes());
    }
}

struct Hostile {
    name: &'static str,
    layers: Vec<Vec<u8>>,
    expect: &'static str,
}

fn hostile_cases(outside: &str) -> Vec<Hostile> {
    let leak: &'static str = Box::leak(outside.to_string().into_boxed_str());
    let traversal: &'static str =
        Box::leak(format!("../../../../../../../..{outside}/pwned").into_boxed_str());
    vec![
        Hostile {
            name: "dotdot",
            layers: vec![tar(&[file(traversal, b"pwned", 0o644)])],
            expect: "'..'",
        },
        Hostile {
            name: "symlink-then-write",
            layers: vec![tar(&[
                Entry::Symlink("evil", leak),
                file("evil/pwned", b"pwned", 0o644),
            ])],
            expect: "outside the root",
        },
        Hostile {
            name: "relative-symlink-then-write",
            layers: vec![tar(&[
                Entry::Symlink("up", "../../../../../../../../../.."),
                file(
                    Box::leak(format!("up{outside}/pwned").into_boxed_str()),
                    b"x",
                    0o644,
                ),
            ])],
            expect: "outside the root",
        },
        Hostile {
            name: "hardlink-out",
            layers: vec![tar(&[Entry::Hardlink(
                "h",
                Box::leak(format!("../../../../../..{outside}/secret").into_boxed_str()),
            )])],
            expect: "'..'",
        },
        Hostile {
            name: "hardlink-absolute",
            layers: vec![tar(&[Entry::Hardlink(
                "h",
                Box::leak(format!("{outside}/secret").into_boxed_str()),
            )])],
            expect: "not in this layer",
        },
        Hostile {
            name: "hardlink-through-symlink",
            layers: vec![tar(&[
                Entry::Symlink("s", leak),
                Entry::Hardlink("h", "s/secret"),
            ])],
            expect: "outside the root",
        },
        Hostile {
            name: "whiteout-dotdot",
            layers: vec![tar(&[file("a/.wh...", b"", 0o644)])],
            expect: "whiteout",
        },
        Hostile {
            name: "whiteout-traversal",
            layers: vec![tar(&[file(
                Box::leak(format!("../../../../..{outside}/.wh.secret").into_boxed_str()),
                b"",
                0o644,
            )])],
            expect: "'..'",
        },
        Hostile {
            name: "whiteout-through-symlink",
            layers: vec![tar(&[
                Entry::Symlink("s", leak),
                file("s/.wh.secret", b"", 0o644),
            ])],
            expect: "outside the root",
        },
    ]
}

#[test]
fn hostile_layers_are_refused_and_nothing_escapes() {
    let env = Env::new();
    let reg = env.registry();
    let outside = env.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"host data").unwrap();
    for case in hostile_cases(outside.to_str().unwrap()) {
        let base = tar(&[file("ok", b"fine", 0o644)]);
        let mut layers = vec![base];
        layers.extend(case.layers.clone());
        let img = build(&layers, &Spec::default());
        push(&reg.url(), "hostile/img", case.name, &img);
        let err = fails(env.skiff(&["pull", &format!("{}/hostile/img:{}", reg.host(), case.name)]));
        let bad_layer = sha(img.blobs.last().unwrap());
        assert!(err.contains(case.expect), "{}: {err}", case.name);
        assert!(
            err.contains(&bad_layer) && err.contains("entry"),
            "{}: the error names the layer and entry: {err}",
            case.name
        );
        assert_eq!(
            std::fs::read(outside.join("secret")).unwrap(),
            b"host data",
            "{}",
            case.name
        );
        let names: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "{}: nothing written outside", case.name);
        let staged: Vec<_> = std::fs::read_dir(env.root.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| !n.to_string_lossy().ends_with(".lock"))
            .collect();
        assert!(
            staged.is_empty(),
            "{}: the half-built tree is discarded: {staged:?}",
            case.name
        );
        let diff_id = sha(layers.last().unwrap());
        assert!(
            !env.root.join("layers").join(&diff_id[7..]).exists(),
            "{}",
            case.name
        );
    }
}

#[test]
fn a_symlink_from_a_lower_layer_is_shadowed_not_followed() {
    let env = Env::new();
    let reg = env.registry();
    let outside = env.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let l1 = tar(&[Entry::Symlink(
        "evil",
        Box::leak(outside.to_str().unwrap().to_string().into_boxed_str()),
    )]);
    let l2 = tar(&[file("evil/pwned", b"pwned", 0o644)]);
    let img = build(&[l1, l2], &Spec::default());
    push(&reg.url(), "hostile/cross", "v1", &img);
    let dir = env.path().join("flat");
    ok(env.skiff(&[
        "unpack",
        &format!("{}/hostile/cross:v1", reg.host()),
        dir.to_str().unwrap(),
    ]));
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing written outside"
    );
    // As overlayfs shows it: the upper directory replaces the lower symlink.
    assert!(std::fs::symlink_metadata(dir.join("evil"))
        .unwrap()
        .is_dir());
    assert_eq!(std::fs::read(dir.join("evil/pwned")).unwrap(), b"pwned");
}

#[test]
fn diff_id_mismatch_and_truncated_gzip_are_refused() {
    let env = Env::new();
    let reg = env.registry();
    let layer = tar(&[file("a", &noise(50_000, 3), 0o644)]);
    let img = build(
        std::slice::from_ref(&layer),
        &Spec {
            diff_ids: Some(vec![sha(b"something else")]),
            ..Spec::default()
        },
    );
    push(&reg.url(), "bad/diffid", "v1", &img);
    let err = fails(env.skiff(&["pull", &format!("{}/bad/diffid:v1", reg.host())]));
    assert!(
        err.contains("diff_id")
            && err.contains(&sha(b"something else"))
            && err.contains(&sha(&layer)),
        "{err}"
    );

    let mut img = build(std::slice::from_ref(&layer), &Spec::default());
    let gz = gzip(&layer);
    img.blobs[0] = gz[..gz.len() / 2].to_vec();
    let m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    let mut m = m;
    m["layers"][0]["digest"] = serde_json::json!(sha(&img.blobs[0]));
    m["layers"][0]["size"] = serde_json::json!(img.blobs[0].len());
    img.manifest = serde_json::to_vec(&m).unwrap();
    push(&reg.url(), "bad/truncated", "v1", &img);
    let err = fails(env.skiff(&["pull", &format!("{}/bad/truncated:v1", reg.host())]));
    assert!(
        err.contains(&sha(&img.blobs[0]))
            && (err.contains("truncated") || err.contains("end of the stream")),
        "{err}"
    );
    assert!(!env.root.join("layers").join(&sha(&layer)[7..]).exists());
}

#[test]
fn a_shared_layer_is_unpacked_once_and_gc_keeps_it() {
    let env = Env::new();
    let reg = env.registry();
    let base = tar(&[file("base", &noise(100_000, 9), 0o644)]);
    let a = build(
        &[base.clone(), tar(&[file("a", b"a", 0o644)])],
        &Spec::default(),
    );
    let b = build(
        &[base.clone(), tar(&[file("b", b"b", 0o644)])],
        &Spec::default(),
    );
    push(&reg.url(), "share/img", "a", &a);
    push(&reg.url(), "share/img", "b", &b);
    ok(env.skiff(&["pull", &format!("{}/share/img:a", reg.host())]));
    let base_file = env.root.join("layers").join(&sha(&base)[7..]).join("base");
    let before = std::fs::metadata(&base_file).unwrap();
    ok(env.skiff(&["pull", &format!("{}/share/img:b", reg.host())]));
    let after = std::fs::metadata(&base_file).unwrap();
    assert_eq!(
        (before.ino(), before.ctime_nsec()),
        (after.ino(), after.ctime_nsec()),
        "the shared layer was not unpacked again"
    );
    assert_eq!(
        std::fs::read_dir(env.root.join("layers")).unwrap().count(),
        3
    );

    ok(env.skiff(&["rm", &format!("{}/share/img:a", reg.host())]));
    ok(env.skiff(&["gc"]));
    let layers: Vec<_> = std::fs::read_dir(env.root.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(layers.len(), 2, "{layers:?}");
    assert!(layers.contains(&sha(&base)[7..].to_string()));
}

#[test]
fn leftovers_of_a_killed_unpack_are_cleaned_and_verify_finds_damage() {
    let env = Env::new();
    let reg = env.registry();
    let (img, _) = simple_image(&Spec::default());
    push(&reg.url(), "v/img", "v1", &img);
    let r = format!("{}/v/img:v1", reg.host());
    ok(env.skiff(&["pull", &r]));
    // As a skiff killed mid-unpack leaves it: a staging tree of a dead process.
    let stale = env.root.join("tmp/layer-abc.999999999.0");
    std::fs::create_dir_all(stale.join("half")).unwrap();
    ok(env.skiff(&["pull", &r]));
    assert!(!stale.exists(), "the next run removes what was left");

    assert!(ok(env.skiff(&["verify"])).contains("blobs verified"));
    let victim = env.root.join("blobs/sha256").join(&sha(&img.blobs[0])[7..]);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let err = fails(env.skiff(&["verify"]));
    assert!(err.contains("damaged"), "{err}");
    // The damaged blob, and only it, is fetched again.
    ok(env.skiff(&["verify", "--repair"]));
    assert_eq!(std::fs::read(&victim).unwrap(), img.blobs[0]);
    ok(env.skiff(&["pull", &r]));
    assert!(ok(env.skiff(&["verify"])).contains("blobs verified"));
}

#[test]
fn hardlinks_into_lower_layers_are_resolved() {
    let env = Env::new();
    let reg = env.registry();
    let l1 = tar(&[
        Entry::Dir("bin", 0o755),
        Entry::Rich {
            path: "bin/tool",
            data: b"the tool".to_vec(),
            mode: 0o4750,
            uid: 7,
            gid: 8,
            mtime: 1_500_000_000,
            xattrs: vec![],
        },
        file("bin/gone", b"whited out", 0o644),
    ]);
    let l2 = tar(&[
        Entry::Hardlink("usr-tool", "bin/tool"),
        file("bin/.wh.gone", b"", 0o644),
    ]);
    let img = build(&[l1, l2], &Spec::default());
    push(&reg.url(), "links/ok", "v1", &img);
    let dir = env.path().join("flat");
    ok(env.skiff(&[
        "unpack",
        &format!("{}/links/ok:v1", reg.host()),
        dir.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read(dir.join("usr-tool")).unwrap(), b"the tool");
    let m = std::fs::metadata(dir.join("usr-tool")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4750, 7, 8));

    // A link to a file an upper layer whited out has no target.
    let l3 = tar(&[Entry::Hardlink("again", "bin/gone")]);
    let l1 = tar(&[
        Entry::Dir("bin", 0o755),
        file("bin/gone", b"whited out", 0o644),
    ]);
    let l2 = tar(&[file("bin/.wh.gone", b"", 0o644)]);
    let img = build(&[l1, l2, l3], &Spec::default());
    push(&reg.url(), "links/bad", "v1", &img);
    let err = fails(env.skiff(&["pull", &format!("{}/links/bad:v1", reg.host())]));
    assert!(
        err.contains("not in this layer") && err.contains("again"),
        "{err}"
    );
}

/// Runs skiff with at most `n` open files, as under a low default `ulimit -n`.
fn with_fd_limit(mut c: std::process::Command, n: u64) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    unsafe {
        c.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().unwrap()
}

fn staging_left(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock") && n != "run")
        .collect()
}

#[test]
fn a_deep_layer_with_a_wrong_diff_id_does_not_wedge_the_store() {
    let env = Env::new();
    let reg = env.registry();
    // 1000 levels: within the depth bound, deeper than 256 open files.
    let deep = format!("{}file", "d/".repeat(1000));
    let layer = tar(&[file(&deep, b"bottom", 0o644)]);
    let bad = build(
        &[layer],
        &Spec {
            diff_ids: Some(vec![sha(b"not this layer")]),
            ..Spec::default()
        },
    );
    push(&reg.url(), "deep/img", "bad", &bad);
    let err = stderr(&with_fd_limit(
        env.skiff_cmd(&["pull", &format!("{}/deep/img:bad", reg.host())]),
        256,
    ));
    assert!(err.contains("diff_id"), "{err}");
    assert!(
        staging_left(&env).is_empty(),
        "staging removed: {:?}",
        staging_left(&env)
    );
    // Deeper than the bound: refused by name, and cleaned up as well.
    let deeper = format!("{}file", "d/".repeat(1100));
    let img = build(&[tar(&[file(&deeper, b"x", 0o644)])], &Spec::default());
    push(&reg.url(), "deep/img", "deeper", &img);
    let err = stderr(&with_fd_limit(
        env.skiff_cmd(&["pull", &format!("{}/deep/img:deeper", reg.host())]),
        256,
    ));
    assert!(err.contains("nests more than 1024 directories"), "{err}");
    assert!(staging_left(&env).is_empty(), "{:?}", staging_left(&env));
    // The next pull and gc work.
    let (good, _) = simple_image(&Spec::default());
    push(&reg.url(), "deep/img", "good", &good);
    ok(env.skiff(&["pull", &format!("{}/deep/img:good", reg.host())]));
    ok(env.skiff(&["gc"]));
}

#[test]
fn stale_staging_that_cannot_be_removed_never_stops_a_pull() {
    let env = Env::new();
    let reg = env.registry();
    ok(env.skiff(&["images"]));
    // A dead process's staging tree with an immutable file in it: no one can remove it.
    let stale = env.root.join("tmp/layer-abc.999999999.0");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("stuck"), b"x").unwrap();
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(stale.join("stuck"))
        .status();
    if !chattr.is_ok_and(|s| s.success()) {
        eprintln!("skipping: this filesystem has no immutable flag");
        return;
    }
    let (img, _) = simple_image(&Spec::default());
    push(&reg.url(), "stale/img", "v1", &img);
    let out = env.skiff(&["pull", &format!("{}/stale/img:v1", reg.host())]);
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(stale.join("stuck"))
        .status();
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .args(
            std::fs::read_dir(env.root.join("tmp"))
                .unwrap()
                .flatten()
                .map(|e| e.path().join("stuck")),
        )
        .status();
    assert!(
        stderr(&out).contains("moved it aside"),
        "the stuck tree is logged: {}",
        stderr(&out)
    );
    ok(out);
    ok(env.skiff(&["gc"]));
    assert!(
        staging_left(&env).is_empty(),
        "gc removed it once it could: {:?}",
        staging_left(&env)
    );
}

#[test]
fn a_refused_image_is_not_listed_as_pulled() {
    let env = Env::new();
    let reg = env.registry();
    let img = build(
        &[
            tar(&[file("ok", b"fine", 0o644)]),
            tar(&[file("../escape", b"x", 0o644)]),
        ],
        &Spec::default(),
    );
    push(&reg.url(), "refused/img", "v1", &img);
    let r = format!("{}/refused/img:v1", reg.host());
    let err = fails(env.skiff(&["pull", &r]));
    assert!(err.contains("escape"), "{err}");
    let listed = ok(env.skiff(&["images"]));
    assert!(!listed.contains("refused/img"), "{listed}");
    let err = fails(env.skiff(&["run", "--pull=never", &r]));
    assert!(err.contains("not in the store"), "{err}");
}

/// The tree of the top of `layers` where it depends on the layers below: under the stack's
/// OCI ChainID.
fn chain_tree(env: &Env, layers: &[&[u8]]) -> std::path::PathBuf {
    let mut chain = sha(layers[0]);
    for l in &layers[1..] {
        chain = sha(format!("{chain} {}", sha(l)).as_bytes());
    }
    env.root
        .join("layers")
        .join(format!("chain-{}", &chain[7..]))
}

/// Pushes `layers` as an OCI image `repo:v1` and pulls it; returns its reference.
fn pull_oci(env: &Env, reg: &Registry, repo: &str, layers: &[Vec<u8>]) -> String {
    let spec = Spec {
        format: Format::Oci,
        ..Spec::default()
    };
    push(&reg.url(), repo, "v1", &build(layers, &spec));
    let r = format!("{}/{repo}:v1", reg.host());
    ok(env.skiff(&["pull", &r]));
    r
}

#[test]
fn a_whiteout_below_a_lower_file_is_a_no_op() {
    let env = Env::new();
    let reg = env.registry();
    let lower = tar(&[file("d2f", b"a file", 0o644), file("keep", b"k", 0o644)]);
    let upper = tar(&[file("d2f/.wh.child", b"", 0o644), file("new", b"n", 0o644)]);
    let r = pull_oci(&env, &reg, "wh/img", &[lower.clone(), upper.clone()]);
    // The upper layer's tree (its whiteout's parent is not its own: it is its stack's) has
    // no directory that would hide the lower file.
    let upper_tree = chain_tree(&env, &[&lower, &upper]);
    assert!(upper_tree.join("new").exists());
    assert!(!upper_tree.join("d2f").exists());
    for storage in ["overlay", "flat"] {
        let out = env.path().join(format!("out-{storage}"));
        ok(env.skiff(&["--storage", storage, "unpack", &r, out.to_str().unwrap()]));
        assert_eq!(
            std::fs::read(out.join("d2f")).unwrap(),
            b"a file",
            "{storage}"
        );
        assert!(out.join("new").exists());
    }
    // umoci agrees.
    let theirs = tree::umoci_rootfs(env.path(), &r);
    let mine = tree::describe(&env.path().join("out-overlay"));
    assert_eq!(mine, theirs);
}

#[test]
fn a_whiteout_below_a_lower_directory_keeps_that_directorys_owner_and_mode() {
    let env = Env::new();
    let reg = env.registry();
    let lower = tar(&[
        Entry::Dir("private", 0o700),
        Entry::Dir("private/inner", 0o750),
        file("private/inner/secret", b"gone", 0o600),
        file("private/inner/other", b"stays", 0o600),
    ]);
    // The upper layer names only the whiteout, not the directories above it.
    let upper_bytes = tar(&[file("private/inner/.wh.secret", b"", 0o644)]);
    let r = pull_oci(
        &env,
        &reg,
        "wh/lowerdir",
        &[lower.clone(), upper_bytes.clone()],
    );
    let ours = env.path().join("ours");
    ok(env.skiff(&["unpack", &r, ours.to_str().unwrap()]));
    let mine = tree::describe(&ours);
    assert_eq!(mine["private"].mode, 0o700);
    assert_eq!(mine["private/inner"].mode, 0o750);
    assert!(!mine.contains_key("private/inner/secret"));
    assert!(mine.contains_key("private/inner/other"));
    assert_eq!(mine, tree::umoci_rootfs(env.path(), &r), "umoci agrees");
    // `run` mounts the layer trees as an overlay, which takes a merged directory's metadata
    // from the upper tree: there it has the lower directory's mode, not a made-up 0755.
    use std::os::unix::fs::PermissionsExt;
    let upper_tree = chain_tree(&env, &[&lower, &upper_bytes]);
    let mode = |p: &str| {
        std::fs::metadata(upper_tree.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!((mode("private"), mode("private/inner")), (0o700, 0o750));
}
