//! Real power cuts: a Debian kernel boots under qemu (root: an ext4 image of the cached
//! debootstrap tree, read-only; the store on its own virtio disk with cache=none, so only what
//! the guest flushed reaches the host's file), runs skiff operations, and qemu is SIGKILLed at
//! a random instant. The next boot checks the store: `verify --repair` succeeds offline, every
//! listed image unpacks to files bit-identical to a clean pull, the next pull of everything
//! completes, and gc leaves only what is referenced.
//!
//! SKIFF_POWERCUT_SEED replays a run; SKIFF_POWERCUT_CUTS sets the number of cuts (default 20
//! under KVM; 2 under TCG, where one cut costs minutes, so the suite stays short, with a visible
//! line saying so); SKIFF_POWERCUT_ACCEL=kvm|tcg forces the accelerator (default: KVM, or TCG
//! with a visible line where KVM cannot boot a stock kernel, as under a nested PVM host).
//! The guest runs packaging/out/skiff (the static release build scripts/test makes first) where
//! it exists, much faster under emulation than the debug binary, which it uses otherwise.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KVER: &str = "6.1.0-57-amd64";
const MODULES: [&str; 15] = [
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci",
    "drivers/block/virtio_blk",
    "lib/crc16",
    "fs/mbcache",
    "fs/jbd2/jbd2",
    "crypto/crc32c_generic",
    "fs/ext4/ext4",
    "net/core/failover",
    "drivers/net/net_failover",
    "drivers/net/virtio_net",
    "fs/overlayfs/overlay",
];

fn sh(cmd: &str) {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Kernel, initramfs and root image, kept in a cache dir (the host's /boot and the
/// debootstrap tree are left alone).
fn guest_parts() -> PathBuf {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/powercut");
    std::fs::create_dir_all(&cache).unwrap();
    let k = cache.join("k");
    if !k.join(format!("boot/vmlinuz-{KVER}")).exists() {
        sh(&format!(
            "cd {} && apt-get download linux-image-{KVER} && dpkg-deb -x linux-image-{KVER}_*.deb k",
            cache.display()
        ));
    }
    let initrd = cache.join("initrd");
    let _ = std::fs::remove_dir_all(&initrd);
    for d in ["bin", "mods", "newroot", "proc", "dev"] {
        std::fs::create_dir_all(initrd.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", initrd.join("bin/busybox")).unwrap();
    for a in [
        "sh",
        "insmod",
        "mount",
        "umount",
        "switch_root",
        "sleep",
        "echo",
    ] {
        std::os::unix::fs::symlink("busybox", initrd.join("bin").join(a)).unwrap();
    }
    let mut names = Vec::new();
    for m in MODULES {
        let src = k.join(format!("lib/modules/{KVER}/kernel/{m}.ko"));
        let name = Path::new(m)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        std::fs::copy(&src, initrd.join("mods").join(format!("{name}.ko"))).unwrap();
        names.push(name);
    }
    std::fs::write(
        initrd.join("init"),
        format!(
            "#!/bin/sh\nmount -t proc proc /proc\nmount -t devtmpfs dev /dev\n\
             for m in {}; do insmod /mods/$m.ko || echo \"insmod $m failed\"; done\n\
             mount -t ext4 -o ro /dev/vda /newroot || echo POWERCUT-NOROOT\n\
             mount -t ext4 -o ro /dev/vdc /newroot/mnt || echo POWERCUT-NOTOOLS\n\
             umount /dev; umount /proc\nexec switch_root /newroot /mnt/init\n",
            names.join(" ")
        ),
    )
    .unwrap();
    sh(&format!("chmod +x {0}/init && cd {0} && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > ../initrd.gz", initrd.display()));
    let root = cache.join("root.img");
    if !root.exists() {
        let tmp = cache.join("root.img.tmp");
        sh(&format!(
            "truncate -s 1200M {0} && mkfs.ext4 -q -F -d /var/cache/skiff-test/bookworm {0} && mv {0} {1}",
            tmp.display(),
            root.display()
        ));
    }
    cache
}

/// What the guest runs: `ops.sh OP` on the tools disk.
const OPS: &str = r#"
S="/mnt/skiff --root /srv/store --insecure-registry 10.0.2.100:8080"
R=10.0.2.100:8080/pc
case "$1" in
pull) $S pull $R/a:v1 & $S pull $R/b:v1 & $S pull $R/c:v1 & wait ;;
churn) $S rm $R/b:v1; $S gc; $S pull $R/b:v1 ;;
pin) $S pin --write /srv/pin.env $R/a:v1 ;;
run) $S run --pull=never --exec /bin/sh $R/b:v1 -- -c 'cat /data/payload > /dev/null' ;;
repair) f=$(ls -d /srv/store/layers/* | head -1); find $f -type f -size +1k | head -3 | while read x; do : > "$x"; done; $S verify --repair ;;
check)
  /mnt/busybox ip link set eth0 down
  $S verify --repair; echo "CHECK-REPAIR rc=$?"
  $S verify; echo "CHECK-VERIFY rc=$?"
  for i in $($S images 2>/dev/null | awk 'NR>1 {print $1}'); do
    echo "CHECK-IMAGE $i"
    rm -rf /tmp/u; $S unpack --pull=never "$i" /tmp/u || echo "CHECK-UNPACK-FAILED $i"
    (cd /tmp/u && find . -type f | sort | while read f; do echo "CHECK-FILE $i $(stat -c %s "$f") $(sha256sum < "$f" | cut -c1-64) $f"; done)
  done
  /mnt/busybox ip link set eth0 up
  /mnt/busybox ip addr add 10.0.2.15/24 dev eth0 2>/dev/null; /mnt/busybox ip route add default via 10.0.2.2 2>/dev/null
  $S pull $R/a:v1 && $S pull $R/b:v1 && $S pull $R/c:v1; echo "CHECK-PULL rc=$?"
  $S gc; $S verify; echo "CHECK-AFTER rc=$?"
  echo "CHECK-BLOBS $(ls /srv/store/blobs/sha256 | wc -l) TREES $(ls /srv/store/layers | wc -l)"
  ;;
esac
"#;

const INIT: &str = r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp; mount -t tmpfs run /run
mount -t ext4 /dev/vdb /srv || echo POWERCUT-NOSTORE
B=/mnt/busybox
$B ip link set lo up; $B ip link set eth0 up 2>/dev/null
$B ip addr add 10.0.2.15/24 dev eth0 2>/dev/null; $B ip route add default via 10.0.2.2 2>/dev/null
op=$(sed -n 's/.*skiff\.op=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "POWERCUT-START $op"
sh /mnt/ops.sh "$op" 2>&1
echo "POWERCUT-DONE $op rc=$?"
sync; umount /srv; echo o > /proc/sysrq-trigger; sleep 10
"#;

struct Guest {
    parts: PathBuf,
    tools: PathBuf,
    store: PathBuf,
    accel: &'static str,
    port: u16,
}

impl Guest {
    /// Boots with `op`; with `cut_after`, SIGKILLs qemu that long after the op starts.
    /// Returns the serial output and whether the op finished before the cut.
    fn boot(&self, op: &str, cut_after: Option<Duration>, net: bool) -> (String, bool) {
        let mut cmd = Command::new("qemu-system-x86_64");
        if self.accel == "kvm" {
            cmd.args(["-enable-kvm"]);
        } else {
            cmd.args(["-accel", "tcg"]);
        }
        cmd.args([
            "-m", "1024", "-smp", "2", "-display", "none", "-serial", "stdio",
        ])
        .args(["-monitor", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(self.parts.join(format!("k/boot/vmlinuz-{KVER}")))
        .arg("-initrd")
        .arg(self.parts.join("initrd.gz"))
        .args([
            "-append",
            &format!("console=ttyS0 quiet panic=-1 skiff.op={op}"),
        ])
        .args([
            "-drive",
            &format!(
                "file={},format=raw,if=virtio,readonly=on",
                self.parts.join("root.img").display()
            ),
        ])
        .args([
            "-drive",
            &format!(
                "file={},format=raw,if=virtio,cache=none",
                self.store.display()
            ),
        ])
        .args([
            "-drive",
            &format!(
                "file={},format=raw,if=virtio,readonly=on",
                self.tools.display()
            ),
        ]);
        if net {
            // The registry listens on the host's 127.0.0.1 only; each connection the guest
            // makes to 10.0.2.100:8080 is handed to `busybox nc` to it (a plain `tcp:` forward
            // connects once, at start, and serves one connection).
            cmd.args([
                "-nic",
                &format!("user,model=virtio-net-pci,restrict=on,guestfwd=tcp:10.0.2.100:8080-cmd:/bin/busybox nc 127.0.0.1 {}", self.port),
            ]);
        } else {
            cmd.args(["-nic", "none"]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 (qemu-system-x86) is installed");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut log = String::new();
        let mut started: Option<Instant> = None;
        let mut done = false;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let (Some(s), Some(cut)) = (started, cut_after) {
                if s.elapsed() >= cut {
                    break;
                }
            }
            if Instant::now() > deadline {
                panic!("the guest did not finish {op} in time:\n{log}");
            }
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(l) => {
                    if l.contains("POWERCUT-START") {
                        started = Some(Instant::now());
                    }
                    if l.contains("POWERCUT-DONE") {
                        done = true;
                    }
                    log.push_str(&l);
                    log.push('\n');
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // The power cut: no flush, no shutdown; what the guest did not flush is gone.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        while let Ok(l) = rx.try_recv() {
            log.push_str(&l);
            log.push('\n');
        }
        (log, done)
    }
}

/// Whether KVM can boot a stock kernel here (a nested PVM host has /dev/kvm but cannot).
fn pick_accel(g: &mut Guest) -> &'static str {
    if let Ok(a) = std::env::var("SKIFF_POWERCUT_ACCEL") {
        return if a == "tcg" { "tcg" } else { "kvm" };
    }
    if !Path::new("/dev/kvm").exists() {
        eprintln!("powercut: no /dev/kvm on this machine");
        assert!(
            std::env::var("SKIFF_TEST_NO_KVM").as_deref() == Ok("1"),
            "no /dev/kvm: set SKIFF_TEST_NO_KVM=1 to run the power-cut test under TCG"
        );
        return "tcg";
    }
    g.accel = "kvm";
    let probe = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut c = Command::new("timeout")
                .args([
                    "40",
                    "qemu-system-x86_64",
                    "-enable-kvm",
                    "-m",
                    "256",
                    "-display",
                    "none",
                    "-serial",
                    "stdio",
                    "-monitor",
                    "none",
                    "-no-reboot",
                    "-kernel",
                ])
                .arg(g.parts.join(format!("k/boot/vmlinuz-{KVER}")))
                .args(["-append", "console=ttyS0 panic=-1 earlyprintk=ttyS0"])
                .output()
                .unwrap();
            c.stdout.append(&mut c.stderr);
            String::from_utf8_lossy(&c.stdout).contains("Linux version")
        });
        h.join().unwrap()
    });
    if probe {
        "kvm"
    } else {
        eprintln!("powercut: KVM is present but cannot boot a stock kernel here (nested host); using TCG, a real kernel and ext4 still");
        "tcg"
    }
}

/// Files of an unpacked image: path → (size, sha256).
fn files_of(dir: &Path) -> BTreeMap<String, (u64, String)> {
    let mut out = BTreeMap::new();
    for p in files_under(dir) {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_file() {
            let rel = format!("./{}", p.strip_prefix(dir).unwrap().display());
            out.insert(
                rel,
                (m.len(), sha(&std::fs::read(&p).unwrap())[7..].to_string()),
            );
        }
    }
    out
}

#[test]
fn power_cuts_during_store_operations_lose_nothing() {
    let env = Env::new();
    let reg = env.registry();
    let a = simple_image(&Spec::default()).0;
    let b = busybox_image(
        &Spec::default(),
        &[file("data/payload", &noise(400_000, 9), 0o644)],
    );
    let mut entries = vec![Entry::Dir("many", 0o755)];
    for i in 0..400u64 {
        entries.push(file(
            Box::leak(format!("many/f{i}").into_boxed_str()),
            &noise(3000, i),
            0o644,
        ));
    }
    let c = build(
        &[
            tar(&entries),
            tar(&[file("big", &noise(2_000_000, 77), 0o600)]),
        ],
        &Spec::default(),
    );
    let mut expected: BTreeMap<String, BTreeMap<String, (u64, String)>> = BTreeMap::new();
    for (name, img) in [("a", &a), ("b", &b), ("c", &c)] {
        push(&reg.url(), &format!("pc/{name}"), "v1", img);
        let dir = env.path().join(format!("clean-{name}"));
        ok(env.skiff(&[
            "unpack",
            &format!("{}/pc/{name}:v1", reg.host()),
            dir.to_str().unwrap(),
        ]));
        expected.insert(format!("10.0.2.100:8080/pc/{name}:v1"), files_of(&dir));
    }
    let blobs_needed: std::collections::BTreeSet<String> = [&a, &b, &c]
        .iter()
        .flat_map(|i| {
            let mut v: Vec<String> = i.blobs.iter().map(|x| sha(x)).collect();
            v.push(sha(&i.config));
            v.push(sha(&i.manifest));
            v
        })
        .collect();

    let parts = guest_parts();
    let tools_dir = env.path().join("tools");
    std::fs::create_dir_all(&tools_dir).unwrap();
    // The static release build where scripts/test made it: under TCG a debug skiff is what
    // makes a cut cost minutes.
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/out/skiff");
    let bin = if release.is_file() {
        release
    } else {
        PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
    };
    eprintln!("powercut: the guest runs {}", bin.display());
    std::fs::copy(&bin, tools_dir.join("skiff")).unwrap();
    std::fs::copy("/bin/busybox", tools_dir.join("busybox")).unwrap();
    std::fs::write(tools_dir.join("init"), INIT).unwrap();
    std::fs::write(tools_dir.join("ops.sh"), OPS).unwrap();
    let tools = env.path().join("tools.img");
    sh(&format!(
        "chmod +x {0}/init && truncate -s 400M {1} && mkfs.ext4 -q -F -d {0} {1}",
        tools_dir.display(),
        tools.display()
    ));
    let store = env.path().join("store.img");
    sh(&format!(
        "truncate -s 2G {0} && mkfs.ext4 -q -F {0}",
        store.display()
    ));
    let mut g = Guest {
        parts,
        tools,
        store,
        accel: "tcg",
        port: reg.port,
    };
    g.accel = pick_accel(&mut g);

    let seed: u64 = std::env::var("SKIFF_POWERCUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64 ^ 0x9e37_79b9);
    let asked: Option<usize> = std::env::var("SKIFF_POWERCUT_CUTS")
        .ok()
        .and_then(|s| s.parse().ok());
    // Under TCG a cut costs ~3 minutes (a debug skiff; less with the release one): two keep the
    // suite under ~8 minutes. KVM runs the full count.
    let cuts = asked.unwrap_or(if g.accel == "tcg" { 2 } else { 20 });
    if asked.is_none() && g.accel == "tcg" {
        let why = if std::env::var_os("SKIFF_POWERCUT_ACCEL").is_some() {
            "SKIFF_POWERCUT_ACCEL asked for it"
        } else if !Path::new("/dev/kvm").exists() {
            "this machine has no /dev/kvm"
        } else {
            "KVM could not boot a stock kernel here"
        };
        eprintln!(
            "powercut: this suite ran {cuts} cuts under TCG because {why}; \
             set SKIFF_POWERCUT_CUTS=N to run N cuts (20 is the KVM default)"
        );
    }
    eprintln!(
        "powercut: seed {seed} (SKIFF_POWERCUT_SEED={seed} replays it), {cuts} cuts, accel {}",
        g.accel
    );
    let mut rng = seed;
    let mut next = |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n.max(1)
    };
    // How long each op takes uncut, so cuts land anywhere inside it.
    let ops = ["pull", "churn", "pin", "run", "repair"];
    let mut took: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut finished, mut repaired_something) = (0, 0);
    for cut in 0..cuts {
        // The first cuts are of the first pull, into an empty store.
        let op = if cut == 0 {
            "pull"
        } else {
            ops[next(ops.len() as u64) as usize]
        };
        let span = *took
            .entry(op)
            .or_insert_with(|| if op == "pull" { 15_000 } else { 8_000 });
        let at = Duration::from_millis(next(span));
        let t = Instant::now();
        let (log, done) = g.boot(op, Some(at), true);
        if done {
            finished += 1;
            took.insert(op, t.elapsed().as_millis() as u64);
        }
        let (log2, _) = g.boot("check", None, true);
        let rc = |tag: &str| {
            log2.lines()
                .find(|l| l.starts_with(tag))
                .and_then(|l| l.rsplit_once("rc="))
                .map(|(_, r)| r.trim().to_string())
        };
        let ctx = format!("cut {cut} ({op} at {at:?}, seed {seed}):\n--- cut boot ---\n{log}\n--- check boot ---\n{log2}");
        assert_eq!(
            rc("CHECK-REPAIR").as_deref(),
            Some("0"),
            "verify --repair offline failed; {ctx}"
        );
        assert_eq!(
            rc("CHECK-VERIFY").as_deref(),
            Some("0"),
            "verify after repair; {ctx}"
        );
        if log2.contains("repaired") {
            repaired_something += 1;
        }
        assert!(
            !log2.contains("CHECK-UNPACK-FAILED"),
            "a listed image does not unpack; {ctx}"
        );
        // Each listed image: files bit-identical to a clean pull (so none zero-length or short).
        let mut seen: BTreeMap<String, BTreeMap<String, (u64, String)>> = BTreeMap::new();
        for l in log2.lines() {
            if let Some(i) = l.strip_prefix("CHECK-IMAGE ") {
                seen.entry(i.trim().to_string()).or_default();
            }
            if let Some(rest) = l.strip_prefix("CHECK-FILE ") {
                let mut f = rest.splitn(4, ' ');
                let (i, size, hash, path) = (
                    f.next().unwrap(),
                    f.next().unwrap(),
                    f.next().unwrap(),
                    f.next().unwrap(),
                );
                seen.entry(i.to_string())
                    .or_default()
                    .insert(path.to_string(), (size.parse().unwrap(), hash.to_string()));
            }
        }
        for (i, files) in &seen {
            let want = expected
                .get(i)
                .unwrap_or_else(|| panic!("unknown image {i} listed; {ctx}"));
            assert_eq!(files, want, "image {i} differs from a clean pull; {ctx}");
        }
        assert_eq!(
            rc("CHECK-PULL").as_deref(),
            Some("0"),
            "the next pull did not complete; {ctx}"
        );
        assert_eq!(rc("CHECK-AFTER").as_deref(), Some("0"), "{ctx}");
        let counts = log2
            .lines()
            .find_map(|l| l.strip_prefix("CHECK-BLOBS "))
            .unwrap_or_else(|| panic!("{ctx}"));
        let blobs: usize = counts.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(
            blobs,
            blobs_needed.len(),
            "gc left only what is referenced; {ctx}"
        );
        eprintln!(
            "powercut: cut {cut}: {op} at {at:?}: {} (listed before re-pull: {})",
            if done {
                "finished before the cut"
            } else {
                "cut mid-way"
            },
            seen.len()
        );
    }
    eprintln!("powercut: {cuts} cuts, {} mid-operation, {finished} after the operation finished, {repaired_something} needed a repair", cuts - finished);
}
