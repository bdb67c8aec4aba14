use super::*;

#[test]
fn hash_read_sees_every_byte() {
    let mut h = HashRead {
        inner: &b"hello world"[..],
        hasher: Sha256::new(),
    };
    let mut sink = Vec::new();
    io::copy(&mut h, &mut sink).unwrap();
    assert_eq!(
        Digest::from_sha256_bytes(&h.hasher.finalize().into()),
        Digest::of(b"hello world")
    );
}

/// The fuzz seeds GNU tar wrote for the changeset rules, applied alone (no lower layers).
fn apply_seed(name: &str) -> tempfile::TempDir {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds/layer")
        .join(name);
    let t = tempfile::tempdir().unwrap();
    apply_tar(File::open(seed).unwrap(), t.path()).unwrap();
    t
}

#[test]
fn a_hardlink_to_itself_keeps_the_file() {
    let t = apply_seed("self-link.tar");
    assert_eq!(std::fs::read(t.path().join("dir/file")).unwrap(), b"x\n");
}

#[test]
fn same_layer_whiteouts_and_links_below_implied_directories() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = apply_seed("implied-and-whiteouts.tar");
    let p = t.path();
    // `x`, then `.wh.x`: the whiteout is for the lower layers only.
    assert_eq!(std::fs::read(p.join("x")).unwrap(), b"u\n");
    let (f, link) = (
        std::fs::metadata(p.join("a/b/f")).unwrap(),
        std::fs::metadata(p.join("a/link")).unwrap(),
    );
    assert_eq!((f.ino(), f.nlink()), (link.ino(), 2));
    // No layer below: the implied directories are made as mkdir makes them.
    let a = std::fs::metadata(p.join("a")).unwrap();
    assert_eq!((a.permissions().mode() & 0o7777, a.uid()), (0o755, 0));
    // `a/.wh.gone` below a directory the layer has: the overlay's whiteout device.
    use std::os::unix::fs::FileTypeExt;
    let gone = std::fs::symlink_metadata(p.join("a/gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
}
