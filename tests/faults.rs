//! Faults: skiff killed at random points, a registry that dies and comes back, a store that
//! fills up, many units starting at once. Nothing half-written may ever look complete.

mod common;
use common::proxy::{Fault, Proxy};
use common::*;
use std::time::Duration;

/// A small deterministic generator: the seed is printed, so a failing loop can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn big_image() -> (Image, Vec<Vec<u8>>) {
    let layers = vec![
        tar(&[
            file("a/one", &noise(1_500_000, 11), 0o644),
            Entry::Dir("etc", 0o755),
            file("etc/x", b"x", 0o600),
        ]),
        tar(&[
            file("b/two", &noise(1_200_000, 12), 0o644),
            Entry::Symlink("b/link", "two"),
        ]),
        tar(&[
            file("c/three", &noise(900_000, 13), 0o755),
            file("a/.wh.one", b"", 0o644),
        ]),
    ];
    (build(&layers, &Spec::default()), layers)
}

/// Every blob visible in the store hashes to its name: nothing unverified ever shows.
#[track_caller]
fn assert_only_verified_blobs(env: &Env, when: &str) {
    for p in files_under(&env.root.join("blobs")) {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(
            sha(&bytes)[7..],
            name,
            "{when}: unverified blob {name} is visible"
        );
    }
}

fn assert_store_matches(env: &Env, img: &Image) {
    for b in img.blobs.iter().chain([&img.config, &img.manifest]) {
        let p = env.root.join("blobs/sha256").join(&sha(b)[7..]);
        assert_eq!(std::fs::read(&p).unwrap_or_default(), *b, "{}", p.display());
    }
    assert!(ok(env.skiff(&["verify"])).contains("blobs verified"));
}

#[test]
fn killed_at_random_points_the_next_pull_completes_and_resumes() {
    let env = Env::new();
    let reg = env.registry();
    let (img, _) = big_image();
    push(&reg.url(), "kill/me", "v1", &img);
    // Slow enough that kills land mid-blob, mid-unpack and between layers.
    let proxy = Proxy::start(
        reg.port,
        Fault::Trickle(64 * 1024, Duration::from_millis(15)),
    );
    let r = format!("{}/kill/me:v1", proxy.host());
    let seed = std::env::var("SKIFF_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    eprintln!("seed {seed}");
    let mut rng = Lcg(seed);
    for round in 0..12 {
        let mut child = env
            .skiff_cmd(&["pull", "--max-parallel=1", &r])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50 + rng.next(700)));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        // Whatever a killed skiff left, nothing unverified is in blobs/ and no layer tree is
        // half-built under layers/.
        assert_only_verified_blobs(&env, &format!("round {round}"));
    }
    let ranged = proxy
        .requests()
        .iter()
        .filter(|s| s.range.is_some())
        .count();
    proxy.set(Fault::None);
    ok(env.skiff(&["pull", &r]));
    assert!(
        ranged > 0,
        "killed downloads were resumed with Range requests, not started over"
    );
    assert_store_matches(&env, &img);
    let flat = env.path().join("flat");
    ok(env.skiff(&["unpack", "--pull=never", &r, flat.to_str().unwrap()]));
    assert!(
        !flat.join("a/one").exists()
            && flat.join("b/two").exists()
            && flat.join("c/three").exists()
    );
    assert_eq!(
        std::fs::read(flat.join("b/two")).unwrap(),
        noise(1_200_000, 12)
    );
    let leftovers: Vec<_> = std::fs::read_dir(env.root.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".lock") && n != "run")
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging of killed runs is cleaned: {leftovers:?}"
    );
}

#[test]
fn a_registry_killed_mid_download_and_restarted() {
    let env = Env::new();
    let mut reg = env.registry();
    let (img, _) = big_image();
    push(&reg.url(), "restart/me", "v1", &img);
    let proxy = Proxy::start(
        reg.port,
        Fault::Trickle(32 * 1024, Duration::from_millis(20)),
    );
    let r = format!("{}/restart/me:v1", proxy.host());
    let child = env
        .skiff_cmd(&["pull", "--retries=6", &r])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    reg.stop();
    std::thread::sleep(Duration::from_millis(800));
    reg.restart();
    proxy.set(Fault::None);
    let o = child.wait_with_output().unwrap();
    assert_eq!(ok(o).trim(), img.digest());
    assert_store_matches(&env, &img);
}

#[test]
fn a_wrong_content_length_is_caught() {
    let env = Env::new();
    let reg = env.registry();
    let (img, _) = big_image();
    push(&reg.url(), "cl/img", "v1", &img);
    // A body cut short of its Content-Length, every time: bounded retries, then a clear error.
    let proxy = Proxy::start(reg.port, Fault::CutBlobAfter(1000));
    let r = format!("{}/cl/img:v1", proxy.host());
    let err = fails(env.skiff(&["pull", "--retries=1", &r]));
    assert!(err.contains("blobs/sha256:"), "{err}");
    assert_only_verified_blobs(&env, "after short bodies");
}

#[test]
fn a_full_store_fails_cleanly_and_recovers() {
    let env = Env::new();
    let reg = env.registry();
    let (img, _) = big_image();
    push(&reg.url(), "full/img", "v1", &img);
    std::fs::create_dir_all(&env.root).unwrap();
    let mount = |size: &str| {
        let s = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&env.root)
            .status()
            .unwrap();
        assert!(s.success());
    };
    mount("2m");
    let r = format!("{}/full/img:v1", reg.host());
    let err = fails(env.skiff(&["pull", &r]));
    assert!(
        err.contains("not enough space") && err.contains(env.root.to_str().unwrap()),
        "{err}"
    );
    // Nothing half-written is visible: every blob present verifies, no layer tree exists.
    assert_only_verified_blobs(&env, "after a full disk");
    assert_eq!(
        std::fs::read_dir(env.root.join("layers")).unwrap().count(),
        0
    );
    // Space is freed (a bigger filesystem in its place): the next run succeeds.
    let s = std::process::Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&env.root)
        .status()
        .unwrap();
    assert!(s.success());
    ok(env.skiff(&["pull", &r]));
    assert_store_matches(&env, &img);
    let _ = nix::mount::umount2(&env.root, nix::mount::MntFlags::MNT_DETACH);
}

#[test]
fn eight_units_start_the_same_uncached_image_at_once() {
    let env = Env::new();
    let reg = env.registry();
    let img = busybox_image(
        &Spec::default(),
        &[file("data/big", &noise(2_000_000, 21), 0o644)],
    );
    push(&reg.url(), "many/img", "v1", &img);
    let proxy = Proxy::start(reg.port, Fault::None);
    let r = format!("{}/many/img:v1", proxy.host());
    let children: Vec<_> = (0..8)
        .map(|i| {
            env.skiff_cmd(&[
                "run",
                "--exec",
                "/bin/sh",
                &r,
                "--",
                "-c",
                &format!("echo started-{i}; sha256sum /data/big"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let expected = sha(&noise(2_000_000, 21))[7..].to_string();
    for (i, c) in children.into_iter().enumerate() {
        let out = ok(c.wait_with_output().unwrap());
        assert!(
            out.contains(&format!("started-{i}")) && out.contains(&expected),
            "no corruption: {out}"
        );
    }
    for b in &img.blobs {
        assert_eq!(
            proxy.blob_downloads(&sha(b)).len(),
            1,
            "each blob is downloaded once"
        );
    }
    assert_store_matches(&env, &img);
}

#[test]
fn a_stalled_download_is_cut_kept_and_resumed() {
    let env = Env::new();
    let reg = env.registry();
    let (img, _) = big_image();
    push(&reg.url(), "stall/img", "v1", &img);
    // 64 KiB, then silence for longer than the stall timeout.
    let proxy = Proxy::start(reg.port, Fault::Trickle(64 * 1024, Duration::from_secs(4)));
    let r = format!("{}/stall/img:v1", proxy.host());
    let t0 = std::time::Instant::now();
    let err = fails(env.skiff(&[
        "pull",
        "--stall-timeout=1",
        "--retries=0",
        "--max-parallel=1",
        &r,
    ]));
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the stall was noticed: {:?}",
        t0.elapsed()
    );
    assert!(err.contains("blobs/sha256:"), "{err}");
    let partial: u64 = files_under(&env.root.join("ingest"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "partial"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(partial >= 64 * 1024, "what arrived is kept: {partial}");
    proxy.set(Fault::None);
    ok(env.skiff(&["pull", &r]));
    assert!(
        proxy.requests().iter().any(|s| s.range.is_some()),
        "and resumed"
    );
    assert_store_matches(&env, &img);
}

/// A tmpfs store of `size`, unmounted when dropped.
struct SmallStore<'a>(&'a Env);

impl<'a> SmallStore<'a> {
    fn mount(env: &'a Env, size: &str) -> SmallStore<'a> {
        std::fs::create_dir_all(&env.root).unwrap();
        run_ok(
            std::process::Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0700"),
                    "tmpfs",
                ])
                .arg(&env.root),
        );
        SmallStore(env)
    }
}

impl Drop for SmallStore<'_> {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0.root, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn small_image() -> Image {
    build(&[tar(&[file("small", b"fits", 0o644)])], &Spec::default())
}

#[test]
fn a_pull_bigger_than_the_disk_fails_early_and_a_small_one_then_fits() {
    let env = Env::new();
    let reg = env.registry();
    let big = build(
        &[tar(&[file("big", &noise(3_000_000, 5), 0o644)])],
        &Spec::default(),
    );
    push(&reg.url(), "disk/big", "v1", &big);
    push(&reg.url(), "disk/small", "v1", &small_image());
    let _store = SmallStore::mount(&env, "4m");
    let err = fails(env.skiff(&["pull", &format!("{}/disk/big:v1", reg.host())]));
    assert!(
        err.contains("need at least 6.")
            && err.contains("free")
            && err.contains(env.root.to_str().unwrap()),
        "the message says how much is needed and how much is free: {err}"
    );
    assert!(
        entries(&env.root.join("ingest"))
            .iter()
            .all(|n| n.ends_with(".lock")),
        "nothing downloaded"
    );
    ok(env.skiff(&["pull", &format!("{}/disk/small:v1", reg.host())]));
}

#[test]
fn a_layer_that_unpacks_bigger_than_the_disk_gives_its_space_back() {
    let env = Env::new();
    let reg = env.registry();
    // 24 MB of zeros: a few kB compressed, so only unpacking finds out.
    let big = build(
        &[tar(&[file("zeros", &vec![0u8; 24 << 20], 0o644)])],
        &Spec::default(),
    );
    push(&reg.url(), "disk/zeros", "v1", &big);
    push(&reg.url(), "disk/small", "v1", &small_image());
    let _store = SmallStore::mount(&env, "16m");
    let err = fails(env.skiff(&["pull", &format!("{}/disk/zeros:v1", reg.host())]));
    assert!(err.contains("No space left on device"), "{err}");
    assert!(entries(&env.root.join("layers")).is_empty());
    assert!(
        !env.root
            .join("blobs/sha256")
            .join(&sha(&big.blobs[0])[7..])
            .exists(),
        "the layer blob is given back"
    );
    assert!(
        entries(&env.root.join("tmp"))
            .iter()
            .all(|n| n.ends_with(".lock") || n == "run"),
        "no staging: {:?}",
        entries(&env.root.join("tmp"))
    );
    assert!(!ok(env.skiff(&["images"])).contains("disk/zeros"));
    ok(env.skiff(&["pull", &format!("{}/disk/small:v1", reg.host())]));
}

#[test]
fn a_disk_that_fills_during_a_download_keeps_no_partials() {
    let env = Env::new();
    let reg = env.registry();
    let img = build(
        &[
            tar(&[file("one", &noise(1_200_000, 8), 0o644)]),
            tar(&[file("two", &noise(1_200_000, 9), 0o644)]),
        ],
        &Spec::default(),
    );
    push(&reg.url(), "disk/fills", "v1", &img);
    push(&reg.url(), "disk/small", "v1", &small_image());
    let proxy = Proxy::start(
        reg.port,
        Fault::Trickle(64 * 1024, std::time::Duration::from_millis(40)),
    );
    let _store = SmallStore::mount(&env, "8m");
    let child = env
        .skiff_cmd(&["pull", &format!("{}/disk/fills:v1", proxy.host())])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once a download is under way, something else on the host fills the disk.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let layer_partials: Vec<String> = img
        .blobs
        .iter()
        .map(|b| format!("{}.partial", &sha(b)[7..]))
        .collect();
    while !entries(&env.root.join("ingest"))
        .iter()
        .any(|n| layer_partials.contains(n))
    {
        assert!(std::time::Instant::now() < deadline, "no download started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let filler = env.root.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let out = child.wait_with_output().unwrap();
    let err = fails(out);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        !entries(&env.root.join("ingest"))
            .iter()
            .any(|n| n.ends_with(".partial")),
        "no partial downloads stay: {:?}",
        entries(&env.root.join("ingest"))
    );
    assert_only_verified_blobs(&env, "after the disk filled");
    std::fs::remove_file(&filler).unwrap();
    ok(env.skiff(&["pull", &format!("{}/disk/small:v1", reg.host())]));
}

#[test]
fn gc_removes_partials_and_locks_no_one_holds() {
    let env = Env::new();
    ok(env.skiff(&["images"]));
    let ingest = env.root.join("ingest");
    let (stale, held) = ("a".repeat(64), "b".repeat(64));
    for h in [&stale, &held] {
        std::fs::write(ingest.join(format!("{h}.partial")), vec![1u8; 4096]).unwrap();
        std::fs::write(ingest.join(format!("{h}.lock")), b"").unwrap();
    }
    std::fs::write(env.root.join("tmp/layer-x.lock"), b"").unwrap();
    // A live process (this test) holds one download's lock.
    let lock = nix::fcntl::Flock::lock(
        std::fs::File::open(ingest.join(format!("{held}.lock"))).unwrap(),
        nix::fcntl::FlockArg::LockExclusive,
    )
    .unwrap();
    ok(env.skiff(&["gc"]));
    let left = entries(&ingest);
    assert!(
        !left.iter().any(|n| n.starts_with(&stale)),
        "the stale partial and lock are gone: {left:?}"
    );
    assert!(
        left.contains(&format!("{held}.partial")) && left.contains(&format!("{held}.lock")),
        "{left:?}"
    );
    assert!(!env.root.join("tmp/layer-x.lock").exists());
    drop(lock);
}
