//! Daemon names and the default paths derived from them, for root and for ordinary users.
//!
//! pyzenkit put every file under `/var/run`, `/var/log` and `/etc`, so nothing ran without root.
//! Here root keeps those places, and any other user gets a private runtime directory:
//!
//! | file | root | other users |
//! |---|---|---|
//! | pidfile | `/var/run/<name>.pid` | `<rt>/<name>.pid` |
//! | runlog directory | `/var/run/<name>/` | `<rt>/runlogs/` |
//! | state file | `/var/run/<name>.state` | `<rt>/<name>.state` |
//! | persistent state | `/var/lib/<name>/<name>.pstate` | `<state>/<name>/<name>.pstate` |
//! | log file | `/var/log/<name>.log` | `<rt>/<name>.log` |
//! | config file | `/etc/<name>.conf` | `<cfg>/<name>.conf` |
//! | config directory | `/etc/<name>/` | `<cfg>/<name>/` |
//!
//! `<rt>` is `$XDG_RUNTIME_DIR/<name>`, or `<temp>/<name>-<uid>` when that variable is unset
//! (`<temp>` is [`std::env::temp_dir`]); [`ensure_runtime_dir`] creates it with mode 0700.
//! `<cfg>` is `$XDG_CONFIG_HOME`, else `$HOME/.config`, else the home directory of the user's
//! passwd entry plus `.config`. `<state>` is `$XDG_STATE_HOME`, else `$HOME/.local/state`
//! (without a home: `<rt>`). Relative or empty XDG values are ignored, as the XDG base
//! directory specification asks.
//!
//! The persistent state must survive a reboot, so it is not in a runtime directory (`/run` is
//! a tmpfs): [`DefaultPaths::pstate_dir`] is created with mode 0700 when the default is used
//! ([`ensure_private_dir`]). Earlier versions kept it at
//! [`DefaultPaths::old_pstate_file`] (`/var/run/<name>.pstate`, `<rt>/<name>.pstate`): when
//! the new file does not exist yet, the old one is read once and the state moves to the new
//! place at the first checkpoint.
//!
//! The functions that compute paths take the environment as parameters ([`defaults`]); only
//! [`defaults_from_env`] reads the real one.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Why `name` is not a valid daemon name, if it is not.
///
/// The rule is pyzenkit's: `^[_a-zA-Z][-_a-zA-Z0-9.]*$`. It keeps names usable in file names.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => Some("the name is empty"),
        Some(c) if !(c == '_' || c.is_ascii_alphabetic()) => {
            Some("a name must start with a letter or '_'")
        }
        _ if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) => {
            Some("a name may contain only letters, digits, '-', '_' and '.'")
        }
        _ => None,
    }
}

/// Checks a daemon name against `^[_a-zA-Z][-_a-zA-Z0-9.]*$`.
///
/// # Errors
///
/// [`Error::Usage`] naming the bad name and the rule.
pub fn validate_name(name: &str) -> Result<()> {
    match name_problem(name) {
        None => Ok(()),
        Some(why) => Err(Error::Usage(format!("invalid name '{name}': {why}"))),
    }
}

/// The default daemon name: the file name of `argv0` (the program path), validated.
///
/// # Errors
///
/// [`Error::Usage`] when the file name is not a valid name (then `--name` must be given).
pub fn name_from_program(argv0: &str) -> Result<String> {
    let base = Path::new(argv0)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("");
    validate_name(base).map_err(|e| match e {
        Error::Usage(msg) => {
            Error::Usage(format!("{msg} (derived from the program name; use --name)"))
        }
        other => other,
    })?;
    Ok(base.to_owned())
}

/// The default locations of a daemon's files. See the [module documentation](self) for the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultPaths {
    /// The pidfile.
    pub pid_file: PathBuf,
    /// The directory that holds the runlog files.
    pub runlog_dir: PathBuf,
    /// The state file (written on SIGUSR2).
    pub state_file: PathBuf,
    /// The persistent state file.
    pub pstate_file: PathBuf,
    /// The directory of the default persistent state file, created (0700) when used.
    pub pstate_dir: PathBuf,
    /// Where earlier versions kept the persistent state by default: read once when
    /// `pstate_file` does not exist yet.
    pub old_pstate_file: PathBuf,
    /// The log file (daemon mode).
    pub log_file: PathBuf,
    /// The configuration file.
    pub config_file: PathBuf,
    /// The configuration directory (`*.json.conf` files).
    pub config_dir: PathBuf,
    /// The per-user runtime directory that holds the run-time files, `None` for root. Create it
    /// with [`ensure_runtime_dir`] before using any default path inside it.
    pub runtime_dir: Option<PathBuf>,
}

/// The environment that default paths depend on, passed in so tests do not read the real one.
#[derive(Debug, Clone, Copy)]
pub struct PathEnv<'a> {
    /// The effective user ID; 0 selects the system-wide locations.
    pub uid: u32,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<&'a Path>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<&'a Path>,
    /// `$XDG_STATE_HOME`.
    pub xdg_state_home: Option<&'a Path>,
    /// The user's home directory (`$HOME`, or the passwd entry).
    pub home: Option<&'a Path>,
    /// The system temporary directory ([`std::env::temp_dir`]).
    pub temp_dir: &'a Path,
}

/// An XDG variable's value counts only when it is an absolute path.
fn usable(p: Option<&Path>) -> Option<&Path> {
    p.filter(|p| p.is_absolute())
}

/// The default paths of daemon `name` in the environment `env`.
///
/// # Errors
///
/// [`Error::Usage`] when `name` is not a valid name (see [`validate_name`]).
pub fn defaults(name: &str, env: &PathEnv<'_>) -> Result<DefaultPaths> {
    validate_name(name)?;
    if env.uid == 0 {
        let run = Path::new("/var/run");
        let lib = Path::new("/var/lib").join(name);
        return Ok(DefaultPaths {
            pid_file: run.join(format!("{name}.pid")),
            runlog_dir: run.join(name),
            state_file: run.join(format!("{name}.state")),
            pstate_file: lib.join(format!("{name}.pstate")),
            pstate_dir: lib,
            old_pstate_file: run.join(format!("{name}.pstate")),
            log_file: Path::new("/var/log").join(format!("{name}.log")),
            config_file: Path::new("/etc").join(format!("{name}.conf")),
            config_dir: Path::new("/etc").join(name),
            runtime_dir: None,
        });
    }
    let rt = match usable(env.xdg_runtime_dir) {
        Some(dir) => dir.join(name),
        None => env.temp_dir.join(format!("{name}-{}", env.uid)),
    };
    let cfg = match (usable(env.xdg_config_home), env.home) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(home)) if !home.as_os_str().is_empty() => home.join(".config"),
        // No home at all (a system user without one): keep the configuration beside the
        // run-time files rather than guess.
        _ => rt.clone(),
    };
    let state = match (usable(env.xdg_state_home), env.home) {
        (Some(dir), _) => dir.join(name),
        (None, Some(home)) if !home.as_os_str().is_empty() => home.join(".local/state").join(name),
        // No home: beside the run-time files (lost at reboot, but nowhere better to guess).
        _ => rt.clone(),
    };
    Ok(DefaultPaths {
        pid_file: rt.join(format!("{name}.pid")),
        runlog_dir: rt.join("runlogs"),
        state_file: rt.join(format!("{name}.state")),
        pstate_file: state.join(format!("{name}.pstate")),
        pstate_dir: state,
        old_pstate_file: rt.join(format!("{name}.pstate")),
        log_file: rt.join(format!("{name}.log")),
        config_file: cfg.join(format!("{name}.conf")),
        config_dir: cfg.join(name),
        runtime_dir: Some(rt),
    })
}

/// [`defaults`] for the calling process: its effective UID, `$XDG_RUNTIME_DIR`,
/// `$XDG_CONFIG_HOME`, `$HOME` (else the passwd entry's home) and [`std::env::temp_dir`].
///
/// # Errors
///
/// As [`defaults`].
pub fn defaults_from_env(name: &str) -> Result<DefaultPaths> {
    let uid = nix::unistd::geteuid();
    let var = |key: &str| std::env::var_os(key).map(PathBuf::from);
    let runtime = var("XDG_RUNTIME_DIR");
    let config = var("XDG_CONFIG_HOME");
    let state = var("XDG_STATE_HOME");
    let home = var("HOME")
        .filter(|h| !h.as_os_str().is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.dir)
        });
    let temp = std::env::temp_dir();
    defaults(
        name,
        &PathEnv {
            uid: uid.as_raw(),
            xdg_runtime_dir: runtime.as_deref(),
            xdg_config_home: config.as_deref(),
            xdg_state_home: state.as_deref(),
            home: home.as_deref(),
            temp_dir: &temp,
        },
    )
}

/// Makes sure the per-user runtime directory `dir` exists, belongs to `uid` and is private.
///
/// A missing `dir` is created with mode 0700 (its parent must exist). An existing one must be a
/// real directory (not a symbolic link) owned by `uid` and writable by nobody else; otherwise
/// another user could have planted it in a shared temporary directory, and it is refused.
///
/// # Errors
///
/// [`Error::Io`] naming `dir`, when it cannot be created or fails one of the checks above.
pub fn ensure_runtime_dir(dir: &Path, uid: u32) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create runtime directory", dir, e)),
    }
    check_private_dir(
        dir,
        uid,
        ("inspect runtime directory", "use runtime directory"),
    )
}

/// Makes sure the directory `dir` of the persistent state exists, belongs to `uid` and is
/// private: as [`ensure_runtime_dir`], but missing parents are created too (mode 0700, as the
/// XDG base directory specification asks for `~/.local/state`).
///
/// # Errors
///
/// [`Error::Io`] naming `dir`, when it cannot be created or fails one of the checks.
pub fn ensure_private_dir(dir: &Path, uid: u32) -> Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
    }
    check_private_dir(dir, uid, ("inspect directory", "use directory"))
}

/// A real directory, owned by `uid`, writable by nobody else.
fn check_private_dir(
    dir: &Path,
    uid: u32,
    (inspect, what): (&'static str, &'static str),
) -> Result<()> {
    let meta = fs::symlink_metadata(dir).map_err(|e| Error::io(inspect, dir, e))?;
    let refuse = |why: String| {
        Err(Error::io(
            what,
            dir,
            io::Error::new(io::ErrorKind::PermissionDenied, why),
        ))
    };
    if !meta.is_dir() {
        return refuse("it exists and is not a directory".into());
    }
    if meta.uid() != uid {
        return refuse(format!("it belongs to uid {}, not {uid}", meta.uid()));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return refuse(format!(
            "it is writable by others (mode {:04o})",
            meta.permissions().mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(
        uid: u32,
        rt: Option<&'a str>,
        cfg: Option<&'a str>,
        home: Option<&'a str>,
    ) -> PathEnv<'a> {
        PathEnv {
            uid,
            xdg_runtime_dir: rt.map(Path::new),
            xdg_config_home: cfg.map(Path::new),
            xdg_state_home: None,
            home: home.map(Path::new),
            temp_dir: Path::new("/tmp"),
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "_", "tail", "my-daemon.v2", "A_b-9.x", "x..-"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "-x", ".hidden", "a b", "a/b", "é", "a\n", "x$"] {
            let err = validate_name(bad).unwrap_err();
            assert!(matches!(err, Error::Usage(_)));
            // Control characters come out escaped ("a\\n").
            let shown = bad.escape_debug().to_string();
            assert!(err.to_string().contains(&format!("'{shown}'")), "{err}");
        }
        assert_eq!(name_from_program("/usr/sbin/tailer").unwrap(), "tailer");
        assert_eq!(name_from_program("tailer").unwrap(), "tailer");
        let err = name_from_program("/opt/9lives").unwrap_err();
        assert!(err.to_string().contains("--name"), "{err}");
        assert!(name_from_program("").is_err());
    }

    #[test]
    fn root_uses_system_locations() {
        let d = defaults(
            "tail",
            &env(0, Some("/run/user/0"), Some("/x"), Some("/root")),
        )
        .unwrap();
        assert_eq!(d.pid_file, Path::new("/var/run/tail.pid"));
        assert_eq!(d.runlog_dir, Path::new("/var/run/tail"));
        assert_eq!(d.state_file, Path::new("/var/run/tail.state"));
        assert_eq!(d.pstate_file, Path::new("/var/lib/tail/tail.pstate"));
        assert_eq!(d.pstate_dir, Path::new("/var/lib/tail"));
        assert_eq!(d.old_pstate_file, Path::new("/var/run/tail.pstate"));
        assert_eq!(d.log_file, Path::new("/var/log/tail.log"));
        assert_eq!(d.config_file, Path::new("/etc/tail.conf"));
        assert_eq!(d.config_dir, Path::new("/etc/tail"));
        assert_eq!(d.runtime_dir, None);
    }

    #[test]
    fn user_with_xdg() {
        let d = defaults(
            "tail",
            &env(
                1000,
                Some("/run/user/1000"),
                Some("/home/u/cfg"),
                Some("/home/u"),
            ),
        )
        .unwrap();
        let rt = Path::new("/run/user/1000/tail");
        assert_eq!(d.runtime_dir.as_deref(), Some(rt));
        assert_eq!(d.pid_file, rt.join("tail.pid"));
        assert_eq!(d.runlog_dir, rt.join("runlogs"));
        assert_eq!(d.state_file, rt.join("tail.state"));
        assert_eq!(
            d.pstate_file,
            Path::new("/home/u/.local/state/tail/tail.pstate")
        );
        assert_eq!(d.old_pstate_file, rt.join("tail.pstate"));
        assert_eq!(d.log_file, rt.join("tail.log"));
        assert_eq!(d.config_file, Path::new("/home/u/cfg/tail.conf"));
        assert_eq!(d.config_dir, Path::new("/home/u/cfg/tail"));
    }

    #[test]
    fn user_fallbacks() {
        // No XDG at all: temp dir with the uid, ~/.config.
        let d = defaults("tail", &env(1000, None, None, Some("/home/u"))).unwrap();
        assert_eq!(d.pid_file, Path::new("/tmp/tail-1000/tail.pid"));
        assert_eq!(d.config_file, Path::new("/home/u/.config/tail.conf"));
        assert_eq!(d.config_dir, Path::new("/home/u/.config/tail"));
        // Relative and empty XDG values are ignored.
        let d = defaults(
            "tail",
            &env(1000, Some("rel/dir"), Some(""), Some("/home/u")),
        )
        .unwrap();
        assert_eq!(d.runtime_dir.as_deref(), Some(Path::new("/tmp/tail-1000")));
        assert_eq!(d.config_file, Path::new("/home/u/.config/tail.conf"));
        // No home either: configuration beside the run-time files.
        let d = defaults("tail", &env(1000, None, None, None)).unwrap();
        assert_eq!(d.config_file, Path::new("/tmp/tail-1000/tail.conf"));
        // $XDG_STATE_HOME, when absolute, holds the persistent state.
        let mut e = env(1000, None, None, Some("/home/u"));
        e.xdg_state_home = Some(Path::new("/home/u/st"));
        let d = defaults("tail", &e).unwrap();
        assert_eq!(d.pstate_file, Path::new("/home/u/st/tail/tail.pstate"));
        e.xdg_state_home = Some(Path::new("st"));
        let d = defaults("tail", &e).unwrap();
        assert_eq!(d.pstate_dir, Path::new("/home/u/.local/state/tail"));
    }

    #[test]
    fn bad_name_is_a_usage_error() {
        let err = defaults("../x", &env(1000, None, None, None)).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
    }

    #[test]
    fn runtime_dir_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let dir = tmp.path().join("d-1000");
        ensure_runtime_dir(&dir, uid).unwrap();
        let meta = fs::metadata(&dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        // Existing and fine: accepted again.
        ensure_runtime_dir(&dir, uid).unwrap();
    }

    #[test]
    fn runtime_dir_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let uid = nix::unistd::geteuid().as_raw();

        let dir = tmp.path().join("open");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_runtime_dir(&dir, uid).unwrap_err().to_string();
        assert!(
            err.contains("writable by others") && err.contains("open"),
            "{err}"
        );

        let err = ensure_runtime_dir(&dir, uid.wrapping_add(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to uid"), "{err}");

        let file = tmp.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = ensure_runtime_dir(&file, uid).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        assert!(ensure_runtime_dir(&link, uid).is_err());

        let missing_parent = tmp.path().join("no/such");
        let err = ensure_runtime_dir(&missing_parent, uid).unwrap_err();
        assert!(
            err.to_string().contains("create runtime directory"),
            "{err}"
        );
    }
}
