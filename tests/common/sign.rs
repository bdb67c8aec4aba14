//! Signing with real tools: GPG keys from `gpg --batch --gen-key`, signatures from
//! `skopeo copy --sign-by`, cosign signatures made with `openssl` from the cosign
//! specification, and a lookaside served over HTTP by Python's http.server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{push_blob, push_manifest, run_ok, sha};

/// A GPG home of the test's own; its agent is stopped when it is dropped.
pub struct Gpg {
    pub home: PathBuf,
}

impl Gpg {
    pub fn new(dir: &Path) -> Gpg {
        let home = dir.join("gnupg");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        Gpg { home }
    }

    pub fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("GNUPGHOME", &self.home);
        c
    }

    /// Generates a key ("RSA", "EDDSA" or "ECDSA") with no passphrase; returns its fingerprint.
    pub fn gen_key(&self, kind: &str, name: &str) -> String {
        let algo = match kind {
            "RSA" => "Key-Type: RSA\nKey-Length: 2048\n",
            "EDDSA" => "Key-Type: EDDSA\nKey-Curve: ed25519\n",
            "ECDSA" => "Key-Type: ECDSA\nKey-Curve: nistp256\n",
            other => panic!("key kind {other}"),
        };
        let spec = self.home.join(format!("{name}.spec"));
        std::fs::write(
            &spec,
            format!("%no-protection\n{algo}Name-Real: {name}\nName-Email: {name}@skiff.invalid\nExpire-Date: 0\n%commit\n"),
        )
        .unwrap();
        run_ok(self.cmd("gpg").args(["--batch", "--gen-key"]).arg(&spec));
        let out = run_ok(self.cmd("gpg").args([
            "--with-colons",
            "--list-keys",
            &format!("{name}@skiff.invalid"),
        ]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_string())
            })
            .expect("a fingerprint")
    }

    /// Exports a public key to `path` (binary, as `gpg --export` writes it; `armor` for text).
    pub fn export(&self, fpr: &str, path: &Path, armor: bool) {
        let mut c = self.cmd("gpg");
        if armor {
            c.arg("--armor");
        }
        let out = run_ok(c.args(["--export", fpr]));
        std::fs::write(path, out.stdout).unwrap();
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = self.cmd("gpgconf").args(["--kill", "all"]).status();
    }
}

/// Python's http.server over a directory, on a port of its own choosing on 127.0.0.1.
pub struct FileServer {
    child: Child,
    pub port: u16,
}

impl FileServer {
    pub fn start(dir: &Path) -> FileServer {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "0",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("http.server said {line:?}"));
        FileServer { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registries.d directory whose default gives `lookaside` and, if asked, attachments.
pub fn registries_d(dir: &Path, lookaside: &str, attachments: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut yaml = format!("default-docker:\n  lookaside: {lookaside}\n");
    if attachments {
        yaml += "  use-sigstore-attachments: true\n";
    }
    std::fs::write(dir.join("default.yaml"), yaml).unwrap();
    dir.to_path_buf()
}

/// The cosign payload for `digest` as `identity`.
pub fn cosign_payload(identity: &str, digest: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{identity}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
}

/// A P-256 key pair made by openssl: (private key, PEM public key).
pub fn p256_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    run_ok(
        Command::new("openssl")
            .args([
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-noout",
                "-out",
            ])
            .arg(&key),
    );
    run_ok(
        Command::new("openssl")
            .args(["ec", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public),
    );
    (key, public)
}

/// An ASN.1 DER ECDSA/SHA-256 signature over `payload`, base64, made by openssl.
pub fn p256_sign(dir: &Path, key: &Path, payload: &[u8]) -> String {
    use base64::Engine as _;
    let input = dir.join(format!("payload-{}", &sha(payload)[7..19]));
    std::fs::write(&input, payload).unwrap();
    let out = run_ok(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(key)
            .arg(&input),
    );
    base64::engine::general_purpose::STANDARD.encode(out.stdout)
}

/// Pushes a cosign attachment for `digest` into `repo`: the tag `sha256-HEX.sig`, an OCI
/// manifest with one simple-signing layer per `(payload, signature)`.
pub fn push_attachment(base: &str, repo: &str, digest: &str, sigs: &[(Vec<u8>, String)]) {
    let config = br#"{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
    push_blob(base, repo, config);
    let mut layers = Vec::new();
    for (payload, sig) in sigs {
        push_blob(base, repo, payload);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": payload.len(),
            "digest": sha(payload),
            "annotations": {"dev.cosignproject.cosign/signature": sig},
        }));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": sha(config)},
        "layers": layers,
    });
    let tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
    push_manifest(
        base,
        repo,
        &tag,
        &serde_json::to_vec(&manifest).unwrap(),
        "application/vnd.oci.image.manifest.v1+json",
    );
}
