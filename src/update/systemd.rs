//! The narrow view of systemd an update needs: restart a unit, wait for its job, read its state.
//! One implementation speaks D-Bus (`dbus::Bus`); `Recording` plays a script for unit tests.

use std::path::PathBuf;
use std::time::Duration;

use super::gate::UnitState;

/// A systemd call that failed (the D-Bus error inside says which and why).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SystemdError(pub Box<dyn std::error::Error + Send + Sync>);

pub trait Systemd {
    /// `RestartUnit(unit, "replace")`: the job's object path.
    fn restart(&mut self, unit: &str) -> Result<String, SystemdError>;
    /// Waits for the job to end: its result (`done`, `failed`, `timeout`, …).
    fn wait_job(&mut self, job: &str, timeout: Duration) -> Result<String, SystemdError>;
    /// ActiveState, SubState, NRestarts, MainPID.
    fn state(&mut self, unit: &str) -> Result<UnitState, SystemdError>;
    /// TimeoutStartUSec.
    fn start_timeout(&mut self, unit: &str) -> Result<Duration, SystemdError>;
    /// The unit's EnvironmentFile= paths.
    fn env_files(&mut self, unit: &str) -> Result<Vec<PathBuf>, SystemdError>;
    /// Every loaded service.
    fn services(&mut self) -> Result<Vec<String>, SystemdError>;
}

/// A call the double saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Restart(String),
    WaitJob(String),
    State(String),
}

/// A scripted systemd: each restart ends with the next job result, and each state read returns
/// the next state (the last one repeats). Records the calls it saw.
#[derive(Default)]
pub struct Recording {
    pub calls: Vec<Call>,
    pub job_results: Vec<String>,
    pub states: Vec<UnitState>,
    pub timeout: Duration,
    pub env_files: Vec<(String, PathBuf)>,
}

impl Systemd for Recording {
    fn restart(&mut self, unit: &str) -> Result<String, SystemdError> {
        self.calls.push(Call::Restart(unit.into()));
        Ok(format!("/job/{}", self.calls.len()))
    }

    fn wait_job(&mut self, job: &str, _timeout: Duration) -> Result<String, SystemdError> {
        self.calls.push(Call::WaitJob(job.into()));
        Ok(if self.job_results.is_empty() {
            "done".into()
        } else {
            self.job_results.remove(0)
        })
    }

    fn state(&mut self, unit: &str) -> Result<UnitState, SystemdError> {
        self.calls.push(Call::State(unit.into()));
        let s = match self.states.len() {
            0 => return Err(SystemdError("no scripted state".into())),
            1 => self.states[0].clone(),
            _ => self.states.remove(0),
        };
        Ok(s)
    }

    fn start_timeout(&mut self, _unit: &str) -> Result<Duration, SystemdError> {
        Ok(self.timeout)
    }

    fn env_files(&mut self, unit: &str) -> Result<Vec<PathBuf>, SystemdError> {
        Ok(self
            .env_files
            .iter()
            .filter(|(u, _)| u == unit)
            .map(|(_, p)| p.clone())
            .collect())
    }

    fn services(&mut self) -> Result<Vec<String>, SystemdError> {
        let mut v: Vec<String> = self.env_files.iter().map(|(u, _)| u.clone()).collect();
        v.dedup();
        Ok(v)
    }
}
