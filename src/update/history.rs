//! The record of every update decision: one JSON line per unit per run in the store
//! (`update-history.jsonl`, appended and fsynced), and the same as a journal entry with
//! structured fields, sent with journald's native protocol so `journalctl -u skiff-update`
//! and `journalctl SKIFF_UNIT=etcd-member.service` find it.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::store::{Store, StoreError};

const LOG: &str = "update-history.jsonl";
const JOURNAL: &str = "/run/systemd/journal/socket";
/// Lines longer than this are not a record skiff wrote.
const MAX_LINE: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339, UTC.
    pub time: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Appends one decision to the store's log and the journal.
pub fn record(store: &Store, outcome: &Outcome) -> Result<(), StoreError> {
    let rec = Record {
        time: crate::logging::rfc3339(crate::logging::now()),
        outcome: outcome.clone(),
    };
    let mut line = serde_json::to_string(&rec).unwrap_or_default();
    line.push('\n');
    let path = store.root().join(LOG);
    let io = |op| {
        let path = path.clone();
        move |source| StoreError::Io { op, path, source }
    };
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io("open"))?;
    f.write_all(line.as_bytes()).map_err(io("append to"))?;
    f.sync_data().map_err(io("fsync"))?;
    journal(Path::new(JOURNAL), &rec);
    Ok(())
}

/// The journal entry's fields (newlines in values become spaces: the simple form of the
/// protocol has one field per line).
pub fn journal_fields(rec: &Record) -> String {
    let o = &rec.outcome;
    let d =
        |d: &Option<crate::reference::Digest>| d.as_ref().map_or(String::new(), |d| d.to_string());
    let message = format!(
        "{}: {} ({} → {}): {}",
        o.unit,
        o.status.as_str(),
        d(&o.from),
        d(&o.to),
        o.reason
    );
    let priority = if o.status.is_bad() { 4 } else { 6 };
    let fields = [
        ("MESSAGE", message),
        ("PRIORITY", priority.to_string()),
        ("SYSLOG_IDENTIFIER", "skiff-update".to_string()),
        ("SKIFF_UNIT", o.unit.clone()),
        ("SKIFF_FROM", d(&o.from)),
        ("SKIFF_TO", d(&o.to)),
        ("SKIFF_RESULT", o.status.as_str().to_string()),
        ("SKIFF_REASON", o.reason.clone()),
    ];
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}\n", v.replace('\n', " ")))
        .collect()
}

/// Sends a record to journald; a host without one (or a full socket) loses only this copy.
fn journal(socket: &Path, rec: &Record) {
    let sent =
        UnixDatagram::unbound().and_then(|s| s.send_to(journal_fields(rec).as_bytes(), socket));
    if let Err(e) = sent {
        tracing::debug!(socket = %socket.display(), error = %e, "no journal entry for the update");
    }
}

/// The log's records, oldest first, for `unit` or all; damaged lines are skipped.
pub fn read(store: &Store, unit: Option<&str>) -> Result<Vec<Record>, StoreError> {
    let path = store.root().join(LOG);
    let Some(f) = crate::store::open_existing(&path)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).split(b'\n') {
        let line = line.map_err(|source| StoreError::Io {
            op: "read",
            path: path.clone(),
            source,
        })?;
        if line.len() > MAX_LINE {
            continue;
        }
        match serde_json::from_slice::<Record>(&line) {
            Ok(r) if unit.is_none_or(|u| u == r.outcome.unit) => out.push(r),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "skipping a damaged history line"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::Status;

    fn outcome(unit: &str, status: Status) -> Outcome {
        Outcome {
            unit: unit.into(),
            status,
            from: Some(crate::reference::Digest::of(b"a")),
            to: None,
            reason: "line one\nline two".into(),
        }
    }

    #[test]
    fn the_log_keeps_every_decision_and_skips_damage() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("s")).unwrap();
        record(&store, &outcome("a.service", Status::Unchanged)).unwrap();
        // A torn or hostile line does not hide the others.
        let mut f = OpenOptions::new()
            .append(true)
            .open(store.root().join(LOG))
            .unwrap();
        f.write_all(b"{\"time\":1,\ngarbage\n").unwrap();
        record(&store, &outcome("b.service", Status::RolledBack)).unwrap();
        let all = read(&store, None).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].time.ends_with('Z') && all[0].time.contains('T'));
        let b = read(&store, Some("b.service")).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].outcome.status, Status::RolledBack);
        let line = serde_json::to_string(&b[0]).unwrap();
        assert!(line.contains("\"status\":\"rolled back\""), "{line}");
    }

    #[test]
    fn journal_fields_are_one_per_line_and_structured() {
        let rec = Record {
            time: "t".into(),
            outcome: outcome("a.service", Status::RolledBack),
        };
        let f = journal_fields(&rec);
        assert_eq!(f.lines().count(), 8, "{f}");
        assert!(f.contains("SKIFF_RESULT=rolled back\n"));
        assert!(f.contains("SKIFF_REASON=line one line two\n"));
        assert!(f.contains("PRIORITY=4\n"));
        assert!(f.contains("SKIFF_TO=\n"));
        // A socket that is not there loses only the journal's copy.
        journal(Path::new("/nonexistent/socket"), &rec);
    }
}
