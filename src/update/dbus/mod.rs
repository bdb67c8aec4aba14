//! systemd over D-Bus, reached as `systemctl` reaches it: as root its private socket
//! (`/run/systemd/private`, a direct connection with no bus daemon in between), else the system
//! bus. Authentication is SASL EXTERNAL (the kernel vouches for our uid).
//!
//! A hand-written client rather than zbus: skiff needs five method calls and one signal, and
//! zbus (with its async runtime) would cost more than the static binary's remaining budget.

pub mod wire;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::gate::UnitState;
use super::systemd::{Systemd, SystemdError};
use wire::{Message, Value, WireError};

const PRIVATE: &str = "/run/systemd/private";
const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";
const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PROPS: &str = "org.freedesktop.DBus.Properties";
/// A method call systemd does not answer in this long is lost.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum DbusError {
    #[error("connecting to {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("D-Bus authentication on {path} failed: {line:?}")]
    Auth { path: PathBuf, line: String },
    #[error("D-Bus I/O on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading a message from {path}")]
    Wire {
        path: PathBuf,
        #[source]
        source: WireError,
    },
    #[error("{method}: {name}: {text}")]
    Remote {
        method: String,
        name: String,
        text: String,
    },
    #[error("{method}: the reply has an unexpected shape")]
    Shape { method: String },
}

/// A connection to systemd.
pub struct Bus {
    sock: BufReader<UnixStream>,
    path: PathBuf,
    destination: Option<&'static str>,
    serial: u32,
    /// JobRemoved signals seen while waiting for something else: (job path, result).
    jobs_removed: Vec<(String, String)>,
    /// Unit object paths already known (from ListUnits or LoadUnit): one round trip less per
    /// property read.
    paths: std::collections::HashMap<String, String>,
}

impl Bus {
    /// Connects as `systemctl` does and subscribes to job signals.
    pub fn system() -> Result<Bus, DbusError> {
        let root = nix::unistd::geteuid().is_root();
        let mut bus = if root && Path::new(PRIVATE).exists() {
            Bus::open(Path::new(PRIVATE))?
        } else {
            let addr = std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok();
            let path = addr
                .as_deref()
                .and_then(|a| a.strip_prefix("unix:path="))
                .map(|p| p.split(',').next().unwrap_or(p).to_string())
                .unwrap_or_else(|| SYSTEM_BUS.into());
            let mut bus = Bus::open(Path::new(&path))?;
            bus.call_to(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
                vec![],
            )?;
            bus.call_to(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "AddMatch",
                vec![Value::Str(format!(
                    "type='signal',sender='{SYSTEMD}',interface='{MANAGER}',member='JobRemoved'"
                ))],
            )?;
            bus
        };
        bus.manager("Subscribe", vec![])?;
        Ok(bus)
    }

    fn open(path: &Path) -> Result<Bus, DbusError> {
        let s = UnixStream::connect(path).map_err(|source| DbusError::Connect {
            path: path.into(),
            source,
        })?;
        let io = |source| DbusError::Io {
            path: path.into(),
            source,
        };
        s.set_read_timeout(Some(CALL_TIMEOUT)).map_err(io)?;
        let mut sock = BufReader::new(s);
        // As sd-bus clients (systemctl) speak it: EXTERNAL with the identity left to the
        // kernel's SO_PEERCRED (empty DATA), pipelined up to BEGIN.
        let hello = b"\0AUTH EXTERNAL\r\nDATA\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n";
        sock.get_mut().write_all(hello).map_err(io)?;
        let mut ok = false;
        // DATA, OK <guid>, then AGREE_UNIX_FD (or ERROR: fds are not needed).
        for _ in 0..3 {
            let mut line = String::new();
            (&mut sock).take(512).read_line(&mut line).map_err(io)?;
            let l = line.trim_end();
            if l.starts_with("OK ") {
                ok = true;
                tracing::debug!(path = %path.display(), line = l, "D-Bus authenticated");
            } else if l == "DATA" {
                continue;
            } else if ok && (l == "AGREE_UNIX_FD" || l.starts_with("ERROR")) {
                break;
            } else {
                return Err(DbusError::Auth {
                    path: path.into(),
                    line: l.to_string(),
                });
            }
        }
        if !ok {
            return Err(DbusError::Auth {
                path: path.into(),
                line: "no OK".into(),
            });
        }
        Ok(Bus {
            sock,
            path: path.into(),
            // systemd ignores a call without it even on its private socket, as systemctl knows.
            destination: Some(SYSTEMD),
            serial: 0,
            jobs_removed: Vec::new(),
            paths: std::collections::HashMap::new(),
        })
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> DbusError {
        let path = self.path.clone();
        move |source| DbusError::Io { path, source }
    }

    fn manager(&mut self, member: &str, body: Vec<Value>) -> Result<Vec<Value>, DbusError> {
        self.call_to(self.destination, MANAGER_PATH, MANAGER, member, body)
    }

    fn call_to(
        &mut self,
        dest: Option<&str>,
        path: &str,
        iface: &str,
        member: &str,
        body: Vec<Value>,
    ) -> Result<Vec<Value>, DbusError> {
        self.serial += 1;
        let serial = self.serial;
        let bytes = Message::call(dest, path, iface, member, body).encode(serial);
        self.sock.get_mut().write_all(&bytes).map_err(self.io())?;
        tracing::trace!(member, serial, "D-Bus call sent");
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let m = self.read(deadline)?;
            if m.reply_serial != Some(serial) {
                continue;
            }
            if m.kind == wire::ERROR {
                return Err(DbusError::Remote {
                    method: member.into(),
                    name: m.error_name.unwrap_or_default(),
                    text: m
                        .body
                        .first()
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                });
            }
            return Ok(m.body);
        }
    }

    /// Reads one message, keeping any JobRemoved signal it is.
    fn read(&mut self, deadline: Instant) -> Result<Message, DbusError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = left.max(Duration::from_millis(1));
        self.sock
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(self.io())?;
        let mut head = [0u8; 16];
        self.sock.read_exact(&mut head).map_err(self.io())?;
        let wire = |source| DbusError::Wire {
            path: self.path.clone(),
            source,
        };
        let total = Message::total_len(&head).map_err(wire)?;
        let mut bytes = head.to_vec();
        bytes.resize(total, 0);
        self.sock.read_exact(&mut bytes[16..]).map_err(self.io())?;
        let m = Message::parse(&bytes).map_err(|source| DbusError::Wire {
            path: self.path.clone(),
            source,
        })?;
        tracing::trace!(kind = m.kind, reply = ?m.reply_serial, member = ?m.member, "D-Bus message");
        if m.kind == wire::SIGNAL && m.member.as_deref() == Some("JobRemoved") {
            if let [_, Value::Path(job), _, Value::Str(result)] = m.body.as_slice() {
                self.jobs_removed.push((job.clone(), result.clone()));
            }
        }
        Ok(m)
    }

    fn unit_path(&mut self, unit: &str) -> Result<String, DbusError> {
        if let Some(p) = self.paths.get(unit) {
            return Ok(p.clone());
        }
        let reply = self.manager("LoadUnit", vec![Value::Str(unit.into())])?;
        match reply.first() {
            Some(Value::Path(p)) => {
                self.paths.insert(unit.to_string(), p.clone());
                Ok(p.clone())
            }
            _ => Err(DbusError::Shape {
                method: "LoadUnit".into(),
            }),
        }
    }

    fn get(&mut self, path: &str, iface: &str, name: &str) -> Result<Value, DbusError> {
        let dest = self.destination;
        let reply = self.call_to(
            dest,
            path,
            PROPS,
            "Get",
            vec![Value::Str(iface.into()), Value::Str(name.into())],
        )?;
        match reply.into_iter().next() {
            Some(Value::Variant(v)) => Ok(*v),
            _ => Err(DbusError::Shape {
                method: format!("Get {name}"),
            }),
        }
    }

    fn get_str(&mut self, path: &str, iface: &str, name: &str) -> Result<String, DbusError> {
        let v = self.get(path, iface, name)?;
        v.as_str().map(str::to_string).ok_or(DbusError::Shape {
            method: format!("Get {name}"),
        })
    }

    fn get_u64(&mut self, path: &str, iface: &str, name: &str) -> Result<u64, DbusError> {
        self.get(path, iface, name)?
            .as_u64()
            .ok_or(DbusError::Shape {
                method: format!("Get {name}"),
            })
    }
}

const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE: &str = "org.freedesktop.systemd1.Service";

impl From<DbusError> for SystemdError {
    fn from(e: DbusError) -> Self {
        SystemdError(Box::new(e))
    }
}

impl Systemd for Bus {
    fn restart(&mut self, unit: &str) -> Result<String, SystemdError> {
        let reply = self.manager(
            "RestartUnit",
            vec![Value::Str(unit.into()), Value::Str("replace".into())],
        )?;
        match reply.first() {
            Some(Value::Path(job)) => Ok(job.clone()),
            _ => Err(DbusError::Shape {
                method: "RestartUnit".into(),
            }
            .into()),
        }
    }

    fn wait_job(&mut self, job: &str, timeout: Duration) -> Result<String, SystemdError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.jobs_removed.iter().position(|(j, _)| j == job) {
                return Ok(self.jobs_removed.remove(i).1);
            }
            self.read(deadline)?;
        }
    }

    fn state(&mut self, unit: &str) -> Result<UnitState, SystemdError> {
        let p = self.unit_path(unit)?;
        Ok(UnitState {
            active: self.get_str(&p, UNIT, "ActiveState")?,
            sub: self.get_str(&p, UNIT, "SubState")?,
            n_restarts: self.get_u64(&p, SERVICE, "NRestarts")? as u32,
            main_pid: self.get_u64(&p, SERVICE, "MainPID")? as u32,
            result: self.get_str(&p, SERVICE, "Result")?,
        })
    }

    fn start_timeout(&mut self, unit: &str) -> Result<Duration, SystemdError> {
        let p = self.unit_path(unit)?;
        let us = self.get_u64(&p, SERVICE, "TimeoutStartUSec")?;
        // u64::MAX is "infinity".
        Ok(Duration::from_micros(us.min(24 * 3600 * 1_000_000)))
    }

    fn env_files(&mut self, unit: &str) -> Result<Vec<PathBuf>, SystemdError> {
        let p = self.unit_path(unit)?;
        let v = self.get(&p, SERVICE, "EnvironmentFiles")?;
        let Value::Array(_, items) = v else {
            return Err(DbusError::Shape {
                method: "Get EnvironmentFiles".into(),
            }
            .into());
        };
        Ok(items
            .iter()
            .filter_map(|i| match i {
                Value::Struct(f) => f.first().and_then(Value::as_str).map(PathBuf::from),
                _ => None,
            })
            .collect())
    }

    fn services(&mut self) -> Result<Vec<String>, SystemdError> {
        let reply = self.manager("ListUnits", vec![])?;
        let Some(Value::Array(_, units)) = reply.first() else {
            return Err(DbusError::Shape {
                method: "ListUnits".into(),
            }
            .into());
        };
        let mut out = Vec::new();
        for u in units {
            // (name, description, load, active, sub, following, path, job id, job type, job path)
            let Value::Struct(f) = u else { continue };
            let (Some(Value::Str(name)), Some(Value::Path(path))) = (f.first(), f.get(6)) else {
                continue;
            };
            if name.ends_with(".service") {
                out.push(name.clone());
                self.paths.insert(name.clone(), path.clone());
            }
        }
        Ok(out)
    }
}
