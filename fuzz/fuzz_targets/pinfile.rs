#![no_main]
//! Pin files (an operator's hand edit): never panic; a pin that parses moves to another digest
//! and parses back with it, following the same tag.
use libfuzzer_sys::fuzz_target;
use skiff::reference::Digest;
use skiff::update::pinfile::PinFile;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("/etc/skiff/fuzz.env");
    let Ok(p) = PinFile::parse(path, data.to_vec()) else {
        return;
    };
    let to = Digest::of(data);
    let moved = PinFile::parse(path, p.moved_to(&to)).expect("a moved pin parses");
    assert_eq!(moved.digest(), &to);
    assert_eq!(moved.follows, p.follows);
    assert_eq!(moved.var, p.var);
});
