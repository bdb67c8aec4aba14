#![no_main]
//! WWW-Authenticate challenges and token responses: never panic.
use libfuzzer_sys::fuzz_target;
use skiff::registry::auth;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(auth::Challenge::Bearer { realm, .. }) = auth::parse_challenge(s) {
            assert!(realm.starts_with("http://") || realm.starts_with("https://"));
        }
    }
    let _ = auth::parse_token(data, std::time::Instant::now());
});
