//! Carrying out a mount plan through a narrow `Sys`: the real one makes syscalls, the test
//! double records them.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::plan::{MountOp, Target};
use super::RunError;
use crate::fs::root::{InnerPath, NodeKind, Root};

pub trait Sys {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno>;
    fn mkdir(&mut self, path: &Path) -> Result<(), Errno>;
    fn chdir(&mut self, path: &Path) -> Result<(), Errno>;
    /// `pivot_root` into `new_root` and detach the old root.
    fn pivot_root(&mut self, new_root: &Path) -> Result<(), Errno>;
    /// A mountpoint inside `root`, resolved and created confined to it; the returned path
    /// stays valid until the plan is done.
    fn inside(&mut self, root: &Path, path: &str, kind: NodeKind) -> Result<PathBuf, RunError>;
    fn symlink_inside(&mut self, root: &Path, path: &str, target: &str) -> Result<(), RunError>;
    /// Every mount point in this namespace, parents first.
    fn mount_points(&mut self) -> Result<Vec<PathBuf>, Errno>;
}

fn op_err(op: &MountOp) -> impl FnOnce(Errno) -> RunError + '_ {
    move |source| RunError::Mount {
        op: op.to_string(),
        source,
    }
}

/// Applies every op in order; the first failure stops and names the op.
pub fn apply(ops: &[MountOp], sys: &mut dyn Sys) -> Result<(), RunError> {
    let root = ops
        .iter()
        .find_map(|o| match o {
            MountOp::PivotRoot(r) => Some(r.clone()),
            _ => None,
        })
        .ok_or(RunError::NoPivot)?;
    for op in ops {
        apply_one(op, &root, sys)?;
    }
    Ok(())
}

/// Where a target is now: a host path as it is, a path inside resolved confined to the root.
fn target(sys: &mut dyn Sys, root: &Path, t: &Target, kind: NodeKind) -> Result<PathBuf, RunError> {
    match t {
        Target::Host(p) => Ok(p.clone()),
        Target::Inside(p) => sys.inside(root, p, kind),
    }
}

fn apply_one(op: &MountOp, root: &Path, sys: &mut dyn Sys) -> Result<(), RunError> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    match op {
        MountOp::MakeSlave { keep_shared } if keep_shared.is_empty() => sys
            .mount(
                None,
                Path::new("/"),
                None,
                MsFlags::MS_REC | MsFlags::MS_SLAVE,
                None,
            )
            .map_err(op_err(op)),
        MountOp::MakeSlave { keep_shared } => {
            for mp in sys.mount_points().map_err(op_err(op))? {
                if !keep_shared.contains(&mp) {
                    sys.mount(None, &mp, None, MsFlags::MS_SLAVE, None)
                        .map_err(op_err(op))?;
                }
            }
            Ok(())
        }
        MountOp::HostDir(p) => sys.mkdir(p).map_err(op_err(op)),
        MountOp::Tmpfs { target: t, options } => {
            let t = target(sys, root, t, NodeKind::Dir)?;
            let tmpfs = Some(Path::new("tmpfs"));
            sys.mount(tmpfs, &t, Some("tmpfs"), nosuid, Some(options))
                .map_err(op_err(op))
        }
        MountOp::Overlay {
            lowers,
            upper,
            work,
            target: t,
        } => {
            let (dir, data) = super::plan::overlay_data(lowers, upper, work);
            if let Some(d) = &dir {
                sys.chdir(d).map_err(op_err(op))?;
            }
            let overlay = Some(Path::new("overlay"));
            sys.mount(overlay, t, Some("overlay"), MsFlags::empty(), Some(&data))
                .map_err(|e| match e {
                    Errno::ENODEV => RunError::NoOverlayfs,
                    e => op_err(op)(e),
                })?;
            sys.chdir(Path::new("/")).map_err(op_err(op))
        }
        MountOp::Proc { target: t } => {
            let t = target(sys, root, t, NodeKind::Dir)?;
            let proc = Some(Path::new("proc"));
            sys.mount(proc, &t, Some("proc"), nosuid | MsFlags::MS_NOEXEC, None)
                .map_err(op_err(op))
        }
        MountOp::Bind { .. } => bind(op, root, sys),
        MountOp::Symlink { path, target: link } => sys.symlink_inside(root, path, link),
        MountOp::RemountReadOnly(p) => {
            // Only this mount's flag: the overlay is already a mount root, and a self-bind
            // here would hide every submount made so far.
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            sys.mount(None, p, None, flags, None).map_err(op_err(op))
        }
        MountOp::PivotRoot(p) => sys.pivot_root(p).map_err(op_err(op)),
    }
}

/// A bind mount, then (each through a fresh resolution, since the fd from before the bind
/// names the covered directory) its read-only remount and its shared propagation.
fn bind(op: &MountOp, root: &Path, sys: &mut dyn Sys) -> Result<(), RunError> {
    let MountOp::Bind {
        source,
        target: spec,
        kind,
        recursive,
        readonly,
        shared,
    } = op
    else {
        // Only called for a Bind.
        return Ok(());
    };
    let rec = if *recursive {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    let t = target(sys, root, spec, *kind)?;
    sys.mount(Some(source), &t, None, MsFlags::MS_BIND | rec, None)
        .map_err(op_err(op))?;
    if *readonly {
        let t = target(sys, root, spec, *kind)?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | rec;
        sys.mount(None, &t, None, flags, None).map_err(op_err(op))?;
    }
    if *shared {
        let t = target(sys, root, spec, *kind)?;
        sys.mount(None, &t, None, MsFlags::MS_SHARED | MsFlags::MS_REC, None)
            .map_err(op_err(op))?;
    }
    Ok(())
}

/// The real thing.
#[derive(Default)]
pub struct Linux {
    held: Vec<OwnedFd>,
}

fn inner(path: &str) -> Result<InnerPath, RunError> {
    InnerPath::parse(path.as_bytes())?.ok_or_else(|| RunError::RootTarget(path.to_string()))
}

impl Sys for Linux {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn mkdir(&mut self, path: &Path) -> Result<(), Errno> {
        match nix::unistd::mkdir(path, nix::sys::stat::Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn chdir(&mut self, path: &Path) -> Result<(), Errno> {
        nix::unistd::chdir(path)
    }

    fn pivot_root(&mut self, new_root: &Path) -> Result<(), Errno> {
        self.held.clear();
        nix::unistd::chdir(new_root)?;
        // pivot_root(".", ".") stacks the old root on top of the new one; detaching it
        // leaves only the new root, with no path back to the host's tree.
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")
    }

    fn inside(&mut self, root: &Path, path: &str, kind: NodeKind) -> Result<PathBuf, RunError> {
        let r = Root::open(root)?;
        let fd = r.mountpoint(&inner(path)?, kind)?;
        let p = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        self.held.push(fd);
        Ok(p)
    }

    fn mount_points(&mut self) -> Result<Vec<PathBuf>, Errno> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|_| Errno::EIO)?;
        Ok(super::mountinfo::parse(&text)
            .into_iter()
            .map(|m| m.mount_point)
            .collect())
    }

    fn symlink_inside(&mut self, root: &Path, path: &str, target: &str) -> Result<(), RunError> {
        let r = Root::open(root)?;
        let p = inner(path)?;
        r.parent(&p, true)?.symlink(target.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::{plan, Input, Rootfs, Volume};
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Call {
        Mount(
            Option<PathBuf>,
            PathBuf,
            Option<String>,
            MsFlags,
            Option<String>,
        ),
        Mkdir(PathBuf),
        Chdir(PathBuf),
        Pivot(PathBuf),
        Inside(String),
        Symlink(String, String),
    }

    #[derive(Default)]
    struct Recorder(Vec<Call>);

    impl Sys for Recorder {
        fn mount(
            &mut self,
            s: Option<&Path>,
            t: &Path,
            f: Option<&str>,
            fl: MsFlags,
            d: Option<&str>,
        ) -> Result<(), Errno> {
            self.0.push(Call::Mount(
                s.map(Path::to_path_buf),
                t.to_path_buf(),
                f.map(String::from),
                fl,
                d.map(String::from),
            ));
            Ok(())
        }
        fn mkdir(&mut self, p: &Path) -> Result<(), Errno> {
            self.0.push(Call::Mkdir(p.into()));
            Ok(())
        }
        fn chdir(&mut self, p: &Path) -> Result<(), Errno> {
            self.0.push(Call::Chdir(p.into()));
            Ok(())
        }
        fn pivot_root(&mut self, p: &Path) -> Result<(), Errno> {
            self.0.push(Call::Pivot(p.into()));
            Ok(())
        }
        fn inside(&mut self, _r: &Path, p: &str, _k: NodeKind) -> Result<PathBuf, RunError> {
            self.0.push(Call::Inside(p.into()));
            Ok(PathBuf::from(format!("/fd{p}")))
        }
        fn symlink_inside(&mut self, _r: &Path, p: &str, t: &str) -> Result<(), RunError> {
            self.0.push(Call::Symlink(p.into(), t.into()));
            Ok(())
        }
        fn mount_points(&mut self) -> Result<Vec<PathBuf>, Errno> {
            Ok(vec!["/".into(), "/var/lib/kubelet".into(), "/proc".into()])
        }
    }

    #[test]
    fn rshared_sources_stay_peers_of_the_host() {
        let ops = vec![
            MountOp::MakeSlave {
                keep_shared: vec!["/var/lib/kubelet".into()],
            },
            MountOp::PivotRoot("/r".into()),
        ];
        let mut rec = Recorder::default();
        apply(&ops, &mut rec).unwrap();
        let slaved: Vec<_> = rec
            .0
            .iter()
            .filter_map(|c| match c {
                Call::Mount(None, t, None, f, None) if *f == MsFlags::MS_SLAVE => Some(t.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(slaved, [PathBuf::from("/"), PathBuf::from("/proc")]);
    }

    #[test]
    fn overlay_uses_short_relative_lowers_and_ro_binds_remount() {
        let ops = plan(&Input {
            rootfs: Rootfs::Overlay(vec!["/s/layers/aaa".into(), "/s/layers/bbb".into()]),
            scratch: "/s/tmp/run".into(),
            writable: false,
            volumes: vec![Volume {
                source: "/etc/machine-id".into(),
                target: "/etc/machine-id".into(),
                kind: NodeKind::File,
                readonly: true,
                recursive: false,
                shared: false,
            }],
            symlinks: vec![],
        });
        let mut rec = Recorder::default();
        apply(&ops, &mut rec).unwrap();
        let overlay = rec
            .0
            .iter()
            .position(|c| matches!(c, Call::Mount(_, _, Some(f), _, _) if f == "overlay"))
            .unwrap();
        assert_eq!(rec.0[overlay - 1], Call::Chdir("/s/layers".into()));
        let Call::Mount(_, target, _, _, Some(data)) = &rec.0[overlay] else {
            unreachable!()
        };
        assert_eq!(target, Path::new("/s/tmp/run/root"));
        assert_eq!(
            data,
            "lowerdir=bbb:aaa,upperdir=/s/tmp/run/upper,workdir=/s/tmp/run/work"
        );
        let mid = rec
            .0
            .iter()
            .position(|c| *c == Call::Inside("/etc/machine-id".into()))
            .unwrap();
        assert!(
            matches!(&rec.0[mid + 1], Call::Mount(Some(s), t, None, f, None) if s == Path::new("/etc/machine-id") && t == Path::new("/fd/etc/machine-id") && *f == MsFlags::MS_BIND)
        );
        // Regression: the remount goes to a freshly resolved target (the new mount), not the
        // fd taken before the bind, which names the covered directory (EINVAL).
        assert_eq!(rec.0[mid + 2], Call::Inside("/etc/machine-id".into()));
        assert!(
            matches!(&rec.0[mid + 3], Call::Mount(None, _, None, f, None) if f.contains(MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT))
        );
        // Regression: the rootfs is made read-only in place; a self-bind would hide /proc, /dev
        // and every volume mounted before it.
        let root = PathBuf::from("/s/tmp/run/root");
        let on_root: Vec<_> = rec
            .0
            .iter()
            .filter(|c| matches!(c, Call::Mount(_, t, _, _, _) if *t == root))
            .collect();
        assert_eq!(
            on_root.len(),
            2,
            "overlay, then the read-only remount: {on_root:?}"
        );
        assert!(
            matches!(on_root[1], Call::Mount(None, _, None, f, None) if f.contains(MsFlags::MS_REMOUNT))
        );
        assert_eq!(rec.0.last(), Some(&Call::Pivot("/s/tmp/run/root".into())));
    }
}
