//! Images the tests build themselves: tar layers (including hostile ones), configs, manifests
//! and indexes, pushed with the registry API.

use std::io::Write;

use sha2::{Digest as _, Sha256};

pub fn sha(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// One tar entry. Paths are written raw into the header, so hostile names are possible.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir(&'static str, u32),
    File(String, Vec<u8>, u32),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    Fifo(&'static str),
    CharDev(&'static str, u32, u32),
    /// A file with owner, mtime and xattrs (as PAX records).
    Rich {
        path: &'static str,
        data: Vec<u8>,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        xattrs: Vec<(&'static str, Vec<u8>)>,
    },
}

pub fn file(path: &str, data: &[u8], mode: u32) -> Entry {
    Entry::File(path.to_string(), data.to_vec(), mode)
}

fn header(kind: tar::EntryType, path: &str, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    let name = path.as_bytes();
    if name.len() <= 100 {
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
    } else {
        h.set_path(path).unwrap();
    }
    h
}

fn set_link(h: &mut tar::Header, target: &str) {
    let t = target.as_bytes();
    let old = h.as_old_mut();
    old.linkname = [0; 100];
    old.linkname[..t.len()].copy_from_slice(t);
}

/// An uncompressed tar stream of `entries`, in order.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            Entry::Dir(p, mode) => {
                let mut h = header(tar::EntryType::Directory, p, *mode, 0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Entry::File(p, data, mode) => {
                if p.len() > 100 {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    h.set_mtime(1_600_000_000);
                    h.set_uid(0);
                    h.set_gid(0);
                    b.append_data(&mut h, p, &data[..]).unwrap();
                } else {
                    let mut h = header(tar::EntryType::Regular, p, *mode, data.len() as u64);
                    h.set_cksum();
                    b.append(&h, &data[..]).unwrap();
                }
            }
            Entry::Symlink(p, t) | Entry::Hardlink(p, t) => {
                let kind = if matches!(e, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = header(kind, p, 0o777, 0);
                set_link(&mut h, t);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Entry::Fifo(p) => {
                let mut h = header(tar::EntryType::Fifo, p, 0o644, 0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Entry::CharDev(p, maj, min) => {
                let mut h = header(tar::EntryType::Char, p, 0o666, 0);
                h.set_device_major(*maj).unwrap();
                h.set_device_minor(*min).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Entry::Rich {
                path,
                data,
                mode,
                uid,
                gid,
                mtime,
                xattrs,
            } => {
                let pax: Vec<(String, &[u8])> = xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), &v[..]))
                    .collect();
                b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
                    .unwrap();
                let mut h = header(tar::EntryType::Regular, path, *mode, data.len() as u64);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_mtime(*mtime);
                h.set_cksum();
                b.append(&h, &data[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Docker,
    Oci,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Comp {
    Gzip,
    Zstd,
    None,
}

/// A built image: blobs and the manifest that ties them together.
#[derive(Clone)]
pub struct Image {
    pub blobs: Vec<Vec<u8>>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_type: &'static str,
}

impl Image {
    pub fn digest(&self) -> String {
        sha(&self.manifest)
    }
}

pub struct Spec {
    pub format: Format,
    pub comp: Comp,
    pub arch: &'static str,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Replaces the config's diff_ids (for hostile images).
    pub diff_ids: Option<Vec<String>>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            format: Format::Docker,
            comp: Comp::Gzip,
            arch: "amd64",
            cmd: vec!["/bin/sh".into()],
            entrypoint: vec![],
            env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
            user: None,
            workdir: None,
            diff_ids: None,
        }
    }
}

/// Builds an image from uncompressed layer tars.
pub fn build(layers: &[Vec<u8>], spec: &Spec) -> Image {
    let diff_ids: Vec<String> = spec
        .diff_ids
        .clone()
        .unwrap_or_else(|| layers.iter().map(|l| sha(l)).collect());
    let config = serde_json::json!({
        "architecture": spec.arch,
        "os": "linux",
        "config": {
            "Cmd": spec.cmd,
            "Entrypoint": if spec.entrypoint.is_empty() { serde_json::Value::Null } else { serde_json::json!(spec.entrypoint) },
            "Env": spec.env,
            "User": spec.user.clone().unwrap_or_default(),
            "WorkingDir": spec.workdir.clone().unwrap_or_default(),
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "skiff tests"})).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config).unwrap();
    let (mt, cfg_t, layer_t) = match (spec.format, spec.comp) {
        (Format::Docker, _) => (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
        (Format::Oci, Comp::Gzip) => (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (Format::Oci, Comp::Zstd) => (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (Format::Oci, Comp::None) => (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar",
        ),
    };
    let blobs: Vec<Vec<u8>> = layers
        .iter()
        .map(|l| match (spec.format, spec.comp) {
            (Format::Docker, _) | (_, Comp::Gzip) => gzip(l),
            (_, Comp::Zstd) => zstd(l),
            (_, Comp::None) => l.clone(),
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": {"mediaType": cfg_t, "size": config.len(), "digest": sha(&config)},
        "layers": blobs.iter().map(|b| serde_json::json!({"mediaType": layer_t, "size": b.len(), "digest": sha(b)})).collect::<Vec<_>>(),
    });
    Image {
        blobs,
        config,
        manifest: serde_json::to_vec_pretty(&manifest).unwrap(),
        manifest_type: mt,
    }
}

/// An OCI index over `(image, platform)` pairs.
pub fn index(entries: &[(&Image, &str, Option<&str>)]) -> Vec<u8> {
    let manifests: Vec<_> = entries
        .iter()
        .map(|(img, arch, variant)| {
            let mut p = serde_json::json!({"os": "linux", "architecture": arch});
            if let Some(v) = variant {
                p["variant"] = serde_json::json!(v);
            }
            serde_json::json!({"mediaType": img.manifest_type, "size": img.manifest.len(), "digest": img.digest(), "platform": p})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap()
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// Uploads a blob monolithically.
pub fn push_blob(base: &str, repo: &str, blob: &[u8]) {
    let c = http();
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "start upload: {:?}", r.text());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let loc = if loc.starts_with("http") {
        loc
    } else {
        format!("{base}{loc}")
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={}", sha(blob)))
        .header("content-type", "application/octet-stream")
        .body(blob.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "upload: {:?}", r.text());
}

pub fn push_manifest(base: &str, repo: &str, reference: &str, body: &[u8], media_type: &str) {
    let r = http()
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "push manifest: {:?}", r.text());
}

/// Pushes an image's blobs and manifest under `tag`; returns the manifest digest.
pub fn push(base: &str, repo: &str, tag: &str, img: &Image) -> String {
    for b in img.blobs.iter().chain(std::iter::once(&img.config)) {
        push_blob(base, repo, b);
    }
    push_manifest(base, repo, tag, &img.manifest, img.manifest_type);
    img.digest()
}

/// Deterministic incompressible bytes (so layer sizes are real).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
