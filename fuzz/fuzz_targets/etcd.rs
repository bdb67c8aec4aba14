#![no_main]
//! etcd's JSON answers (range, txn, lease grant and keepalive): never panic, and what is
//! accepted stays within the bounds.
use libfuzzer_sys::fuzz_target;
use skiff::fleet::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(kvs) = wire::range(data) {
        assert!(kvs.len() <= wire::MAX_KVS);
    }
    if let Ok((_, kvs)) = wire::txn(data) {
        assert!(kvs.len() <= wire::MAX_KVS);
    }
    if let Ok((id, ttl)) = wire::grant(data) {
        assert!(id != 0 && ttl > 0);
    }
    let _ = wire::keepalive(data);
    let _ = wire::ack(data);
});
