//! The checks a start makes before anything forks or any component runs, so that every value
//! from the configuration fails early, with exit code 78 (`EX_CONFIG`) and the name of the
//! file it came from, instead of failing later in the daemon with another code.
//!
//! [`Config::load`](crate::config::Config::load) already checks each value's type and form
//! (strings without NUL bytes, numbers in range). What needs the system is checked here:
//!
//! * `user` and `group` resolve in the account database (a `user` without a `group` needs a
//!   primary group);
//! * `chroot_dir` is an existing directory, and `work_dir` one too (inside the chroot, when
//!   there is one).
//!
//! The `config-check` action runs the same checks and starts nothing.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::daemonize;
use crate::error::{Error, Result};

/// What the checks resolved: the accounts to switch to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounts {
    /// The user ID from `user`.
    pub user: Option<u32>,
    /// The group ID from `group`.
    pub group: Option<u32>,
}

/// A configuration error for `key`, naming the file (or "the command line") it came from.
fn bad(config: &Config, key: &str, why: impl std::fmt::Display) -> Error {
    let origin = config
        .origin(key)
        .map(ToString::to_string)
        .unwrap_or_else(|| "the defaults".to_owned());
    Error::config(origin, format!("key '{key}': {why}"))
}

/// Runs every check of the [module documentation](self).
///
/// # Errors
///
/// [`Error::Config`] (exit code 78) naming the key, its value and its file.
pub fn check(config: &Config) -> Result<Accounts> {
    let s = config.settings();
    let user = match s.user.as_deref() {
        None => None,
        Some(spec) => Some(daemonize::resolve_user(spec).map_err(|e| bad(config, "user", e))?),
    };
    let group = match s.group.as_deref() {
        None => None,
        Some(spec) => Some(daemonize::resolve_group(spec).map_err(|e| bad(config, "group", e))?),
    };
    if let (Some(uid), None) = (user, group) {
        let entry = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .map_err(|e| Error::os("look up a user", e.into()))?;
        if entry.is_none() {
            return Err(bad(
                config,
                "user",
                format!("uid {uid} has no account entry, so no primary group; set 'group'"),
            ));
        }
    }
    if let Some(dir) = &s.chroot_dir {
        check_dir(dir).map_err(|why| bad(config, "chroot_dir", why))?;
    }
    let work_dir: PathBuf = match &s.chroot_dir {
        Some(root) => root.join(s.work_dir.strip_prefix("/").unwrap_or(&s.work_dir)),
        None => s.work_dir.clone(),
    };
    check_dir(&work_dir).map_err(|why| bad(config, "work_dir", why))?;
    Ok(Accounts { user, group })
}

/// Why `dir` is not a usable directory, if it is not.
fn check_dir(dir: &Path) -> std::result::Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!("'{}' is not a directory", dir.display())),
        Err(e) => Err(format!("cannot use directory '{}': {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::error::exit;
    use crate::paths::DefaultPaths;

    fn load(dir: &Path, text: &str) -> Result<Accounts> {
        let file = dir.join("d.conf");
        std::fs::write(&file, text).unwrap();
        let defaults = DefaultPaths {
            pid_file: dir.join("d.pid"),
            runlog_dir: dir.join("r"),
            state_file: dir.join("d.state"),
            pstate_file: dir.join("d.pstate"),
            log_file: dir.join("d.log"),
            config_file: file,
            config_dir: dir.join("d"),
            runtime_dir: None,
            old_pstate_file: dir.join("old.pstate"),
            pstate_dir: dir.join("pstate.d"),
        };
        let config = Config::load("d", &Cli::default(), &defaults, &[])?;
        check(&config)
    }

    #[test]
    fn bad_values_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (r#"{"chroot_dir": "x"}"#, "chroot_dir"),
            (r#"{"chroot_dir": "/etc/passwd"}"#, "chroot_dir"),
            (r#"{"work_dir": "/no/such/dir"}"#, "work_dir"),
            (r#"{"user": "no-such-user-zd"}"#, "user"),
            (r#"{"group": "no-such-group-zd"}"#, "group"),
            (r#"{"user": "3999999999"}"#, "user"),
        ];
        for (text, key) in cases {
            let err = load(dir.path(), text).unwrap_err();
            assert_eq!(err.exit_code(), exit::CONFIG, "{text}: {err}");
            let msg = err.to_string();
            assert!(msg.contains("d.conf") && msg.contains(key), "{text}: {msg}");
        }
        assert_eq!(
            load(dir.path(), r#"{"user": "root", "group": "0"}"#).unwrap(),
            Accounts {
                user: Some(0),
                group: Some(0)
            }
        );
    }
}
