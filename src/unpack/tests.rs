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

/// Whether a layer's tree depends on its lowers, as `ensure_layers` keys it (own diff_id or
/// the stack's ChainID): decided from the layer alone, over an empty lower stack.
#[test]
fn which_layers_depend_on_their_lowers() {
    enum E {
        Dir(&'static str),
        File(&'static str),
        Link(&'static str, &'static str),
    }
    let layer = |entries: &[E]| {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o755);
            h.set_mtime(1);
            let (path, kind) = match e {
                E::Dir(p) => (*p, tar::EntryType::Directory),
                E::File(p) => (*p, tar::EntryType::Regular),
                E::Link(p, target) => {
                    h.set_link_name(target).unwrap();
                    (*p, tar::EntryType::Link)
                }
            };
            h.set_entry_type(kind);
            h.set_size(0);
            b.append_data(&mut h, path, &[][..]).unwrap();
        }
        b.into_inner().unwrap()
    };
    let depends = |entries: &[E]| {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        apply_entries(&root, Some(&[]), &layer(entries)[..], &Digest::of(b"")).map(|r| r.depends)
    };
    use E::*;
    assert!(
        !depends(&[Dir("a"), File("a/f")]).unwrap(),
        "carries its parent"
    );
    assert!(depends(&[File("a/f")]).unwrap(), "implies a/");
    assert!(
        !depends(&[File("a/f"), Dir("a")]).unwrap(),
        "a/ comes later"
    );
    assert!(
        !depends(&[File("x"), Link("y", "x")]).unwrap(),
        "links its own"
    );
    assert!(
        depends(&[File(".wh.x")]).is_ok_and(|d| !d),
        "parent is the root"
    );
    assert!(depends(&[Dir("d"), File("d/.wh.x")]).is_ok_and(|d| !d));
    assert!(depends(&[File("d/.wh.x")]).unwrap(), "d/ is the lowers'");
    // A link to a path it does not carry needs a lower that has it.
    let lo = tempfile::tempdir().unwrap();
    std::fs::write(lo.path().join("x"), b"lower").unwrap();
    let lower = [Root::open(lo.path()).unwrap()];
    let t = tempfile::tempdir().unwrap();
    let root = Root::open(t.path()).unwrap();
    let d = apply_entries(
        &root,
        Some(&lower),
        &layer(&[Link("y", "x")])[..],
        &Digest::of(b""),
    )
    .unwrap()
    .depends;
    assert!(d, "links a lower file");
}
