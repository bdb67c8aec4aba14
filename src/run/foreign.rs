//! Whether this host can exec an image built for another architecture: only through a
//! binfmt_misc handler (qemu-user-static's) that the kernel would pick for the image's binaries.
//! Asked before anything is mounted, so a foreign image fails with a sentence, not ENOEXEC.
//!
//! The decision is made on the image config's architecture, not on the entrypoint's file: the
//! entrypoint is often a script or a symlink into a lower layer, and every binary of an image has
//! its architecture's ELF header. That header (class, byte order, e_machine) is matched against
//! each enabled handler's magic and mask, exactly as the kernel matches, so a handler for another
//! machine, a disabled one or a disabled binfmt_misc never counts.

use std::path::Path;

use super::RunError;
use crate::manifest::Platform;

/// Where the kernel's binfmt_misc handlers are listed, one file each.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// The start of every ELF executable of one architecture (e_ident up to EI_VERSION, e_type
/// ET_EXEC, e_machine): what qemu's handlers match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElfArch {
    /// The kernel's and qemu's name for it (`aarch64`), as in `qemu-aarch64`.
    pub name: &'static str,
    class64: bool,
    big_endian: bool,
    machine: u16,
}

impl ElfArch {
    /// The ELF identity of an OCI architecture name (GOARCH spelling), if skiff knows it.
    pub fn of(oci_arch: &str) -> Option<ElfArch> {
        let a = |name, class64, big_endian, machine| ElfArch {
            name,
            class64,
            big_endian,
            machine,
        };
        Some(match oci_arch {
            "amd64" => a("x86_64", true, false, 62),
            "arm64" => a("aarch64", true, false, 183),
            "arm" => a("arm", false, false, 40),
            "386" => a("i386", false, false, 3),
            "ppc64le" => a("ppc64le", true, false, 21),
            "s390x" => a("s390x", true, true, 22),
            "riscv64" => a("riscv64", true, false, 243),
            _ => return None,
        })
    }

    /// The first 20 bytes of an executable of this architecture.
    fn header(&self) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = if self.class64 { 2 } else { 1 };
        h[5] = if self.big_endian { 2 } else { 1 };
        h[6] = 1; // EV_CURRENT
        let (et_exec, machine) = (2u16, self.machine);
        let put = |v: u16| {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        h[16..18].copy_from_slice(&put(et_exec));
        h[18..20].copy_from_slice(&put(machine));
        h
    }
}

/// One binfmt_misc entry, as `/proc/sys/fs/binfmt_misc/NAME` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handler {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl Handler {
    /// Parses an entry's text. Extension-matching entries (`extension .py`) and anything
    /// malformed give `None`: they never make an ELF binary runnable.
    pub fn parse(name: &str, text: &str) -> Option<Handler> {
        let mut h = Handler {
            name: name.to_string(),
            enabled: false,
            interpreter: String::new(),
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        };
        for line in text.lines() {
            match line.split_once(' ') {
                None if line == "enabled" => h.enabled = true,
                Some(("interpreter", v)) => h.interpreter = v.to_string(),
                Some(("offset", v)) => h.offset = v.parse().ok().filter(|o| *o <= 128)?,
                Some(("magic", v)) => h.magic = hex(v)?,
                Some(("mask", v)) => h.mask = hex(v)?,
                _ => {}
            }
        }
        (!h.magic.is_empty() && (h.mask.is_empty() || h.mask.len() == h.magic.len())).then_some(h)
    }

    /// The kernel's test: every byte of the file from `offset`, masked, equals the magic.
    fn matches(&self, file_start: &[u8]) -> bool {
        let Some(window) = file_start.get(self.offset..self.offset + self.magic.len()) else {
            return false;
        };
        window.iter().enumerate().all(|(i, b)| {
            let m = self.mask.get(i).copied().unwrap_or(0xff);
            b & m == self.magic[i] & m
        })
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What the kernel offers: whether binfmt_misc is on at all, and its handlers.
#[derive(Clone, Debug, Default)]
pub struct Binfmt {
    pub enabled: bool,
    pub handlers: Vec<Handler>,
}

impl Binfmt {
    /// Reads `dir` (binfmt_misc's mount point). Not mounted or unreadable: no handlers.
    pub fn read(dir: &Path) -> Binfmt {
        let enabled =
            std::fs::read_to_string(dir.join("status")).is_ok_and(|s| s.trim() == "enabled");
        let mut handlers = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name == "status" || name == "register" {
                    continue;
                }
                // Each entry is a few hundred bytes; a bigger one is not an entry.
                let Ok(text) = std::fs::read_to_string(e.path()) else {
                    continue;
                };
                if let Some(h) = Handler::parse(&name, &text[..text.len().min(4096)]) {
                    handlers.push(h);
                }
            }
        }
        Binfmt { enabled, handlers }
    }
}

/// Why the image cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForeignError {
    #[error("this image is {image}; this host cannot run it: no binfmt_misc handler for {arch} (install qemu-user-static, whose handlers the kernel then uses)")]
    NoHandler {
        image: Box<Platform>,
        arch: &'static str,
    },
    #[error("this image is {image}; this host ({host}) cannot run it: skiff knows no ELF machine for {}", .image.architecture)]
    UnknownArch {
        image: Box<Platform>,
        host: Box<Platform>,
    },
}

/// How the payload will run: natively, or through the named binfmt_misc handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runs {
    Natively,
    Through(String),
}

/// The decision, pure: an image of the host's architecture (or i386 on x86-64) runs natively;
/// any other needs an enabled handler (binfmt_misc itself enabled) that matches the
/// architecture's ELF header.
pub fn decide(image: &Platform, host: &Platform, binfmt: &Binfmt) -> Result<Runs, ForeignError> {
    let native = image.architecture == host.architecture
        || (image.architecture == "386" && host.architecture == "amd64");
    if native {
        return Ok(Runs::Natively);
    }
    let Some(elf) = ElfArch::of(&image.architecture) else {
        return Err(ForeignError::UnknownArch {
            image: Box::new(image.clone()),
            host: Box::new(host.clone()),
        });
    };
    let header = elf.header();
    binfmt
        .handlers
        .iter()
        .find(|h| binfmt.enabled && h.enabled && h.matches(&header))
        .map(|h| Runs::Through(h.name.clone()))
        .ok_or_else(|| ForeignError::NoHandler {
            image: Box::new(image.clone()),
            arch: elf.name,
        })
}

/// The check `skiff run` makes before it mounts anything, against this kernel.
pub fn check(image: &Platform) -> Result<Runs, RunError> {
    let host = Platform::host();
    if image.architecture == host.architecture {
        return Ok(Runs::Natively);
    }
    let runs = decide(image, &host, &Binfmt::read(Path::new(BINFMT_MISC)))?;
    if let Runs::Through(h) = &runs {
        tracing::info!(image = %image, handler = %h, "running a foreign image through binfmt_misc");
    }
    Ok(runs)
}

#[cfg(test)]
mod tests;
