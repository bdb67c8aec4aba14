//! Layers that reach into the layers below them, applied as the OCI image spec's changeset
//! rules say: parents a layer does not carry, a whiteout after a file of the same name in the
//! same layer, hard links to a lower layer's file, a hard link to itself, libarchive's
//! unpadded base64 xattrs. Each layer is written by GNU tar, bsdtar or Python's tarfile and
//! put into an image verbatim by `umoci raw add-layer`; skiff's tree is compared entry by
//! entry, inode sharing included, with umoci's unpack and with GNU tar extracting the layers
//! in order (whiteouts applied to what lies below first); the overlay a payload runs on is
//! checked from inside it.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const T_LOWER: i64 = 1_500_000_000;

#[derive(Clone, Copy, Debug)]
enum Writer {
    Gnu,
    Bsd,
}

/// A layer archive of `paths` (in that order, no recursion into directories) of `src`.
fn layer(w: Writer, src: &Path, out: &Path, paths: &[&str]) -> PathBuf {
    let mut c = match w {
        Writer::Gnu => {
            let mut c = Command::new("tar");
            c.args(["--format=posix", "--xattrs", "--xattrs-include=*"]);
            c
        }
        Writer::Bsd => {
            let mut c = Command::new("bsdtar");
            c.args(["--format=pax", "--xattrs"]);
            c
        }
    };
    c.args(["--numeric-owner", "--no-recursion", "-c", "-f"])
        .arg(out)
        .arg("-C")
        .arg(src)
        .args(paths);
    run_ok(&mut c);
    out.to_path_buf()
}

fn set_times(p: &Path, t: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let ts = libc::timespec {
        tv_sec: t,
        tv_nsec: 0,
    };
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [ts, ts].as_ptr(), 0) };
    assert_eq!(r, 0);
}

fn dir(p: &Path, mode: u32, uid: u32, gid: u32) {
    fs::create_dir_all(p).unwrap();
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn write(p: &Path, data: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    set_times(p, T_LOWER);
}

/// An OCI layout with `layers` added verbatim, bottom first.
fn umoci_image(work: &Path, layers: &[PathBuf]) -> String {
    let layout = work.join("layout");
    let img = format!("{}:v1", layout.display());
    run_ok(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    run_ok(Command::new("umoci").args(["new", "--image", &img]));
    for l in layers {
        run_ok(
            Command::new("umoci")
                .args(["raw", "add-layer", "--image", &img])
                .arg(l),
        );
    }
    img
}

/// What GNU tar makes of the layers extracted in order into `out`, each layer's whiteouts
/// first applied to what lies below (they apply to the lower layers only).
fn gnu_apply(layers: &[PathBuf], out: &Path) {
    fs::create_dir_all(out).unwrap();
    for l in layers {
        let list = run_ok(Command::new("tar").arg("-tf").arg(l)).stdout;
        for entry in String::from_utf8(list).unwrap().lines() {
            let p = Path::new(entry.trim_start_matches("./"));
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(hidden) = name.strip_prefix(".wh.") else {
                continue;
            };
            let parent = out.join(p.parent().unwrap());
            if hidden == ".wh..opq" {
                for e in fs::read_dir(&parent).into_iter().flatten() {
                    let e = e.unwrap().path();
                    let _ = fs::remove_dir_all(&e).or_else(|_| fs::remove_file(&e));
                }
            } else {
                let t = parent.join(hidden);
                let _ = fs::remove_dir_all(&t).or_else(|_| fs::remove_file(&t));
            }
        }
        run_ok(
            Command::new("tar")
                .args([
                    "-x",
                    "-p",
                    "--numeric-owner",
                    "--same-owner",
                    "--xattrs",
                    "--xattrs-include=*",
                    "--exclude=.wh.*",
                    "-f",
                ])
                .arg(l)
                .arg("-C")
                .arg(out),
        );
    }
}

/// The files that share an inode, as sets of paths (each file's nlink is its set's size).
fn links(root: &Path) -> BTreeSet<Vec<String>> {
    let mut by_ino: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let tree = tree::describe(root);
    for (path, node) in &tree {
        if node.kind != "file" {
            continue;
        }
        let m = fs::symlink_metadata(root.join(path)).unwrap();
        by_ino.entry(m.ino()).or_default().push(path.clone());
    }
    by_ino
        .into_values()
        .filter(|paths| paths.len() > 1)
        .inspect(|paths| {
            let n = fs::metadata(root.join(&paths[0])).unwrap().nlink();
            assert_eq!(n, paths.len() as u64, "{paths:?}: nlink");
        })
        .collect()
}

/// An image pushed from an OCI layout, pulled by skiff and unpacked (flat) into `ours`.
struct Case {
    env: Env,
    _reg: Registry,
    r: String,
    layout: String,
}

impl Case {
    fn new(layers: &[PathBuf], env: Env) -> Case {
        let layout = umoci_image(env.path(), layers);
        Case::of_layout(layout, env)
    }

    fn of_layout(layout: String, env: Env) -> Case {
        let reg = env.registry();
        let r = format!("{}/changesets/case:v1", reg.host());
        run_ok(Command::new("skopeo").args([
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{layout}"),
            &format!("docker://{r}"),
        ]));
        ok(env.skiff(&["pull", &r]));
        Case {
            env,
            _reg: reg,
            r,
            layout,
        }
    }

    fn ours(&self) -> PathBuf {
        let ours = self.env.path().join("ours");
        if !ours.exists() {
            ok(self.env.skiff(&["unpack", &self.r, ours.to_str().unwrap()]));
        }
        ours
    }

    fn umoci(&self) -> PathBuf {
        let bundle = self.env.path().join("bundle");
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image", &self.layout])
                .arg(&bundle),
        );
        bundle.join("rootfs")
    }

    /// skiff's tree equals `theirs`, entry by entry and link by link.
    fn same_as(&self, theirs: &Path, who: &str) {
        let ours = self.ours();
        assert_eq!(tree::describe(&ours), tree::describe(theirs), "{who}");
        assert_eq!(links(&ours), links(theirs), "{who}: shared inodes");
    }

    /// And `--storage flat`'s tree (which has the run plan's mountpoints too) holds the same.
    fn flat_storage_agrees(&self) {
        ok(self.env.skiff(&["--storage=flat", "pull", &self.r]));
        let flat = fs::read_dir(self.env.root.join("rootfs"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut theirs = tree::describe(&flat);
        for m in ["proc", "sys", "dev", "tmp", "run"] {
            theirs.remove(m);
        }
        assert_eq!(tree::describe(&self.ours()), theirs, "--storage flat");
        assert_eq!(links(&self.ours()), links(&flat), "--storage flat");
    }
}

/// Lower: `a/` 0700 5:6 with an xattr, Debian's `usr/local` 2775 root:staff. Upper, with no
/// directory entries: `a/f`, `usr/local/bin/app`, `a/new/g` (`a/new` is in no layer).
fn implicit_parents_layers(w: Writer, work: &Path) -> Vec<PathBuf> {
    let lo = work.join("lo");
    dir(&lo.join("a"), 0o700, 5, 6);
    run_ok(
        Command::new("setfattr")
            .args(["-n", "user.k", "-v", "kept"])
            .arg(lo.join("a")),
    );
    write(&lo.join("a/old"), "old");
    dir(&lo.join("usr"), 0o755, 0, 0);
    dir(&lo.join("usr/local"), 0o2775, 0, 50);
    write(&lo.join("usr/local/README"), "local");
    for d in ["a", "usr/local", "usr"] {
        set_times(&lo.join(d), T_LOWER);
    }
    let up = work.join("up");
    write(&up.join("a/f"), "f");
    write(&up.join("usr/local/bin/app"), "app");
    write(&up.join("a/new/g"), "g");
    vec![
        layer(
            w,
            &lo,
            &work.join("lower.tar"),
            &["a", "a/old", "usr", "usr/local", "usr/local/README"],
        ),
        layer(
            w,
            &up,
            &work.join("upper.tar"),
            &["a/f", "usr/local/bin/app", "a/new/g"],
        ),
    ]
}

fn implicit_parents(w: Writer) {
    let env = Env::new();
    let layers = implicit_parents_layers(w, env.path());
    let c = Case::new(&layers, env);
    let ours = c.ours();
    let t = tree::describe(&ours);
    let (a, local, new) = (&t["a"], &t["usr/local"], &t["a/new"]);
    assert_eq!((a.mode, a.uid, a.gid), (0o700, 5, 6), "{w:?}");
    assert_eq!(a.xattrs, vec![("user.k".into(), b"kept".to_vec())]);
    assert_eq!((local.mode, local.uid, local.gid), (0o2775, 0, 50));
    assert_eq!((new.mode, new.uid, new.gid), (0o755, 0, 0), "in no layer");
    // Its times too (GNU tar and umoci change them when they add the file; `tree` leaves a
    // directory's mtime out of the comparison).
    for d in ["a", "usr/local"] {
        assert_eq!(fs::metadata(ours.join(d)).unwrap().mtime(), T_LOWER, "{d}");
    }
    c.same_as(&c.umoci(), "umoci");
    let gnu = c.env.path().join("gnu");
    gnu_apply(&layers, &gnu);
    c.same_as(&gnu, "GNU tar");
    c.flat_storage_agrees();
}

#[test]
fn implicit_parents_keep_the_lower_directory_gnu_tar() {
    implicit_parents(Writer::Gnu);
}

#[test]
fn implicit_parents_keep_the_lower_directory_bsdtar() {
    implicit_parents(Writer::Bsd);
}

/// umoci as the writer: `umoci repack` of a file added to a directory of the layer below
/// writes the file alone, without the directory.
#[test]
fn implicit_parents_keep_the_lower_directory_umoci_repack() {
    let env = Env::new();
    let work = env.path();
    let layout = work.join("layout");
    let img = format!("{}:v1", layout.display());
    let bundle = work.join("b");
    run_ok(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    run_ok(Command::new("umoci").args(["new", "--image", &img]));
    let repack = |change: &dyn Fn(&Path)| {
        let _ = fs::remove_dir_all(&bundle);
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image", &img])
                .arg(&bundle),
        );
        change(&bundle.join("rootfs"));
        run_ok(
            Command::new("umoci")
                .args(["repack", "--image", &img])
                .arg(&bundle),
        );
    };
    repack(&|root| {
        dir(&root.join("a"), 0o700, 5, 6);
        write(&root.join("a/old"), "old");
        dir(&root.join("usr/local"), 0o2775, 0, 50);
        set_times(&root.join("a"), T_LOWER);
        set_times(&root.join("usr/local"), T_LOWER);
    });
    // Directories whose metadata did not change (their mtime put back) are not written again.
    repack(&|root| {
        write(&root.join("a/f"), "f");
        write(&root.join("usr/local/app"), "app");
        set_times(&root.join("a"), T_LOWER);
        set_times(&root.join("usr/local"), T_LOWER);
    });
    // The layers as umoci wrote them, uncompressed, for GNU tar.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| fs::read(layout.join("blobs/sha256").join(&d[7..])).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let mut layers = Vec::new();
    for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&blob(l["digest"].as_str().unwrap())[..]),
            &mut raw,
        )
        .unwrap();
        let p = work.join(format!("layer{i}.tar"));
        fs::write(&p, raw).unwrap();
        layers.push(p);
    }
    let listed =
        String::from_utf8(run_ok(Command::new("tar").arg("-tf").arg(&layers[1])).stdout).unwrap();
    assert!(
        listed.contains("a/f")
            && !listed
                .lines()
                .any(|l| ["a/", "./a/", "usr/local/", "./usr/local/"].contains(&l)),
        "umoci wrote the file without its directory: {listed}"
    );
    let c = Case::of_layout(img, env);
    let t = tree::describe(&c.ours());
    assert_eq!((t["a"].mode, t["a"].uid, t["a"].gid), (0o700, 5, 6));
    assert_eq!((t["usr/local"].mode, t["usr/local"].gid), (0o2775, 50));
    for d in ["a", "usr/local"] {
        assert_eq!(
            fs::metadata(c.ours().join(d)).unwrap().mtime(),
            T_LOWER,
            "{d}"
        );
    }
    c.same_as(&c.umoci(), "umoci");
    let gnu = c.env.path().join("gnu");
    gnu_apply(&layers, &gnu);
    c.same_as(&gnu, "GNU tar");
}

/// Lower: `x`, `d/lower`, `e/lower`. Upper: `x`, then `.wh.x`; `d/`, `d/upper`, then `.wh.d`;
/// `.wh.e`, then `e/`, `e/upper`.
fn same_layer_whiteout_layers(w: Writer, work: &Path) -> Vec<PathBuf> {
    let lo = work.join("lo");
    write(&lo.join("x"), "lower x");
    write(&lo.join("d/lower"), "lower d");
    write(&lo.join("e/lower"), "lower e");
    let up = work.join("up");
    write(&up.join("x"), "upper x");
    write(&up.join(".wh.x"), "");
    write(&up.join("d/upper"), "upper d");
    write(&up.join(".wh.d"), "");
    write(&up.join(".wh.e"), "");
    write(&up.join("e/upper"), "upper e");
    vec![
        layer(
            w,
            &lo,
            &work.join("lower.tar"),
            &["x", "d", "d/lower", "e", "e/lower"],
        ),
        layer(
            w,
            &up,
            &work.join("upper.tar"),
            &[
                "x", ".wh.x", "d", "d/upper", ".wh.d", ".wh.e", "e", "e/upper",
            ],
        ),
    ]
}

fn same_layer_whiteout(w: Writer) {
    let env = Env::new();
    let layers = same_layer_whiteout_layers(w, env.path());
    let c = Case::new(&layers, env);
    let ours = c.ours();
    assert_eq!(
        fs::read_to_string(ours.join("x")).unwrap(),
        "upper x",
        "{w:?}"
    );
    assert_eq!(fs::read_to_string(ours.join("d/upper")).unwrap(), "upper d");
    assert!(!ours.join("d/lower").exists(), "the lower d is whited out");
    assert!(!ours.join("e/lower").exists(), "the lower e is whited out");
    assert_eq!(fs::read_to_string(ours.join("e/upper")).unwrap(), "upper e");
    let gnu = c.env.path().join("gnu");
    gnu_apply(&layers, &gnu);
    c.same_as(&gnu, "GNU tar");
    c.same_as(&c.umoci(), "umoci");
    c.flat_storage_agrees();
}

#[test]
fn a_whiteout_after_a_file_of_the_same_layer_keeps_it_gnu_tar() {
    same_layer_whiteout(Writer::Gnu);
}

#[test]
fn a_whiteout_after_a_file_of_the_same_layer_keeps_it_bsdtar() {
    same_layer_whiteout(Writer::Bsd);
}

/// Lower: `t/file`, `t/other`. Upper: hard links `t/link` and `deep/link2` to the lower
/// `t/file`, nothing else (the writer archives the file too; that member is then removed,
/// GNU tar's `--delete` or bsdtar copying the archive without it).
fn cross_layer_link_layers(w: Writer, work: &Path) -> Vec<PathBuf> {
    let lo = work.join("lo");
    write(&lo.join("t/file"), "shared");
    write(&lo.join("t/other"), "other");
    let up = work.join("up");
    write(&up.join("t/file"), "shared");
    fs::create_dir_all(up.join("deep")).unwrap();
    fs::hard_link(up.join("t/file"), up.join("t/link")).unwrap();
    fs::hard_link(up.join("t/file"), up.join("deep/link2")).unwrap();
    let full = layer(
        w,
        &up,
        &work.join("full.tar"),
        &["t/file", "t/link", "deep/link2"],
    );
    let upper = work.join("upper.tar");
    match w {
        Writer::Gnu => {
            fs::copy(&full, &upper).unwrap();
            run_ok(
                Command::new("tar")
                    .arg("--delete")
                    .arg("-f")
                    .arg(&upper)
                    .arg("t/file"),
            );
        }
        Writer::Bsd => {
            run_ok(
                Command::new("bsdtar")
                    .args(["--format=pax", "-c", "-f"])
                    .arg(&upper)
                    .args(["--exclude", "t/file"])
                    .arg(format!("@{}", full.display())),
            );
        }
    }
    let listed = run_ok(Command::new("tar").arg("-tvf").arg(&upper)).stdout;
    let listed = String::from_utf8(listed).unwrap();
    assert!(
        listed.lines().count() == 2 && listed.contains("link to t/file"),
        "{listed}"
    );
    vec![
        layer(w, &lo, &work.join("lower.tar"), &["t", "t/file", "t/other"]),
        upper,
    ]
}

fn cross_layer_link(w: Writer) {
    let env = Env::new();
    let layers = cross_layer_link_layers(w, env.path());
    let c = Case::new(&layers, env);
    let ours = c.ours();
    let want: BTreeSet<Vec<String>> = [vec![
        "deep/link2".to_string(),
        "t/file".to_string(),
        "t/link".to_string(),
    ]]
    .into();
    assert_eq!(links(&ours), want, "{w:?}");
    c.same_as(&c.umoci(), "umoci");
    let gnu = c.env.path().join("gnu");
    gnu_apply(&layers, &gnu);
    c.same_as(&gnu, "GNU tar");
    c.flat_storage_agrees();
}

#[test]
fn hard_links_to_a_lower_file_share_its_inode_gnu_tar() {
    cross_layer_link(Writer::Gnu);
}

#[test]
fn hard_links_to_a_lower_file_share_its_inode_bsdtar() {
    cross_layer_link(Writer::Bsd);
}

/// `tar cf l.tar dir dir/file` names the file twice: the second member is a hard link to
/// itself. GNU tar extracts the file and skips the link (umoci refuses the layer).
#[test]
fn a_hard_link_to_itself_is_skipped_as_gnu_tar_does() {
    let env = Env::new();
    let src = env.path().join("src");
    write(&src.join("dir/file"), "named twice");
    let l = env.path().join("l.tar");
    run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-c", "-f"])
            .arg(&l)
            .arg("-C")
            .arg(&src)
            .args(["dir", "dir/file"]),
    );
    let listed = String::from_utf8(run_ok(Command::new("tar").arg("-tvf").arg(&l)).stdout).unwrap();
    assert!(listed.contains("dir/file link to dir/file"), "{listed}");
    let c = Case::new(std::slice::from_ref(&l), env);
    let gnu = c.env.path().join("gnu");
    gnu_apply(&[l], &gnu);
    c.same_as(&gnu, "GNU tar");
    assert_eq!(
        fs::read_to_string(c.ours().join("dir/file")).unwrap(),
        "named twice"
    );
}

/// libarchive writes `LIBARCHIVE.xattr.NAME` values in base64 without padding. A layer whose
/// only xattr record is that one (as bsdtar wrote it), in a PAX header from Python's tarfile,
/// unpacks as bsdtar extracts it.
#[test]
fn libarchive_unpadded_base64_xattrs_as_bsdtar_reads_them() {
    let env = Env::new();
    let src = env.path().join("src");
    write(&src.join("f"), "x");
    run_ok(
        Command::new("setfattr")
            .args(["-n", "user.k", "-v", "ABCDEFG"])
            .arg(src.join("f")),
    );
    let theirs_tar = layer(Writer::Bsd, &src, &env.path().join("bsd.tar"), &["f"]);
    let bytes = fs::read(&theirs_tar).unwrap();
    let key = b"LIBARCHIVE.xattr.user.k=";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("bsdtar wrote a LIBARCHIVE.xattr record")
        + key.len();
    let end = at + bytes[at..].iter().position(|&b| b == b'\n').unwrap();
    let value = String::from_utf8(bytes[at..end].to_vec()).unwrap();
    assert_eq!(value, "QUJDREVGRw", "libarchive leaves the padding out");
    const PY: &str = r#"
import sys, tarfile
out = tarfile.open(sys.argv[1], mode="w", format=tarfile.PAX_FORMAT)
ti = out.gettarinfo(sys.argv[2], arcname="f")
ti.pax_headers["LIBARCHIVE.xattr.user.k"] = sys.argv[3]
with open(sys.argv[2], "rb") as f:
    out.addfile(ti, f)
out.close()
"#;
    let l = env.path().join("l.tar");
    run_ok(
        Command::new("python3")
            .args(["-c", PY])
            .arg(&l)
            .arg(src.join("f"))
            .arg(&value),
    );
    let c = Case::new(std::slice::from_ref(&l), env);
    let bsd = c.env.path().join("bsd");
    fs::create_dir(&bsd).unwrap();
    run_ok(
        Command::new("bsdtar")
            .args(["-x", "-p", "--numeric-owner", "--xattrs", "-f"])
            .arg(&l)
            .arg("-C")
            .arg(&bsd),
    );
    assert_eq!(
        tree::describe(&bsd)["f"].xattrs,
        vec![("user.k".into(), b"ABCDEFG".to_vec())],
        "bsdtar reads it"
    );
    c.same_as(&bsd, "bsdtar");
}

/// The overlay a payload runs on: a busybox layer, then the lower and upper layers of the
/// cases above (GNU tar), seen from inside with busybox's `stat`.
#[test]
fn the_running_payload_sees_the_layers_applied_in_order() {
    let env = Env::new();
    let reg = env.registry();
    let work = env.path();
    let mut layers = vec![busybox_layer(&[])];
    for (i, make) in [
        implicit_parents_layers as fn(Writer, &Path) -> Vec<PathBuf>,
        same_layer_whiteout_layers,
        cross_layer_link_layers,
    ]
    .iter()
    .enumerate()
    {
        let w = work.join(format!("case{i}"));
        fs::create_dir(&w).unwrap();
        layers.extend(make(Writer::Gnu, &w).iter().map(|p| fs::read(p).unwrap()));
    }
    let img = build(&layers, &Spec::default());
    push(&reg.url(), "changesets/run", "v1", &img);
    let r = format!("{}/changesets/run:v1", reg.host());
    ok(env.skiff(&["pull", &r]));
    let out = ok(env.skiff(&[
        "run",
        "--pull=never",
        "--exec",
        "/bin/sh",
        &r,
        "--",
        "-c",
        "stat -c '%n %a %u:%g %Y' /a /usr/local /a/new; cat /x; echo; ls /d; ls /e; \
         stat -c '%n %i %h' /t/file /t/link /deep/link2",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 9, "{out}");
    assert_eq!(lines[0], format!("/a 700 5:6 {T_LOWER}"), "{out}");
    assert_eq!(lines[1], format!("/usr/local 2775 0:50 {T_LOWER}"), "{out}");
    assert!(lines[2].starts_with("/a/new 755 0:0 "), "{out}");
    assert_eq!(lines[3..6], ["upper x", "upper", "upper"], "{out}");
    // A hard link into a lower layer: the layer trees share the file, and overlayfs shows
    // the lower layers' one inode under every name (until a write copies one name up).
    let ino = |l: &str| l.split(' ').nth(1).unwrap().to_string();
    let links: Vec<&str> = lines[6..9].to_vec();
    assert!(
        links
            .iter()
            .all(|l| ino(l) == ino(links[0]) && l.ends_with(" 3")),
        "{out}"
    );
}

fn staging_left(env: &Env) -> Vec<String> {
    fs::read_dir(env.root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock") && n != "run")
        .collect()
}

/// A layer staged and waiting for its lowers when another layer of the image fails: its
/// staging is removed, no tree of it is left, and the next pull of a good image with the same
/// layers works.
#[test]
fn a_waiting_layer_is_removed_when_another_fails_and_the_next_pull_works() {
    let env = Env::new();
    let reg = env.registry();
    let lower = tar(&[Entry::Dir("a", 0o700), file("a/old", b"old", 0o644)]);
    let upper = tar(&[file("a/f", b"implies a", 0o644)]);
    let last = tar(&[file("z", b"z", 0o644)]);
    let layers = vec![lower, upper.clone(), last];
    let mut ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    ids[2] = sha(b"not this layer");
    let bad = build(
        &layers,
        &Spec {
            diff_ids: Some(ids),
            ..Spec::default()
        },
    );
    push(&reg.url(), "wait/img", "bad", &bad);
    let err = fails(env.skiff(&["pull", &format!("{}/wait/img:bad", reg.host())]));
    assert!(err.contains("diff_id"), "{err}");
    assert!(staging_left(&env).is_empty(), "{:?}", staging_left(&env));
    assert!(!env.root.join("layers").join(&sha(&upper)[7..]).exists());
    push(
        &reg.url(),
        "wait/img",
        "good",
        &build(&layers, &Spec::default()),
    );
    let r = format!("{}/wait/img:good", reg.host());
    ok(env.skiff(&["pull", &r]));
    let ours = env.path().join("ours");
    ok(env.skiff(&["unpack", &r, ours.to_str().unwrap()]));
    assert_eq!(tree::describe(&ours)["a"].mode, 0o700);
    assert_eq!(fs::read_to_string(ours.join("a/f")).unwrap(), "implies a");
}

/// The names in `layers/` (or another directory of the store).
fn names_in(env: &Env, dir: &str) -> BTreeSet<String> {
    fs::read_dir(env.root.join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn layer_trees(env: &Env) -> BTreeSet<String> {
    names_in(env, "layers")
}

/// Two bases where `a/` is 0700 5:6 and 0750 7:8, and one app layer of GNU tar's with only
/// `a/f` (as `umoci raw add-layer` or `crane append` put onto each): the layers of the two
/// images, bottom first (busybox, so a payload runs, then the base, then the app layer).
fn two_bases_layers(work: &Path) -> [Vec<PathBuf>; 2] {
    let bb = work.join("busybox.tar");
    fs::write(&bb, busybox_layer(&[])).unwrap();
    let base = |name: &str, mode, uid, gid| {
        let src = work.join(name);
        dir(&src.join("a"), mode, uid, gid);
        write(&src.join("a/old"), name);
        set_times(&src.join("a"), T_LOWER);
        layer(
            Writer::Gnu,
            &src,
            &work.join(format!("{name}.tar")),
            &["a", "a/old"],
        )
    };
    let (one, two) = (base("one", 0o700, 5, 6), base("two", 0o750, 7, 8));
    let up = work.join("app");
    write(&up.join("a/f"), "app");
    let app = layer(Writer::Gnu, &up, &work.join("app.tar"), &["a/f"]);
    [vec![bb.clone(), one, app.clone()], vec![bb, two, app]]
}

/// One app layer over two different bases, both images pulled into one store (in both
/// orders): each gets the app layer's tree over its own base, as umoci's unpack and GNU tar
/// have it, in the flat tree and in the overlay a payload runs on; the app layer is unpacked
/// once per lower stack (`layers/chain-<ChainID>`), the self-contained bases once each under
/// their diff_ids.
#[test]
fn one_layer_over_two_bases_in_one_store_takes_each_bases_directory() {
    let work_env = Env::new();
    let stacks = two_bases_layers(work_env.path());
    let want = [(0o700, 5, 6), (0o750, 7, 8)];
    let mut refs_of = Vec::new();
    let mut layouts = Vec::new();
    let reg = work_env.registry();
    for (i, layers) in stacks.iter().enumerate() {
        let w = work_env.path().join(format!("img{i}"));
        fs::create_dir(&w).unwrap();
        let layout = umoci_image(&w, layers);
        let r = format!("{}/changesets/bases{i}:v1", reg.host());
        run_ok(Command::new("skopeo").args([
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{layout}"),
            &format!("docker://{r}"),
        ]));
        let bundle = w.join("bundle");
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image", &layout])
                .arg(&bundle),
        );
        let gnu = w.join("gnu");
        gnu_apply(layers, &gnu);
        refs_of.push(r);
        layouts.push((bundle.join("rootfs"), gnu));
    }
    for order in [[0, 1], [1, 0]] {
        let env = Env::new();
        for &i in &order {
            ok(env.skiff(&["pull", &refs_of[i]]));
        }
        let trees = layer_trees(&env);
        let chained = trees.iter().filter(|n| n.starts_with("chain-")).count();
        let shared: BTreeSet<String> = trees
            .iter()
            .filter(|n| !n.starts_with("chain-"))
            .cloned()
            .collect();
        assert_eq!((chained, shared.len()), (2, 3), "{order:?}: {trees:?}");
        assert_eq!(
            names_in(&env, "layers-self"),
            shared,
            "marked self-contained"
        );
        for &i in &order {
            let ours = env.path().join(format!("ours{i}"));
            ok(env.skiff(&["unpack", &refs_of[i], ours.to_str().unwrap()]));
            let t = tree::describe(&ours);
            let a = &t["a"];
            assert_eq!((a.mode, a.uid, a.gid), want[i], "{order:?}: image {i}");
            assert_eq!(fs::metadata(ours.join("a")).unwrap().mtime(), T_LOWER);
            let (umoci, gnu) = &layouts[i];
            assert_eq!(t, tree::describe(umoci), "{order:?}: image {i} vs umoci");
            assert_eq!(t, tree::describe(gnu), "{order:?}: image {i} vs GNU tar");
            let out = ok(env.skiff(&[
                "run",
                "--pull=never",
                "--exec",
                "/bin/sh",
                &refs_of[i],
                "--",
                "-c",
                "stat -c '%a %u:%g %Y' /a; cat /a/f /a/old",
            ]));
            let (mode, uid, gid) = want[i];
            let name = ["one", "two"][i];
            assert_eq!(
                out.trim(),
                format!("{mode:o} {uid}:{gid} {T_LOWER}\napp{name}"),
                "{order:?}: image {i} in the overlay"
            );
        }
    }
}

/// A store an earlier skiff filled: the app layer's tree under its diff_id, made over the
/// first base. It is not reused for the other base (nor for the first: it is unmarked), and
/// `gc` collects it once no image names it.
#[test]
fn an_older_skiffs_tree_of_a_dependent_layer_is_not_reused() {
    let env = Env::new();
    let stacks = two_bases_layers(env.path());
    let reg = env.registry();
    let mut refs_of = Vec::new();
    for (i, layers) in stacks.iter().enumerate() {
        let w = env.path().join(format!("img{i}"));
        fs::create_dir(&w).unwrap();
        let layout = umoci_image(&w, layers);
        let r = format!("{}/changesets/old{i}:v1", reg.host());
        run_ok(Command::new("skopeo").args([
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{layout}"),
            &format!("docker://{r}"),
        ]));
        refs_of.push(r);
    }
    ok(env.skiff(&["pull", &refs_of[0]]));
    // What an earlier skiff left: the tree made over base one, under the app's diff_id.
    let app_diff = sha(&fs::read(&stacks[0][2]).unwrap())[7..].to_string();
    let layers = env.root.join("layers");
    let chain = layer_trees(&env)
        .into_iter()
        .find(|n| n.starts_with("chain-"))
        .unwrap();
    fs::rename(layers.join(&chain), layers.join(&app_diff)).unwrap();
    ok(env.skiff(&["pull", &refs_of[1]]));
    let ours = env.path().join("ours1");
    ok(env.skiff(&["unpack", &refs_of[1], ours.to_str().unwrap()]));
    let a = &tree::describe(&ours)["a"];
    assert_eq!((a.mode, a.uid, a.gid), (0o750, 7, 8), "not base one's");
    ok(env.skiff(&["rm", &refs_of[0]]));
    ok(env.skiff(&["rm", &refs_of[1]]));
    ok(env.skiff(&["gc"]));
    assert!(layer_trees(&env).is_empty(), "{:?}", layer_trees(&env));
    assert!(names_in(&env, "layers-self").is_empty());
}
