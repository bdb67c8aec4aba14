//! A `Lock` in memory with etcd's ordering rules (a revision per write, create revisions kept
//! across puts, keys going with their lease), recording each call, for the policy's unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{Event, GroupStatus, Halt, Holder, Lock, LockError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Acquire(String, String),
    KeepAlive(i64),
    Release(i64),
    Halt(String),
    Resume(String, Option<i64>),
    Status(String),
    Record(String, String),
}

#[derive(Default)]
pub struct State {
    rev: i64,
    next_lease: i64,
    /// (group, host) → (holder, create revision, lease)
    slots: BTreeMap<(String, String), (Holder, i64, i64)>,
    halts: BTreeMap<String, (Halt, i64)>,
    pub history: Vec<(String, Event)>,
    pub calls: Vec<Call>,
    /// Every call fails with this (etcd unreachable).
    pub down: bool,
}

#[derive(Default)]
pub struct Recording {
    pub state: Mutex<State>,
}

impl Recording {
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// A lease ends (its host died): its key goes.
    pub fn expire(&self, lease: i64) {
        self.state.lock().unwrap().slots.retain(|_, v| v.2 != lease);
    }

    /// Another host queues directly.
    pub fn queue(&self, group: &str, host: &str) -> i64 {
        let h = Holder {
            host: host.into(),
            unit: "u".into(),
            since: 0,
            create_revision: 0,
        };
        self.acquire(group, &h, Duration::from_secs(1)).unwrap()
    }

    pub fn events(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.history
            .iter()
            .map(|(_, e)| format!("{} {}", e.host, e.event))
            .collect()
    }
}

fn down() -> LockError {
    LockError::NoEndpoint("etcd at http://127.0.0.1:1: connection refused".into())
}

impl Lock for Recording {
    fn acquire(&self, group: &str, holder: &Holder, _ttl: Duration) -> Result<i64, LockError> {
        let mut s = self.state.lock().unwrap();
        s.calls
            .push(Call::Acquire(group.into(), holder.host.clone()));
        if s.down {
            return Err(down());
        }
        s.rev += 1;
        s.next_lease += 1;
        let (rev, lease) = (s.rev, s.next_lease);
        let k = (group.to_string(), holder.host.clone());
        let create = s.slots.get(&k).map_or(rev, |v| v.1);
        s.slots.insert(k, (holder.clone(), create, lease));
        Ok(lease)
    }

    fn keep_alive(&self, lease: i64) -> Result<(), LockError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::KeepAlive(lease));
        if s.down {
            return Err(down());
        }
        if s.slots.values().any(|v| v.2 == lease) {
            Ok(())
        } else {
            Err(LockError::LeaseLost(lease))
        }
    }

    fn release(&self, lease: i64) -> Result<(), LockError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::Release(lease));
        if s.down {
            return Err(down());
        }
        s.slots.retain(|_, v| v.2 != lease);
        Ok(())
    }

    fn halt(&self, group: &str, halt: &Halt) -> Result<(), LockError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::Halt(group.into()));
        if s.down {
            return Err(down());
        }
        s.rev += 1;
        let rev = s.rev;
        s.halts.insert(group.into(), (halt.clone(), rev));
        Ok(())
    }

    fn resume(&self, group: &str, revision: Option<i64>) -> Result<bool, LockError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::Resume(group.into(), revision));
        if s.down {
            return Err(down());
        }
        let matches = s
            .halts
            .get(group)
            .is_some_and(|(_, r)| revision.is_none_or(|want| want == *r));
        if matches {
            s.halts.remove(group);
        }
        Ok(matches)
    }

    fn status(&self, group: &str) -> Result<GroupStatus, LockError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::Status(group.into()));
        if s.down {
            return Err(down());
        }
        let mut queue: Vec<Holder> = s
            .slots
            .iter()
            .filter(|((g, _), _)| g == group)
            .map(|(_, (h, c, _))| Holder {
                create_revision: *c,
                ..h.clone()
            })
            .collect();
        queue.sort_by_key(|h| h.create_revision);
        let (halt, halt_revision) = match s.halts.get(group) {
            Some((h, r)) => (Some(h.clone()), *r),
            None => (None, 0),
        };
        let history = s
            .history
            .iter()
            .filter(|(g, _)| g == group)
            .map(|(_, e)| e.clone())
            .collect();
        Ok(GroupStatus {
            queue,
            halt,
            halt_revision,
            history,
        })
    }

    fn record(&self, group: &str, e: &Event) -> Result<(), LockError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::Record(group.into(), e.event.clone()));
        if s.down {
            return Err(down());
        }
        s.history.push((group.into(), e.clone()));
        Ok(())
    }
}
