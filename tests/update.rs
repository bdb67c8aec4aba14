//! `skiff update` and `skiff rollback` under a real systemd (the booted Debian of
//! tests/systemd.rs), with a real registry on the host's loopback and payloads that fail the
//! ways services fail: exit at once, READY=1 then death three seconds later, no READY=1 at all.
//!
//! One boot; each step checks the pin file, the unit's MainPID and what it runs.

mod common;
use common::container::*;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The payload: `app ready|exit|die|never`. READY=1 through NOTIFY_SOCKET (which skiff passes
/// through), then it serves (pause) — or it does not.
const APP_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
static int notify(const char *msg) {
    const char *p = getenv("NOTIFY_SOCKET");
    if (!p) return -1;
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, p, sizeof a.sun_path - 1);
    if (a.sun_path[0] == '@') a.sun_path[0] = 0;
    socklen_t len = sizeof(sa_family_t) + strlen(p);
    return sendto(s, msg, strlen(msg), 0, (struct sockaddr *)&a, len);
}
int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "ready";
    if (!strcmp(mode, "exit")) { fprintf(stderr, "app: exiting at once\n"); return 1; }
    if (!strcmp(mode, "never")) { for (;;) pause(); }
    if (notify("READY=1") < 0) { perror("notify"); return 2; }
    if (!strcmp(mode, "die")) { sleep(3); fprintf(stderr, "app: dying after READY\n"); return 1; }
    for (;;) pause();
}
"#;

const APP_UNIT: &str = "[Unit]
Description=an app run by skiff

[Service]
Type=notify
EnvironmentFile=/etc/skiff/app.env
ExecStart=/opt/bin/skiff run ${APP_IMAGE}
Restart=on-failure
RestartSec=1
TimeoutStartSec=8
";

const FIXED_UNIT: &str = "[Unit]
Description=an app pinned by digest, following no tag

[Service]
Type=notify
EnvironmentFile=/etc/skiff/fixed.env
ExecStart=/opt/bin/skiff run ${FIXED_IMAGE}
";

fn install(root: &Path, path: &str, bytes: &[u8], mode: u32) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An image whose payload runs `app MODE` and whose /version says `version`.
fn app_image(app: &[u8], mode: &str, version: &str) -> Image {
    busybox_image(
        &Spec {
            cmd: vec!["/bin/app".into(), mode.into()],
            ..Spec::default()
        },
        &[
            Entry::File("bin/app".into(), app.to_vec(), 0o755),
            file("version", format!("{version}\n").as_bytes(), 0o644),
        ],
    )
}

/// Drops packets to a port on the host's loopback (the container shares the host's network)
/// while it lives.
struct Blackhole(u16);

impl Blackhole {
    fn new(port: u16) -> Blackhole {
        run_ok(Command::new("iptables").args(Blackhole::rule("-I", port)));
        Blackhole(port)
    }

    fn rule(op: &str, port: u16) -> Vec<String> {
        [
            op,
            "INPUT",
            "-i",
            "lo",
            "-p",
            "tcp",
            "--dport",
            &port.to_string(),
            "-j",
            "DROP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = Command::new("iptables")
            .args(Blackhole::rule("-D", self.0))
            .status();
    }
}

struct Host<'a> {
    c: &'a Container,
    registry: String,
}

impl Host<'_> {
    fn main_pid(&self) -> String {
        self.c.prop("app.service", "MainPID")
    }

    /// What the unit's main process runs: /version of its root.
    fn running(&self) -> String {
        let pid = self.main_pid();
        assert_ne!(pid, "0", "app.service has a main process");
        self.c
            .ok(&format!("cat /proc/{pid}/root/version"))
            .trim()
            .to_string()
    }

    fn pin(&self) -> String {
        self.c.ok("cat /etc/skiff/app.env")
    }

    /// Runs `skiff update ARGS --format json`: (exit status, outcomes, stderr).
    fn update(&self, args: &str) -> (i32, serde_json::Value, String) {
        let o = self
            .c
            .sh(&format!("/opt/bin/skiff update --format json {args}"));
        let out = stdout(&o);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "skiff update {args}: {e}\nstdout: {out}\nstderr: {}",
                stderr(&o)
            )
        });
        (o.status.code().unwrap_or(-1), v, stderr(&o))
    }

    fn push(&self, img: &Image) -> String {
        push(
            &format!("http://{}", self.registry),
            "test/app",
            "stable",
            img,
        )
    }
}

fn outcome<'a>(v: &'a serde_json::Value, unit: &str) -> &'a serde_json::Value {
    v.as_array()
        .and_then(|a| a.iter().find(|o| o["unit"] == unit))
        .unwrap_or_else(|| panic!("no outcome for {unit}: {v}"))
}

#[test]
fn update_and_rollback_under_a_real_systemd() {
    let env = Env::new();
    let mut reg = env.registry();
    let helpers = env.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let app = static_c(&helpers, "app", APP_C);
    let v1 = app_image(&app, "ready", "v1");
    let v1_digest = push(&reg.url(), "test/app", "stable", &v1);

    let _one = ONE_CONTAINER.lock().unwrap_or_else(|p| p.into_inner());
    let overlay = OverlayRoot::new(env.path());
    let root = overlay.path.clone();
    let skiff = std::fs::read(env!("CARGO_BIN_EXE_skiff")).unwrap();
    install(&root, "/opt/bin/skiff", &skiff, 0o755);
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("units");
    for u in ["skiff-update.service", "skiff-update.timer"] {
        let text = std::fs::read(units.join(u)).unwrap();
        install(&root, &format!("/etc/systemd/system/{u}"), &text, 0o644);
    }
    install(
        &root,
        "/etc/systemd/system/app.service",
        APP_UNIT.as_bytes(),
        0o644,
    );
    install(
        &root,
        "/etc/systemd/system/fixed.service",
        FIXED_UNIT.as_bytes(),
        0o644,
    );
    let host = reg.host();
    let pin_v1 = format!(
        "# the app's pin\n# skiff-follow: {host}/test/app:stable\nAPP_IMAGE={host}/test/app@{v1_digest}\n"
    );
    install(&root, "/etc/skiff/app.env", pin_v1.as_bytes(), 0o644);
    let fixed = format!("# skiff-follow: -\nFIXED_IMAGE={host}/test/app@{v1_digest}\n");
    install(&root, "/etc/skiff/fixed.env", fixed.as_bytes(), 0o644);
    // A signedBy policy for the refusal check (the units themselves run under no policy).
    let gpg = sign::Gpg::new(&env.path().join("gnupg"));
    let fpr = gpg.gen_key("EDDSA", "release");
    gpg.export(&fpr, &root.join("etc/skiff/release.gpg"), false);
    let strict = r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/etc/skiff/release.gpg"}]}"#;
    install(&root, "/etc/skiff/strict.json", strict.as_bytes(), 0o644);

    let c = Container::boot(&root, &env.path().join("nspawn.log"));
    let h = Host {
        c: &c,
        registry: host.clone(),
    };
    c.ok("systemd-analyze verify --man=no /etc/systemd/system/skiff-update.service /etc/systemd/system/skiff-update.timer");
    // Off unless enabled: installed, not enabled, nothing at boot started it.
    assert_eq!(c.prop("skiff-update.timer", "UnitFileState"), "disabled");
    assert_eq!(c.prop("skiff-update.service", "ActiveState"), "inactive");
    c.ok("timeout 120 systemctl start app.service fixed.service");
    assert_eq!(h.running(), "v1");
    let pid_v1 = h.main_pid();

    // Nothing moved: `unchanged`, found by asking systemd; the digest-only pin says why.
    let (rc, v, _) = h.update("");
    assert_eq!(rc, 0, "{v}");
    assert_eq!(outcome(&v, "app.service")["status"], "unchanged", "{v}");
    let f = outcome(&v, "fixed.service");
    assert_eq!(f["status"], "unchanged", "{v}");
    assert!(
        f["reason"].as_str().unwrap().contains("follows no tag"),
        "{v}"
    );
    // A check where nothing changed costs one request per unit: a HEAD, no GET.
    let requests = |reg: &Registry| {
        let access = reg.log_lines(" HTTP/1.1\" ");
        access
            .iter()
            .filter(|l| l.contains(" /v2/test/app/"))
            .count()
    };
    let (heads, all) = (
        reg.log_lines("\"HEAD /v2/test/app/manifests/stable").len(),
        requests(&reg),
    );
    let (rc, v, _) = h.update("app.service");
    assert_eq!(
        (rc, outcome(&v, "app.service")["status"].as_str()),
        (0, Some("unchanged"))
    );
    assert_eq!(
        reg.log_lines("\"HEAD /v2/test/app/manifests/stable").len(),
        heads + 1
    );
    assert_eq!(
        requests(&reg),
        all + 1,
        "{:?}",
        reg.log_lines(" HTTP/1.1\" ")
    );
    // A multi-arch tag whose index names the pinned manifest for this host is the same image.
    let idx = index(&[(&v1, "amd64", None), (&v1, "arm64", None)]);
    let oci_index = "application/vnd.oci.image.index.v1+json";
    push_manifest(&reg.url(), "test/app", "stable", &idx, oci_index);
    let (rc, v, _) = h.update("app.service");
    let o = outcome(&v, "app.service");
    assert_eq!((rc, o["status"].as_str()), (0, Some("unchanged")), "{v}");
    assert!(
        o["reason"]
            .as_str()
            .unwrap()
            .contains("manifest is the pinned"),
        "{v}"
    );
    assert_eq!(h.main_pid(), pid_v1);
    // Through the unit, as the timer starts it: the journal has structured fields.
    c.ok("timeout 120 systemctl start skiff-update.service");
    let journal = c.ok("journalctl -u skiff-update.service -o verbose --no-pager");
    assert!(
        journal.contains("SKIFF_UNIT=app.service") && journal.contains("SKIFF_RESULT=unchanged"),
        "{journal}"
    );

    // --dry-run: pending, and the store, the pin and the unit are untouched.
    let v2 = app_image(&app, "ready", "v2");
    let v2_digest = h.push(&v2);
    let store_before = c.ok("find /var/lib/skiff -path '*/tmp' -prune -o -print | sort");
    let (rc, v, _) = h.update("--dry-run app.service");
    assert_eq!(rc, 0);
    let o = outcome(&v, "app.service");
    assert_eq!(o["status"], "pending", "{v}");
    assert_eq!(o["to"], v2_digest.as_str());
    assert_eq!(h.pin(), pin_v1);
    assert_eq!(h.main_pid(), pid_v1);
    assert_eq!(
        c.ok("find /var/lib/skiff -path '*/tmp' -prune -o -print | sort"),
        store_before
    );

    // The registry blackholed: unchanged within the budget, nothing restarted; the service
    // that runs it does not fail.
    {
        let _drop = Blackhole::new(reg.port);
        let (rc, v, _) = h.update("--registry-timeout 2 app.service");
        assert_eq!(rc, 0, "{v}");
        let o = outcome(&v, "app.service");
        assert_eq!(o["status"], "unchanged", "{v}");
        assert!(
            o["reason"]
                .as_str()
                .unwrap()
                .contains("could not be reached"),
            "{v}"
        );
        c.ok("timeout 120 systemctl start skiff-update.service");
        assert_eq!(c.prop("skiff-update.service", "Result"), "success");
        assert_eq!(h.main_pid(), pid_v1);
    }

    // An unsigned new image under a signedBy policy: refused before anything changes.
    let (rc, v, _) = h.update("--policy /etc/skiff/strict.json app.service");
    assert_eq!(rc, 1, "{v}");
    let o = outcome(&v, "app.service");
    assert_eq!(o["status"], "failed", "{v}");
    assert!(o["reason"].as_str().unwrap().contains("strict.json"), "{v}");
    assert_eq!(h.pin(), pin_v1);
    assert_eq!(h.main_pid(), pid_v1);

    // A good new digest: updated; the pin has it; MainPID runs the new rootfs.
    let (rc, v, _) =
        h.update("--grace 3 --health-cmd 'grep -qx v2 /proc/$MAINPID/root/version' app.service");
    assert_eq!(rc, 0, "{v}");
    let o = outcome(&v, "app.service");
    assert_eq!(o["status"], "updated", "{v}");
    assert_eq!(
        (o["from"].as_str(), o["to"].as_str()),
        (Some(v1_digest.as_str()), Some(v2_digest.as_str()))
    );
    let pin_v2 = h.pin();
    assert_eq!(pin_v2, pin_v1.replace(&v1_digest, &v2_digest));
    assert_eq!(h.running(), "v2");
    assert_eq!(c.ok("cat /etc/skiff/app.env.previous"), pin_v1);

    // Each bad new version is rolled back: the pin byte for byte, v2 active again, exit 1.
    for (mode, why) in [
        ("exit", "restart job ended"),
        ("die", "NRestarts"),
        ("never", "Result timeout"),
    ] {
        let bad = app_image(&app, mode, mode);
        let bad_digest = h.push(&bad);
        let (rc, v, _) = h.update("--grace 6 app.service");
        let o = outcome(&v, "app.service");
        assert_eq!(
            (rc, o["status"].as_str()),
            (1, Some("rolled back")),
            "{mode}: {v}"
        );
        assert_eq!(o["to"], bad_digest.as_str(), "{mode}");
        assert!(o["reason"].as_str().unwrap().contains(why), "{mode}: {v}");
        assert_eq!(
            h.pin(),
            pin_v2,
            "{mode}: the pin file is restored byte for byte"
        );
        assert_eq!(c.prop("app.service", "ActiveState"), "active", "{mode}");
        assert_eq!(h.running(), "v2", "{mode}");
    }

    // A --health-cmd that fails rolls back a version systemd thinks is fine (the same check
    // passes for the previous version, so it comes back).
    let fine = app_image(&app, "ready", "v2-unhealthy");
    h.push(&fine);
    let (rc, v, _) =
        h.update("--grace 1 --health-cmd 'grep -qx v2 /proc/$MAINPID/root/version' app.service");
    let o = outcome(&v, "app.service");
    assert_eq!((rc, o["status"].as_str()), (1, Some("rolled back")), "{v}");
    assert!(o["reason"].as_str().unwrap().contains("exited 1"), "{v}");
    assert_eq!(h.pin(), pin_v2);
    assert_eq!(h.running(), "v2");

    // gc, with v2's index entry gone so only the update's hold keeps it; then the registry
    // stops once the new pin is written: the rollback runs from the store alone.
    c.ok(&format!(
        "/opt/bin/skiff rm {host}/test/app@{v2_digest} && /opt/bin/skiff gc"
    ));
    // READY, then death 3 s later: the pin stays moved long enough to stop the registry.
    let bad = app_image(&app, "die", "v-offline");
    h.push(&bad);
    c.ok("setsid sh -c '/opt/bin/skiff update --format json --grace 6 app.service >/tmp/offline.json 2>/tmp/offline.err; echo $? >/tmp/offline.rc' </dev/null >/dev/null 2>&1 &");
    let ended = || c.sh("test -s /tmp/offline.rc").status.success();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while h.pin() == pin_v2 {
        assert!(
            std::time::Instant::now() < deadline && !ended(),
            "the pin never moved: {}\n{}\n{}",
            stdout(&c.sh("ps -eo pid,stat,wchan:30,args | grep -v ' \\[' ")),
            stdout(&c.sh("cat /tmp/offline.json /tmp/offline.err")),
            stdout(&c.sh("journalctl -n 30 --no-pager"))
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    reg.stop();
    c.wait_for(Duration::from_secs(120), "the update to end", || {
        c.sh("test -s /tmp/offline.rc").status.success()
    });
    let v: serde_json::Value = serde_json::from_str(&c.ok("cat /tmp/offline.json")).unwrap();
    assert_eq!(
        outcome(&v, "app.service")["status"],
        "rolled back",
        "{v}\n{}",
        c.ok("cat /tmp/offline.err")
    );
    assert_eq!(h.pin(), pin_v2);
    assert_eq!(h.running(), "v2");

    // Two updates at once: one waits for the other; the pin is written by one at a time.
    reg.restart();
    let v3 = app_image(&app, "ready", "v3");
    let v3_digest = h.push(&v3);
    for n in [1, 2] {
        c.ok(&format!("setsid sh -c '/opt/bin/skiff update --format json --grace 3 app.service >/tmp/u{n}.json 2>/tmp/u{n}.err; echo $? >/tmp/u{n}.rc' </dev/null >/dev/null 2>&1 &"));
    }
    c.wait_for(Duration::from_secs(180), "both updates to end", || {
        c.sh("test -s /tmp/u1.rc && test -s /tmp/u2.rc")
            .status
            .success()
    });
    let mut results = Vec::new();
    let mut waited = 0;
    for n in [1, 2] {
        let v: serde_json::Value =
            serde_json::from_str(&c.ok(&format!("cat /tmp/u{n}.json"))).unwrap();
        results.push(
            outcome(&v, "app.service")["status"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        if c.ok(&format!("cat /tmp/u{n}.err"))
            .contains("waiting for it")
        {
            waited += 1;
        }
    }
    results.sort();
    assert_eq!(
        results,
        ["unchanged", "updated"],
        "the second saw the first's pin"
    );
    assert_eq!(waited, 1, "exactly one waited");
    assert!(h.pin().contains(&v3_digest));
    assert_eq!(h.running(), "v3");

    // `skiff rollback` by hand: back to v2 through the same gate.
    let out = c.ok("/opt/bin/skiff rollback --grace 2 app.service");
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(h.pin(), pin_v2);
    assert_eq!(h.running(), "v2");

    // The history answers "what ran here".
    let hist = c.ok("/opt/bin/skiff update --history app.service");
    for word in ["unchanged", "updated", "rolled back", "failed"] {
        assert!(hist.contains(&format!("\t{word}\t")), "{word}: {hist}");
    }
    assert!(!hist.contains("fixed.service"));
    assert!(!hist.contains("pending"), "a dry run records nothing");
    let journal =
        c.ok("journalctl SKIFF_UNIT=app.service SKIFF_RESULT='rolled back' -o verbose --no-pager");
    assert!(
        journal.contains("SKIFF_RESULT=rolled back") && journal.contains("SKIFF_FROM=sha256:"),
        "{journal}"
    );
}
