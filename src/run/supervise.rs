//! A minimal init for `--pid=private`: the parent forks, then reaps children, forwards
//! signals to the child, and exits with the child's status (128+N for a signal, as shells do).

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::RunError;

static FORKED: AtomicBool = AtomicBool::new(false);

const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

fn signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in FORWARDED {
        s.add(sig);
    }
    s.add(Signal::SIGCHLD);
    s
}

/// The payload's PID when it is not skiff's own (a private PID namespace).
pub fn payload_pid_override() -> Option<u32> {
    FORKED.load(Ordering::SeqCst).then(std::process::id)
}

/// Forks. The child returns `Ok(())` and goes on; the parent supervises and never returns.
pub fn fork_and_wait() -> Result<(), RunError> {
    let set = signals();
    // Blocked before the fork so no signal is lost between fork and the wait loop.
    set.thread_block().map_err(|source| RunError::Exec {
        what: "blocking signals",
        source,
    })?;
    // SAFETY: skiff is single-threaded here (checked before unshare), so fork is sound.
    match unsafe { fork() }.map_err(|source| RunError::Exec {
        what: "fork",
        source,
    })? {
        ForkResult::Child => {
            FORKED.store(true, Ordering::SeqCst);
            set.thread_unblock().map_err(|source| RunError::Exec {
                what: "unblocking signals",
                source,
            })?;
            Ok(())
        }
        ForkResult::Parent { child } => {
            let code = supervise(child, &set);
            std::process::exit(code)
        }
    }
}

fn supervise(child: Pid, set: &SigSet) -> i32 {
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            // The child may already be gone; its exit arrives as SIGCHLD next.
            if let Err(e) = kill(child, sig) {
                tracing::debug!(%sig, error = %e, "could not forward a signal");
            }
            continue;
        }
        // Reap everything that exited: as PID 1, orphans are ours too.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => return 128 + sig as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}
