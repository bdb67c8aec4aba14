//! Download progress: one redrawn line on a terminal; rate-limited log lines otherwise
//! (journald gets a line per layer start/finish and a summary every few seconds).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::pull::Progress;
use crate::reference::Digest;

pub struct Reporter {
    tty: bool,
    state: Mutex<State>,
}

struct State {
    layers: HashMap<Digest, (u64, Option<u64>)>,
    started: Instant,
    last: Instant,
}

const TTY_EVERY: Duration = Duration::from_millis(100);
const LOG_EVERY: Duration = Duration::from_secs(5);

fn mib(n: u64) -> f64 {
    n as f64 / (1024.0 * 1024.0)
}

impl Reporter {
    pub fn new() -> Reporter {
        Reporter {
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new(State {
                layers: HashMap::new(),
                started: Instant::now(),
                last: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn summary(st: &State) -> String {
        let done: u64 = st.layers.values().map(|(d, _)| d).sum();
        let total: u64 = st.layers.values().filter_map(|(_, t)| *t).sum();
        let finished = st.layers.values().filter(|(d, t)| Some(*d) == *t).count();
        let secs = st.started.elapsed().as_secs_f64().max(0.001);
        format!(
            "{finished}/{} layers, {:.1}/{:.1} MiB, {:.1} MiB/s",
            st.layers.len(),
            mib(done),
            mib(total),
            mib(done) / secs
        )
    }

    /// Ends the redrawn line (or, for a pull too quick to redraw, prints the one summary).
    pub fn done(&self) {
        let st = self.lock();
        if self.tty && !st.layers.is_empty() {
            eprintln!("\r\x1b[2K{}", Self::summary(&st));
        }
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Reporter {
    fn start(&self, digest: &Digest, size: Option<u64>, resumed_at: u64) {
        let mut st = self.lock();
        st.layers.insert(digest.clone(), (resumed_at, size));
        if !self.tty {
            if resumed_at > 0 {
                tracing::info!(%digest, size, resumed_at, "resuming layer download");
            } else {
                tracing::info!(%digest, size, "downloading layer");
            }
        }
    }

    fn advance(&self, digest: &Digest, bytes: u64) {
        let mut st = self.lock();
        if let Some(e) = st.layers.get_mut(digest) {
            e.0 = bytes;
        }
        let every = if self.tty { TTY_EVERY } else { LOG_EVERY };
        if st.last.elapsed() < every {
            return;
        }
        st.last = Instant::now();
        let line = Self::summary(&st);
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else {
            tracing::info!("pull progress: {line}");
        }
    }

    fn finish(&self, digest: &Digest) {
        let mut st = self.lock();
        if let Some(e) = st.layers.get_mut(digest) {
            e.1 = Some(e.0);
        }
        if !self.tty {
            tracing::info!(%digest, "layer verified");
        }
    }
}
