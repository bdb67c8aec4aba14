//! Capabilities: `--cap-drop` removes from every set (bounding included) so nothing regains
//! them; `--cap-add` gives a non-root payload user ambient capabilities.

use nix::errno::Errno;

const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?}")]
pub struct CapError(pub String);

/// Parses `CAP_NET_RAW`, `net_raw` or `ALL` into a bit mask.
pub fn parse(names: &[String]) -> Result<u64, CapError> {
    let mut mask = 0u64;
    for n in names {
        let up = n.to_ascii_uppercase();
        let bare = up.strip_prefix("CAP_").unwrap_or(&up);
        if bare == "ALL" {
            mask |= (1u64 << NAMES.len()) - 1;
            continue;
        }
        let i = NAMES
            .iter()
            .position(|x| *x == bare)
            .ok_or_else(|| CapError(n.clone()))?;
        mask |= 1 << i;
    }
    Ok(mask)
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const VERSION_3: u32 = 0x2008_0522;

fn get() -> Result<[Data; 2], Errno> {
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: header and two data structs as capget(2) documents for version 3.
    Errno::result(unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) })?;
    Ok(d)
}

fn set(eff: u64, perm: u64, inh: u64) -> Result<(), Errno> {
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |m: u64| (m as u32, (m >> 32) as u32);
    let (e0, e1) = split(eff);
    let (p0, p1) = split(perm);
    let (i0, i1) = split(inh);
    let d = [
        Data {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        Data {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: as above.
    Errno::result(unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) }).map(drop)
}

fn joined(d: &[Data; 2], f: impl Fn(&Data) -> u32) -> u64 {
    f(&d[0]) as u64 | (f(&d[1]) as u64) << 32
}

/// Drops `drop` from the bounding set and the current sets. Call before changing user.
pub fn drop_caps(drop: u64) -> Result<(), Errno> {
    for i in 0..NAMES.len() {
        if drop & (1 << i) != 0 {
            // SAFETY: prctl with integer arguments.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, i as libc::c_ulong, 0, 0, 0) };
            if r != 0 && Errno::last() != Errno::EINVAL {
                return Err(Errno::last());
            }
        }
    }
    let d = get()?;
    set(
        joined(&d, |x| x.effective) & !drop,
        joined(&d, |x| x.permitted) & !drop,
        joined(&d, |x| x.inheritable) & !drop,
    )
}

/// Before setuid: keep permitted capabilities across the change of user.
pub fn keep_across_setuid() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) }).map(drop)
}

/// After setuid to a non-root user: raise `add` as ambient so it survives execve.
pub fn raise_ambient(add: u64) -> Result<(), Errno> {
    let d = get()?;
    let perm = joined(&d, |x| x.permitted) & add;
    set(perm, perm, perm)?;
    for i in 0..NAMES.len() {
        if perm & (1 << i) != 0 {
            // SAFETY: prctl with integer arguments.
            let r = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    i as libc::c_ulong,
                    0,
                    0,
                )
            };
            Errno::result(r)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(super::parse(&["CAP_NET_RAW".into()]).unwrap(), 1 << 13);
        assert_eq!(
            super::parse(&["net_raw".into(), "chown".into()]).unwrap(),
            1 << 13 | 1
        );
        assert_eq!(super::parse(&["all".into()]).unwrap().count_ones(), 41);
        for bad in ["", "CAP_", "CAP_FOO", "13", "net raw"] {
            assert!(super::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
