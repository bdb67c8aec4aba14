//! Describing a directory tree entry by entry, to compare skiff's unpack with umoci's.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: Option<String>,
    pub link: Option<String>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub mtime: Option<i64>,
}

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return vec![];
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let key = String::from_utf8_lossy(name).to_string();
        if key.starts_with("trusted.") || key == "security.selinux" {
            continue;
        }
        let cn = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        v.truncate(m.max(0) as usize);
        out.push((key, v));
    }
    out.sort();
    out
}

/// The tree umoci unpacks for image `r` (copied from the registry with skopeo): the
/// independent reference skiff's unpack is compared with.
pub fn umoci_rootfs(work: &Path, r: &str) -> BTreeMap<String, Node> {
    let layout = work.join("layout");
    super::run_ok(std::process::Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{r}"),
        &format!("oci:{}:v1", layout.display()),
    ]));
    let bundle = work.join("bundle");
    super::run_ok(std::process::Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:v1", layout.display()),
        bundle.to_str().unwrap(),
    ]));
    describe(&bundle.join("rootfs"))
}

/// Every entry below `root`, keyed by relative path.
pub fn describe(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "other"
        };
        let content = ft
            .is_file()
            .then(|| super::sha(&std::fs::read(&p).unwrap()));
        let link = ft.is_symlink().then(|| {
            std::fs::read_link(&p)
                .unwrap()
                .to_string_lossy()
                .to_string()
        });
        out.insert(
            rel,
            Node {
                kind,
                mode: if ft.is_symlink() {
                    0
                } else {
                    m.mode() & 0o7777
                },
                uid: m.uid(),
                gid: m.gid(),
                size: if ft.is_file() { m.size() } else { 0 },
                content,
                link,
                xattrs: if ft.is_symlink() { vec![] } else { xattrs(&p) },
                mtime: (!ft.is_dir()).then(|| m.mtime()),
            },
        );
        if ft.is_dir() {
            walk(root, &p, out);
        }
    }
}
