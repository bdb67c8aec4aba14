use super::*;

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn entry_points_by_name() {
    let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
    assert_eq!(
        argv(os(&[
            "/usr/lib/coreos/etcd-wrapper",
            "--name",
            "n1",
            "--",
            "x"
        ])),
        os(&[
            "skiff",
            "run",
            "--profile",
            "etcd",
            "--",
            "--name",
            "n1",
            "--",
            "x"
        ])
    );
    assert_eq!(
        argv(os(&["kubelet-wrapper"])),
        os(&["skiff", "run", "--profile", "kubelet", "--"])
    );
    for other in [
        "skiff",
        "/opt/bin/skiff",
        "etcd-wrapper.sh",
        "xetcd-wrapper",
        "",
    ] {
        let a = os(&[other, "run", "img"]);
        assert_eq!(argv(a.clone()), a, "{other}");
    }
    assert!(argv(Vec::new()).is_empty());
}

#[test]
fn deprecated_kubelet_variables_fall_back_and_warn() {
    let e = env_of(&[
        ("KUBELET_VERSION", "v1.9.0"),
        ("KUBELET_ACI", "docker://reg.lan/hyperkube"),
        (
            "RKT_OPTS",
            "--volume a,kind=host,source=/a --mount volume=a,target=/a",
        ),
    ]);
    assert_eq!(aliased("KUBELET_IMAGE_TAG", &e).as_deref(), Some("v1.9.0"));
    assert_eq!(
        aliased("KUBELET_IMAGE_URL", &e).as_deref(),
        Some("docker://reg.lan/hyperkube")
    );
    assert_eq!(
        aliased("RKT_RUN_ARGS", &e),
        None,
        "RKT_OPTS is appended, not a fallback"
    );
    let new = env_of(&[("KUBELET_VERSION", "old"), ("KUBELET_IMAGE_TAG", "new")]);
    assert_eq!(aliased("KUBELET_IMAGE_TAG", &new).as_deref(), Some("new"));
    let t = from_env("KUBELET", &e).unwrap();
    assert_eq!(
        t.warnings,
        [
            "KUBELET_VERSION is deprecated, use KUBELET_IMAGE_TAG instead",
            "KUBELET_ACI is deprecated, use KUBELET_IMAGE_URL instead",
            "RKT_OPTS is deprecated, use RKT_RUN_ARGS instead",
        ]
    );
    assert_eq!(
        t.volumes,
        ["/a:/a:rw".parse().unwrap()],
        "RKT_OPTS is honoured"
    );
}

#[test]
fn volumes_pair_with_mounts_across_variables_in_any_order() {
    let e = env_of(&[
        (
            "RKT_RUN_ARGS",
            "--mount volume=certs,target=/etc/kubernetes/tls \
             --volume certs,kind=host,source=/etc/k8s/tls,readOnly=true \
             --volume run,kind=host,source=/run,recursive=true",
        ),
        (
            "ETCD_IMAGE_ARGS",
            "--mount volume=run,target=/run --mount volume=certs,target=/tls2",
        ),
        ("RKT_STAGE1_ARG", "--stage1-from-dir=stage1-fly.aci"),
        ("RKT_GLOBAL_ARGS", "--insecure-options=image"),
    ]);
    let t = from_env("ETCD", &e).unwrap();
    let want: Vec<VolumeSpec> = [
        "/etc/k8s/tls:/etc/kubernetes/tls:ro",
        "/run:/run:rw,rbind",
        "/etc/k8s/tls:/tls2:ro",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    assert_eq!(t.volumes, want);
    assert!(t.image_args_set);
    let notes: Vec<String> = t.notes.iter().map(|n| n.to_string()).collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("RKT_STAGE1_ARG: --stage1-from-dir=stage1-fly.aci -> unused")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("RKT_GLOBAL_ARGS: --insecure-options=image -> unused")),
        "rkt's global flags are rkt's own: {notes:?}"
    );
    assert!(notes
        .iter()
        .any(|n| n
            == "ETCD_IMAGE_ARGS: --mount volume=run,target=/run -> --volume /run:/run:rw,rbind"));
}

#[test]
fn unpaired_and_duplicate_volumes_are_errors() {
    for (value, needle) in [
        ("--mount volume=x,target=/x", "names no --volume x"),
        ("--volume x,kind=host,source=/x", "has no --mount"),
        (
            "--volume x,kind=host,source=/x --volume x,kind=host,source=/y --mount volume=x,target=/x",
            "given twice",
        ),
        (
            "--volume x,kind=host,source=/x --mount volume=x,target=/",
            "--volume x",
        ),
    ] {
        let e = from_env("ETCD", &move |k: &str| (k == "RKT_RUN_ARGS").then(|| value.to_string()))
            .unwrap_err();
        assert!(format!("{e:#}").contains(needle) && e.to_string().starts_with("RKT_RUN_ARGS"), "{value}: {e}");
    }
}

#[test]
fn users_follow_the_scripts_order() {
    let t = |v: &'static str| {
        from_env("X", &move |k: &str| {
            (k == "X_IMAGE_ARGS").then(|| v.to_string())
        })
        .unwrap()
    };
    // The profile's user variable came last in the script (--user=$(id -u $ETCD_USER)).
    assert_eq!(
        t("--user=1000").user_spec(Some((232, 232))).unwrap(),
        Some(UserSpec::ids(232, 232))
    );
    assert_eq!(
        t("--group=wheel").user_spec(Some((232, 232))).unwrap(),
        Some("232:wheel".parse().unwrap())
    );
    assert_eq!(
        t("--user=app --group=10").user_spec(None).unwrap(),
        Some("app:10".parse().unwrap())
    );
    assert_eq!(t("--exec=/x").user_spec(None).unwrap(), None);
    assert!(t("--group=10").user_spec(None).is_err());
}

#[test]
fn empty_variables_change_nothing() {
    let t = from_env("KUBELET", &|k: &str| {
        (k.starts_with("RKT") || k.ends_with("ARGS")).then(|| " \n ".to_string())
    })
    .unwrap();
    assert_eq!(t, Translation::default());
}

#[test]
fn uuid_files_are_written_whole() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("pod.uuid");
    std::fs::write(&p, "old").unwrap();
    let u = save_uuid(&p).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), u);
    assert_eq!(u.len(), 36);
    assert_eq!(&u[14..15], "4");
    assert_ne!(save_uuid(&p).unwrap(), u);
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "no temporary left"
    );
    let e = save_uuid(&d.path().join("missing/pod.uuid")).unwrap_err();
    assert!(e.to_string().contains("missing/pod.uuid"), "{e}");
}
