//! The health gate: a pure verdict over what systemd reported about a unit after its restart.
//!
//! podman's auto-update trusts the restart job alone, so a payload that starts and crashes
//! seconds later is kept. Here the job must end `done`, the unit must be active (for
//! `Type=notify` the job itself waits for READY=1 within the start timeout), and then through
//! the grace window it must stay active with the same MainPID and no new restart.

use std::fmt;

/// One reading of a unit's properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitState {
    pub active: String,
    pub sub: String,
    pub n_restarts: u32,
    pub main_pid: u32,
    /// The service's Result (`success`, `timeout`, `exit-code`, `signal`, …).
    pub result: String,
}

impl fmt::Display for UnitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} (Result {}, MainPID {}, NRestarts {})",
            self.active, self.sub, self.result, self.main_pid, self.n_restarts
        )
    }
}

/// Why a unit failed the gate, in words for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unhealthy(pub String);

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A gate that has passed the start and is watching the grace window.
#[derive(Clone, Debug)]
pub struct Gate {
    first: UnitState,
}

impl Gate {
    /// The restart job's result (`done`, `failed`, `timeout`, `canceled`, `dependency`, …) and
    /// the unit's state right after it.
    pub fn start(job_result: &str, state: UnitState) -> Result<Gate, Unhealthy> {
        if job_result != "done" {
            // With Restart= a start that timed out ends its job "failed"; Result says why.
            let hint = match (job_result, state.result.as_str()) {
                ("timeout", _) | (_, "timeout") => " (no READY=1 within the unit's start timeout?)",
                ("dependency", _) => " (a unit it requires failed)",
                _ => "",
            };
            return Err(Unhealthy(format!(
                "the restart job ended {job_result:?}{hint}; unit {state}"
            )));
        }
        if state.active != "active" {
            return Err(Unhealthy(format!("unit is {state} after its restart")));
        }
        if state.main_pid == 0 && state.sub == "running" {
            return Err(Unhealthy(format!("unit has no main process: {state}")));
        }
        Ok(Gate { first: state })
    }

    /// One reading during the grace window; the first change is the verdict.
    pub fn observe(&self, now: &UnitState) -> Result<(), Unhealthy> {
        let f = &self.first;
        if now.n_restarts != f.n_restarts {
            return Err(Unhealthy(format!(
                "unit restarted during the grace window (NRestarts {} → {}); now {now}",
                f.n_restarts, now.n_restarts
            )));
        }
        if now.active != "active" {
            return Err(Unhealthy(format!(
                "unit left active during the grace window: {now}"
            )));
        }
        if now.main_pid != f.main_pid {
            return Err(Unhealthy(format!(
                "the main process changed during the grace window (MainPID {} → {}): {now}",
                f.main_pid, now.main_pid
            )));
        }
        Ok(())
    }

    /// The `--health-cmd` exit status, after the window.
    pub fn health_cmd(&self, cmd: &str, status: Option<i32>) -> Result<(), Unhealthy> {
        match status {
            Some(0) => Ok(()),
            Some(c) => Err(Unhealthy(format!("--health-cmd {cmd:?} exited {c}"))),
            None => Err(Unhealthy(format!(
                "--health-cmd {cmd:?} was killed by a signal"
            ))),
        }
    }

    pub fn main_pid(&self) -> u32 {
        self.first.main_pid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(active: &str, sub: &str, n: u32, pid: u32) -> UnitState {
        UnitState {
            active: active.into(),
            sub: sub.into(),
            n_restarts: n,
            main_pid: pid,
            result: "success".into(),
        }
    }

    #[test]
    fn a_unit_that_stays_up_passes() {
        let g = Gate::start("done", st("active", "running", 2, 40)).unwrap();
        for _ in 0..10 {
            g.observe(&st("active", "running", 2, 40)).unwrap();
        }
        assert_eq!(g.main_pid(), 40);
        g.health_cmd("true", Some(0)).unwrap();
    }

    #[test]
    fn each_way_of_failing_is_its_own_reason() {
        // The job did not end done: a Type=notify payload with no READY=1 ends "timeout".
        let e = Gate::start("timeout", st("failed", "failed", 0, 0)).unwrap_err();
        assert!(
            e.0.contains("\"timeout\"") && e.0.contains("READY=1"),
            "{e}"
        );
        let e = Gate::start("failed", st("activating", "auto-restart", 1, 0)).unwrap_err();
        assert!(e.0.contains("\"failed\"") && !e.0.contains("READY"), "{e}");
        // Under Restart= a start timeout ends the job "failed"; the unit's Result tells.
        let mut timed_out = st("activating", "auto-restart", 0, 0);
        timed_out.result = "timeout".into();
        let e = Gate::start("failed", timed_out).unwrap_err();
        assert!(
            e.0.contains("READY=1") && e.0.contains("Result timeout"),
            "{e}"
        );
        // Done, but already not active (Type=simple payload that exited at once).
        let e = Gate::start("done", st("activating", "auto-restart", 1, 0)).unwrap_err();
        assert!(e.0.contains("after its restart"), "{e}");
        let e = Gate::start("done", st("active", "running", 0, 0)).unwrap_err();
        assert!(e.0.contains("no main process"), "{e}");
        let g = Gate::start("done", st("active", "running", 0, 40)).unwrap();
        // READY, then death three seconds later under Restart=on-failure: systemd already
        // restarted it, and it may even be active again with a new PID.
        let e = g.observe(&st("active", "running", 1, 41)).unwrap_err();
        assert!(e.0.contains("NRestarts 0 → 1"), "{e}");
        let e = g.observe(&st("failed", "failed", 0, 0)).unwrap_err();
        assert!(e.0.contains("left active"), "{e}");
        let e = g.observe(&st("active", "running", 0, 77)).unwrap_err();
        assert!(e.0.contains("MainPID 40 → 77"), "{e}");
        let e = g.health_cmd("curl -f x", Some(7)).unwrap_err();
        assert!(e.0.contains("exited 7"), "{e}");
        assert!(g.health_cmd("x", None).is_err());
    }

    #[test]
    fn a_oneshot_style_active_exited_without_a_pid_passes_the_start() {
        // RemainAfterExit units have no MainPID once their process ended, and that is fine.
        let g = Gate::start("done", st("active", "exited", 0, 0)).unwrap();
        g.observe(&st("active", "exited", 0, 0)).unwrap();
    }
}
