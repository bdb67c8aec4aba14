#![no_main]
//! Load sources: any bytes as an oci-archive and as a docker-archive (tar index, index.json,
//! manifest.json, links inside the archive), and as a dir: signature file. Never a panic,
//! never a read outside the file.
use libfuzzer_sys::fuzz_target;
use skiff::transport::{parse_dir_signature, probe, Location};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("source.tar");
    std::fs::write(&file, data).unwrap();
    for loc in [
        Location::OciArchive { file: file.clone(), tag: None },
        Location::DockerArchive { file: file.clone(), reference: None },
    ] {
        if let Ok((digest, _)) = probe(&loc) {
            assert!(digest.to_string().starts_with("sha256:"));
        }
    }
    let mut sigs = skiff::trust::Signatures::default();
    let _ = parse_dir_signature(data, &mut sigs);
});
