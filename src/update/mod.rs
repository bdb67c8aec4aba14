//! `skiff update`: move a unit to what its followed tag means now, judge it by the unit's own
//! health, and put the previous pin back by itself when it is not healthy.
//!
//! Per unit, in this order (nothing about the unit changes before step 3):
//! 1. decide: a HEAD for the tag within the registry budget; the pin is compared as the whole
//!    index and as the host platform's manifest;
//! 2. obtain: the pull room, verifying digests and signatures under the policy in force;
//! 3. move the pin (one atomic writer), keeping the previous pin;
//! 4. restart and judge through `Systemd` (`gate` is the pure verdict);
//! 5. roll back on any failure, through the same gate.

pub mod dbus;
pub mod gate;
pub mod history;
pub mod pinfile;
pub mod systemd;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::manifest::{self, Document, Platform};
use crate::pull::{self, PullPolicy};
use crate::reference::{Digest, Reference};
use crate::registry::Client;
use crate::store::Store;
use crate::trust::Trust;
use crate::unpack::Storage;
use gate::{Gate, Unhealthy};
use pinfile::PinFile;
use systemd::Systemd;

/// What happened to one unit, in podman auto-update's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Status {
    #[serde(rename = "unchanged")]
    Unchanged,
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "updated")]
    Updated,
    #[serde(rename = "rolled back")]
    RolledBack,
    #[serde(rename = "failed")]
    Failed,
    /// The fleet lock said no (halted group, no slot in time, etcd unreachable): nothing
    /// restarted.
    #[serde(rename = "held")]
    Held,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unchanged => "unchanged",
            Status::Pending => "pending",
            Status::Updated => "updated",
            Status::RolledBack => "rolled back",
            Status::Failed => "failed",
            Status::Held => "held",
        }
    }

    /// Whether the exit status must say something went wrong.
    pub fn is_bad(self) -> bool {
        matches!(self, Status::RolledBack | Status::Failed)
    }
}

/// One unit's outcome.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub unit: String,
    pub status: Status,
    /// The digest pinned before.
    pub from: Option<Digest>,
    /// The digest the tag means now (the one tried, for rolled back).
    pub to: Option<Digest>,
    pub reason: String,
}

/// How `update` runs.
pub struct Options {
    pub dry_run: bool,
    pub grace: Duration,
    /// How often the unit is read during the grace window.
    pub poll: Duration,
    pub health_cmd: Option<String>,
    pub platform: Platform,
    pub storage: Storage,
}

/// What the update of one unit uses; borrowed for the whole run.
pub struct Env<'a> {
    pub store: &'a Store,
    /// For the HEADs (within the budget).
    pub client: &'a Client,
    /// A client for a pull (`images::obtain` takes one and ends it before unpacking).
    pub new_client: &'a dyn Fn() -> Client,
    pub trust: &'a Trust,
    pub opts: &'a Options,
    /// `--lock etcd`: a slot of the unit's group before the pin moves.
    pub fleet: Option<&'a crate::fleet::Fleet>,
}

/// The pin file of a unit: its one EnvironmentFile= that is a skiff pin file.
pub fn pin_file_of(sd: &mut dyn Systemd, unit: &str) -> Result<Option<PathBuf>, String> {
    let files = sd
        .env_files(unit)
        .map_err(|e| format!("reading {unit}'s EnvironmentFile=: {}", chain(&e)))?;
    let pins: Vec<PathBuf> = files.into_iter().filter(|f| is_pin_file(f)).collect();
    match pins.len() {
        0 => Ok(None),
        1 => Ok(pins.into_iter().next()),
        _ => Err(format!("{unit} has more than one skiff pin file: {pins:?}")),
    }
}

/// Whether `path` is a skiff pin file (has the follow line).
pub fn is_pin_file(path: &Path) -> bool {
    PinFile::read(path).is_ok_and(|p| {
        String::from_utf8_lossy(&p.bytes)
            .lines()
            .any(|l| l.trim_start().starts_with(pinfile::FOLLOW))
    })
}

/// Every loaded service whose EnvironmentFile= is a skiff pin file, as systemd reports them.
pub fn discover(sd: &mut dyn Systemd) -> Result<Vec<String>, systemd::SystemdError> {
    let mut out = Vec::new();
    for unit in sd.services()? {
        if matches!(pin_file_of(sd, &unit), Ok(Some(_))) {
            out.push(unit);
        }
    }
    Ok(out)
}

/// The name a unit's hold and previous pin are kept under.
fn owner(unit: &str) -> String {
    format!("update-{unit}")
}

/// `skiff update UNIT`: the whole per-unit flow.
pub fn update_unit(env: &Env, sd: &mut dyn Systemd, unit: &str) -> Outcome {
    let out = |status, from, to, reason: String| Outcome {
        unit: unit.to_string(),
        status,
        from,
        to,
        reason,
    };
    let path = match pin_file_of(sd, unit) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return out(
                Status::Failed,
                None,
                None,
                format!(
                    "{unit} has no EnvironmentFile= that is a skiff pin file (a line {} REF:TAG)",
                    pinfile::FOLLOW
                ),
            )
        }
        Err(e) => return out(Status::Failed, None, None, e),
    };
    let pin = match PinFile::read(&path) {
        Ok(p) => p,
        Err(e) => return out(Status::Failed, None, None, chain(&e)),
    };
    let from = Some(pin.digest().clone());
    let Some(tag) = pin.follows.clone() else {
        let why = format!(
            "{} pins {} and follows no tag ({} -)",
            path.display(),
            pin.digest(),
            pinfile::FOLLOW
        );
        return out(Status::Unchanged, from, None, why);
    };
    // 1. decide
    let to = match decide(env, &tag, &pin) {
        Ok(Decision::Same(why)) => return out(Status::Unchanged, from.clone(), from, why),
        Ok(Decision::Moved(d)) => d,
        Err(Undecided::Unreachable(why)) => return out(Status::Unchanged, from.clone(), None, why),
        Err(Undecided::Refused(why)) => return out(Status::Failed, from, None, why),
    };
    if env.opts.dry_run {
        return out(
            Status::Pending,
            from,
            Some(to.clone()),
            format!("{tag} moved to {to}"),
        );
    }
    // 2. obtain, all before the unit changes
    let new = match obtain(env, &pin, &to) {
        Ok(held) => held,
        Err(why) => return out(Status::Failed, from, Some(to), why),
    };
    // The fleet lock, once the new image is here (the slot is not held through a pull).
    let slot = match env
        .fleet
        .map(|f| f.admit(unit, pin.digest(), &to))
        .transpose()
    {
        Ok(s) => s,
        Err(why) => return out(Status::Held, from, Some(to), why),
    };
    let o = update_pinned(env, sd, unit, &pin, &new, to);
    if let Some(s) = slot {
        s.finish(&o);
    }
    o
}

/// Steps 3 to 5, once the new image is obtained (and the fleet lock, when asked for, taken).
fn update_pinned(
    env: &Env,
    sd: &mut dyn Systemd,
    unit: &str,
    pin: &PinFile,
    new: &pull::Image,
    to: Digest,
) -> Outcome {
    let out = |status, from, to, reason: String| Outcome {
        unit: unit.to_string(),
        status,
        from,
        to,
        reason,
    };
    let from = Some(pin.digest().clone());
    let tag = pin
        .follows
        .clone()
        .map_or_else(String::new, |t| t.to_string());
    // 3. the old image stays held (and the previous pin kept) before the pin moves
    let old: pull::Image = match pull::load_digest(env.store, &pin.pinned.to_string(), pin.digest(), &env.opts.platform) {
        Ok(i) => i,
        Err(e) => return out(Status::Failed, from, Some(to), format!("the current image is not complete in the store, so a rollback could not work offline; not updating: {}", chain(&e))),
    };
    let hold = |imgs: &[&pull::Image]| {
        let v: Vec<_> = imgs
            .iter()
            .map(|i| (i.digest.clone(), i.platform.to_string()))
            .collect();
        env.store.hold(&owner(unit), &v)
    };
    if let Err(e) = hold(&[&old, new]) {
        return out(
            Status::Failed,
            from,
            Some(to),
            format!("holding the images in the store: {}", chain(&e)),
        );
    }
    if let Err(e) = move_pin(pin, &to) {
        return out(Status::Failed, from, Some(to), chain(&e));
    }
    // 4. restart and judge
    match restart_and_judge(sd, unit, env.opts) {
        Ok(()) => {
            // The next rollback goes back to what ran until now.
            if let Err(e) = hold(&[new, &old]) {
                tracing::warn!(unit, error = %chain(&e), "could not move the store hold");
            }
            out(
                Status::Updated,
                from,
                Some(to),
                format!("{tag} moved; the unit is healthy"),
            )
        }
        // 5. roll back
        Err(why) => {
            let back = roll_back(sd, unit, pin, env.opts);
            match back {
                Ok(()) => out(Status::RolledBack, from, Some(to), why.to_string()),
                Err(again) => out(
                    Status::Failed,
                    from,
                    Some(to),
                    format!("{why}; and after the rollback: {again}"),
                ),
            }
        }
    }
}

/// `skiff rollback UNIT`: back to the previous pin by hand, through the same gate.
pub fn rollback_unit(sd: &mut dyn Systemd, unit: &str, opts: &Options) -> Outcome {
    let mut o = Outcome {
        unit: unit.to_string(),
        status: Status::Failed,
        from: None,
        to: None,
        reason: String::new(),
    };
    let path = match pin_file_of(sd, unit) {
        Ok(Some(p)) => p,
        Ok(None) => {
            o.reason = format!("{unit} has no skiff pin file");
            return o;
        }
        Err(e) => {
            o.reason = e;
            return o;
        }
    };
    let current = PinFile::read(&path);
    let prev = previous_path(&path);
    let previous = match PinFile::read(&prev) {
        Ok(p) => p,
        Err(e) => {
            o.reason = format!("no previous pin to go back to: {}", chain(&e));
            return o;
        }
    };
    o.from = current.as_ref().ok().map(|c| c.digest().clone());
    o.to = Some(previous.digest().clone());
    let cur_bytes = current.map(|c| c.bytes).unwrap_or_default();
    let done = pinfile::write_atomic(&path, &previous.bytes)
        .map_err(|e| chain(&e))
        .and_then(|()| pinfile::write_atomic(&prev, &cur_bytes).map_err(|e| chain(&e)))
        .and_then(|()| restart_and_judge(sd, unit, opts).map_err(|u| u.to_string()));
    match done {
        Ok(()) => {
            o.status = Status::RolledBack;
            o.reason = format!("back to the previous pin by hand ({})", prev.display());
        }
        Err(e) => o.reason = e,
    }
    o
}

enum Decision {
    Same(String),
    Moved(Digest),
}

enum Undecided {
    /// The registry could not be reached: nothing changes, and that is not the unit's failure.
    Unreachable(String),
    /// It answered no (unknown tag, auth, bad document).
    Refused(String),
}

/// What the followed tag means now, compared with the pin as the whole index and as the host
/// platform's manifest.
fn decide(env: &Env, tag: &Reference, pin: &PinFile) -> Result<Decision, Undecided> {
    let repo = env.client.repo(tag);
    let err = |e: crate::registry::RegistryError| {
        if e.is_unreachable() {
            Undecided::Unreachable(format!(
                "{} could not be reached within the registry budget ({:?}); keeping {}: {}",
                tag.registry(),
                env.client.budget(),
                pin.digest(),
                chain(&e)
            ))
        } else {
            Undecided::Refused(format!("asking what {tag} means: {}", chain(&e)))
        }
    };
    let now = match env
        .client
        .within_budget(|| repo.head_manifest(&tag.manifest_ref()))
        .map_err(err)?
    {
        Some(d) => d,
        // No Docker-Content-Digest: the body, hashed, says it.
        None => {
            let f = env
                .client
                .within_budget(|| repo.manifest(&tag.manifest_ref()))
                .map_err(err)?;
            manifest::parse_document(&f.body, f.content_type.as_deref())
                .map_err(|e| Undecided::Refused(format!("the manifest of {tag}: {}", chain(&e))))?
                .digest
        }
    };
    if &now == pin.digest() {
        return Ok(Decision::Same(format!("{tag} still means {now}")));
    }
    // A pin of the host's manifest inside the index the tag names is the same image.
    if let Some(child) = host_manifest(env, tag, &now).map_err(Undecided::Refused)? {
        if &child == pin.digest() {
            return Ok(Decision::Same(format!(
                "{tag} means index {now}, whose {} manifest is the pinned {child}",
                env.opts.platform
            )));
        }
    }
    Ok(Decision::Moved(now))
}

/// The host platform's manifest in the index `digest` names (None for a single manifest). The
/// store's copy serves when it has one; a fetched one is verified against `digest`, not kept.
fn host_manifest(env: &Env, tag: &Reference, digest: &Digest) -> Result<Option<Digest>, String> {
    let body = if env.store.has_blob(digest) {
        env.store
            .read_blob(digest, manifest::MAX_DOCUMENT_BYTES)
            .map_err(|e| chain(&e))?
    } else {
        let repo = env.client.repo(tag);
        let f = env
            .client
            .within_budget(|| repo.manifest(&digest.to_string()))
            .map_err(|e| format!("fetching {digest} of {tag}: {}", chain(&e)))?;
        f.body
    };
    let parsed = manifest::parse_document(&body, None)
        .map_err(|e| format!("the manifest {digest} of {tag}: {}", chain(&e)))?;
    if parsed.digest != *digest {
        return Err(format!(
            "{tag}: the registry served {} for {digest}",
            parsed.digest
        ));
    }
    match parsed.document {
        Document::Index(entries) => Ok(manifest::select_platform(&entries, &env.opts.platform)
            .ok()
            .map(|d| d.digest.clone())),
        _ => Ok(None),
    }
}

/// Pulls, verifies (digests and the signature policy) and unpacks the new image.
fn obtain(env: &Env, pin: &PinFile, to: &Digest) -> Result<pull::Image, String> {
    let r: Reference = format!("{}@{to}", pin.pinned.name())
        .parse()
        .map_err(|e| format!("{}@{to}: {e}", pin.pinned.name()))?;
    let req = pull::Request {
        reference: &r,
        platform: env.opts.platform.clone(),
        platform_explicit: false,
        policy: PullPolicy::Missing,
        max_parallel: 4,
        trust: env.trust,
    };
    crate::images::obtain(
        env.store,
        (env.new_client)(),
        &req,
        env.opts.storage,
        &Quiet,
    )
    .map(|(img, _)| img)
    .map_err(|e| format!("pulling {r}: {}; nothing was changed", chain(&e)))
}

fn previous_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".previous");
    PathBuf::from(s)
}

/// Keeps the current pin as `<file>.previous`, then moves the pin; each write atomic.
fn move_pin(pin: &PinFile, to: &Digest) -> Result<(), pinfile::PinError> {
    pinfile::write_atomic(&previous_path(&pin.path), &pin.bytes)?;
    pinfile::write_atomic(&pin.path, &pin.moved_to(to))
}

/// Puts the pin back byte for byte, restarts, and judges again.
fn roll_back(
    sd: &mut dyn Systemd,
    unit: &str,
    pin: &PinFile,
    opts: &Options,
) -> Result<(), String> {
    pinfile::write_atomic(&pin.path, &pin.bytes).map_err(|e| chain(&e))?;
    restart_and_judge(sd, unit, opts).map_err(|u| u.to_string())
}

/// Restarts the unit (mode replace, so units that Require= it follow) and runs the gate.
pub fn restart_and_judge(
    sd: &mut dyn Systemd,
    unit: &str,
    opts: &Options,
) -> Result<(), Unhealthy> {
    let sys = |e: systemd::SystemdError| Unhealthy(format!("systemd: {}", chain(&e)));
    // The job ends by the unit's own start timeout; a margin covers the stop before it.
    let timeout = sd.start_timeout(unit).map_err(sys)? + Duration::from_secs(90);
    let job = sd.restart(unit).map_err(sys)?;
    let result = sd.wait_job(&job, timeout).map_err(sys)?;
    let gate = Gate::start(&result, sd.state(unit).map_err(sys)?)?;
    let end = Instant::now() + opts.grace;
    while Instant::now() < end {
        std::thread::sleep(opts.poll.min(end.saturating_duration_since(Instant::now())));
        gate.observe(&sd.state(unit).map_err(sys)?)?;
    }
    if let Some(cmd) = &opts.health_cmd {
        gate.health_cmd(cmd, run_health_cmd(cmd, unit, gate.main_pid()))?;
    }
    Ok(())
}

/// `--health-cmd` runs on the host, through `sh -c`, with the unit and its MainPID in the
/// environment (`nsenter -t "$MAINPID" -m -p` goes inside when wanted): the host has the tools
/// to probe a service (curl, etcdctl), the payload's image often has no shell.
fn run_health_cmd(cmd: &str, unit: &str, main_pid: u32) -> Option<i32> {
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("SKIFF_UNIT", unit)
        .env("MAINPID", main_pid.to_string())
        .stdin(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) => s.code(),
        Err(e) => {
            tracing::warn!(cmd, error = %e, "could not run --health-cmd");
            Some(127)
        }
    }
}

/// Layer progress is not shown: an update is a background job.
struct Quiet;

impl pull::Progress for Quiet {
    fn start(&self, _: &Digest, _: Option<u64>, _: u64) {}
    fn advance(&self, _: &Digest, _: u64) {}
    fn finish(&self, _: &Digest) {}
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::logging::chain(e)
}

/// The update lock when no other update holds it.
pub fn try_lock(
    store: &Store,
) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, crate::store::StoreError> {
    let path = store.root().join("update.lock");
    match crate::store::lock_file_with(&path, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err(crate::store::StoreError::Io { source, .. })
            if source.raw_os_error() == Some(libc::EWOULDBLOCK) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Serialises updates on a host: a second `skiff update` waits for the first.
pub fn lock(store: &Store) -> Result<nix::fcntl::Flock<std::fs::File>, crate::store::StoreError> {
    crate::store::lock_file(&store.root().join("update.lock"))
}

#[cfg(test)]
mod tests;
