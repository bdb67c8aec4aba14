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
