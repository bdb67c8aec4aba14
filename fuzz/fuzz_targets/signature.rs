#![no_main]
//! Signatures as they arrive from a lookaside or an attachment: OpenPGP messages (verified
//! against a fixed keyring), cosign signatures and payloads, kept-signature JSON. None panics;
//! whatever verifies is a payload of bounded size.
use libfuzzer_sys::fuzz_target;
use skiff::trust;

const KEYRING: &[u8] = include_bytes!("../seeds/signature-keyring.gpg");
const COSIGN_PEM: &[u8] = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsCGLum1V7UcNLLqHdST2me/JSV6A\nvrHn+EVdhbOmrnEsj2MRmRUQrQbWk0WKPFLNRQNenHJjy15ccq8ubwUyVw==\n-----END PUBLIC KEY-----\n";

/// Parsed once: checking the key's self-signatures on every input would starve the fuzzer.
fn keys() -> &'static (trust::Keyring, Vec<trust::CosignKey>) {
    static KEYS: std::sync::OnceLock<(trust::Keyring, Vec<trust::CosignKey>)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        (
            trust::Keyring::parse(KEYRING, "seed").expect("the seed keyring parses"),
            vec![trust::CosignKey::parse_pem(COSIGN_PEM, "seed").expect("the seed key parses")],
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (ring, keys) = keys();
    if let Ok(v) = trust::verify_gpg(data, ring) {
        assert!(v.payload.len() <= 4 << 20);
        let _ = trust::parse_payload(&v.payload, trust::SIMPLE_SIGNING);
    }
    // Keyrings: only short inputs, so most time goes to the messages.
    if data.len() < 4096 {
        let _ = trust::Keyring::parse(data, "fuzz");
    }
    let _ = trust::parse_payload(data, trust::COSIGN);
    let _ = trust::parse_payload(data, trust::SIMPLE_SIGNING);
    let text = String::from_utf8_lossy(data);
    let _ = trust::verify_cosign(data, Some(&text), keys);
    let _ = trust::CosignKey::parse_pem(data, "fuzz");
    let _ = trust::Signatures::from_json(data);
});
