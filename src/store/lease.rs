//! Leases: which layers a running payload uses, so `gc` never pulls a tree from under it.
//!
//! `run` writes `leases/<pid>` (the layer keys, one a line) before it execs; since skiff execs
//! the payload on its own PID, the lease is live exactly while that process is. The process's
//! start time is recorded too, so a recycled PID does not keep a lease alive forever.

use std::fs;
use std::io;
use std::path::Path;

use super::{io_err, write_replace, StoreError, TreeKey};

/// Field 22 of /proc/PID/stat: the start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Records that this process (soon the payload) uses `trees`.
pub fn take(dir: &Path, trees: &[TreeKey]) -> Result<(), StoreError> {
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or(0);
    let lines: Vec<String> = trees.iter().map(TreeKey::to_string).collect();
    let body = format!("{start}\n{}\n", lines.join("\n"));
    write_replace(dir, &pid.to_string(), body.as_bytes(), false)
}

/// Trees held by live leases; dead leases are removed on the way.
pub fn live_trees(dir: &Path) -> Result<Vec<TreeKey>, StoreError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    for e in rd {
        let e = e.map_err(io_err("list", dir))?;
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let body = fs::read_to_string(e.path()).unwrap_or_default();
        let mut lines = body.lines();
        let recorded: Option<u64> = lines.next().and_then(|l| l.parse().ok());
        if start_time(pid).is_some_and(|now| Some(now) == recorded) {
            out.extend(lines.filter_map(TreeKey::from_lease));
        } else if let Err(err) = fs::remove_file(e.path()) {
            tracing::debug!(lease = %e.path().display(), error = %err, "could not remove a dead lease");
        }
    }
    Ok(out)
}
