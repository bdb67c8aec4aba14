#![no_main]
//! containers-policy.json: parsing never panics, and a policy that parses always names a
//! scope for any image.
use libfuzzer_sys::fuzz_target;
use skiff::trust::Policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Policy::parse(data, std::path::Path::new("fuzz.json")) {
        for image in ["quay.io/coreos/fleet:v1", "busybox", "reg.example.com:5000/a/b@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"] {
            let r: skiff::reference::Reference = image.parse().expect("a valid reference");
            let (_, reqs) = p.requirements_for(&r);
            assert!(!reqs.is_empty());
        }
    }
});
