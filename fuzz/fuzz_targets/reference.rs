#![no_main]
//! Reference and digest parsing: never panics; what parses prints back and parses again equal.
use libfuzzer_sys::fuzz_target;
use skiff::reference::{Digest, Reference};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = s.parse::<Reference>() {
        let again: Reference = r.to_string().parse().expect("a printed reference parses");
        assert_eq!(again, r);
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
    }
    let _ = skiff::manifest::Platform::host();
    let _ = s.parse::<skiff::manifest::Platform>();
});
