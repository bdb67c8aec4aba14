//! The restart, judge and rollback steps against the recording systemd: every verdict without
//! a systemd. (The whole flow, registry and store included, runs under a booted systemd in
//! tests/update.rs.)

use super::gate::UnitState;
use super::systemd::{Call, Recording};
use super::*;

fn st(active: &str, n: u32, pid: u32) -> UnitState {
    UnitState {
        active: active.into(),
        sub: if active == "active" {
            "running"
        } else {
            "failed"
        }
        .into(),
        n_restarts: n,
        main_pid: pid,
        result: "success".into(),
    }
}

fn opts(grace_ms: u64) -> Options {
    Options {
        dry_run: false,
        grace: Duration::from_millis(grace_ms),
        poll: Duration::from_millis(1),
        health_cmd: None,
        platform: Platform::host(),
        storage: Storage::Flat,
    }
}

const HEX_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HEX_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn pin_file(dir: &Path) -> PathBuf {
    let p = dir.join("app.env");
    std::fs::write(
        &p,
        format!(
            "# mine\n{} reg.lan/app:v1\nAPP=reg.lan/app@sha256:{HEX_A}\n",
            pinfile::FOLLOW
        ),
    )
    .unwrap();
    p
}

#[test]
fn a_healthy_restart_passes_after_the_grace_window() {
    let mut sd = Recording {
        states: vec![st("active", 0, 10)],
        ..Recording::default()
    };
    restart_and_judge(&mut sd, "app.service", &opts(5)).unwrap();
    assert_eq!(sd.calls[0], Call::Restart("app.service".into()));
    assert_eq!(sd.calls[1], Call::WaitJob("/job/1".into()));
    assert!(
        sd.calls.len() >= 4,
        "read during the window: {:?}",
        sd.calls
    );
}

#[test]
fn a_crash_inside_the_grace_window_fails_the_gate() {
    let mut sd = Recording {
        states: vec![
            st("active", 0, 10),
            st("active", 0, 10),
            st("active", 1, 11),
        ],
        ..Recording::default()
    };
    let e = restart_and_judge(&mut sd, "app.service", &opts(2000)).unwrap_err();
    assert!(e.0.contains("NRestarts 0 → 1"), "{e}");
    // It stopped at the first bad reading, not at the end of the window.
    assert_eq!(sd.calls.len(), 5);
}

#[test]
fn the_health_cmd_runs_on_the_host_with_the_unit_and_pid() {
    let mut o = opts(0);
    o.health_cmd = Some("test \"$SKIFF_UNIT\" = app.service && test \"$MAINPID\" = 10".into());
    let mut sd = Recording {
        states: vec![st("active", 0, 10)],
        ..Recording::default()
    };
    restart_and_judge(&mut sd, "app.service", &o).unwrap();
    o.health_cmd = Some("exit 3".into());
    let e = restart_and_judge(&mut sd, "app.service", &o).unwrap_err();
    assert!(e.0.contains("exited 3"), "{e}");
}

#[test]
fn a_failed_update_puts_the_pin_back_byte_for_byte_and_restarts_again() {
    let t = tempfile::tempdir().unwrap();
    let path = pin_file(t.path());
    let before = std::fs::read(&path).unwrap();
    let pin = PinFile::read(&path).unwrap();
    let to: Digest = format!("sha256:{HEX_B}").parse().unwrap();
    move_pin(&pin, &to).unwrap();
    assert_eq!(PinFile::read(&path).unwrap().digest(), &to);
    assert_eq!(std::fs::read(previous_path(&path)).unwrap(), before);
    // The new version's job fails (no READY=1); the old one comes back healthy.
    let mut sd = Recording {
        job_results: vec!["timeout".into(), "done".into()],
        states: vec![st("failed", 0, 0), st("active", 0, 20)],
        ..Recording::default()
    };
    let e = restart_and_judge(&mut sd, "app.service", &opts(0)).unwrap_err();
    assert!(e.0.contains("timeout"));
    roll_back(&mut sd, "app.service", &pin, &opts(0)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let restarts = sd
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Restart(_)))
        .count();
    assert_eq!(restarts, 2);
}

#[test]
fn rollback_by_hand_swaps_the_pin_and_its_previous() {
    let t = tempfile::tempdir().unwrap();
    let path = pin_file(t.path());
    let before = std::fs::read(&path).unwrap();
    let pin = PinFile::read(&path).unwrap();
    let to: Digest = format!("sha256:{HEX_B}").parse().unwrap();
    move_pin(&pin, &to).unwrap();
    let mut sd = Recording {
        states: vec![st("active", 0, 20)],
        env_files: vec![("app.service".into(), path.clone())],
        ..Recording::default()
    };
    let o = rollback_unit(&mut sd, "app.service", &opts(0));
    assert_eq!(o.status, Status::RolledBack, "{o:?}");
    assert_eq!(
        (o.from, o.to),
        (Some(to.clone()), Some(pin.digest().clone()))
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A unit with no pin file, and one with no previous pin, fail with the reason.
    let mut none = Recording::default();
    let o = rollback_unit(&mut none, "x.service", &opts(0));
    assert!(
        o.status == Status::Failed && o.reason.contains("no skiff pin file"),
        "{o:?}"
    );
    std::fs::remove_file(previous_path(&path)).unwrap();
    let o = rollback_unit(&mut sd, "app.service", &opts(0));
    assert!(o.reason.contains("no previous pin"), "{o:?}");
}

#[test]
fn discovery_finds_the_units_whose_environment_file_is_a_pin_file() {
    let t = tempfile::tempdir().unwrap();
    let path = pin_file(t.path());
    let plain = t.path().join("plain.env");
    std::fs::write(&plain, format!("X=reg.lan/app@sha256:{HEX_A}\n")).unwrap();
    let mut sd = Recording {
        env_files: vec![
            ("app.service".into(), path.clone()),
            ("plain.service".into(), plain),
            ("gone.service".into(), t.path().join("missing.env")),
        ],
        ..Recording::default()
    };
    assert_eq!(discover(&mut sd).unwrap(), vec!["app.service".to_string()]);
}
