//! The fleet lock's flags on `skiff update` (etcd's own names for the TLS files), `--status`
//! and `--resume`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::fleet::{self, etcd, Fleet, Lock, OnRollback};

#[derive(Args, Debug, Clone, Default)]
pub struct FleetArgs {
    /// Take a slot of a counting semaphore in etcd before restarting a unit (`etcd`).
    #[arg(long, value_name = "KIND", value_parser = ["etcd"])]
    pub lock: Option<String>,
    /// etcd client URLs, comma-separated, tried in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379",
        value_name = "URLS"
    )]
    pub etcd_endpoints: Vec<String>,
    /// CA bundle that signed etcd's server certificate.
    #[arg(long, value_name = "FILE")]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate for etcd (with --etcd-key).
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// At most this many hosts of a group restart at once.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub max_unavailable: usize,
    /// The group hosts share a semaphore in (default: the unit's name).
    #[arg(long, value_name = "GROUP")]
    pub lock_group: Option<String>,
    /// Seconds a slot outlives a host that stopped renewing it (died).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub lock_ttl: u64,
    /// Seconds to wait for a slot before reporting `held`.
    #[arg(long, default_value_t = 600.0, value_name = "SECONDS")]
    pub lock_timeout: f64,
    /// After a rollback that succeeded: halt (the group stops, the slot is kept until its
    /// lease ends) or continue (the slot is released and the next host tries).
    #[arg(long, value_enum, default_value = "halt", value_name = "POLICY")]
    pub on_rollback: OnRollback,
    /// This host's name in the lock (default: /etc/machine-id).
    #[arg(long, value_name = "ID")]
    pub host_id: Option<String>,
    #[arg(long, default_value = "/etc/machine-id", hide = true)]
    pub machine_id_file: PathBuf,
    /// Clear GROUP's halt record, so its hosts update again.
    #[arg(long, value_name = "GROUP", conflicts_with = "status")]
    pub resume: Option<String>,
    /// Print GROUP's slot holders, halt record and history in etcd.
    #[arg(long, value_name = "GROUP")]
    pub status: Option<String>,
}

impl FleetArgs {
    fn etcd(&self) -> Result<etcd::Etcd> {
        Ok(etcd::Etcd::new(&etcd::Config {
            endpoints: self.etcd_endpoints.clone(),
            cacert: self.etcd_cacert.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            timeout: Duration::from_secs(5),
        })?)
    }

    /// The fleet lock, when `--lock` asks for one.
    pub fn fleet(&self) -> Result<Option<Fleet>> {
        if self.lock.is_none() {
            return Ok(None);
        }
        if self.max_unavailable == 0 {
            bail!("--max-unavailable 0 would let no host update");
        }
        if let Some(g) = &self.lock_group {
            fleet::check_group(g)?;
        }
        let host = match &self.host_id {
            Some(h) => h.clone(),
            None => fleet::machine_id(&self.machine_id_file)?,
        };
        fleet::check_host(&host)?;
        Ok(Some(Fleet {
            lock: Arc::new(self.etcd()?),
            host,
            group: self.lock_group.clone(),
            max: self.max_unavailable,
            ttl: Duration::from_secs(self.lock_ttl.max(2)),
            timeout: Duration::try_from_secs_f64(self.lock_timeout.max(0.0))
                .context("--lock-timeout")?,
            poll: Duration::from_millis(500),
            on_rollback: self.on_rollback,
        }))
    }

    /// `--status` / `--resume`: whether one of them ran.
    pub fn admin(&self, format: &str) -> Result<bool> {
        if let Some(g) = &self.resume {
            fleet::check_group(g)?;
            let etcd = self.etcd()?;
            let halt = etcd.status(g)?.halt;
            let cleared = etcd.resume(g, None)?;
            if cleared {
                let host = self
                    .host_id
                    .clone()
                    .or_else(|| fleet::machine_id(&self.machine_id_file).ok())
                    .unwrap_or_else(|| "-".into());
                let detail = halt.map_or(String::new(), |h| {
                    format!("halted by {} on {}", h.host, h.to)
                });
                let e = fleet::Event {
                    time: fleet::now_micros(),
                    host,
                    unit: "-".into(),
                    event: "resumed".into(),
                    detail,
                };
                if let Err(err) = etcd.record(g, &e) {
                    tracing::warn!(error = %crate::logging::chain(&err), "could not record the resume");
                }
                println!("{g}: resumed");
            } else {
                println!("{g}: not halted");
            }
            return Ok(true);
        }
        let Some(g) = &self.status else {
            return Ok(false);
        };
        fleet::check_group(g)?;
        let s = self.etcd()?.status(g)?;
        if format == "json" {
            println!("{}", serde_json::to_string_pretty(&s)?);
            return Ok(true);
        }
        println!("group {g}");
        for (i, h) in s.queue.iter().enumerate() {
            let role = if i < self.max_unavailable {
                "holds"
            } else {
                "waits"
            };
            println!(
                "{role}\t{}\t{}\tsince {}",
                h.host,
                h.unit,
                fleet::fmt_time(h.since)
            );
        }
        match &s.halt {
            Some(h) => println!(
                "halted\t{}\t{}\t{}\t{} -> {}\t{}",
                h.host,
                h.unit,
                fleet::fmt_time(h.time),
                h.from,
                h.to,
                h.why
            ),
            None => println!("not halted"),
        }
        for e in &s.history {
            println!(
                "{}\t{}\t{}\t{}\t{}",
                fleet::fmt_time(e.time),
                e.host,
                e.unit,
                e.event,
                e.detail
            );
        }
        Ok(true)
    }
}
