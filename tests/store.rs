//! The store's own defences: root only, private, and never fooled by planted symlinks.

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn the_store_is_roots_and_private() {
    let env = Env::new();
    let reg = env.registry();
    let (img, _) = simple_image(&Spec::default());
    push(&reg.url(), "perm/img", "v1", &img);
    ok(env.skiff(&["pull", &format!("{}/perm/img:v1", reg.host())]));
    let m = std::fs::metadata(&env.root).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o700));

    // A non-root user gets a clear error, and no store is created.
    let other = env.path().join("other-store");
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_skiff"),
            "--root",
        ])
        .arg(&other)
        .args(["pull", &format!("{}/perm/img:v1", reg.host())])
        .output()
        .unwrap();
    let err = fails(o);
    assert!(err.contains("must run as root"), "{err}");
    assert!(!other.exists());
}

#[test]
fn planted_symlinks_in_the_store_are_not_followed() {
    let env = Env::new();
    let reg = env.registry();
    let (img, layers) = simple_image(&Spec::default());
    push(&reg.url(), "plant/img", "v1", &img);
    let r = format!("{}/plant/img:v1", reg.host());
    ok(env.skiff(&["pull", &r]));
    let outside = env.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();

    // A blob replaced by a symlink to a file with the very same bytes is still refused.
    let config = env.root.join("blobs/sha256").join(&sha(&img.config)[7..]);
    std::fs::write(outside.join("config"), &img.config).unwrap();
    std::fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink(outside.join("config"), &config).unwrap();
    let err = fails(env.skiff(&["inspect", &r]));
    assert!(err.contains("symlink"), "{err}");
    ok(env.skiff(&["pull", &r]));
    assert!(
        std::fs::symlink_metadata(&config).unwrap().is_file(),
        "the link was replaced by the verified blob"
    );
    assert_eq!(std::fs::read(outside.join("config")).unwrap(), img.config);

    // A layer tree replaced by a symlink to a directory elsewhere is unpacked again, for real.
    // (Layer 2 has no entry for `etc/`: its tree is its stack's, under the ChainID.)
    let chain = format!("{} {}", sha(&layers[0]), sha(&layers[1]));
    let layer = env
        .root
        .join("layers")
        .join(format!("chain-{}", &sha(chain.as_bytes())[7..]));
    std::fs::remove_dir_all(&layer).unwrap();
    std::fs::create_dir_all(outside.join("fake-layer/etc")).unwrap();
    std::fs::write(outside.join("fake-layer/etc/motd"), b"planted").unwrap();
    std::os::unix::fs::symlink(outside.join("fake-layer"), &layer).unwrap();
    ok(env.skiff(&["pull", &r]));
    assert!(std::fs::symlink_metadata(&layer).unwrap().is_dir());
    assert_eq!(
        std::fs::read(layer.join("etc/motd")).unwrap(),
        b"hello from layer 2\n"
    );
    assert_eq!(
        std::fs::read(outside.join("fake-layer/etc/motd")).unwrap(),
        b"planted"
    );
}

#[test]
fn progress_on_a_terminal_and_log_lines_otherwise() {
    let env = Env::new();
    let reg = env.registry();
    let (img, _) = simple_image(&Spec::default());
    push(&reg.url(), "tty/img", "v1", &img);
    let r = format!("{}/tty/img:v1", reg.host());
    // `script` gives skiff a terminal, as an operator's shell would.
    let cmd = format!(
        "{} --root {} pull {r}",
        env!("CARGO_BIN_EXE_skiff"),
        env.root.display()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("layers,") && out.contains("MiB"),
        "a progress line on the terminal: {out:?}"
    );
    assert!(
        !out.contains("downloading layer"),
        "no log lines per layer on a terminal: {out:?}"
    );
    // Without a terminal (systemd, journald): plain log lines.
    let env2 = Env::new();
    let err = stderr(&env2.skiff(&["pull", &r]));
    assert!(
        err.contains("INFO downloading layer") && err.contains("layer verified"),
        "{err}"
    );
    assert!(
        !err.contains('\r') && !err.contains("\u{1b}["),
        "no terminal control codes in logs: {err:?}"
    );
}

/// A layer whose tree depends on its lowers (`a/f` with no entry for `a/`) is kept under its
/// ChainID, once per lower stack: `gc` keeps both while their images are listed, keeps the
/// one a running payload leases after its image is removed (with its base), and collects
/// each once nothing names or leases it.
#[test]
fn gc_keeps_and_collects_chain_keyed_trees() {
    let env = Env::new();
    let reg = env.registry();
    let app = tar(&[file("a/f", b"app", 0o644)]);
    let bases = [
        busybox_layer(&[Entry::Dir("a", 0o700)]),
        busybox_layer(&[Entry::Dir("a", 0o750)]),
    ];
    let mut refs = Vec::new();
    let mut own = Vec::new();
    let mut chain = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        let img = build(&[base.clone(), app.clone()], &Spec::default());
        push(&reg.url(), &format!("chain/img{i}"), "v1", &img);
        let r = format!("{}/chain/img{i}:v1", reg.host());
        ok(env.skiff(&["pull", &r]));
        refs.push(r);
        own.push(sha(base)[7..].to_string());
        let id = format!("{} {}", sha(base), sha(&app));
        chain.push(format!("chain-{}", &sha(id.as_bytes())[7..]));
    }
    // The trees, and (`+name`) the marks of self-contained ones.
    let trees = || -> std::collections::BTreeSet<String> {
        let names = |d: &str| -> Vec<String> {
            std::fs::read_dir(env.root.join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        let marks = names("layers-self").into_iter().map(|n| format!("+{n}"));
        names("layers").into_iter().chain(marks).collect()
    };
    let all: std::collections::BTreeSet<String> = (0..2)
        .flat_map(|i| [own[i].clone(), format!("+{}", own[i]), chain[i].clone()])
        .collect();
    assert_eq!(
        trees(),
        all,
        "the app layer once per base, under its ChainID"
    );
    ok(env.skiff(&["gc"]));
    assert_eq!(trees(), all, "listed images keep their trees");

    let mut child = env
        .skiff_cmd(&[
            "run",
            "--pull=never",
            "--exec",
            "/bin/sleep",
            &refs[0],
            "--",
            "30",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    ok(env.skiff(&["rm", &refs[0]]));
    ok(env.skiff(&["rm", &refs[1]]));
    ok(env.skiff(&["gc"]));
    let leased: std::collections::BTreeSet<String> =
        [own[0].clone(), format!("+{}", own[0]), chain[0].clone()].into();
    assert_eq!(trees(), leased, "the running payload's trees stay");
    child.kill().unwrap();
    child.wait().unwrap();
    ok(env.skiff(&["gc"]));
    assert!(trees().is_empty(), "{:?}", trees());
}
