use std::io::Write;
use std::os::unix::fs::symlink;

use super::root::*;

struct Scene {
    _t: tempfile::TempDir,
    root: Root,
    secret: std::path::PathBuf,
    outside: std::path::PathBuf,
}

/// A root with a planted host file beside it, which no operation may touch.
fn scene() -> Scene {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let secret = outside.join("secret");
    std::fs::write(&secret, b"host data").unwrap();
    let r = t.path().join("root");
    std::fs::create_dir_all(r.join("sub")).unwrap();
    symlink(&outside, r.join("abs")).unwrap();
    symlink("../outside", r.join("up")).unwrap();
    symlink("../../../../../../outside", r.join("sub/deep")).unwrap();
    symlink("sub", r.join("rel")).unwrap();
    symlink(&secret, r.join("link")).unwrap();
    Scene {
        root: Root::open(&r).unwrap(),
        secret,
        outside,
        _t: t,
    }
}

fn p(s: &str) -> InnerPath {
    InnerPath::parse(s.as_bytes()).unwrap().unwrap()
}

impl Scene {
    fn untouched(&self) {
        assert_eq!(std::fs::read(&self.secret).unwrap(), b"host data");
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "nothing new outside the root");
    }
}

#[test]
fn parsing_untrusted_paths() {
    assert_eq!(
        p("/etc/passwd"),
        p("etc/passwd"),
        "absolute paths are relative to the root"
    );
    assert_eq!(p("./a//b/"), p("a/b"));
    assert!(InnerPath::parse(b"./").unwrap().is_none());
    assert!(InnerPath::parse(b"").unwrap().is_none());
    for bad in [&b"../x"[..], b"a/../../b", b"a/..", b"..", b"a\0b"] {
        assert!(InnerPath::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(p("a/b/c").parent(), Some(p("a/b")));
    assert_eq!(p("a").parent(), None);
    assert_eq!(p("a/.wh.b").with_name(b"b"), p("a/b"));
}

#[test]
fn hostile_operations_stay_inside() {
    let s = scene();
    for (path, why) in [
        ("abs/secret", "absolute symlink out"),
        ("abs/new", "absolute symlink out, new file"),
        ("up/secret", "relative symlink out"),
        ("sub/deep/secret", "deep relative symlink out"),
        ("up/newdir/file", "create parents through a symlink"),
    ] {
        let ip = p(path);
        let r = s
            .root
            .parent(&ip, true)
            .and_then(|at| at.create_file().map(|mut f| f.write_all(b"pwned")));
        assert!(matches!(r, Err(RootError::Hostile { .. })), "{why}: {r:?}");
        s.untouched();
    }
    // A hardlink whose target goes through a symlink out of the root.
    let target = p("abs/secret");
    assert!(s.root.parent(&target, false).is_err());
    // Writing a file where a symlink to a host file stands replaces the link, not the file.
    let ip = p("link");
    s.root
        .parent(&ip, true)
        .unwrap()
        .create_file()
        .unwrap()
        .write_all(b"inside")
        .unwrap();
    s.untouched();
    assert_eq!(
        std::fs::read(s.root.path().join("link")).unwrap(),
        b"inside"
    );
    // Removing a symlink to a host directory removes the link only.
    let ip = p("abs");
    s.root.parent(&ip, false).unwrap().remove().unwrap();
    s.untouched();
    // mkdir over a symlink to a host directory makes a real directory inside.
    let ip = p("up");
    s.root.parent(&ip, false).unwrap().mkdir(0o755).unwrap();
    assert!(std::fs::symlink_metadata(s.root.path().join("up"))
        .unwrap()
        .is_dir());
    s.untouched();
}

#[test]
fn symlinks_inside_the_root_are_followed_for_parents() {
    let s = scene();
    let ip = p("rel/file");
    s.root
        .parent(&ip, true)
        .unwrap()
        .create_file()
        .unwrap()
        .write_all(b"x")
        .unwrap();
    assert_eq!(std::fs::read(s.root.path().join("sub/file")).unwrap(), b"x");
    let ip = p("a/b/c/d");
    s.root.parent(&ip, true).unwrap().create_file().unwrap();
    assert!(s.root.path().join("a/b/c/d").is_file());
    let src = p("a/b/c/d");
    let dst = p("hard");
    let t = s.root.parent(&src, false).unwrap();
    s.root.parent(&dst, true).unwrap().hardlink(&t).unwrap();
    let missing = p("nope");
    let t = s.root.parent(&missing, false).unwrap();
    assert!(s.root.parent(&dst, true).unwrap().hardlink(&t).is_err());
}

#[test]
fn remove_dir_all_does_not_follow_links() {
    let s = scene();
    remove_dir_all(s.root.path()).unwrap();
    assert!(!s.root.path().exists());
    s.untouched();
}

#[test]
fn paths_too_long_or_too_deep_are_refused() {
    let deep = "d/".repeat(MAX_DEPTH + 1);
    let e = InnerPath::parse(deep.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("1024 directories"), "{e}");
    assert!(InnerPath::parse("d/".repeat(MAX_DEPTH).as_bytes()).is_ok());
    let long = "x".repeat(MAX_PATH + 1);
    let e = InnerPath::parse(long.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("longer than 4096"), "{e}");
}

#[test]
fn a_tree_deeper_than_path_max_is_removed_without_an_fd_per_level() {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};
    let t = tempfile::tempdir().unwrap();
    let top = t.path().join("top");
    std::fs::create_dir(&top).unwrap();
    // 3000 levels ("d/" each) is past PATH_MAX: only fd-relative calls reach the bottom.
    let mut cur =
        nix::fcntl::open(&top, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    for i in 0..3000 {
        mkdirat(&cur, "d", Mode::from_bits_truncate(0o755)).unwrap();
        if i % 500 == 0 {
            let f = openat(
                &cur,
                "file",
                OFlag::O_CREAT | OFlag::O_WRONLY,
                Mode::from_bits_truncate(0o644),
            )
            .unwrap();
            drop(f);
            nix::unistd::symlinkat("/etc/passwd", &cur, "link").unwrap();
            mkdirat(&cur, "side", Mode::from_bits_truncate(0o755)).unwrap();
        }
        cur = openat(
            &cur,
            "d",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
    }
    drop(cur);
    remove_dir_all(&top).unwrap();
    assert!(!top.exists());
    assert!(
        std::path::Path::new("/etc/passwd").exists(),
        "symlinks are not followed"
    );
}
