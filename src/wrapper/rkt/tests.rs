use super::*;

fn args(var: &str, value: &str) -> Vec<Arg> {
    parse(var, value)
        .unwrap_or_else(|e| panic!("{value:?}: {e}"))
        .into_iter()
        .map(|p| p.arg)
        .collect()
}

#[test]
fn splits_as_an_unquoted_bash_expansion() {
    let w: Vec<&str> = split("  --a=1\t--b  \n --c=\"x y\"  ").collect();
    assert_eq!(w, ["--a=1", "--b", "--c=\"x", "y\""]);
    assert_eq!(split("").count(), 0);
    assert_eq!(split(" \t\n").count(), 0);
}

#[test]
fn the_documented_kubelet_arguments() {
    let got = args(
        "RKT_RUN_ARGS",
        "--uuid-file-save=/var/run/kubelet-pod.uuid \
         --volume var-log,kind=host,source=/var/log \
         --mount volume=var-log,target=/var/log \
         --volume=dns,kind=host,source=/etc/resolv.conf,readOnly=true \
         --mount volume=dns,target=/etc/resolv.conf \
         --volume kl,kind=host,source=/var/lib/kubelet,readOnly=false,recursive=true \
         --dns=host --hosts-entry=host --net=host --interactive --set-env=A=b=c",
    );
    assert_eq!(
        got,
        [
            Arg::UuidFileSave("/var/run/kubelet-pod.uuid".into()),
            Arg::Volume {
                name: "var-log".into(),
                source: "/var/log".into(),
                readonly: false,
                recursive: false
            },
            Arg::Mount {
                volume: "var-log".into(),
                target: "/var/log".into()
            },
            Arg::Volume {
                name: "dns".into(),
                source: "/etc/resolv.conf".into(),
                readonly: true,
                recursive: false
            },
            Arg::Mount {
                volume: "dns".into(),
                target: "/etc/resolv.conf".into()
            },
            Arg::Volume {
                name: "kl".into(),
                source: "/var/lib/kubelet".into(),
                readonly: false,
                recursive: true
            },
            Arg::DnsHost,
            Arg::HostsEntryHost,
            Arg::NetHost,
            Arg::Interactive(true),
            Arg::SetEnv("A=b=c".into()),
        ]
    );
}

#[test]
fn image_args_with_values_in_the_next_word() {
    assert_eq!(
        args(
            "ETCD_IMAGE_ARGS",
            "--exec /usr/bin/env --user=etcd --group 232 --inherit-env=false"
        ),
        [
            Arg::Exec("/usr/bin/env".into()),
            Arg::User("etcd".into()),
            Arg::Group("232".into()),
            Arg::InheritEnv(false),
        ]
    );
}

fn error(var: &str, value: &str) -> String {
    match parse(var, value) {
        Ok(a) => panic!("{value:?} parsed: {a:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_flags_are_named_with_their_variable() {
    for (value, flag) in [
        ("--port=http:80", "--port"),
        ("--trust-keys-from-https", "--trust-keys-from-https"),
        ("--stage1-from-dir=stage1-fly.aci", "--stage1-from-dir"),
        ("--caps-retain=CAP_NET_ADMIN", "--caps-retain"),
        ("--net=host --private-users", "--private-users"),
        ("--volumes=x", "--volumes"),
        ("--VOLUME=x", "--VOLUME"),
    ] {
        let e = error("RKT_RUN_ARGS", value);
        assert!(
            e.starts_with("RKT_RUN_ARGS: rkt flag") && e.contains(&format!(" {flag} ")),
            "{value}: {e}"
        );
    }
    let e = error("KUBELET_IMAGE_ARGS", "--exec=/kubelet --cpu=750m");
    assert!(
        e.contains("KUBELET_IMAGE_ARGS") && e.contains("--cpu"),
        "{e}"
    );
}

#[test]
fn refusals_explain_themselves() {
    for (value, needle) in [
        (
            "--insecure-options=image",
            "never turns image verification off",
        ),
        ("--insecure-options=http,image", "signature policy"),
        (
            "--insecure-options all",
            "never turns image verification off",
        ),
        ("--insecure-options=http", "--insecure-registry"),
        ("--insecure-options=ondisk", "no switch"),
        ("--dns=8.8.8.8", "--dns=host"),
        ("--hosts-entry=10.0.0.1=db", "--hosts-entry=host"),
        ("--net", "no CNI"),
        ("--net=default", "no CNI"),
        ("--net=host,none", "no CNI"),
    ] {
        let e = error("RKT_RUN_ARGS", value);
        assert!(
            e.contains("is refused") && e.contains(needle),
            "{value}: {e}"
        );
    }
}

#[test]
fn hostile_and_malformed_words() {
    for value in [
        "host",
        "-v",
        "--",
        "--=x",
        "--set-env=\"A=B C\"",
        "--exec",
        "--volume",
        "--exec=relative/bin",
        "--exec=",
        "--user=",
        "--user=a:b",
        "--group=",
        "--user=-1",
        "--user=4294967296",
        "--set-env=NOVALUE",
        "--set-env==x",
        "--set-env=1A=x",
        "--set-env=A-B=x",
        "--uuid-file-save=relative",
        "--uuid-file-save=/var/../etc/shadow",
        "--uuid-file-save=",
        "--interactive=maybe",
        "--volume x",
        "--volume ,kind=host,source=/a",
        "--volume X,kind=host,source=/a",
        "--volume -x,kind=host,source=/a",
        "--volume x,kind=empty",
        "--volume x,kind=host",
        "--volume x,source=/a",
        "--volume x,kind=host,source=a",
        "--volume x,kind=host,source=/a/../../etc",
        "--volume x,kind=host,source=/a:b",
        "--volume x,kind=host,source=/a,kind=host",
        "--volume x,kind=host,source=/a,readOnly=yes",
        "--volume x,kind=host,source=/a,mode=0755",
        "--volume x,kind=host,source=/a,noequals",
        "--mount volume=x",
        "--mount target=/a",
        "--mount volume=x,target=a",
        "--mount volume=x,target=/a:b",
        "--mount volume=x,target=/a,target=/b",
        "--mount volume=X,target=/a",
        "--mount volume=x,target=/a,readOnly=true",
        "--exec=/bin/\0x",
    ] {
        let e = error("RKT_RUN_ARGS", value);
        assert!(e.starts_with("RKT_RUN_ARGS: "), "{value:?}: {e}");
    }
}

#[test]
fn long_and_odd_input_does_not_panic() {
    let long = "--set-env=A=".to_string() + &"x".repeat(100_000);
    assert_eq!(args("V", &long).len(), 1);
    let many = "--interactive ".repeat(10_000);
    assert_eq!(args("V", &many).len(), 10_000);
    for s in [
        "--é=1",
        "--volume é,kind=host",
        "--mount volume=é,target=/é",
        "--\u{0}",
    ] {
        let _ = parse("V", s);
    }
}
