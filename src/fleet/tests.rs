//! The policy over the recording double: when a host goes, waits, or is held.

use std::sync::Arc;
use std::time::Duration;

use super::double::{Call, Recording};
use super::*;

fn d(n: u8) -> Digest {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
        .parse()
        .unwrap()
}

fn fleet(lock: &Arc<Recording>, host: &str, max: usize) -> Fleet {
    Fleet {
        lock: lock.clone(),
        host: host.into(),
        group: None,
        max,
        ttl: Duration::from_secs(60),
        timeout: Duration::from_millis(50),
        poll: Duration::from_millis(5),
        on_rollback: OnRollback::Halt,
    }
}

fn outcome(status: Status) -> Outcome {
    Outcome {
        unit: "etcd.service".into(),
        status,
        from: Some(d(1)),
        to: Some(d(2)),
        reason: "why".into(),
    }
}

#[test]
fn the_first_max_hosts_hold_the_others_wait_and_time_out_naming_the_holders() {
    let lock = Arc::new(Recording::default());
    let a = fleet(&lock, "aaaa", 1)
        .admit("etcd.service", &d(1), &d(2))
        .unwrap();
    let why = fleet(&lock, "bbbb", 1)
        .admit("etcd.service", &d(1), &d(2))
        .err()
        .unwrap();
    assert!(
        why.contains("held by aaaa") && why.contains("--lock-timeout"),
        "{why}"
    );
    // b left the queue when it gave up: after a releases, c is first.
    a.finish(&outcome(Status::Updated));
    let c = fleet(&lock, "cccc", 1)
        .admit("etcd.service", &d(1), &d(2))
        .unwrap();
    // With two slots, a second host goes beside it.
    let b = fleet(&lock, "bbbb", 2)
        .admit("etcd.service", &d(1), &d(2))
        .unwrap();
    drop((b, c));
    assert_eq!(lock.events()[..2], ["aaaa acquired", "aaaa released"]);
}

#[test]
fn a_rollback_halts_the_group_until_resume_or_a_new_digest() {
    let lock = Arc::new(Recording::default());
    let a = fleet(&lock, "aaaa", 1)
        .admit("etcd.service", &d(1), &d(2))
        .unwrap();
    a.finish(&outcome(Status::RolledBack));
    let calls = lock.calls();
    assert!(calls.contains(&Call::Halt("etcd.service".into())));
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Release(_))),
        "the halted slot is kept: {calls:?}"
    );
    // The same bad digest: held at once, without queueing.
    let before = lock.calls().len();
    let why = fleet(&lock, "bbbb", 3)
        .admit("etcd.service", &d(1), &d(2))
        .err()
        .unwrap();
    assert!(
        why.contains("halted") && why.contains("aaaa") && why.contains("--resume"),
        "{why}"
    );
    assert!(!lock.calls()[before..]
        .iter()
        .any(|c| matches!(c, Call::Acquire(..))));
    // A new digest clears it (a's slot is still in its lease: with 2 slots b goes).
    let b = fleet(&lock, "bbbb", 2)
        .admit("etcd.service", &d(1), &d(3))
        .unwrap();
    assert!(lock.events().contains(&"bbbb halt cleared".to_string()));
    b.finish(&outcome(Status::Updated));
    // --resume clears a halt by hand.
    let a = fleet(&lock, "cccc", 2)
        .admit("etcd.service", &d(1), &d(2))
        .unwrap();
    a.finish(&outcome(Status::Failed));
    assert!(fleet(&lock, "dddd", 2)
        .admit("etcd.service", &d(1), &d(2))
        .is_err());
    assert!(lock.resume("etcd.service", None).unwrap());
    assert!(fleet(&lock, "dddd", 3)
        .admit("etcd.service", &d(1), &d(2))
        .is_ok());
}

#[test]
fn continue_after_a_good_rollback_releases_without_a_halt() {
    let lock = Arc::new(Recording::default());
    let mut f = fleet(&lock, "aaaa", 1);
    f.on_rollback = OnRollback::Continue;
    f.admit("etcd.service", &d(1), &d(2))
        .unwrap()
        .finish(&outcome(Status::RolledBack));
    assert!(!lock.calls().iter().any(|c| matches!(c, Call::Halt(_))));
    assert!(fleet(&lock, "bbbb", 1)
        .admit("etcd.service", &d(1), &d(2))
        .is_ok());
}

#[test]
fn never_without_the_lock() {
    let lock = Arc::new(Recording::default());
    lock.set_down(true);
    let why = fleet(&lock, "aaaa", 1)
        .admit("etcd.service", &d(1), &d(2))
        .err()
        .unwrap();
    assert!(
        why.contains("could not be taken") && why.contains("connection refused"),
        "{why}"
    );
    lock.set_down(false);
    // A lease lost while waiting: held, not admitted.
    let a_lease = lock.queue("etcd.service", "aaaa");
    let l2 = lock.clone();
    let t = std::thread::spawn(move || {
        let mut f = fleet(&l2, "bbbb", 1);
        f.timeout = Duration::from_secs(5);
        f.admit("etcd.service", &d(1), &d(2)).map(|_| ())
    });
    // b's lease is the one after a's.
    while !lock
        .calls()
        .iter()
        .any(|c| *c == Call::KeepAlive(a_lease + 1))
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    lock.expire(a_lease + 1);
    let why = t.join().unwrap().err().unwrap();
    assert!(why.contains("lost while waiting"), "{why}");
    // A dead holder's lease ends: the next host is admitted.
    lock.expire(a_lease);
    assert!(fleet(&lock, "bbbb", 1)
        .admit("etcd.service", &d(1), &d(2))
        .is_ok());
}

#[test]
fn names_that_become_keys_are_checked() {
    for bad in ["", "a/b", "a b", "x\n", "\u{e9}"] {
        assert!(check_group(bad).is_err(), "{bad:?}");
    }
    assert!(check_group("etcd-member.service").is_ok());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("machine-id");
    std::fs::write(&p, "0123456789abcdef0123456789ABCDEF\n").unwrap();
    assert_eq!(machine_id(&p).unwrap(), "0123456789abcdef0123456789abcdef");
    std::fs::write(&p, "../../etc\n").unwrap();
    assert!(machine_id(&p).is_err());
}
