//! A small fault-injecting HTTP proxy in front of the real registry: the one mock the tests
//! use, because a real registry does not lie, cut connections or trickle on demand.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    None,
    /// Flip one byte in the middle of every blob body.
    FlipBlobByte,
    /// Send only the first N bytes of each blob body, then close.
    CutBlobAfter(usize),
    /// Append junk to blob bodies (and fix Content-Length to match).
    ExtendBlob,
    /// Answer every blob and manifest request with this status, the first N times.
    Status(u16, usize),
    /// Answer 429 with Retry-After: 1, the first N times.
    TooMany(usize),
    /// Send blob bodies slowly: this many bytes, then a pause.
    Trickle(usize, Duration),
    /// Refuse every blob request with 500 (a dead registry for blobs).
    NoBlobs,
    /// Answer blob GETs with 307 to the same path on another host:port (a CDN).
    RedirectBlobs(u16),
    /// Advertise another digest in manifest answers' Docker-Content-Digest than the body has.
    WrongManifestDigest,
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: bool,
    pub status: u16,
}

pub struct Proxy {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub fault: Arc<Mutex<Fault>>,
}

impl Proxy {
    pub fn start(upstream: u16, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fault = Arc::new(Mutex::new(fault));
        let (s, f) = (seen.clone(), fault.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, f) = (s.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, upstream, &s, &f);
                });
            }
        });
        Proxy { port, seen, fault }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Blob GETs that returned a body (200 or 206) for `digest`.
    pub fn blob_downloads(&self, digest: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.method == "GET"
                    && r.path.ends_with(&format!("/blobs/{digest}"))
                    && (r.status == 200 || r.status == 206)
            })
            .collect()
    }
}

fn read_head(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut b)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // A TLS ClientHello: this proxy speaks plain HTTP only, as a Go server would say.
        if head.is_empty() && b[0] == 0x16 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        head.push(b[0]);
        if head.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
    Ok(head)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn respond_status(conn: &mut TcpStream, status: u16, extra: &str) -> std::io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n"
    )
}

fn handle(
    mut conn: TcpStream,
    upstream: u16,
    seen: &Mutex<Vec<Seen>>,
    fault: &Mutex<Fault>,
) -> std::io::Result<()> {
    let head = String::from_utf8_lossy(&read_head(&mut conn)?).to_string();
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let absolute = target.starts_with("http://");
    let path = match target
        .strip_prefix("http://")
        .and_then(|t| t.find('/').map(|i| t[i..].to_string()))
    {
        Some(p) => p,
        None => target.clone(),
    };
    let is_blob = path.contains("/blobs/sha256:");
    let is_doc = is_blob || path.contains("/manifests/");
    let mut record = Seen {
        method: method.clone(),
        path: if absolute {
            target.clone()
        } else {
            path.clone()
        },
        range: header(&head, "range").map(str::to_string),
        authorization: header(&head, "authorization").is_some(),
        status: 0,
    };
    let current = fault.lock().unwrap().clone();
    // Injected answers that never reach the registry.
    let injected = match current {
        Fault::Status(code, n) if is_doc && n > 0 => {
            *fault.lock().unwrap() = Fault::Status(code, n - 1);
            Some((code, String::new()))
        }
        Fault::TooMany(n) if is_doc && n > 0 => {
            *fault.lock().unwrap() = Fault::TooMany(n - 1);
            Some((429, "Retry-After: 1\r\n".to_string()))
        }
        Fault::NoBlobs if is_blob => Some((500, String::new())),
        Fault::RedirectBlobs(port) if is_blob && method == "GET" => {
            Some((307, format!("Location: http://localhost:{port}{path}\r\n")))
        }
        _ => None,
    };
    if let Some((code, extra)) = injected {
        record.status = code;
        seen.lock().unwrap().push(record);
        return respond_status(&mut conn, code, &extra);
    }
    // Forward with Connection: close and read the whole answer.
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut req = String::new();
    for (i, line) in head.trim_end().lines().enumerate() {
        let lower = line.to_ascii_lowercase();
        if i > 0 && (lower.starts_with("connection:") || lower.starts_with("proxy-")) {
            continue;
        }
        if i == 0 && absolute {
            req += &format!("{method} {path} HTTP/1.1\r\n");
            continue;
        }
        req += line;
        req += "\r\n";
    }
    req += "Connection: close\r\n\r\n";
    up.write_all(req.as_bytes())?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |i| i + 4);
    let (rhead, body) = resp.split_at(split);
    let mut rhead = String::from_utf8_lossy(rhead).to_string();
    let mut body = body.to_vec();
    record.status = rhead
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    seen.lock().unwrap().push(record.clone());
    let blob_body = is_blob && method == "GET" && (record.status == 200 || record.status == 206);
    match current {
        Fault::WrongManifestDigest if path.contains("/manifests/") => {
            let other = format!("sha256:{}", "0".repeat(64));
            rhead = rhead
                .lines()
                .map(|l| {
                    if l.to_ascii_lowercase().starts_with("docker-content-digest:") {
                        format!("Docker-Content-Digest: {other}")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\r\n")
                + "\r\n";
        }
        Fault::FlipBlobByte if blob_body && !body.is_empty() => {
            let mid = body.len() / 2;
            body[mid] ^= 0xff;
        }
        Fault::ExtendBlob if blob_body => {
            let old = body.len();
            body.extend_from_slice(b"junk appended by a lying registry");
            rhead = rhead.replace(
                &format!("Content-Length: {old}"),
                &format!("Content-Length: {}", body.len()),
            );
        }
        Fault::CutBlobAfter(n) if blob_body && body.len() > n => {
            conn.write_all(rhead.as_bytes())?;
            conn.write_all(&body[..n])?;
            conn.flush()?;
            return conn.shutdown(std::net::Shutdown::Both);
        }
        Fault::Trickle(chunk, pause) if blob_body => {
            conn.write_all(rhead.as_bytes())?;
            for c in body.chunks(chunk.max(1)) {
                conn.write_all(c)?;
                conn.flush()?;
                std::thread::sleep(pause);
            }
            return Ok(());
        }
        _ => {}
    }
    conn.write_all(rhead.as_bytes())?;
    conn.write_all(&body)
}
