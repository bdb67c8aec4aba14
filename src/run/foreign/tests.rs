use super::*;

// Debian's qemu-user-static entries, as the kernel prints them.
const QEMU_AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
const QEMU_ARM: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c4601010100000000000000000002002800\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
const PYTHON: &str =
    "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n";

fn p(s: &str) -> Platform {
    s.parse().unwrap()
}

fn binfmt(entries: &[(&str, &str)]) -> Binfmt {
    Binfmt {
        enabled: true,
        handlers: entries
            .iter()
            .filter_map(|(n, t)| Handler::parse(n, t))
            .collect(),
    }
}

#[test]
fn the_hosts_own_architecture_runs_natively_with_no_handlers_at_all() {
    let none = Binfmt::default();
    assert_eq!(
        decide(&p("linux/amd64"), &p("linux/amd64"), &none),
        Ok(Runs::Natively)
    );
    assert_eq!(
        decide(&p("linux/arm64/v8"), &p("linux/arm64"), &none),
        Ok(Runs::Natively)
    );
    assert_eq!(
        decide(&p("linux/386"), &p("linux/amd64"), &none),
        Ok(Runs::Natively)
    );
}

#[test]
fn an_arm64_image_runs_through_the_aarch64_handler() {
    let b = binfmt(&[
        ("python3.11", PYTHON),
        ("qemu-arm", QEMU_ARM),
        ("qemu-aarch64", QEMU_AARCH64),
    ]);
    assert_eq!(
        decide(&p("linux/arm64"), &p("linux/amd64"), &b),
        Ok(Runs::Through("qemu-aarch64".into()))
    );
    assert_eq!(
        decide(&p("linux/arm/v7"), &p("linux/amd64"), &b),
        Ok(Runs::Through("qemu-arm".into()))
    );
}

#[test]
fn no_handler_a_disabled_one_or_another_machines_is_the_sentence() {
    let want =
        "this image is linux/arm64; this host cannot run it: no binfmt_misc handler for aarch64";
    let disabled = QEMU_AARCH64.replacen("enabled", "disabled", 1);
    let mut off = binfmt(&[("qemu-aarch64", QEMU_AARCH64)]);
    off.enabled = false;
    for b in [
        Binfmt::default(),
        binfmt(&[("qemu-aarch64", &disabled)]),
        binfmt(&[("qemu-arm", QEMU_ARM), ("python3.11", PYTHON)]),
        off,
    ] {
        let e = decide(&p("linux/arm64"), &p("linux/amd64"), &b).unwrap_err();
        assert!(e.to_string().starts_with(want), "{e}");
    }
    let e = decide(&p("linux/mips64le"), &p("linux/amd64"), &Binfmt::default()).unwrap_err();
    assert!(matches!(e, ForeignError::UnknownArch { .. }), "{e}");
}

#[test]
fn the_synthetic_headers_are_the_ones_real_binaries_carry() {
    // readelf -h of Debian's aarch64 and x86-64 binaries: the bytes a handler sees.
    let aarch64 = ElfArch::of("arm64").unwrap().header();
    assert_eq!(&aarch64[..8], b"\x7fELF\x02\x01\x01\x00");
    assert_eq!(&aarch64[18..20], &183u16.to_le_bytes());
    let s390x = ElfArch::of("s390x").unwrap().header();
    assert_eq!(&s390x[18..20], &22u16.to_be_bytes());
    // A big-endian aarch64 (aarch64_be) binary is not what the little-endian handler takes.
    let h = Handler::parse("qemu-aarch64", QEMU_AARCH64).unwrap();
    let mut be = aarch64;
    be[5] = 2;
    assert!(h.matches(&aarch64) && !h.matches(&be));
    // PIE executables (ET_DYN) match too: the mask's 0xfe.
    let mut pie = aarch64;
    pie[16] = 3;
    assert!(h.matches(&pie));
}

#[test]
fn hostile_or_odd_entries_never_make_a_handler() {
    for text in [
        "",
        "enabled\n",
        "enabled\nmagic 7f45zz\n",
        "enabled\nmagic 7f454\n",
        "enabled\noffset 99999\nmagic 7f\n",
        "enabled\nmagic 7f45\nmask ff\n",
        "enabled\nextension .exe\n",
    ] {
        assert_eq!(Handler::parse("x", text), None, "{text:?}");
    }
    // An offset past the header matches nothing rather than panicking.
    let far = Handler::parse("x", "enabled\noffset 100\nmagic 7f\n").unwrap();
    assert!(!far.matches(&ElfArch::of("arm64").unwrap().header()));
}

#[test]
fn a_binfmt_misc_directory_is_read_as_the_kernel_lays_it_out() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("status"), "enabled\n").unwrap();
    std::fs::write(d.path().join("register"), "").unwrap();
    std::fs::write(d.path().join("qemu-aarch64"), QEMU_AARCH64).unwrap();
    std::fs::write(d.path().join("python3.11"), PYTHON).unwrap();
    let b = Binfmt::read(d.path());
    assert!(b.enabled);
    let mut names: Vec<_> = b.handlers.iter().map(|h| h.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["python3.11", "qemu-aarch64"]);
    assert!(!Binfmt::read(&d.path().join("absent")).enabled);
}
