#![no_main]
//! Applying an arbitrary tar stream to a scratch root: never panics, never writes outside it.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let root = dir.path().join("root");
    let canary = dir.path().join("canary");
    std::fs::create_dir(&root).expect("root");
    std::fs::write(&canary, b"untouched").expect("canary");
    let _ = skiff::unpack::apply_tar(data, &root);
    assert_eq!(
        std::fs::read(&canary).expect("canary still there"),
        b"untouched"
    );
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(outside.len(), 2, "nothing new beside the root: {outside:?}");
});
