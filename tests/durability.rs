//! Trees checked against their records: damage of each kind a power cut leaves (a truncated
//! file, a zero-length file, a missing entry, a changed mode, changed content, a damaged
//! record) is found by `verify` and repaired from the blob without the network; a damaged blob
//! is fetched again; the first run after an unclean shutdown checks and repairs the trees it
//! mounts; a `verify --repair` killed at random points never leaves a half-rebuilt tree.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The tree of a bottom layer: `layers/<diff_id>` where it is self-contained, else under its
/// ChainID, which for the bottom layer is its diff_id (`layers/chain-<diff_id>`).
fn layer_tree(env: &Env, layer: &[u8]) -> PathBuf {
    let hex = &sha(layer)[7..];
    let own = env.root.join("layers").join(hex);
    if env.root.join("layers-self").join(hex).exists() {
        own
    } else {
        env.root.join("layers").join(format!("chain-{hex}"))
    }
}

#[track_caller]
fn verify_ok(env: &Env, args: &[&str]) -> String {
    let mut a = vec!["verify"];
    a.extend_from_slice(args);
    let out = ok(env.skiff(&a));
    assert!(out.contains("trees match their records"), "{out}");
    assert!(!out.contains("damaged"), "{out}");
    out
}

#[track_caller]
fn verify_finds(env: &Env, args: &[&str], what: &str) {
    let mut a = vec!["verify"];
    a.extend_from_slice(args);
    let o = env.skiff(&a);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        !o.status.success(),
        "verify {args:?} passed a damaged tree: {all}"
    );
    assert!(all.contains("damaged: tree") && all.contains(what), "{all}");
}

#[test]
fn each_kind_of_tree_damage_is_found_and_repaired_from_the_blob_offline() {
    let env = Env::new();
    let mut reg = env.registry();
    let (img, layers) = simple_image(&Spec::default());
    push(&reg.url(), "d/img", "v1", &img);
    let r = format!("{}/d/img:v1", reg.host());
    ok(env.skiff(&["pull", &r]));
    verify_ok(&env, &[]);
    verify_ok(&env, &["--quick"]);
    // Repairs use the blobs alone: the registry is gone.
    reg.stop();
    let tree = layer_tree(&env, &layers[0]);
    let data = tree.join("bin/data");
    let release = tree.join("etc/os-release");
    let good_data = std::fs::read(&data).unwrap();
    type Damage = (&'static str, &'static str, bool, fn(&Path));
    let cases: [Damage; 5] = [
        (
            "truncated file",
            "/bin/data: 1000 bytes, was 300000",
            true,
            |t| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(t.join("bin/data"))
                    .unwrap()
                    .set_len(1000)
                    .unwrap()
            },
        ),
        ("zero-length file", "/etc/os-release: 0 bytes", true, |t| {
            std::fs::write(t.join("etc/os-release"), b"").unwrap()
        }),
        ("missing entry", "/etc/os-release: missing", true, |t| {
            std::fs::remove_file(t.join("etc/os-release")).unwrap()
        }),
        ("changed mode", "/bin/data: mode 644, was 755", true, |t| {
            std::fs::set_permissions(t.join("bin/data"), PermissionsExt::from_mode(0o644)).unwrap()
        }),
        // Same size, other bytes: only the full check (which reads content) sees it.
        (
            "changed content",
            "/bin/data: content differs",
            false,
            |t| {
                let p = t.join("bin/data");
                let mut b = std::fs::read(&p).unwrap();
                b[5000] ^= 0xff;
                std::fs::write(&p, b).unwrap()
            },
        ),
    ];
    for (name, what, quick_sees, damage) in cases {
        damage(&tree);
        verify_finds(&env, &[], what);
        if quick_sees {
            verify_finds(&env, &["--quick"], what);
        } else {
            verify_ok(&env, &["--quick"]);
        }
        let out = ok(env.skiff(&["verify", "--repair"]));
        assert!(out.contains("repaired: tree"), "{name}: {out}");
        verify_ok(&env, &[]);
        assert_eq!(std::fs::read(&data).unwrap(), good_data, "{name}");
        assert_eq!(
            std::fs::read(&release).unwrap(),
            b"NAME=skiff-test\n",
            "{name}"
        );
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "{name}");
    }
    // A damaged record is told apart from a damaged tree, and rebuilt with it.
    // Named as its tree is (`<diff_id>` or `chain-<ChainID>`).
    let rec = env.root.join("records").join(tree.file_name().unwrap());
    let mut bytes = std::fs::read(&rec).unwrap();
    let n = bytes.len();
    bytes.truncate(n / 2);
    std::fs::write(&rec, bytes).unwrap();
    verify_finds(&env, &["--quick"], "record is damaged");
    ok(env.skiff(&["verify", "--repair", "--quick"]));
    verify_ok(&env, &[]);
    // A tree without its record is not complete: a run rebuilds it from the blob.
    std::fs::remove_file(&rec).unwrap();
    std::fs::write(&data, b"half").unwrap();
    let flat = env.path().join("flat");
    ok(env.skiff(&["unpack", "--pull=never", &r, flat.to_str().unwrap()]));
    assert_eq!(std::fs::read(flat.join("bin/data")).unwrap(), good_data);
    verify_ok(&env, &[]);
}

#[test]
fn a_damaged_blob_and_only_it_is_fetched_again() {
    let env = Env::new();
    let reg = env.registry();
    let (img, layers) = simple_image(&Spec::default());
    push(&reg.url(), "b/img", "v1", &img);
    let r = format!("{}/b/img:v1", reg.host());
    ok(env.skiff(&["pull", &r]));
    let victim = env.root.join("blobs/sha256").join(&sha(&img.blobs[0])[7..]);
    let other = env.root.join("blobs/sha256").join(&sha(&img.blobs[1])[7..]);
    let other_ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&other).unwrap());
    let mut b = std::fs::read(&victim).unwrap();
    b[20] ^= 1;
    std::fs::write(&victim, b).unwrap();
    // The tree built from it is damaged too.
    std::fs::write(layer_tree(&env, &layers[0]).join("etc/os-release"), b"").unwrap();
    let o = env.skiff(&["verify"]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains(&format!("damaged: blob {}", sha(&img.blobs[0]))));
    let out = ok(env.skiff(&["verify", "--repair"]));
    assert!(out.contains("fetched again"), "{out}");
    assert_eq!(std::fs::read(&victim).unwrap(), img.blobs[0]);
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&other).unwrap()),
        other_ino,
        "a sound blob is not fetched again"
    );
    verify_ok(&env, &[]);
}

/// As a power cut leaves the store: an operation of an earlier boot that never ended.
fn as_after_a_power_cut(env: &Env) {
    std::fs::write(
        env.root
            .join("state/ops/00000000-0000-0000-0000-000000000000.1.0"),
        b"",
    )
    .unwrap();
    let _ = std::fs::remove_file(env.root.join("state/mark"));
}

#[test]
fn the_first_run_after_an_unclean_shutdown_repairs_the_trees_it_mounts() {
    let env = Env::new();
    let reg = env.registry();
    let img = busybox_image(
        &Spec::default(),
        &[file("data/payload", &noise(50_000, 3), 0o644)],
    );
    push(&reg.url(), "u/img", "v1", &img);
    let r = format!("{}/u/img:v1", reg.host());
    ok(env.skiff(&["pull", &r]));
    let tree = env
        .root
        .join("layers")
        .read_dir()
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let payload = tree.join("data/payload");
    let cat = |env: &Env| {
        env.skiff(&[
            "run",
            "--pull=never",
            "--exec",
            "/bin/sh",
            &r,
            "--",
            "-c",
            "wc -c < /data/payload",
        ])
    };
    // After a clean shutdown a start reads no tree (what it finds is what was committed).
    std::fs::write(&payload, b"").unwrap();
    assert_eq!(stdout(&cat(&env)).trim(), "0");
    // After an unclean one, the first start checks the trees it mounts and rebuilds a damaged
    // one from its blob before the payload starts.
    let t = std::time::Instant::now();
    cat(&env);
    let warm = t.elapsed();
    as_after_a_power_cut(&env);
    let t = std::time::Instant::now();
    let o = cat(&env);
    let first = t.elapsed();
    // Printed, not asserted (no timed tests): what the first start after a cut costs.
    eprintln!(
        "warm start {warm:?}; first start after an unclean shutdown (check + rebuild) {first:?}"
    );
    assert_eq!(stdout(&o).trim(), "50000", "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rebuilding it from its blob"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(env.root.join("state/mark"))
            .unwrap()
            .split_whitespace()
            .nth(1),
        Some("suspect")
    );
    // Later starts of this boot check a tree once; a verify that finds nothing makes it clean.
    let t = std::time::Instant::now();
    let o = cat(&env);
    eprintln!(
        "a later start while suspect (trees already checked) {:?}",
        t.elapsed()
    );
    assert!(!stderr(&o).contains("rebuilding"), "{}", stderr(&o));
    verify_ok(&env, &[]);
    assert!(std::fs::read_to_string(env.root.join("state/mark"))
        .unwrap()
        .ends_with(" clean\n"));
    // A pull after an unclean shutdown never reuses a damaged tree either.
    as_after_a_power_cut(&env);
    std::fs::remove_file(tree.join("bin/busybox")).unwrap();
    ok(env.skiff(&["pull", &r]));
    assert!(tree.join("bin/busybox").exists());
    verify_ok(&env, &[]);
}

#[test]
fn a_repair_killed_at_random_points_leaves_the_old_tree_or_the_new_one() {
    let env = Env::new();
    let reg = env.registry();
    let mut entries = vec![Entry::Dir("many", 0o755)];
    for i in 0..3000 {
        entries.push(file(
            Box::leak(format!("many/f{i}").into_boxed_str()),
            &noise(2000, i),
            0o644,
        ));
    }
    let layer = tar(&entries);
    let img = build(std::slice::from_ref(&layer), &Spec::default());
    push(&reg.url(), "k/img", "v1", &img);
    let r = format!("{}/k/img:v1", reg.host());
    ok(env.skiff(&["pull", &r]));
    let tree = layer_tree(&env, &layer);
    let seed: u64 = std::env::var("SKIFF_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x21);
    eprintln!("seed {seed}");
    // How long an uncut repair takes, so the kills land before, during and after the swap.
    std::fs::write(tree.join("many/f7"), b"").unwrap();
    let t = std::time::Instant::now();
    ok(env.skiff(&["verify", "--repair", "--quick"]));
    let span = t.elapsed().as_millis() as u64 + 1;
    let mut x = seed;
    let (mut old, mut new) = (0, 0);
    for round in 0..10 {
        std::fs::write(tree.join("many/f7"), b"").unwrap_or_default();
        let mut child = env
            .skiff_cmd(&["verify", "--repair", "--quick"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((x >> 33) % (span + span / 4)));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        // Whole: every file there, with its size; only the damage done on purpose may remain.
        for i in (0..3000).step_by(97).chain([8, 2999]) {
            let len = std::fs::metadata(tree.join(format!("many/f{i}")))
                .unwrap_or_else(|e| panic!("round {round}: many/f{i}: {e}"))
                .len();
            assert_eq!(len, 2000, "round {round}: many/f{i}");
        }
        match std::fs::metadata(tree.join("many/f7")).unwrap().len() {
            0 => old += 1,
            2000 => new += 1,
            n => panic!("round {round}: many/f7 is {n} bytes"),
        }
    }
    eprintln!("killed repairs: {old} left the old tree, {new} the new one");
    ok(env.skiff(&["verify", "--repair"]));
    verify_ok(&env, &[]);
    assert_eq!(std::fs::read(tree.join("many/f7")).unwrap(), noise(2000, 7));
    ok(env.skiff(&["gc"]));
    let left: Vec<_> = std::fs::read_dir(env.root.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".lock") && n != "run")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
