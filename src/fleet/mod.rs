//! The fleet lock: a counting semaphore that lets at most N hosts of a group restart a unit at
//! once, and a halt record that stops the group at the first host that rolled back.
//!
//! The semaphore is etcd's own recipe, not locksmith's single CAS'd value: each host puts its
//! slot key `/skiff/locks/GROUP/slots/HOST` bound to a lease, and holds a slot while its key is
//! among the first N by create revision. A put is atomic; the order is etcd's, so two hosts
//! can never both count themselves within N; a dead host's key goes with its lease, with no
//! other host having to clean up after it (a locksmith value names holders that can only be
//! removed by someone else). Waiting hosts are queued in order, so the wait is fair.
//!
//! `Lock` is the narrow store interface (etcd behind it, `Recording` for unit tests); the policy
//! (when to wait, when to report `held`, when to release) lives here, above it.

pub mod etcd;
pub mod wire;

#[cfg(test)]
mod double;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::reference::Digest;
use crate::update::{Outcome, Status};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("etcd at {endpoint}: {source}")]
    Http {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("etcd at {endpoint} answered {what}: {source}")]
    Wire {
        endpoint: String,
        what: &'static str,
        #[source]
        source: wire::WireError,
    },
    #[error("no etcd endpoint answered ({0})")]
    NoEndpoint(String),
    #[error("the lease {0:x} is gone (expired or revoked)")]
    LeaseLost(i64),
    #[error("a record in etcd at {key} is not skiff's: {source}")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading {path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// A host in a group's queue; the first `max` hold a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub unit: String,
    /// Unix microseconds when it queued.
    pub since: u64,
    #[serde(skip)]
    pub create_revision: i64,
}

/// Written by a host that rolled back; not bound to a lease, so it outlives the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    pub host: String,
    pub unit: String,
    pub time: u64,
    pub from: String,
    pub to: String,
    pub why: String,
}

/// One line of the group's history in etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub time: u64,
    pub host: String,
    pub unit: String,
    /// acquired, released, halted, resumed, halt cleared, held, lease lost.
    pub event: String,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupStatus {
    /// In queue order: the first `max` hold a slot.
    pub queue: Vec<Holder>,
    pub halt: Option<Halt>,
    #[serde(skip)]
    pub halt_revision: i64,
    /// Oldest first, the last `wire::MAX_KVS`.
    pub history: Vec<Event>,
}

/// What a semaphore needs from its store.
pub trait Lock: Send + Sync {
    /// Grants a lease of `ttl` and puts `holder` as the host's slot key bound to it (a key
    /// left by this host's earlier run keeps its place).
    fn acquire(&self, group: &str, holder: &Holder, ttl: Duration) -> Result<i64, LockError>;
    /// Refreshes the lease; `LeaseLost` when it is gone.
    fn keep_alive(&self, lease: i64) -> Result<(), LockError>;
    /// Revokes the lease, which deletes the slot key.
    fn release(&self, lease: i64) -> Result<(), LockError>;
    fn halt(&self, group: &str, halt: &Halt) -> Result<(), LockError>;
    /// Deletes the halt record (only if it is still at `revision`, when given); whether one went.
    fn resume(&self, group: &str, revision: Option<i64>) -> Result<bool, LockError>;
    fn status(&self, group: &str) -> Result<GroupStatus, LockError>;
    fn record(&self, group: &str, event: &Event) -> Result<(), LockError>;
}

/// Group names become etcd key segments: unit-name characters only.
pub fn check_group(group: &str) -> Result<(), LockError> {
    let ok = !group.is_empty()
        && group.len() <= 200
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LockError::Config(format!(
            "lock group {group:?}: use letters, digits and @._:- only (as in unit names)"
        )))
    }
}

/// The host's identity: /etc/machine-id (32 hex digits), as locksmith and Zincati use.
pub fn machine_id(path: &std::path::Path) -> Result<String, LockError> {
    let s = std::fs::read_to_string(path).map_err(|source| LockError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let id = s.trim();
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(LockError::Config(format!(
            "{} does not hold a machine ID (32 hex digits); pass --host-id",
            path.display()
        )))
    }
}

pub fn check_host(host: &str) -> Result<(), LockError> {
    check_group(host)
        .map_err(|_| LockError::Config(format!("host ID {host:?}: letters, digits and @._:- only")))
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What a rolled-back host does with its slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnRollback {
    #[default]
    /// Write the halt record and keep the slot until the lease ends: the group stops.
    Halt,
    /// Record the rollback and release the slot: the next host tries.
    Continue,
}

/// The fleet settings of one `skiff update`.
pub struct Fleet {
    pub lock: Arc<dyn Lock>,
    pub host: String,
    /// None: each unit is its own group.
    pub group: Option<String>,
    pub max: usize,
    pub ttl: Duration,
    pub timeout: Duration,
    pub poll: Duration,
    pub on_rollback: OnRollback,
}

/// A slot held while one unit restarts; its lease is kept alive by a thread until `finish`.
pub struct Slot {
    lock: Arc<dyn Lock>,
    group: String,
    host: String,
    unit: String,
    lease: i64,
    on_rollback: OnRollback,
    stop: Option<mpsc::Sender<()>>,
    keeper: Option<std::thread::JoinHandle<()>>,
    lost: Arc<(AtomicBool, Mutex<String>)>,
}

impl Fleet {
    pub fn group_of(&self, unit: &str) -> String {
        self.group.clone().unwrap_or_else(|| unit.to_string())
    }

    fn event(&self, unit: &str, event: &str, detail: String) -> Event {
        Event {
            time: now_micros(),
            host: self.host.clone(),
            unit: unit.to_string(),
            event: event.into(),
            detail,
        }
    }

    fn note(&self, group: &str, e: &Event) {
        if let Err(err) = self.lock.record(group, e) {
            tracing::warn!(group, error = %crate::logging::chain(&err), "could not record {} in etcd", e.event);
        }
    }

    /// Before `unit` restarts to `to`: a slot of its group, or the reason it is held. Nothing
    /// of the unit changes on `Err`.
    pub fn admit(&self, unit: &str, from: &Digest, to: &Digest) -> Result<Slot, String> {
        let group = self.group_of(unit);
        let unreachable = |e: LockError| {
            format!(
                "the fleet lock for {group} could not be taken, so nothing was restarted: {}",
                crate::logging::chain(&e)
            )
        };
        // A halted group takes no new slots.
        let status = self.lock.status(&group).map_err(unreachable)?;
        self.check_halt(&group, unit, to, &status)?;
        let me = Holder {
            host: self.host.clone(),
            unit: unit.to_string(),
            since: now_micros(),
            create_revision: 0,
        };
        let lease = self
            .lock
            .acquire(&group, &me, self.ttl)
            .map_err(unreachable)?;
        match self.wait(&group, unit, to, lease) {
            Ok(()) => {
                self.note(
                    &group,
                    &self.event(unit, "acquired", format!("{from} -> {to}")),
                );
                Ok(self.slot(group, unit, lease))
            }
            Err(why) => {
                // Out of the queue at once (the lease would end it after the TTL anyway).
                if let Err(e) = self.lock.release(lease) {
                    tracing::warn!(group, error = %crate::logging::chain(&e), "could not leave the queue; the lease ends it");
                }
                Err(why)
            }
        }
    }

    /// A halt for the same digest holds the unit; one for an older digest is cleared (a new
    /// digest under the tag is the operator's answer).
    fn check_halt(
        &self,
        group: &str,
        unit: &str,
        to: &Digest,
        s: &GroupStatus,
    ) -> Result<(), String> {
        let Some(h) = &s.halt else { return Ok(()) };
        if h.to != to.to_string() {
            let cleared = self
                .lock
                .resume(group, Some(s.halt_revision))
                .map_err(|e| {
                    format!(
                        "clearing the halt of {group}: {}",
                        crate::logging::chain(&e)
                    )
                })?;
            if cleared {
                tracing::info!(group, halted_on = %h.to, now = %to, "a new digest under the tag clears the halt");
                self.note(
                    group,
                    &self.event(unit, "halt cleared", format!("{} -> {to}", h.to)),
                );
            }
            return Ok(());
        }
        Err(format!(
            "{group} is halted: {} rolled back {} from {} to {} at {} ({}); nothing restarted; \
             `skiff update --resume {group}` or a new digest under the tag goes on",
            h.host,
            h.unit,
            h.from,
            h.to,
            fmt_time(h.time),
            h.why
        ))
    }

    /// Until this host's key is among the first `max`, the group halts, or the timeout.
    fn wait(&self, group: &str, unit: &str, to: &Digest, lease: i64) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        let mut logged: Vec<String> = Vec::new();
        loop {
            let lost = |e: LockError| {
                format!(
                    "the fleet lock for {group} was lost while waiting, so nothing was restarted: {}",
                    crate::logging::chain(&e)
                )
            };
            self.lock.keep_alive(lease).map_err(lost)?;
            let s = self.lock.status(group).map_err(lost)?;
            self.check_halt(group, unit, to, &s)?;
            let pos = s.queue.iter().position(|h| h.host == self.host);
            let Some(pos) = pos else {
                return Err(lost(LockError::LeaseLost(lease)));
            };
            let holders: Vec<String> = s
                .queue
                .iter()
                .take(self.max)
                .map(|h| h.host.clone())
                .collect();
            if pos < self.max {
                // The lease must still be there at the moment of the restart.
                self.lock.keep_alive(lease).map_err(lost)?;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "waited {:?} (--lock-timeout) for one of {} slots of {group}; held by {}; nothing restarted",
                    self.timeout,
                    self.max,
                    holders.join(", ")
                ));
            }
            if holders != logged {
                tracing::info!(group, holders = %holders.join(","), place = pos + 1, "waiting for a slot of the fleet lock");
                logged = holders;
            }
            std::thread::sleep(
                self.poll
                    .min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }

    fn slot(&self, group: String, unit: &str, lease: i64) -> Slot {
        let (tx, rx) = mpsc::channel::<()>();
        let lost = Arc::new((AtomicBool::new(false), Mutex::new(String::new())));
        let (lock, seen) = (self.lock.clone(), lost.clone());
        let every = (self.ttl / 3).max(Duration::from_millis(100));
        let keeper = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                if let Err(e) = lock.keep_alive(lease) {
                    let why = crate::logging::chain(&e);
                    tracing::warn!(error = %why, "keeping the fleet lock's lease alive");
                    if matches!(e, LockError::LeaseLost(_)) {
                        seen.0.store(true, Ordering::SeqCst);
                        if let Ok(mut w) = seen.1.lock() {
                            *w = why;
                        }
                        return;
                    }
                }
            }
        });
        Slot {
            lock: self.lock.clone(),
            group,
            host: self.host.clone(),
            unit: unit.to_string(),
            lease,
            on_rollback: self.on_rollback,
            stop: Some(tx),
            keeper: Some(keeper),
            lost,
        }
    }
}

impl Slot {
    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }

    fn note(&self, event: &str, detail: String) {
        let e = Event {
            time: now_micros(),
            host: self.host.clone(),
            unit: self.unit.clone(),
            event: event.into(),
            detail,
        };
        if let Err(err) = self.lock.record(&self.group, &e) {
            tracing::warn!(group = %self.group, error = %crate::logging::chain(&err), "could not record {event} in etcd");
        }
    }

    /// After the gate: released when the unit is healthy (or rolled back under `continue`);
    /// otherwise the halt is written and the slot stays until the lease ends.
    pub fn finish(mut self, o: &Outcome) {
        self.stop();
        if self.lost.0.load(Ordering::SeqCst) {
            let why = self.lost.1.lock().map(|w| w.clone()).unwrap_or_default();
            self.note("lease lost", why);
        }
        let digests = format!("{} -> {}", digest(&o.from), digest(&o.to));
        let halt = match o.status {
            Status::RolledBack => self.on_rollback == OnRollback::Halt,
            Status::Failed => true,
            _ => false,
        };
        if halt {
            let h = Halt {
                host: self.host.clone(),
                unit: self.unit.clone(),
                time: now_micros(),
                from: digest(&o.from),
                to: digest(&o.to),
                why: format!("{}: {}", o.status.as_str(), o.reason),
            };
            match self.lock.halt(&self.group, &h) {
                Ok(()) => {
                    tracing::warn!(group = %self.group, "{} {}; the group is halted", o.unit, o.status.as_str())
                }
                Err(e) => {
                    tracing::error!(group = %self.group, error = %crate::logging::chain(&e), "could not write the halt record; the slot stays taken until its lease ends")
                }
            }
            self.note("halted", format!("{digests}: {}", o.reason));
            return;
        }
        // The gate passed (or the operator's policy goes on after a good rollback).
        self.note("released", format!("{} {digests}", o.status.as_str()));
        if let Err(e) = self.lock.release(self.lease) {
            tracing::warn!(group = %self.group, error = %crate::logging::chain(&e), "could not release the slot; its lease ends it");
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stop();
    }
}

fn digest(d: &Option<Digest>) -> String {
    d.as_ref().map_or("-".into(), |d| d.to_string())
}

/// Unix microseconds as `SECONDS.micros` (what `date -d @…` reads).
pub fn fmt_time(us: u64) -> String {
    format!("@{}.{:06}", us / 1_000_000, us % 1_000_000)
}
