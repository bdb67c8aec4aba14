//! `--host-*` presets: what host services need inside, as volumes and symlinks.

use std::path::PathBuf;

use super::plan::Volume;
use super::volume::{resolve_link, VolumeSpec};
use super::RunError;

#[derive(Clone, Debug, Default)]
pub struct Presets {
    pub systemd: bool,
    pub dbus: bool,
    /// `--host-etcd`, with the client certificate directory (`--etcd-dir`).
    pub etcd: Option<PathBuf>,
    pub dns: bool,
    pub certs: bool,
}

const DBUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// Where etcd's client certificates live on a Container Linux host (`--etcd-dir`).
pub const DEFAULT_ETCD_SSL_DIR: &str = "/etc/ssl/etcd";

/// What the presets add to a run.
#[derive(Debug, Default)]
pub struct Resolved {
    pub volumes: Vec<Volume>,
    /// (path inside, link target)
    pub symlinks: Vec<(String, String)>,
    /// `NAME=VALUE` items.
    pub env: Vec<String>,
}

/// Volumes, symlinks and environment for the chosen presets; `host` reads skiff's environment.
pub fn resolve(p: &Presets, host: &dyn Fn(&str) -> Option<String>) -> Result<Resolved, RunError> {
    let mut specs: Vec<VolumeSpec> = Vec::new();
    let mut symlinks = Vec::new();
    let mut env = Vec::new();
    if p.systemd {
        specs.push(VolumeSpec::new("/run/systemd/system", "/run/systemd/system").ro());
        specs.push(VolumeSpec::new("/run/systemd/journal", "/run/systemd/journal").optional());
        specs.push(VolumeSpec::new("/etc/machine-id", "/etc/machine-id").ro());
    }
    // The notify socket: a path socket is bound at the same path; an abstract one (`@…`)
    // works as is, since the network namespace is shared.
    if let Some(sock) = host("NOTIFY_SOCKET").filter(|s| s.starts_with('/')) {
        specs.push(VolumeSpec::new(&sock, &sock));
    }
    if p.dbus {
        specs.push(VolumeSpec::new(DBUS_SOCKET, DBUS_SOCKET));
        env.push(format!("DBUS_SYSTEM_BUS_ADDRESS=unix:path={DBUS_SOCKET}"));
    }
    if let Some(dir) = &p.etcd {
        let target = dir.to_string_lossy().into_owned();
        specs.push(VolumeSpec::new(dir, &target).ro().optional());
        specs.push(VolumeSpec::new("/run/etcd", "/run/etcd").optional());
    }
    if p.dns {
        // Minimal hosts may have neither file: then the image's own stay.
        specs.push(VolumeSpec::new("/etc/hosts", "/etc/hosts").ro().optional());
        match resolve_link(std::path::Path::new("/etc/resolv.conf")) {
            // Bind the directory the host's symlink points into, and point the image's
            // /etc/resolv.conf at the same file: it then follows the host's rewrites.
            Some(target) => {
                let dir = target
                    .parent()
                    .map(|d| d.to_path_buf())
                    .unwrap_or_else(|| "/".into());
                let d = dir.to_string_lossy().into_owned();
                specs.push(VolumeSpec::new(&dir, &d).ro());
                symlinks.push((
                    "/etc/resolv.conf".to_string(),
                    target.to_string_lossy().into_owned(),
                ));
            }
            None => specs.push(
                VolumeSpec::new("/etc/resolv.conf", "/etc/resolv.conf")
                    .ro()
                    .optional(),
            ),
        }
    }
    if p.certs {
        specs.push(VolumeSpec::new("/etc/ssl/certs", "/etc/ssl/certs").ro());
        specs.push(
            VolumeSpec::new("/usr/share/ca-certificates", "/usr/share/ca-certificates")
                .ro()
                .optional(),
        );
    }
    let mut volumes = Vec::new();
    for s in specs {
        // Presets only bind what exists: they never ask for a host change.
        volumes.extend(s.resolve()?.map(|(v, _)| v));
    }
    Ok(Resolved {
        volumes,
        symlinks,
        env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_paths_and_abstract() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("notify").to_string_lossy().into_owned();
        std::fs::write(&sock, b"").unwrap();
        let s = sock.clone();
        let v = resolve(&Presets::default(), &move |k| {
            (k == "NOTIFY_SOCKET").then(|| s.clone())
        })
        .unwrap()
        .volumes;
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].target, sock);
        let v = resolve(&Presets::default(), &|k| {
            (k == "NOTIFY_SOCKET").then(|| "@abstract".to_string())
        })
        .unwrap()
        .volumes;
        assert!(v.is_empty());
    }

    #[test]
    fn missing_required_preset_paths_are_errors() {
        let p = Presets {
            dbus: true,
            ..Presets::default()
        };
        if !std::path::Path::new(DBUS_SOCKET).exists() {
            let e = resolve(&p, &|_| None).unwrap_err().to_string();
            assert!(e.contains(DBUS_SOCKET), "{e}");
        }
        let etcd = Presets {
            etcd: Some("/nonexistent/etcd".into()),
            ..Presets::default()
        };
        assert!(resolve(&etcd, &|_| None).is_ok(), "etcd paths are optional");
    }
}
