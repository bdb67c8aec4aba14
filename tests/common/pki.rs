//! Test PKI and auth fixtures made with openssl/htpasswd: a CA, a server certificate for
//! 127.0.0.1, an htpasswd file, and a tiny bearer-token issuer that signs JWTs with openssl.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;

fn run(cmd: &mut Command) {
    super::run_ok(cmd);
}

/// A self-signed certificate and its key.
fn self_signed(key: &Path, cert: &Path, cn: &str) {
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert));
}

pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
pub fn make_pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let p = |n: &str| dir.join(n);
    self_signed(&p("ca.key"), &p("ca.crt"), "skiff test CA");
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.crt"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.crt")));
    Pki {
        ca: p("ca.crt"),
        cert: p("server.crt"),
        key: p("server.key"),
    }
}

pub fn htpasswd(dir: &Path, user: &str, pass: &str) -> PathBuf {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .expect("htpasswd (apache2-utils)");
    assert!(out.status.success());
    let path = dir.join("htpasswd");
    std::fs::write(&path, out.stdout).unwrap();
    path
}

#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub query: String,
    pub basic: Option<String>,
}

/// A bearer-token issuer as quay.io runs one: anonymous callers get pull tokens; with
/// `require_creds`, only `Basic` callers with these credentials do.
pub struct Issuer {
    pub port: u16,
    pub bundle: PathBuf,
    pub requests: Arc<Mutex<Vec<TokenRequest>>>,
}

impl Issuer {
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn start_issuer(dir: &Path, require_creds: Option<(String, String)>) -> Issuer {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("token.key");
    let cert = dir.join("token.crt");
    self_signed(&key, &cert, "token issuer");
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap()
        .stdout;
    let x5c = base64::engine::general_purpose::STANDARD.encode(der);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let reqs = requests.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = vec![0u8; 16384];
            let n = conn.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let target = head.split(' ').nth(1).unwrap_or("").to_string();
            let query = target
                .split_once('?')
                .map(|x| x.1.to_string())
                .unwrap_or_default();
            let basic = head.lines().find_map(|l| {
                l.strip_prefix("Authorization: Basic ")
                    .or_else(|| l.strip_prefix("authorization: Basic "))
                    .map(|s| s.trim().to_string())
            });
            reqs.lock().unwrap().push(TokenRequest {
                query: query.clone(),
                basic: basic.clone(),
            });
            let creds_ok = match (&require_creds, &basic) {
                (None, _) => true,
                (Some((u, p)), Some(b)) => {
                    base64::engine::general_purpose::STANDARD.decode(b).ok()
                        == Some(format!("{u}:{p}").into_bytes())
                }
                (Some(_), None) => false,
            };
            if !creds_ok {
                let _ = conn.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let scope = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("scope="))
                .unwrap_or("");
            let scope = scope.replace("%3A", ":").replace("%2F", "/");
            let repo = scope.split(':').nth(1).unwrap_or("").to_string();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
            let claims = serde_json::json!({
                "iss": "skiff-test-issuer", "sub": "anyone", "aud": "skiff-test",
                "exp": now + 300, "nbf": now - 10, "iat": now - 10, "jti": format!("{now}-{n}"),
                "access": [{"type": "repository", "name": repo, "actions": ["pull"]}],
            });
            let signing_input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let mut child = Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(signing_input.as_bytes())
                .unwrap();
            let sig = child.wait_with_output().unwrap().stdout;
            let jwt = format!("{signing_input}.{}", b64(&sig));
            let body = serde_json::json!({"token": jwt, "expires_in": 300}).to_string();
            let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    Issuer {
        port,
        bundle: cert,
        requests,
    }
}
