//! Resolving `USER[:GROUP]` from the image's own /etc/passwd and /etc/group: never the host's,
//! never through libc's NSS (which would load modules from the image).

/// Who the payload runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: Option<String>,
    pub name: Option<String>,
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Ids must fit and not be the "no id" sentinel (u32::MAX, `(uid_t)-1`).
fn parse_id(s: &str) -> Option<u32> {
    s.parse::<u32>().ok().filter(|&n| n != u32::MAX)
}

fn passwd_entries(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 || f[0].is_empty() {
                return None;
            }
            Some(Passwd {
                name: f[0].to_string(),
                uid: parse_id(f[2])?,
                gid: parse_id(f[3])?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

fn group_entries(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(Group {
                name: f[0].to_string(),
                gid: parse_id(f[2])?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// Why a user could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("invalid user {0:?}: expected USER[:GROUP]")]
    Syntax(String),
    #[error("user id {0:?} is out of range")]
    UidRange(String),
    #[error("user {0:?} is not in the image's /etc/passwd")]
    NoUser(String),
    #[error("group id {0:?} is out of range")]
    GidRange(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    NoGroup(String),
}

/// A user or group as given: a name, or an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    Name(String),
    Id(u32),
}

impl Who {
    fn parse(s: &str, range: fn(String) -> UserError) -> Result<Who, UserError> {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            parse_id(s).map(Who::Id).ok_or_else(|| range(s.to_string()))
        } else {
            Ok(Who::Name(s.to_string()))
        }
    }
}

/// `USER[:GROUP]`, parsed once (from `--user`, a profile, or the image's config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub user: Who,
    pub group: Option<Who>,
}

impl Spec {
    /// A user given by ids (a profile's host user).
    pub fn ids(uid: u32, gid: u32) -> Spec {
        Spec {
            user: Who::Id(uid),
            group: Some(Who::Id(gid)),
        }
    }
}

impl std::str::FromStr for Spec {
    type Err = UserError;
    fn from_str(spec: &str) -> Result<Spec, UserError> {
        let (user, grp) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() || grp.is_some_and(str::is_empty) {
            return Err(UserError::Syntax(spec.to_string()));
        }
        Ok(Spec {
            user: Who::parse(user, UserError::UidRange)?,
            group: grp
                .map(|g| Who::parse(g, UserError::GidRange))
                .transpose()?,
        })
    }
}

/// Resolves `spec` against the image's files: a name must be there; an id need not be.
pub fn resolve(spec: &Spec, passwd: &str, group: &str) -> Result<Identity, UserError> {
    let users = passwd_entries(passwd);
    let groups = group_entries(group);
    let entry = match &spec.user {
        Who::Name(n) => users.iter().find(|p| p.name == *n),
        Who::Id(id) => users.iter().find(|p| p.uid == *id),
    };
    let uid = match (entry, &spec.user) {
        (Some(p), _) => p.uid,
        (None, Who::Id(uid)) => *uid,
        (None, Who::Name(n)) => return Err(UserError::NoUser(n.clone())),
    };
    let gid = match &spec.group {
        Some(Who::Name(g)) => groups
            .iter()
            .find(|x| x.name == *g)
            .map(|x| x.gid)
            .ok_or_else(|| UserError::NoGroup(g.clone()))?,
        Some(Who::Id(g)) => *g,
        None => entry.map_or(0, |p| p.gid),
    };
    let mut supplementary: Vec<u32> = match entry {
        Some(p) => groups
            .iter()
            .filter(|g| g.members.contains(&p.name))
            .map(|g| g.gid)
            .collect(),
        None => vec![],
    };
    if !supplementary.contains(&gid) {
        supplementary.insert(0, gid);
    }
    supplementary.dedup();
    Ok(Identity {
        uid,
        gid,
        groups: supplementary,
        home: entry.map(|p| p.home.clone()),
        name: entry.map(|p| p.name.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n# comment\nbroken\nneg:x:-1:0::/:/bin/sh\nbig:x:4294967295:0::/:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\napp:x:1000:\nwheel:x:10:app,root\ndocker:x:999:app\nbad:x:zz:app\n";

    fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Identity, UserError> {
        super::resolve(&spec.parse()?, passwd, group)
    }

    #[test]
    fn names_ids_and_groups() {
        let app = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.groups, [1000, 10, 999]);
        assert_eq!(app.home.as_deref(), Some("/home/app"));
        assert_eq!(
            resolve("1000", PASSWD, GROUP).unwrap().name.as_deref(),
            Some("app")
        );
        let odd = resolve("4242:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((odd.uid, odd.gid, odd.groups.clone()), (4242, 10, vec![10]));
        assert_eq!(resolve("app:7", PASSWD, GROUP).unwrap().gid, 7);
    }

    #[test]
    fn hostile_specs_and_files() {
        for bad in [
            "nobody",
            "app:nogroup",
            "4294967295",
            "99999999999",
            "app:4294967295",
            "",
            ":",
            "app:",
            ":1",
        ] {
            assert!(resolve(bad, PASSWD, GROUP).is_err(), "{bad:?}");
        }
        // Malformed lines are skipped, never trusted.
        assert!(resolve("neg", PASSWD, GROUP).is_err());
        assert!(resolve("big", PASSWD, GROUP).is_err());
        assert!(resolve("broken", PASSWD, GROUP).is_err());
        assert!(resolve("app", "\u{0}\u{0}:::", "::::").is_err());
        assert_eq!(resolve("0", "", "").unwrap().uid, 0);
    }
}
