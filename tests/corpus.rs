//! Layers written by others: each row builds a layer with an independent, real tar writer
//! (GNU tar in every format, bsdtar, busybox, Python's tarfile, umoci), pushes it as a
//! one-layer image, and compares `skiff unpack`'s tree entry by entry with GNU tar's own
//! extraction of the same archive: type, mode (setuid included), owner, size, content,
//! link target, xattrs (binary values included), mtime, and where the data of sparse files is.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// What a writer can store, so each row's source tree holds what its format can say.
#[derive(Clone, Copy, Default)]
struct Features {
    long_names: bool,
    big_ids: bool,
    xattrs: bool,
    sparse: bool,
    fifo: bool,
    /// A file name that is not UTF-8 (Latin-1 `café`): PAX writers mark it `hdrcharset=BINARY`.
    binary_name: bool,
}

const BINARY: &[u8] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
    27, 28, 29, 30, 31,
];
/// VFS_CAP_REVISION_2, permitted = cap_dac_override | cap_fowner (0x0a: a newline byte).
const CAPS: &[u8] = &[
    0, 0, 0, 2, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn setxattr(p: &Path, name: &str, value: &[u8]) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// A sparse file: 3 MiB with data at 1 MiB and near the end, holes elsewhere.
fn sparse_file(p: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::File::create(p).unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(&noise(5000, 3)).unwrap();
    f.seek(SeekFrom::Start(3_000_000)).unwrap();
    f.write_all(b"tail").unwrap();
    f.set_len(3 << 20).unwrap();
}

/// The source tree a writer archives.
fn source(dir: &Path, f: Features) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir(dir.join("tmp")).unwrap();
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(dir.join("secret")).unwrap();
    fs::set_permissions(dir.join("secret"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(dir.join("bin/tool"), noise(7000, 1)).unwrap();
    fs::set_permissions(dir.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("bin/suid"), b"#!/bin/sh\n").unwrap();
    fs::write(dir.join("etc/empty"), b"").unwrap();
    fs::write(dir.join("secret/key"), b"k").unwrap();
    fs::write(dir.join("etc/owned"), b"owned").unwrap();
    chown(&dir.join("etc/owned"), 1000, 1001);
    fs::set_permissions(dir.join("etc/owned"), fs::Permissions::from_mode(0o2750)).unwrap();
    symlink("tool", dir.join("bin/rel-link")).unwrap();
    symlink("/bin/tool", dir.join("etc/abs-link")).unwrap();
    fs::hard_link(dir.join("bin/tool"), dir.join("bin/tool-hard")).unwrap();
    if f.fifo {
        nix::unistd::mkfifo(
            &dir.join("tmp/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
    }
    if f.long_names {
        let deep = dir.join("deep").join("d".repeat(120)).join("e".repeat(90));
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("long-file-name-".repeat(8)), b"long name").unwrap();
        symlink(
            "../".to_string() + &"t".repeat(150),
            dir.join("deep/long-target"),
        )
        .unwrap();
        fs::hard_link(dir.join("bin/tool"), deep.join("hard-".repeat(25))).unwrap();
    }
    if f.big_ids {
        fs::write(dir.join("etc/big-ids"), b"ids").unwrap();
        chown(&dir.join("etc/big-ids"), 3_000_000, 2_500_000);
    }
    if f.xattrs {
        fs::write(dir.join("bin/xattrs"), b"x").unwrap();
        setxattr(&dir.join("bin/xattrs"), "user.binary", BINARY);
        setxattr(&dir.join("bin/xattrs"), "user.text", b"plain");
        fs::write(dir.join("bin/capped"), b"c").unwrap();
        setxattr(&dir.join("bin/capped"), "security.capability", CAPS);
    }
    if f.sparse {
        sparse_file(&dir.join("etc/sparse"));
    }
    if f.binary_name {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
        fs::write(dir.join("etc").join(name), b"latin-1 name").unwrap();
    }
    // setuid last: chown would clear it.
    fs::set_permissions(dir.join("bin/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    // Fixed times, so every writer stores the same ones.
    for p in walk(dir) {
        let t = nix::sys::time::TimeSpec::new(1_600_000_000, 0);
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let times = [*t.as_ref(), *t.as_ref()];
        unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Where a file's data lies (SEEK_DATA/SEEK_HOLE), so holes can be compared.
fn data_map(p: &Path) -> Vec<(i64, i64)> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(p).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < len {
        let start = unsafe { libc::lseek(f.as_raw_fd(), pos, libc::SEEK_DATA) };
        if start < 0 {
            break;
        }
        let end = unsafe { libc::lseek(f.as_raw_fd(), start, libc::SEEK_HOLE) };
        out.push((start, end));
        pos = end;
    }
    out
}

/// Runs a writer (its stdout is the archive, or it writes `out`).
fn tar_with(cmd: &mut Command) -> Vec<u8> {
    run_ok(cmd).stdout
}

fn python(script: &str, args: &[&Path]) -> Vec<u8> {
    let mut c = Command::new("python3");
    c.arg("-c").arg(script);
    for a in args {
        c.arg(a);
    }
    tar_with(&mut c)
}

/// Pushes `layer` as a one-layer image, unpacks it with skiff and with GNU tar, and compares.
fn check(env: &Env, row: &str, layer: &[u8], f: Features) {
    let reg = env.registry();
    let img = build(&[layer.to_vec()], &Spec::default());
    let repo = format!("corpus/{row}");
    push(&reg.url(), &repo, "v1", &img);
    let r = format!("{}/{repo}:v1", reg.host());
    ok(env.skiff(&["pull", &r]));
    let ours = env.path().join("ours");
    ok(env.skiff(&["unpack", &r, ours.to_str().unwrap()]));
    let theirs = env.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    let archive = env.path().join("layer.tar");
    fs::write(&archive, layer).unwrap();
    run_ok(Command::new("tar").args([
        "-x",
        "-p",
        "--numeric-owner",
        "--same-owner",
        "--xattrs",
        "--xattrs-include=*",
        "-f",
        archive.to_str().unwrap(),
        "-C",
        theirs.to_str().unwrap(),
    ]));
    let (mine, gnu) = (tree::describe(&ours), tree::describe(&theirs));
    for (path, node) in &gnu {
        assert_eq!(mine.get(path), Some(node), "{row}: entry {path}");
    }
    let extra: Vec<_> = mine.keys().filter(|k| !gnu.contains_key(*k)).collect();
    assert!(
        extra.is_empty(),
        "{row}: skiff has entries GNU tar does not: {extra:?}"
    );
    assert!(
        gnu.len() >= 12,
        "{row}: the archive holds the whole tree: {}",
        gnu.len()
    );
    if f.xattrs {
        let x = &mine["bin/xattrs"].xattrs;
        assert!(
            x.contains(&("user.binary".into(), BINARY.to_vec())),
            "{row}: {x:?}"
        );
        assert_eq!(
            mine["bin/capped"].xattrs,
            vec![("security.capability".into(), CAPS.to_vec())],
            "{row}"
        );
    }
    if f.sparse {
        let p = "etc/sparse";
        assert_eq!(mine[p].size, 3 << 20, "{row}");
        assert_eq!(
            data_map(&ours.join(p)),
            data_map(&theirs.join(p)),
            "{row}: holes"
        );
        // The layer tree `run` mounts is sparse too.
        let blocks = fs::metadata(ours.join(p)).unwrap().blocks() * 512;
        assert!(
            blocks < 1 << 20,
            "{row}: {blocks} bytes allocated for a 3 MiB sparse file"
        );
    }
}

fn tree_for(env: &Env, f: Features) -> std::path::PathBuf {
    let src = env.path().join("src");
    fs::create_dir(&src).unwrap();
    source(&src, f);
    src
}

fn gnu_tar(src: &Path, args: &[&str]) -> Vec<u8> {
    tar_with(
        Command::new("tar")
            .args(args)
            .args(["--numeric-owner", "-c", "-f", "-", "-C"])
            .arg(src)
            .arg("."),
    )
}

/// GNU tar's POSIX format with xattrs and sparse files in one sparse version.
fn gnu_tar_sparse(src: &Path, version: &str) -> Vec<u8> {
    let v = format!("--sparse-version={version}");
    gnu_tar(
        src,
        &[
            "--format=posix",
            "--xattrs",
            "--xattrs-include=*",
            "--sparse",
            &v,
        ],
    )
}

const ALL: Features = Features {
    long_names: true,
    big_ids: true,
    xattrs: true,
    sparse: true,
    fifo: true,
    binary_name: false,
};

macro_rules! row {
    ($name:ident, $features:expr, |$src:ident| $writer:expr) => {
        #[test]
        fn $name() {
            let env = Env::new();
            let f: Features = $features;
            let $src = tree_for(&env, f);
            let layer: Vec<u8> = $writer;
            check(&env, stringify!($name), &layer, f);
        }
    };
}

row!(
    gnu_tar_gnu_format_long_names_base256_ids_old_sparse,
    Features {
        xattrs: false,
        ..ALL
    },
    |src| { gnu_tar(&src, &["--format=gnu", "--sparse"]) }
);
row!(
    gnu_tar_pax_binary_xattrs,
    Features {
        sparse: false,
        ..ALL
    },
    |src| { gnu_tar(&src, &["--format=pax", "--xattrs", "--xattrs-include=*"]) }
);
row!(gnu_tar_posix_sparse_0_0, ALL, |src| gnu_tar_sparse(
    &src, "0.0"
));
row!(gnu_tar_posix_sparse_0_1, ALL, |src| gnu_tar_sparse(
    &src, "0.1"
));
row!(gnu_tar_posix_sparse_1_0, ALL, |src| gnu_tar_sparse(
    &src, "1.0"
));
row!(
    gnu_tar_ustar_prefix_names,
    Features {
        fifo: true,
        ..Features::default()
    },
    |src| { gnu_tar(&src, &["--format=ustar"]) }
);
row!(
    gnu_tar_v7_trailing_slash_directories,
    Features::default(),
    |src| { gnu_tar(&src, &["--format=v7"]) }
);
row!(bsdtar_pax_xattrs_and_sparse, ALL, |src| {
    tar_with(
        Command::new("bsdtar")
            .args([
                "--format=pax",
                "--xattrs",
                "--numeric-owner",
                "-c",
                "-f",
                "-",
                "-C",
            ])
            .arg(&src)
            .arg("."),
    )
});
row!(
    bsdtar_gnutar_long_names,
    Features {
        long_names: true,
        fifo: true,
        ..Features::default()
    },
    |src| {
        tar_with(
            Command::new("bsdtar")
                .args(["--format=gnutar", "--numeric-owner", "-c", "-f", "-", "-C"])
                .arg(&src)
                .arg("."),
        )
    }
);
row!(
    busybox_tar,
    Features {
        long_names: true,
        fifo: true,
        ..Features::default()
    },
    |src| {
        tar_with(
            Command::new("busybox")
                .args(["tar", "-c", "-f", "-", "-C"])
                .arg(&src)
                .arg("."),
        )
    }
);

/// Python's tarfile, PAX: xattrs written as SCHILY records (tarfile reads none itself).
const PY_PAX: &str = r#"
import os, sys, tarfile
src = sys.argv[1]
out = tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT)
for root, dirs, files in os.walk(src):
    dirs.sort()
    for name in sorted(dirs) + sorted(files):
        p = os.path.join(root, name)
        ti = out.gettarinfo(p, arcname=os.path.relpath(p, src))
        for x in os.listxattr(p, follow_symlinks=False):
            v = os.getxattr(p, x, follow_symlinks=False)
            ti.pax_headers["SCHILY.xattr." + x] = v.decode("utf-8", "surrogateescape")
        if ti.isreg():
            with open(p, "rb") as f:
                out.addfile(ti, f)
        else:
            out.addfile(ti)
out.close()
"#;

/// Python's tarfile, GNU format: long names as `L`/`K` records, base-256 ids.
const PY_GNU: &str = r#"
import sys, tarfile
out = tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.GNU_FORMAT)
out.add(sys.argv[1], arcname=".")
out.close()
"#;

row!(
    python_tarfile_pax_binary_xattrs_and_hdrcharset,
    Features {
        sparse: false,
        binary_name: true,
        ..ALL
    },
    |src| {
        let layer = python(PY_PAX, &[&src]);
        let marked = layer.windows(17).any(|w| w == b"hdrcharset=BINARY");
        assert!(marked, "the writer marked the non-UTF-8 name");
        layer
    }
);
row!(
    python_tarfile_gnu_long_names_base256,
    Features {
        sparse: false,
        xattrs: false,
        ..ALL
    },
    |src| python(PY_GNU, &[&src])
);

/// umoci (Go's archive/tar) repacks a bundle whose rootfs is the source tree.
#[test]
fn umoci_repack_go_archive_tar() {
    let env = Env::new();
    let f = Features {
        sparse: false,
        fifo: false,
        ..ALL
    };
    let layout = env.path().join("layout");
    let bundle = env.path().join("bundle");
    let img = format!("{}:v1", layout.display());
    run_ok(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    run_ok(Command::new("umoci").args(["new", "--image", &img]));
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &img])
            .arg(&bundle),
    );
    source(&bundle.join("rootfs"), f);
    run_ok(
        Command::new("umoci")
            .args(["repack", "--image", &img])
            .arg(&bundle),
    );
    // The one layer umoci wrote, from its layout.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let gz = blob(layers[0]["digest"].as_str().unwrap());
    let mut layer = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut layer).unwrap();
    check(&env, "umoci", &layer, f);
}

/// Quirks of old and redundant headers, written block by block (as v7 tars, old GNU tars and
/// some converters do): a v7 directory with a size, a hardlink with a size, two GNU long names
/// before one member. GNU tar's extraction is the reference.
#[test]
fn quirky_headers_as_gnu_tar_reads_them() {
    const QUIRKS: &str = r#"
import sys
def hdr(name, typeflag, size, link=b'', v7=False):
    b = bytearray(512)
    b[0:len(name)] = name
    b[100:108] = b'0000755\0'; b[108:116] = b'0000000\0'; b[116:124] = b'0000000\0'
    b[124:136] = b'%011o\0' % size
    b[136:148] = b'13000000000\0'
    b[156] = typeflag
    b[157:157 + len(link)] = link
    if not v7:
        b[257:263] = b'ustar\0'; b[263:265] = b'00'
    b[148:156] = b' ' * 8
    b[148:156] = b'%06o\0 ' % sum(b)
    return bytes(b)
def pad(d):
    return d + b'\0' * ((512 - len(d) % 512) % 512)
out = hdr(b'olddir/', 0, 1, v7=True) + hdr(b'olddir/f', ord('0'), 2) + pad(b'hi')
out += hdr(b'hard', ord('1'), 2, link=b'olddir/f')
n1 = b'first-long-name' * 8 + b'\0'
n2 = b'second-long-name' * 8 + b'\0'
out += hdr(b'././@LongLink', ord('L'), len(n1)) + pad(n1)
out += hdr(b'././@LongLink', ord('L'), len(n2)) + pad(n2)
out += hdr(b'short', ord('0'), 1) + pad(b'z')
for i in range(12):
    out += hdr(b'filler%d' % i, ord('0'), 0)
out += b'\0' * 1024
sys.stdout.buffer.write(out)
"#;
    let env = Env::new();
    let layer = python(QUIRKS, &[]);
    check(&env, "quirks", &layer, Features::default());
    let t = tree::describe(&env.path().join("ours"));
    assert_eq!(t["olddir"].kind, "dir");
    assert!(t.contains_key(&"second-long-name".repeat(8)));
    assert_eq!(t["hard"].content, t["olddir/f"].content);
}
