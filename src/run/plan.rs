//! The mount plan: pure data, computed before any namespace exists, printable with
//! `--dry-run` and testable without root. `apply` carries it out.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::fs::root::NodeKind;

/// Where a mount goes: a path skiff owns on the host side, or a path inside the new root
/// (resolved there, confined to it, when the op is applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Host(PathBuf),
    Inside(String),
}

/// A change on the host side that the run needs, made only when the run really happens (never
/// by `--dry-run`): a volume's source directory, a profile's data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostStep {
    /// Creates the directory (and its parents) if it is missing, then hands it to `owner`.
    Dir {
        path: PathBuf,
        create: bool,
        owner: Option<(u32, u32)>,
    },
    /// Makes an `rshared` volume's source a shared mount point of its own (binding it onto
    /// itself first when it is not a mount point), so that it alone stays a peer of the host's
    /// when every other mount is made a slave. It stays after the run: kubelet's mounts under
    /// it must be seen by the host anyway, and the next start finds it already shared.
    SharedMountPoint { path: PathBuf, bind: bool },
}

impl fmt::Display for HostStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostStep::Dir {
                path,
                create,
                owner,
            } => {
                let p = path.display();
                match (create, owner) {
                    (true, Some((u, g))) => write!(f, "host: mkdir -p {p}; chown {u}:{g} {p}"),
                    (true, None) => write!(f, "host: mkdir -p {p}"),
                    (false, Some((u, g))) => write!(f, "host: chown {u}:{g} {p}"),
                    (false, None) => write!(f, "host: {p} exists"),
                }
            }
            HostStep::SharedMountPoint { path, bind } => {
                let p = path.display();
                if *bind {
                    write!(f, "host: mount --rbind {p} {p}; mount --make-shared {p}")
                } else {
                    write!(f, "host: mount --make-shared {p}")
                }
            }
        }
    }
}

/// The overlay's option string, exactly as mounted, and the directory it is mounted from:
/// lower paths relative to their common directory keep the string short (it is limited to a
/// page) for images with many layers.
pub fn overlay_data(lowers: &[PathBuf], upper: &Path, work: &Path) -> (Option<PathBuf>, String) {
    let parent = lowers
        .first()
        .and_then(|l| l.parent())
        .map(Path::to_path_buf);
    let relative = parent.filter(|p| lowers.iter().all(|l| l.parent() == Some(p.as_path())));
    let lower: Vec<String> = match &relative {
        Some(_) => lowers
            .iter()
            .filter_map(|l| l.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect(),
        None => lowers.iter().map(|l| l.display().to_string()).collect(),
    };
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    (relative, data)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountOp {
    /// Every mount becomes a slave: host mounts still propagate in, none leak out. The mounts
    /// in `keep_shared` (sources of `rshared` volumes) stay peers of the host's, so mounts the
    /// payload makes below them appear on the host, as kubelet needs.
    MakeSlave {
        keep_shared: Vec<PathBuf>,
    },
    /// A directory on the host side, inside skiff's own scratch tmpfs.
    HostDir(PathBuf),
    Tmpfs {
        target: Target,
        options: String,
    },
    /// The image's layers (top first) with a tmpfs upper, so mountpoints can be made
    /// without touching the cached layers.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    Proc {
        target: Target,
    },
    Bind {
        source: PathBuf,
        target: Target,
        kind: NodeKind,
        recursive: bool,
        readonly: bool,
        /// Make the mount rshared (bidirectional propagation).
        shared: bool,
    },
    /// A symlink in the rootfs's tmpfs upper (the cached layers are not touched).
    Symlink {
        path: String,
        target: String,
    },
    /// Makes the rootfs mount itself read-only (its submounts keep their own flags).
    RemountReadOnly(PathBuf),
    PivotRoot(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Host(p) => write!(f, "{}", p.display()),
            Target::Inside(p) => write!(f, "<root>{p}"),
        }
    }
}

impl fmt::Display for MountOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountOp::MakeSlave { keep_shared } if keep_shared.is_empty() => {
                write!(f, "make / rslave")
            }
            MountOp::MakeSlave { keep_shared } => write!(
                f,
                "make every mount slave except {}",
                keep_shared
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            MountOp::HostDir(p) => write!(f, "mkdir {}", p.display()),
            MountOp::Tmpfs { target, options } => write!(f, "tmpfs {target} ({options})"),
            MountOp::Overlay {
                lowers,
                upper,
                work,
                target,
            } => {
                let (dir, data) = overlay_data(lowers, upper, work);
                write!(f, "overlay {} ({data})", target.display())?;
                match dir {
                    Some(d) => write!(f, " from {}", d.display()),
                    None => Ok(()),
                }
            }
            MountOp::Proc { target } => write!(f, "proc {target}"),
            MountOp::Bind {
                source,
                target,
                recursive,
                readonly,
                ..
            } => write!(
                f,
                "{}bind {} -> {target}{}",
                if *recursive { "r" } else { "" },
                source.display(),
                if *readonly { " (ro)" } else { "" }
            ),
            MountOp::Symlink { path, target } => write!(f, "symlink <root>{path} -> {target}"),
            MountOp::RemountReadOnly(p) => write!(f, "remount {} read-only", p.display()),
            MountOp::PivotRoot(p) => write!(f, "pivot_root {}", p.display()),
        }
    }
}

/// A bind mount from the host: a volume or a preset's path, already checked to exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub kind: NodeKind,
    pub readonly: bool,
    pub recursive: bool,
    pub shared: bool,
}

pub use crate::unpack::Rootfs;

pub struct Input {
    pub rootfs: Rootfs,
    /// A private directory for this run: the tmpfs with the upper layer and the new root.
    pub scratch: PathBuf,
    pub writable: bool,
    pub volumes: Vec<Volume>,
    pub symlinks: Vec<(String, String)>,
}

/// The whole mount sequence, in order: propagation cut first, then the root, the kernel
/// filesystems, presets and volumes inside it, the read-only remount, and pivot_root last.
pub fn plan(input: &Input) -> Vec<MountOp> {
    let root = input.scratch.join("root");
    let keep_shared = input
        .volumes
        .iter()
        .filter(|v| v.shared)
        .map(|v| v.source.clone())
        .collect();
    let mut ops = vec![
        MountOp::MakeSlave { keep_shared },
        MountOp::Tmpfs {
            target: Target::Host(input.scratch.clone()),
            options: "mode=0755".into(),
        },
    ];
    ops.extend(rootfs_ops(&input.rootfs, &input.scratch, &root));
    ops.extend(kernel_ops());
    ops.extend(
        input
            .symlinks
            .iter()
            .map(|(path, target)| symlink_op(&input.rootfs, path, target)),
    );
    ops.extend(input.volumes.iter().map(|v| MountOp::Bind {
        source: v.source.clone(),
        target: Target::Inside(v.target.clone()),
        kind: v.kind,
        recursive: v.recursive,
        readonly: v.readonly,
        shared: v.shared,
    }));
    if !input.writable {
        ops.push(MountOp::RemountReadOnly(root.clone()));
    }
    ops.push(MountOp::PivotRoot(root));
    ops
}

/// The new root at `root`: an overlay of the layers (top first) with an upper in the scratch
/// tmpfs, or the flat tree bound in.
fn rootfs_ops(rootfs: &Rootfs, scratch: &Path, root: &Path) -> Vec<MountOp> {
    match rootfs {
        Rootfs::Overlay(layers) => {
            let (upper, work) = (scratch.join("upper"), scratch.join("work"));
            vec![
                MountOp::HostDir(upper.clone()),
                MountOp::HostDir(work.clone()),
                MountOp::HostDir(root.to_path_buf()),
                MountOp::Overlay {
                    lowers: layers.iter().rev().cloned().collect(),
                    upper,
                    work,
                    target: root.to_path_buf(),
                },
            ]
        }
        Rootfs::Flat(tree) => vec![
            MountOp::HostDir(root.to_path_buf()),
            MountOp::Bind {
                source: tree.clone(),
                target: Target::Host(root.to_path_buf()),
                kind: NodeKind::Dir,
                recursive: false,
                readonly: false,
                shared: false,
            },
        ],
    }
}

/// /proc of the payload's own, the host's /sys and /dev, fresh /tmp and /run.
fn kernel_ops() -> Vec<MountOp> {
    let mut ops = vec![MountOp::Proc {
        target: Target::Inside("/proc".into()),
    }];
    for dir in ["/sys", "/dev"] {
        ops.push(MountOp::Bind {
            source: dir.into(),
            target: Target::Inside(dir.into()),
            kind: NodeKind::Dir,
            recursive: true,
            readonly: false,
            shared: false,
        });
    }
    for (dir, mode) in [("/tmp", "mode=1777"), ("/run", "mode=0755")] {
        ops.push(MountOp::Tmpfs {
            target: Target::Inside(dir.into()),
            options: mode.into(),
        });
    }
    ops
}

/// A preset's symlink: in the overlay's upper; a flat tree is shared and never written, so
/// there the file the link names is bound instead.
fn symlink_op(rootfs: &Rootfs, path: &str, target: &str) -> MountOp {
    match rootfs {
        Rootfs::Overlay(_) => MountOp::Symlink {
            path: path.to_string(),
            target: target.to_string(),
        },
        Rootfs::Flat(_) => MountOp::Bind {
            source: target.into(),
            target: Target::Inside(path.to_string()),
            kind: NodeKind::File,
            recursive: false,
            readonly: true,
            shared: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(writable: bool) -> Input {
        Input {
            rootfs: Rootfs::Overlay(vec!["/s/layers/a".into(), "/s/layers/b".into()]),
            scratch: "/s/tmp/run.1.0".into(),
            writable,
            volumes: vec![Volume {
                source: "/run/dbus/system_bus_socket".into(),
                target: "/run/dbus/system_bus_socket".into(),
                kind: NodeKind::File,
                readonly: false,
                recursive: false,
                shared: false,
            }],
            symlinks: vec![(
                "/etc/resolv.conf".into(),
                "/run/systemd/resolve/resolv.conf".into(),
            )],
        }
    }

    #[test]
    fn order_is_safe() {
        let ops = plan(&input(false));
        assert_eq!(
            ops[0],
            MountOp::MakeSlave {
                keep_shared: vec![]
            },
            "nothing is mounted before propagation is cut"
        );
        let pos = |f: &dyn Fn(&MountOp) -> bool| ops.iter().position(f).unwrap();
        let overlay = pos(&|o| matches!(o, MountOp::Overlay { .. }));
        let run =
            pos(&|o| matches!(o, MountOp::Tmpfs { target: Target::Inside(p), .. } if p == "/run"));
        let dbus = pos(
            &|o| matches!(o, MountOp::Bind { target: Target::Inside(p), .. } if p.starts_with("/run/dbus")),
        );
        let ro = pos(&|o| matches!(o, MountOp::RemountReadOnly(_)));
        assert!(overlay < run && run < dbus && dbus < ro, "{ops:?}");
        assert!(matches!(ops.last(), Some(MountOp::PivotRoot(_))));
        let MountOp::Overlay { lowers, .. } = &ops[overlay] else {
            unreachable!()
        };
        assert_eq!(lowers[0], PathBuf::from("/s/layers/b"), "top layer first");
        assert_eq!(
            ops[overlay].to_string(),
            "overlay /s/tmp/run.1.0/root (lowerdir=b:a,upperdir=/s/tmp/run.1.0/upper,workdir=/s/tmp/run.1.0/work) from /s/layers",
            "the printed op is the mount's real option string"
        );
    }

    #[test]
    fn flat_binds_the_tree_and_never_writes_it() {
        let mut i = input(false);
        i.rootfs = Rootfs::Flat("/s/rootfs/abc".into());
        let ops = plan(&i);
        assert!(!ops
            .iter()
            .any(|o| matches!(o, MountOp::Overlay { .. } | MountOp::Symlink { .. })));
        assert!(ops.iter().any(|o| matches!(o, MountOp::Bind { source, target: Target::Host(_), .. } if source == &PathBuf::from("/s/rootfs/abc"))));
        assert!(ops.iter().any(|o| matches!(o, MountOp::Bind { target: Target::Inside(p), readonly: true, .. } if p == "/etc/resolv.conf")));
        assert!(ops.iter().any(|o| matches!(o, MountOp::RemountReadOnly(_))));
    }

    #[test]
    fn writable_skips_the_read_only_remount() {
        assert!(!plan(&input(true))
            .iter()
            .any(|o| matches!(o, MountOp::RemountReadOnly(_))));
        let text: Vec<String> = plan(&input(false)).iter().map(|o| o.to_string()).collect();
        assert!(
            text.iter()
                .any(|l| l.contains("bind /run/dbus/system_bus_socket -> <root>/run/dbus")),
            "{text:?}"
        );
    }
}
