#![no_main]
//! binfmt_misc entries, as /proc/sys/fs/binfmt_misc prints them, and the run-or-refuse
//! decision over them: never panic, and a refusal always names the architecture.
use libfuzzer_sys::fuzz_target;
use skiff::manifest::Platform;
use skiff::run::foreign::{decide, Binfmt, ForeignError, Handler};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let binfmt = Binfmt {
        enabled: true,
        handlers: Handler::parse("fuzz", text).into_iter().collect(),
    };
    let linux = |arch: &str| Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: None,
    };
    for arch in ["arm64", "arm", "386", "s390x", "riscv64", "ppc64le", "mips64le"] {
        if let Err(ForeignError::NoHandler { arch: name, .. }) =
            decide(&linux(arch), &linux("amd64"), &binfmt)
        {
            assert!(!name.is_empty());
        }
    }
});
