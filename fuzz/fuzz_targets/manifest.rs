#![no_main]
//! Manifests, indexes, schema1 (canonicalisation included) and configs: never panic.
use libfuzzer_sys::fuzz_target;
use skiff::manifest;

fuzz_target!(|data: &[u8]| {
    let declared = [
        None,
        Some(manifest::DOCKER_V1_SIGNED),
        Some(manifest::OCI_INDEX),
        Some(manifest::DOCKER_V2),
    ];
    for d in declared {
        if let Ok(p) = manifest::parse_document(data, d) {
            // The digest always covers the bytes the fields came from.
            assert_eq!(p.digest, skiff::reference::Digest::of(&p.canonical));
        }
    }
    let _ = manifest::parse_config(data);
});
