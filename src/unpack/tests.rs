use super::*;

#[test]
fn layer_keys_are_digest_hex() {
    let blob = Digest::of(b"blob");
    let diff = Digest::of(b"diff");
    let mut l = Layer {
        blob: crate::manifest::Descriptor {
            media_type: "x".into(),
            digest: blob.clone(),
            size: None,
        },
        compression: Compression::Gzip,
        diff_id: Some(diff.clone()),
    };
    assert_eq!(layer_key(&l), diff.hex());
    l.diff_id = None;
    assert_eq!(layer_key(&l), format!("blob-{}", blob.hex()));
}

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
