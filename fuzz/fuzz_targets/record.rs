#![no_main]
//! Tree records read back from disk (they may be damaged): never panic, and whatever parses
//! writes back to the very same bytes.
use libfuzzer_sys::fuzz_target;
use skiff::store::record::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Record::parse(data) {
        assert_eq!(r.to_bytes(), data);
    }
});
