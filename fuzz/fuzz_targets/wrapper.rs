#![no_main]
//! The wrapper variables (RKT_RUN_ARGS, X_IMAGE_ARGS): never panics; every accepted flag is one
//! or two of the words the variable splits into, and every volume it yields has an absolute
//! target below the root.
use libfuzzer_sys::fuzz_target;
use skiff::wrapper::{self, rkt};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let words: Vec<&str> = rkt::split(s).collect();
    if let Ok(parsed) = rkt::parse("RKT_RUN_ARGS", s) {
        assert!(parsed.len() <= words.len());
        for p in &parsed {
            assert!(p.text.starts_with("--"), "{p:?}");
        }
    }
    // The same text through every variable the wrappers read, as one run would see it.
    let env = |k: &str| matches!(k, "RKT_RUN_ARGS" | "KUBELET_IMAGE_ARGS").then(|| s.to_string());
    if let Ok(t) = wrapper::from_env("KUBELET", &env) {
        for v in &t.volumes {
            assert!(v.target.starts_with('/') && v.target != "/", "{v:?}");
            assert!(v.source.is_absolute(), "{v:?}");
        }
        let _ = t.user_spec(None);
        let _ = t.user_spec(Some((0, 0)));
    }
});
