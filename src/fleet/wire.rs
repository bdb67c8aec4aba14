//! The etcd v3 JSON gateway's responses, parsed strictly: the body is capped before it is read,
//! int64 fields arrive as decimal strings (grpc-gateway) and must be exactly that, keys and
//! values are base64 within a size, and a response never holds more entries than asked for.

use base64::Engine as _;
use serde::Deserialize;

/// No response skiff asks for is near this (a range is limited to `MAX_KVS` entries).
pub const MAX_BODY: usize = 1 << 20;
/// Entries a range may return: slots, or history records.
pub const MAX_KVS: usize = 512;
const MAX_KEY: usize = 1024;
const MAX_VALUE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("the response is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("the response is not the JSON etcd sends: {0}")]
    Json(String),
    #[error("{field} is not a decimal int64: {value:?}")]
    Int { field: &'static str, value: String },
    #[error("{field} is not base64 of at most {max} bytes")]
    Bytes { field: &'static str, max: usize },
    #[error("etcd answered more than {MAX_KVS} entries")]
    TooMany,
    #[error("etcd refused: {message} (code {code})")]
    Refused { code: i64, message: String },
}

/// int64 as grpc-gateway writes it: a string of digits (a JSON number is accepted too).
#[derive(Deserialize)]
#[serde(untagged)]
enum Int {
    S(String),
    N(i64),
}

fn int(field: &'static str, v: Option<Int>) -> Result<i64, WireError> {
    match v {
        None => Ok(0),
        Some(Int::N(n)) => Ok(n),
        Some(Int::S(s)) => {
            let digits = s.strip_prefix('-').unwrap_or(&s);
            if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(WireError::Int {
                    field,
                    value: s.chars().take(40).collect(),
                });
            }
            s.parse().map_err(|_| WireError::Int {
                field,
                value: s.chars().take(40).collect(),
            })
        }
    }
}

fn bytes(field: &'static str, v: Option<String>, max: usize) -> Result<Vec<u8>, WireError> {
    let Some(s) = v else { return Ok(Vec::new()) };
    if s.len() > max.div_ceil(3) * 4 {
        return Err(WireError::Bytes { field, max });
    }
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|_| WireError::Bytes { field, max })
}

/// One key as etcd returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

#[derive(Deserialize)]
struct RawKv {
    key: Option<String>,
    value: Option<String>,
    create_revision: Option<Int>,
    mod_revision: Option<Int>,
    lease: Option<Int>,
}

impl RawKv {
    fn parse(self) -> Result<Kv, WireError> {
        Ok(Kv {
            key: bytes("key", self.key, MAX_KEY)?,
            value: bytes("value", self.value, MAX_VALUE)?,
            create_revision: int("create_revision", self.create_revision)?,
            mod_revision: int("mod_revision", self.mod_revision)?,
            lease: int("lease", self.lease)?,
        })
    }
}

#[derive(Deserialize)]
struct RawRange {
    kvs: Option<Vec<RawKv>>,
}

fn kvs(raw: Option<Vec<RawKv>>) -> Result<Vec<Kv>, WireError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_KVS {
        return Err(WireError::TooMany);
    }
    raw.into_iter().map(RawKv::parse).collect()
}

#[derive(Deserialize)]
struct RawError {
    code: Option<i64>,
    message: Option<String>,
    error: Option<String>,
}

/// Parses `body` as `T` after the size check; an error object (what the gateway sends with a
/// 4xx/5xx, or a stream's `{"error":…}`) becomes `Refused`.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    if body.len() > MAX_BODY {
        return Err(WireError::TooLarge);
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WireError::Json(e.to_string()))?;
    let err = v.get("error").filter(|e| !e.is_null()).cloned();
    if let Some(e) = err {
        // A stream wraps it: {"error":{"grpc_code":…,"message":…}}; a unary answer does not.
        let raw: RawError = match &e {
            serde_json::Value::Object(_) => serde_json::from_value(e.clone()).unwrap_or(RawError {
                code: None,
                message: None,
                error: None,
            }),
            _ => serde_json::from_value(v.clone()).unwrap_or(RawError {
                code: None,
                message: None,
                error: e.as_str().map(String::from),
            }),
        };
        let message: String = raw
            .message
            .or(raw.error)
            .unwrap_or_else(|| "no message".into())
            .chars()
            .take(200)
            .collect();
        return Err(WireError::Refused {
            code: raw.code.unwrap_or(-1),
            message,
        });
    }
    serde_json::from_value(v).map_err(|e| WireError::Json(e.to_string()))
}

/// `/v3/kv/range`.
pub fn range(body: &[u8]) -> Result<Vec<Kv>, WireError> {
    kvs(parse::<RawRange>(body)?.kvs)
}

#[derive(Deserialize)]
struct RawTxn {
    succeeded: Option<bool>,
    responses: Option<Vec<RawOp>>,
}

#[derive(Deserialize)]
struct RawOp {
    response_range: Option<RawRange>,
}

/// `/v3/kv/txn`: whether the compare held, and the kvs of any range in the branch that ran.
pub fn txn(body: &[u8]) -> Result<(bool, Vec<Kv>), WireError> {
    let t: RawTxn = parse(body)?;
    let ops = t.responses.unwrap_or_default();
    if ops.len() > 16 {
        return Err(WireError::TooMany);
    }
    let mut out = Vec::new();
    for op in ops {
        if let Some(r) = op.response_range {
            out.extend(kvs(r.kvs)?);
            if out.len() > MAX_KVS {
                return Err(WireError::TooMany);
            }
        }
    }
    Ok((t.succeeded.unwrap_or(false), out))
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct RawLease {
    ID: Option<Int>,
    TTL: Option<Int>,
    error: Option<String>,
}

/// `/v3/lease/grant`: (ID, TTL seconds). A zero ID or TTL is no lease.
pub fn grant(body: &[u8]) -> Result<(i64, i64), WireError> {
    let l: RawLease = parse(body)?;
    if let Some(e) = l.error.filter(|e| !e.is_empty()) {
        return Err(WireError::Refused {
            code: -1,
            message: e.chars().take(200).collect(),
        });
    }
    let id = int("ID", l.ID)?;
    let ttl = int("TTL", l.TTL)?;
    if id == 0 || ttl <= 0 {
        return Err(WireError::Json("the grant names no lease".into()));
    }
    Ok((id, ttl))
}

#[derive(Deserialize)]
struct RawStream {
    result: Option<RawLease>,
}

/// `/v3/lease/keepalive` (a stream of one message, `{"result":…}`): the TTL left; 0 when the
/// lease is gone (expired or revoked).
pub fn keepalive(body: &[u8]) -> Result<i64, WireError> {
    // The stream may end with a newline or hold more than one message: the first one counts.
    let first = body
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace));
    let s: RawStream = parse(first.unwrap_or(b""))?;
    let r = s
        .result
        .ok_or_else(|| WireError::Json("no result in the keepalive answer".into()))?;
    int("TTL", r.TTL)
}

/// Checks an answer that carries nothing skiff reads (`put`, `revoke`, `deleterange`).
pub fn ack(body: &[u8]) -> Result<(), WireError> {
    parse::<serde_json::Value>(body).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: &str = r#"{"header":{"cluster_id":"15118495548433857066","member_id":"1","revision":"2","raft_term":"2"},"kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"Yg==","lease":"4111120515637404423"}],"count":"1"}"#;

    #[test]
    fn what_etcd_3_4_sends() {
        let kvs = range(RANGE.as_bytes()).unwrap();
        assert_eq!(
            kvs,
            vec![Kv {
                key: b"a".to_vec(),
                value: b"b".to_vec(),
                create_revision: 2,
                mod_revision: 2,
                lease: 4111120515637404423
            }]
        );
        assert_eq!(range(br#"{"header":{"revision":"3"}}"#).unwrap(), vec![]);
        let t = r#"{"header":{},"responses":[{"response_range":{"header":{"revision":"2"},"kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"Yg=="}],"count":"1"}}]}"#;
        let (ok, kvs) = txn(t.as_bytes()).unwrap();
        assert!(!ok);
        assert_eq!(kvs.len(), 1);
        let t = r#"{"header":{},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]}"#;
        assert_eq!(txn(t.as_bytes()).unwrap(), (true, vec![]));
        assert_eq!(
            grant(br#"{"header":{},"ID":"4111120515637404421","TTL":"5"}"#).unwrap(),
            (4111120515637404421, 5)
        );
        assert_eq!(
            keepalive(b"{\"result\":{\"header\":{},\"ID\":\"7\",\"TTL\":\"5\"}}\n").unwrap(),
            5
        );
        assert_eq!(
            keepalive(br#"{"result":{"header":{},"ID":"7"}}"#).unwrap(),
            0
        );
    }

    #[test]
    fn hostile_answers_are_refused_not_believed() {
        let cases: &[(&str, &[u8])] = &[
            ("empty", b""),
            ("not json", b"<html>"),
            ("revision not digits", br#"{"kvs":[{"key":"YQ==","create_revision":"2x"}]}"#),
            ("revision overflow", br#"{"kvs":[{"key":"YQ==","create_revision":"99999999999999999999"}]}"#),
            ("revision a float", br#"{"kvs":[{"key":"YQ==","create_revision":1.5}]}"#),
            ("revision empty", br#"{"kvs":[{"key":"YQ==","create_revision":""}]}"#),
            ("key not base64", br#"{"kvs":[{"key":"!!!"}]}"#),
            ("kvs not a list", br#"{"kvs":{"key":"YQ=="}}"#),
            ("an error object", br#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#),
            ("a stream error", br#"{"error":{"grpc_code":14,"message":"no leader"}}"#),
        ];
        for (what, body) in cases {
            assert!(range(body).is_err(), "{what}");
            if what.contains("error") || what.starts_with("empty") || what.starts_with("not json") {
                assert!(
                    txn(body).is_err() && grant(body).is_err() && keepalive(body).is_err(),
                    "{what}"
                );
            }
        }
        let big_value = format!(
            r#"{{"kvs":[{{"key":"YQ==","value":"{}"}}]}}"#,
            "A".repeat(MAX_VALUE * 2)
        );
        assert!(matches!(
            range(big_value.as_bytes()),
            Err(WireError::Bytes { .. })
        ));
        let many = format!(
            r#"{{"kvs":[{}]}}"#,
            vec![r#"{"key":"YQ=="}"#; MAX_KVS + 1].join(",")
        );
        assert_eq!(range(many.as_bytes()), Err(WireError::TooMany));
        let huge = vec![b' '; MAX_BODY + 1];
        assert_eq!(range(&huge), Err(WireError::TooLarge));
        assert!(matches!(
            range(br#"{"error":"x","message":"no leader","code":14}"#),
            Err(WireError::Refused { code: 14, .. })
        ));
        // A grant with no ID, or TTL 0, is no lease; a keepalive with no result is an error.
        assert!(grant(br#"{"header":{},"TTL":"5"}"#).is_err());
        assert!(grant(br#"{"ID":"5","TTL":"0"}"#).is_err());
        assert!(grant(br#"{"error":"etcdserver: requested lease not found"}"#).is_err());
        assert!(keepalive(b"{}").is_err());
        assert!(keepalive(br#"{"result":{"TTL":"-x"}}"#).is_err());
        // Deeply nested JSON is refused by the parser's recursion limit, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(range(deep.as_bytes()).is_err());
    }
}
