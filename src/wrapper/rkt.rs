//! rkt's `run` arguments as the CoreOS wrapper scripts passed them (`RKT_RUN_ARGS`,
//! `X_IMAGE_ARGS`): split as bash splits an unquoted `${VAR}`, then each flag either parsed into
//! what skiff does or refused by name. Nothing is skipped: a flag skiff cannot honour is an
//! error naming it and the variable it came from.

use std::path::PathBuf;

/// Why a wrapper variable cannot be honoured, naming the variable and the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RktError {
    #[error("{var}: rkt flag {flag} has no skiff counterpart{hint}; remove it from {var}")]
    Unknown {
        var: String,
        flag: String,
        hint: &'static str,
    },
    #[error("{var}: {flag} is refused: {why}")]
    Refused {
        var: String,
        flag: String,
        why: &'static str,
    },
    #[error("{var}: {word:?} is not a flag (the wrapper split {var} on whitespace, without quote processing)")]
    NotAFlag { var: String, word: String },
    #[error("{var}: {flag} needs a value")]
    NoValue { var: String, flag: String },
    #[error("{var}: {flag} {value:?}: {why}")]
    Value {
        var: String,
        flag: String,
        value: String,
        why: String,
    },
}

/// What one rkt flag asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `--volume NAME,kind=host,source=PATH[,readOnly=BOOL][,recursive=BOOL]`
    Volume {
        name: String,
        source: PathBuf,
        readonly: bool,
        recursive: bool,
    },
    /// `--mount volume=NAME,target=PATH`
    Mount {
        volume: String,
        target: String,
    },
    Exec(String),
    User(String),
    Group(String),
    /// `NAME=VALUE`
    SetEnv(String),
    DnsHost,
    HostsEntryHost,
    NetHost,
    NetNone,
    Interactive(bool),
    InheritEnv(bool),
    UuidFileSave(PathBuf),
}

/// One flag as written (`text`), from `var`, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub var: String,
    pub text: String,
    pub arg: Arg,
}

/// Splits as bash splits an unquoted expansion with the default IFS: on runs of space, tab and
/// newline; quotes and backslashes are ordinary characters (the scripts never `eval`). Bash
/// would also glob each word against the wrapper's working directory; skiff does not.
pub fn split(value: &str) -> impl Iterator<Item = &str> {
    value.split([' ', '\t', '\n']).filter(|w| !w.is_empty())
}

/// Flags whose value may be the next word (`--exec /bin/x`), as rkt's flag parser allows.
const VALUE_FLAGS: &[&str] = &[
    "volume",
    "mount",
    "exec",
    "user",
    "group",
    "set-env",
    "dns",
    "hosts-entry",
    "uuid-file-save",
    "insecure-options",
];

/// Parses one variable's words into flags, refusing what skiff cannot honour.
pub fn parse(var: &str, value: &str) -> Result<Vec<Parsed>, RktError> {
    let mut words = split(value);
    let mut out = Vec::new();
    while let Some(word) = words.next() {
        let not_flag = || RktError::NotAFlag {
            var: var.to_string(),
            word: word.to_string(),
        };
        let body = word.strip_prefix("--").ok_or_else(not_flag)?;
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if name.is_empty() {
            return Err(not_flag());
        }
        let flag = format!("--{name}");
        let (value, text) = match inline {
            Some(v) => (Some(v.to_string()), word.to_string()),
            None if VALUE_FLAGS.contains(&name) => {
                let v = words.next().ok_or_else(|| RktError::NoValue {
                    var: var.to_string(),
                    flag: flag.clone(),
                })?;
                (Some(v.to_string()), format!("{word} {v}"))
            }
            None => (None, word.to_string()),
        };
        let arg = one(var, name, &flag, value)?;
        out.push(Parsed {
            var: var.to_string(),
            text,
            arg,
        });
    }
    Ok(out)
}

fn one(var: &str, name: &str, flag: &str, value: Option<String>) -> Result<Arg, RktError> {
    let bad = |value: &str, why: String| RktError::Value {
        var: var.to_string(),
        flag: flag.to_string(),
        value: value.to_string(),
        why,
    };
    let refused = |why: &'static str| RktError::Refused {
        var: var.to_string(),
        flag: flag.to_string(),
        why,
    };
    // Bool flags take no value or `=BOOL`; the rest need one (a missing one is caught above).
    let value_of = |v: Option<String>| {
        v.ok_or_else(|| RktError::NoValue {
            var: var.to_string(),
            flag: flag.to_string(),
        })
    };
    Ok(match name {
        "volume" => volume(&value_of(value)?).map_err(|why| bad(&why.0, why.1))?,
        "mount" => mount(&value_of(value)?).map_err(|why| bad(&why.0, why.1))?,
        "exec" => {
            let v = value_of(value)?;
            if !v.starts_with('/') || v.contains('\0') {
                return Err(bad(&v, "expected an absolute path in the image".into()));
            }
            Arg::Exec(v)
        }
        "user" | "group" => {
            let v = value_of(value)?;
            let probe = if name == "user" {
                v.clone()
            } else {
                format!("0:{v}")
            };
            // A name as useradd allows it, or an id that fits.
            let name_like = !v.starts_with('-')
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !name_like || probe.parse::<crate::run::UserSpec>().is_err() {
                return Err(bad(&v, "expected a name or a numeric id".into()));
            }
            if name == "user" {
                Arg::User(v)
            } else {
                Arg::Group(v)
            }
        }
        "set-env" => {
            let v = value_of(value)?;
            let ok = v.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty()
                    && !k.starts_with(|c: char| c.is_ascii_digit())
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            if !ok || v.contains('\0') {
                return Err(bad(&v, "expected NAME=VALUE".into()));
            }
            Arg::SetEnv(v)
        }
        "dns" => match value_of(value)?.as_str() {
            "host" => Arg::DnsHost,
            _ => return Err(refused("only --dns=host carries over (the host's resolv.conf); give another resolv.conf with a --volume and --mount")),
        },
        "hosts-entry" => match value_of(value)?.as_str() {
            "host" => Arg::HostsEntryHost,
            _ => return Err(refused("only --hosts-entry=host carries over (the host's /etc/hosts); give another hosts file with a --volume and --mount")),
        },
        // `--net` alone is rkt's default CNI network.
        "net" => match value.as_deref() {
            Some("host") => Arg::NetHost,
            Some("none") => Arg::NetNone,
            _ => return Err(refused("skiff has no CNI networks: the payload shares the host's network (--net=host) or has only loopback (--net=none)")),
        },
        "interactive" => Arg::Interactive(boolean(value).map_err(|v| bad(&v, "expected true or false".into()))?),
        "inherit-env" => Arg::InheritEnv(boolean(value).map_err(|v| bad(&v, "expected true or false".into()))?),
        "uuid-file-save" => {
            let v = value_of(value)?;
            if !v.starts_with('/') || v.contains('\0') || v.split('/').any(|c| c == "..") {
                return Err(bad(&v, "expected an absolute host path without '..'".into()));
            }
            Arg::UuidFileSave(PathBuf::from(v))
        }
        "insecure-options" => {
            let v = value_of(value)?;
            let opts: Vec<&str> = v.split(',').collect();
            return Err(refused(if opts.iter().any(|o| *o == "image" || *o == "all") {
                "skiff never turns image verification off; where unsigned images are acceptable, the signature policy says so explicitly (insecureAcceptAnything for that scope in /etc/containers/policy.json)"
            } else if opts.contains(&"http") {
                "plain-HTTP registries are allowed by --insecure-registry HOST[:PORT] (loopback always is)"
            } else {
                "skiff has no switch that relaxes its checks; the signature policy and --insecure-registry say what is allowed"
            }));
        }
        _ => {
            return Err(RktError::Unknown {
                var: var.to_string(),
                flag: flag.to_string(),
                hint: hint(name),
            })
        }
    })
}

fn hint(name: &str) -> &'static str {
    match name {
        n if n.starts_with("stage1") => {
            " (skiff has no stage1; RKT_STAGE1_ARG is accepted and unused, this variable is not)"
        }
        "trust-keys-from-https" => {
            " (skiff verifies by the signature policy, /etc/containers/policy.json)"
        }
        "port" => " (the payload shares the host's network)",
        "pull-policy" => " (use skiff's --pull in the unit's ExecStart)",
        _ => "",
    }
}

/// Go's `strconv.ParseBool`, as rkt reads `=BOOL`.
fn boolean(value: Option<String>) -> Result<bool, String> {
    match value.as_deref() {
        None => Ok(true),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(v.to_string()),
    }
}

/// rkt's `NAME,key=value,…` lists; a key given twice is an error, not "last wins".
fn fields<'a>(
    spec: &'a str,
    parts: impl Iterator<Item = &'a str>,
) -> Result<Vec<(&'a str, &'a str)>, (String, String)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for p in parts {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| (spec.to_string(), format!("{p:?} is not key=value")))?;
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err((spec.to_string(), format!("{k} is given twice")));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// rkt volume names are ACNames: lower-case letters, digits and dashes.
fn ac_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-')
}

fn volume(spec: &str) -> Result<Arg, (String, String)> {
    let err = |why: &str| (spec.to_string(), why.to_string());
    let mut parts = spec.split(',');
    let name = parts.next().unwrap_or("");
    if !ac_name(name) {
        return Err(err(
            "expected NAME,kind=host,source=PATH (NAME: lower-case letters, digits, dashes)",
        ));
    }
    let (mut kind, mut source, mut readonly, mut recursive) = (None, None, false, false);
    for (k, v) in fields(spec, parts)? {
        let b = || {
            boolean(Some(v.to_string()))
                .map_err(|_| err(&format!("{k}={v}: expected true or false")))
        };
        match k {
            "kind" => kind = Some(v),
            "source" => source = Some(v),
            "readOnly" => readonly = b()?,
            "recursive" => recursive = b()?,
            other => {
                return Err(err(&format!(
                    "unknown option {other:?} (kind, source, readOnly, recursive)"
                )))
            }
        }
    }
    match kind {
        Some("host") => {}
        Some(_) => return Err(err("only kind=host volumes carry over (skiff binds host paths; an empty volume is a host directory of your own)")),
        None => return Err(err("kind=host is missing")),
    }
    let source = source.ok_or_else(|| err("source=PATH is missing"))?;
    if !source.starts_with('/')
        || source.contains(['\0', ':'])
        || source.split('/').any(|c| c == "..")
    {
        return Err(err(
            "source must be an absolute host path without ':' or '..'",
        ));
    }
    Ok(Arg::Volume {
        name: name.to_string(),
        source: PathBuf::from(source),
        readonly,
        recursive,
    })
}

fn mount(spec: &str) -> Result<Arg, (String, String)> {
    let err = |why: &str| (spec.to_string(), why.to_string());
    let (mut volume, mut target) = (None, None);
    for (k, v) in fields(spec, spec.split(','))? {
        match k {
            "volume" => volume = Some(v),
            "target" => target = Some(v),
            other => return Err(err(&format!("unknown option {other:?} (volume, target)"))),
        }
    }
    let volume = volume
        .filter(|v| ac_name(v))
        .ok_or_else(|| err("expected volume=NAME,target=PATH"))?;
    let target = target.ok_or_else(|| err("target=PATH is missing"))?;
    if !target.starts_with('/') || target.contains(['\0', ':']) {
        return Err(err("target must be an absolute path without ':'"));
    }
    Ok(Arg::Mount {
        volume: volume.to_string(),
        target: target.to_string(),
    })
}

#[cfg(test)]
mod tests;
