//! The shell's one error type, and the exit code each failure ends a command with.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Exit codes, from BSD's sysexits where one fits, and LSB's for status queries.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A generic failure (the daemon stopped on an error).
    pub const FAILURE: i32 = 1;
    /// Bad command line (sysexits `EX_USAGE` is 64; we follow the common `2` of argparse/getopt).
    pub const USAGE: i32 = 2;
    /// Another instance holds the pidfile lock.
    pub const ALREADY_RUNNING: i32 = 75;
    /// A user or group named in the configuration does not exist (sysexits `EX_NOUSER`).
    pub const NO_USER: i32 = 67;
    /// A file read back (runlog, pidfile...) has malformed content (sysexits `EX_DATAERR`).
    pub const DATA: i32 = 65;
    /// The stop watchdog ended the run: a handler did not return within the stop timeout, or
    /// within the margin after `SIGTERM` or the last `SIGINT` (sysexits `EX_SOFTWARE`, an
    /// internal software error; nothing else exits with it). See [`crate::watchdog`].
    pub const WATCHDOG: i32 = 70;
    /// Operating-system error (sysexits `EX_OSERR`).
    pub const OS: i32 = 71;
    /// Cannot create or write a file (sysexits `EX_CANTCREAT`).
    pub const CANT_CREATE: i32 = 73;
    /// Permission denied (sysexits `EX_NOPERM`).
    pub const NO_PERMISSION: i32 = 77;
    /// Bad configuration (sysexits `EX_CONFIG`).
    pub const CONFIG: i32 = 78;
    /// LSB status: running.
    pub const LSB_RUNNING: i32 = 0;
    /// LSB status: dead, but the pidfile is left.
    pub const LSB_DEAD_PIDFILE: i32 = 1;
    /// LSB status: not running.
    pub const LSB_NOT_RUNNING: i32 = 3;
    /// LSB status: unknown (for example no permission to tell).
    pub const LSB_UNKNOWN: i32 = 4;
}

/// Everything that can go wrong in the shell. Each variant names what was wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A bad command line: flag or value.
    Usage(String),
    /// A bad configuration file, directory, key or value.
    Config {
        /// Where the bad configuration came from (a file, or "command line").
        source_name: String,
        /// What is wrong with it.
        message: String,
    },
    /// An OS call on a path failed.
    Io {
        /// What we were doing ("open pidfile", "write runlog"...).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An OS call not tied to a path failed.
    Os {
        /// What we were doing ("fork", "setsid"...).
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Another instance already runs and holds the pidfile.
    AlreadyRunning {
        /// The pidfile.
        path: PathBuf,
        /// The PID written in it.
        pid: Option<i32>,
    },
    /// The daemon failed after forking; the message came back over the readiness pipe.
    Daemon(String),
    /// A file read back (a runlog, a pidfile...) has malformed content.
    Data {
        /// What the file is ("runlog"...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A user or group name (or number) that the account database does not know.
    UnknownAccount {
        /// `"user"` or `"group"`.
        kind: &'static str,
        /// The name or number as given.
        name: String,
    },
}

/// Shorthand for results of the shell.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code this error ends a command with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => exit::USAGE,
            Self::Config { .. } => exit::CONFIG,
            Self::Io { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied => exit::NO_PERMISSION,
                _ => exit::CANT_CREATE,
            },
            // fork, setsid, pipe, the privilege drop...: sysexits' EX_OSERR.
            Self::Os { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied => exit::NO_PERMISSION,
                _ => exit::OS,
            },
            Self::AlreadyRunning { .. } => exit::ALREADY_RUNNING,
            Self::Daemon(_) => exit::FAILURE,
            Self::Data { .. } => exit::DATA,
            Self::UnknownAccount { .. } => exit::NO_USER,
        }
    }

    /// A configuration error.
    pub fn config(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            source_name: source_name.into(),
            message: message.into(),
        }
    }

    /// An I/O error on `path` while doing `action`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Malformed content in the `what` file at `path`.
    pub fn data(what: &'static str, path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Data {
            what,
            path: path.into(),
            message: message.into(),
        }
    }

    /// An OS error while doing `action`.
    pub fn os(action: &'static str, source: io::Error) -> Self {
        Self::Os { action, source }
    }

    /// The OS error behind an [`Io`](Self::Io) or [`Os`](Self::Os) error, for a program that
    /// decides by its kind. (Its text is already part of this error's message: see the
    /// `std::error::Error` impl for why it is not the [`source`](std::error::Error::source).)
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Self::Io { source, .. } | Self::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Writes `text` with its control characters escaped the way `char::escape_debug` does
/// (`\0`, `\n`, `\u{1b}`...): a NUL byte or an escape sequence from a configuration value
/// must not reach a terminal or a log line raw.
fn write_escaped(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_debug())?;
        } else {
            fmt::Write::write_char(f, c)?;
        }
    }
    Ok(())
}

impl fmt::Display for Error {
    /// One line; control characters in names, paths and messages are escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        self.write_raw(&mut text)?;
        write_escaped(f, &text)
    }
}

impl Error {
    fn write_raw(&self, f: &mut String) -> fmt::Result {
        use fmt::Write as _;
        match self {
            Self::Usage(msg) => write!(f, "usage: {msg}"),
            Self::Config {
                source_name,
                message,
            } => write!(f, "configuration error in {source_name}: {message}"),
            Self::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} '{}': {source}", path.display()),
            Self::Os { action, source } => write!(f, "{action} failed: {source}"),
            Self::AlreadyRunning { path, pid } => match pid {
                Some(pid) => write!(
                    f,
                    "already running (pid {pid}), pidfile '{}'",
                    path.display()
                ),
                None => write!(f, "already running, pidfile '{}' is locked", path.display()),
            },
            Self::Daemon(msg) => write!(f, "daemon failed to start: {msg}"),
            Self::Data {
                what,
                path,
                message,
            } => write!(f, "malformed {what} '{}': {message}", path.display()),
            Self::UnknownAccount { kind, name } => write!(f, "unknown {kind} '{name}'"),
        }
    }
}

/// The message of every variant is one line that already ends with its cause (`cannot open
/// '/run/x.pid': Permission denied`), the line the shell prints. So `source` is `None`: an
/// error reporter that walks the chain (anyhow, eyre, a `main` returning `Result`) would
/// otherwise print the OS error twice (the API guidelines' C-GOOD-ERR: a cause goes into the
/// message or into `source`, not both). [`Error::io_error`] hands the cause to code.
impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a chain-walking reporter prints: the error, then each source after `: `.
    fn report(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut next = e.source();
        while let Some(cause) = next {
            out.push_str(&format!(": {cause}"));
            next = cause.source();
        }
        out
    }

    #[test]
    fn a_reporter_prints_the_os_error_once() {
        let denied = || io::Error::from(io::ErrorKind::PermissionDenied);
        let errors = [
            Error::io("open", "/run/x.pid", denied()),
            Error::os("fork", denied()),
        ];
        for e in errors {
            let text = report(&e);
            let cause = denied().to_string();
            assert_eq!(text.matches(&cause).count(), 1, "{text}");
            // Lowercase, no trailing punctuation (C-GOOD-ERR).
            assert!(text.starts_with(char::is_lowercase), "{text}");
            assert!(!text.ends_with('.'), "{text}");
            assert_eq!(
                e.io_error().map(io::Error::kind),
                Some(io::ErrorKind::PermissionDenied)
            );
            assert_eq!(e.exit_code(), exit::NO_PERMISSION);
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let e = Error::UnknownAccount {
            kind: "group",
            name: "\0a\nb\u{1b}[31m".into(),
        };
        assert_eq!(e.to_string(), r"unknown group '\0a\nb\u{1b}[31m'");
        let e = Error::config("/etc/d.conf", "bad 'é' value");
        assert_eq!(
            e.to_string(),
            "configuration error in /etc/d.conf: bad 'é' value"
        );
    }

    #[test]
    fn os_failures_exit_71() {
        let e = Error::os("fork", io::Error::from_raw_os_error(nix::libc::EAGAIN));
        assert_eq!(e.exit_code(), exit::OS);
        let e = Error::os(
            "drop privileges",
            io::Error::from_raw_os_error(nix::libc::EPERM),
        );
        assert_eq!(e.exit_code(), exit::NO_PERMISSION);
        let e = Error::io(
            "write",
            "/x",
            io::Error::from_raw_os_error(nix::libc::ENOSPC),
        );
        assert_eq!(e.exit_code(), exit::CANT_CREATE);
    }
}
