//! `Lock` on etcd's v3 API, spoken as JSON over HTTP (the gateway etcd 3.4 serves on its
//! client URLs), so no gRPC stack is linked. Keys:
//!
//! - `/skiff/locks/GROUP/slots/HOST`: a host's place in the queue, bound to its lease;
//! - `/skiff/locks/GROUP/halt`: the halt record, bound to no lease;
//! - `/skiff/locks/GROUP/history/MICROS-HOST`: what happened, oldest first.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use super::wire::{self, Kv};
use super::{Event, GroupStatus, Halt, Holder, Lock, LockError};

const HISTORY_SHOWN: usize = 200;

/// Endpoints and TLS files, as etcdctl names them.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub endpoints: Vec<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Per request, connecting included.
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct Etcd {
    http: reqwest::blocking::Client,
    endpoints: Vec<String>,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, LockError> {
    std::fs::read(path).map_err(|source| LockError::File {
        path: path.clone(),
        source,
    })
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The end of the range of keys starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    if let Some(last) = b.last_mut() {
        *last += 1;
    }
    b64(&b)
}

fn base(group: &str) -> String {
    format!("/skiff/locks/{group}/")
}

impl Etcd {
    pub fn new(cfg: &Config) -> Result<Etcd, LockError> {
        let bad = |what: &str, e: reqwest::Error| LockError::Config(format!("{what}: {e}"));
        let mut b = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .connect_timeout(cfg.timeout)
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &cfg.cacert {
            for c in reqwest::Certificate::from_pem_bundle(&read(ca)?)
                .map_err(|e| bad(&format!("--etcd-cacert {}", ca.display()), e))?
            {
                b = b.add_root_certificate(c);
            }
        }
        match (&cfg.cert, &cfg.key) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    bad(
                        &format!(
                            "--etcd-cert {} / --etcd-key {}",
                            cert.display(),
                            key.display()
                        ),
                        e,
                    )
                })?;
                b = b.identity(id);
            }
            (None, None) => {}
            _ => {
                return Err(LockError::Config(
                    "--etcd-cert and --etcd-key go together".into(),
                ))
            }
        }
        let mut endpoints = Vec::new();
        for e in &cfg.endpoints {
            let e = e.trim().trim_end_matches('/');
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(LockError::Config(format!(
                    "etcd endpoint {e:?}: an http:// or https:// URL"
                )));
            }
            endpoints.push(e.to_string());
        }
        if endpoints.is_empty() {
            return Err(LockError::Config("no etcd endpoint".into()));
        }
        Ok(Etcd {
            http: b.build().map_err(|e| bad("the etcd client", e))?,
            endpoints,
        })
    }

    /// POSTs to each endpoint in turn until one answers; the body is capped before it is read.
    fn call<T>(
        &self,
        path: &str,
        what: &'static str,
        body: serde_json::Value,
        parse: fn(&[u8]) -> Result<T, wire::WireError>,
    ) -> Result<T, LockError> {
        let mut failures = Vec::new();
        for ep in &self.endpoints {
            let url = format!("{ep}{path}");
            let resp = match self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send()
            {
                Ok(r) => r,
                Err(source) => {
                    failures.push(crate::logging::chain(&LockError::Http {
                        endpoint: ep.clone(),
                        source,
                    }));
                    continue;
                }
            };
            let status = resp.status();
            let mut bytes = Vec::new();
            let got = resp.take(wire::MAX_BODY as u64 + 1).read_to_end(&mut bytes);
            if let Err(e) = got {
                failures.push(format!("etcd at {ep}: reading the answer: {e}"));
                continue;
            }
            let parsed = parse(&bytes);
            let wire_err = |source| LockError::Wire {
                endpoint: ep.clone(),
                what,
                source,
            };
            return match parsed {
                Ok(v) if status.is_success() => Ok(v),
                Ok(_) => Err(wire_err(wire::WireError::Refused {
                    code: i64::from(status.as_u16()),
                    message: format!("HTTP {status}"),
                })),
                Err(e) => Err(wire_err(e)),
            };
        }
        Err(LockError::NoEndpoint(failures.join("; ")))
    }

    fn range(&self, key: &str, extra: serde_json::Value) -> Result<Vec<Kv>, LockError> {
        let mut body = json!({ "key": b64(key.as_bytes()) });
        if let (Some(o), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        self.call("/v3/kv/range", "a range", body, wire::range)
    }

    fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), LockError> {
        let mut body = json!({ "key": b64(key.as_bytes()), "value": b64(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        self.call("/v3/kv/put", "a put", body, wire::ack)
    }
}

fn record<T: serde::de::DeserializeOwned>(kv: &Kv) -> Result<T, LockError> {
    serde_json::from_slice(&kv.value).map_err(|source| LockError::Record {
        key: String::from_utf8_lossy(&kv.key).chars().take(200).collect(),
        source,
    })
}

fn json_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Our own plain structs: serialising cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

impl Lock for Etcd {
    fn acquire(&self, group: &str, holder: &Holder, ttl: Duration) -> Result<i64, LockError> {
        let (lease, _) = self.call(
            "/v3/lease/grant",
            "a lease grant",
            json!({ "TTL": ttl.as_secs().max(1).to_string() }),
            wire::grant,
        )?;
        let key = format!("{}slots/{}", base(group), holder.host);
        if let Err(e) = self.put(&key, &json_bytes(holder), lease) {
            let _ = self.release(lease);
            return Err(e);
        }
        Ok(lease)
    }

    fn keep_alive(&self, lease: i64) -> Result<(), LockError> {
        let ttl = self.call(
            "/v3/lease/keepalive",
            "a lease keepalive",
            json!({ "ID": lease.to_string() }),
            wire::keepalive,
        )?;
        if ttl <= 0 {
            return Err(LockError::LeaseLost(lease));
        }
        Ok(())
    }

    fn release(&self, lease: i64) -> Result<(), LockError> {
        self.call(
            "/v3/lease/revoke",
            "a lease revoke",
            json!({ "ID": lease.to_string() }),
            wire::ack,
        )
    }

    fn halt(&self, group: &str, halt: &Halt) -> Result<(), LockError> {
        self.put(&format!("{}halt", base(group)), &json_bytes(halt), 0)
    }

    fn resume(&self, group: &str, revision: Option<i64>) -> Result<bool, LockError> {
        let key = b64(format!("{}halt", base(group)).as_bytes());
        let compare = match revision {
            Some(r) => {
                json!([{ "key": key, "target": "MOD", "result": "EQUAL", "mod_revision": r.to_string() }])
            }
            // Any halt: its key exists.
            None => {
                json!([{ "key": key, "target": "CREATE", "result": "GREATER", "create_revision": "0" }])
            }
        };
        let body = json!({
            "compare": compare,
            "success": [{ "request_delete_range": { "key": key } }],
        });
        let (ok, _) = self.call("/v3/kv/txn", "a txn", body, wire::txn)?;
        Ok(ok)
    }

    fn status(&self, group: &str) -> Result<GroupStatus, LockError> {
        let b = base(group);
        let slots = format!("{b}slots/");
        // Slots before the halt: a halt is written before its writer's slot can go.
        let kvs = self.range(
            &slots,
            json!({
                "range_end": prefix_end(&slots),
                "sort_target": "CREATE",
                "sort_order": "ASCEND",
                "limit": wire::MAX_KVS.to_string(),
            }),
        )?;
        let mut queue = Vec::new();
        for kv in &kvs {
            let mut h: Holder = record(kv)?;
            super::check_host(&h.host)?;
            h.create_revision = kv.create_revision;
            queue.push(h);
        }
        // etcd sorted them; a server that did not is not trusted to have.
        queue.sort_by_key(|h| h.create_revision);
        let halt_kv = self.range(&format!("{b}halt"), json!({}))?;
        let (halt, halt_revision) = match halt_kv.first() {
            Some(kv) => (Some(record::<Halt>(kv)?), kv.mod_revision),
            None => (None, 0),
        };
        let hist = format!("{b}history/");
        let mut history = Vec::new();
        for kv in self.range(
            &hist,
            json!({
                "range_end": prefix_end(&hist),
                "sort_target": "KEY",
                "sort_order": "DESCEND",
                "limit": HISTORY_SHOWN.to_string(),
            }),
        )? {
            history.push(record::<Event>(&kv)?);
        }
        history.reverse();
        Ok(GroupStatus {
            queue,
            halt,
            halt_revision,
            history,
        })
    }

    fn record(&self, group: &str, e: &Event) -> Result<(), LockError> {
        let key = format!("{}history/{:020}-{}", base(group), e.time, e.host);
        self.put(&key, &json_bytes(e), 0)
    }
}
