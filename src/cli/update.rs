//! `skiff update` and `skiff rollback`: flags to `update::Options`, one line (or JSON) per unit.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::{open_store, Cli};
use crate::manifest::Platform;
use crate::update::{self, dbus::Bus, history, Outcome, Status};

#[derive(Args, Debug, Clone)]
pub struct UpdateArgs {
    /// Units to update (default: every loaded service whose EnvironmentFile= is a skiff pin
    /// file, as systemd reports them).
    pub units: Vec<String>,
    /// Ask the registry and report `pending`; pull nothing, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds the restarted unit must stay active, on the same MainPID with no restart.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub grace: f64,
    /// After the grace window, run CMD on the host (sh -c; $SKIFF_UNIT and $MAINPID set); it
    /// must exit 0. `nsenter -t "$MAINPID" -m` enters the payload's namespaces.
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// text (one line per unit) or json.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    pub format: String,
    /// Print the recorded decisions (of UNIT, or all) instead of updating.
    #[arg(long)]
    pub history: bool,
    #[command(flatten)]
    pub fleet: super::fleet::FleetArgs,
}

/// Why skiff exits non-zero after it has reported every unit.
#[derive(Debug, thiserror::Error)]
#[error("{0} of {1} units rolled back or failed")]
pub struct UnitsFailed(pub usize, pub usize);

impl UpdateArgs {
    fn options(&self, cli: &Cli) -> Result<update::Options> {
        Ok(update::Options {
            dry_run: self.dry_run,
            grace: Duration::try_from_secs_f64(self.grace.max(0.0)).context("--grace")?,
            poll: Duration::from_millis(250),
            health_cmd: self.health_cmd.clone(),
            platform: Platform::host(),
            storage: cli.storage(),
        })
    }
}

pub(super) fn update(cli: &Cli, args: &UpdateArgs) -> Result<()> {
    let store = open_store(cli)?;
    if args.history {
        anyhow::ensure!(args.units.len() <= 1, "--history takes at most one UNIT");
        return print_history(&store, args.units.first().map(String::as_str), &args.format);
    }
    if args.fleet.admin(&args.format)? {
        return Ok(());
    }
    let fleet = args.fleet.fleet()?;
    // Two updates at once would interleave pin writes and restarts: the second waits.
    let _lock = (!args.dry_run).then(|| wait_for_lock(&store)).transpose()?;
    let opts = args.options(cli)?;
    let mut bus = Bus::system().context("connecting to systemd")?;
    let units = if args.units.is_empty() {
        let found =
            update::discover(&mut bus).context("asking systemd for units with a pin file")?;
        if found.is_empty() {
            tracing::info!("no loaded service has an EnvironmentFile= that is a skiff pin file (a `# skiff-follow:` line); nothing to update");
        }
        found
    } else {
        args.units.clone()
    };
    let client = cli.registry.client()?;
    let new_client = || {
        cli.registry
            .client()
            .unwrap_or_else(|_| unreachable_client())
    };
    let trust = cli.trust()?;
    let env = update::Env {
        store: &store,
        client: &client,
        new_client: &new_client,
        trust: &trust,
        opts: &opts,
        fleet: fleet.as_ref(),
    };
    let mut outcomes = Vec::new();
    for unit in &units {
        let o = update::update_unit(&env, &mut bus, unit);
        if !args.dry_run {
            if let Err(e) = history::record(&store, &o) {
                tracing::warn!(error = %crate::logging::chain(&e), "could not record the decision");
            }
        }
        if args.format == "text" {
            println!("{}", line(&o));
        }
        outcomes.push(o);
    }
    finish(&outcomes, &args.format)
}

pub(super) fn rollback(cli: &Cli, unit: &str, grace: f64, format: &str) -> Result<()> {
    let store = open_store(cli)?;
    let _lock = wait_for_lock(&store)?;
    let args = UpdateArgs {
        units: vec![],
        dry_run: false,
        grace,
        health_cmd: None,
        format: format.into(),
        history: false,
        fleet: Default::default(),
    };
    let mut bus = Bus::system().context("connecting to systemd")?;
    let o = update::rollback_unit(&mut bus, unit, &args.options(cli)?);
    if let Err(e) = history::record(&store, &o) {
        tracing::warn!(error = %crate::logging::chain(&e), "could not record the decision");
    }
    if format == "text" {
        println!("{}", line(&o));
    }
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&[&o])?);
    }
    match o.status {
        Status::Failed => Err(UnitsFailed(1, 1).into()),
        _ => Ok(()),
    }
}

/// The client settings were valid a moment ago; a client that cannot be made again (a CA file
/// removed meanwhile) is one that reaches nothing, and the pull then says so.
fn unreachable_client() -> crate::registry::Client {
    crate::registry::Client::new(crate::registry::Options::default())
}

fn wait_for_lock(store: &crate::store::Store) -> Result<nix::fcntl::Flock<std::fs::File>> {
    if let Some(l) = update::try_lock(store)? {
        return Ok(l);
    }
    tracing::info!("another skiff update is running on this host; waiting for it");
    Ok(update::lock(store)?)
}

fn finish(outcomes: &[Outcome], format: &str) -> Result<()> {
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(outcomes)?);
    }
    let bad = outcomes.iter().filter(|o| o.status.is_bad()).count();
    if bad > 0 {
        return Err(UnitsFailed(bad, outcomes.len()).into());
    }
    Ok(())
}

fn digest(d: &Option<crate::reference::Digest>) -> String {
    d.as_ref().map_or("-".into(), |d| d.to_string())
}

/// `UNIT RESULT FROM TO REASON`, as `podman auto-update` reports.
fn line(o: &Outcome) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        o.unit,
        o.status.as_str(),
        digest(&o.from),
        digest(&o.to),
        o.reason
    )
}

fn print_history(store: &crate::store::Store, unit: Option<&str>, format: &str) -> Result<()> {
    let records = history::read(store, unit)?;
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    for r in records {
        println!("{}\t{}", r.time, line(&r.outcome));
    }
    Ok(())
}
