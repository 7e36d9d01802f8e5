//! The shell's backend for the [`log`] facade: console (stderr) or an appended log file.
//!
//! - Console lines: `YYYY-mm-dd HH:MM:SS LEVEL: message`.
//! - File lines: `YYYY-mm-dd HH:MM:SS <name> [<pid>] LEVEL: message` (pyzenkit's two formats).
//!
//! Timestamps are UTC (see the `civil` module for why not local time). The PID is read for
//! every line, so it stays right after the daemon forks. Each line reaches the OS in one
//! `write` on a file opened with `O_APPEND` (and, as every file std opens, `O_CLOEXEC`), so
//! lines from several processes do not interleave. Nothing is buffered: a line is on disk
//! (in the page cache) before the log call returns, even if the daemon dies right after.
//!
//! The level can change at run time ([`Logger::set_level`]), and [`Logger::reopen`] opens the
//! file path again after logrotate moved the old file away (call it on SIGHUP).
//!
//! The log file is opened under the [ownership rules](crate::safepath): through its
//! directory's descriptor, never following a symbolic link at the path (root would append to
//! whatever file a planted link names), and only if it is a regular file of a trusted owner.
//! The directory's descriptor is kept (and [held](crate::safepath::hold_dir) across
//! daemonizing), and [`Logger::reopen`] opens the new file relative to it: after a privilege
//! drop (`--user`) or a chroot the path may be out of reach, but the directory needs only to be
//! writable by the service user. With `--user`, keep the log in a directory the service user
//! may write to (for example `/var/log/<name>/`, owned by it), or let logrotate create the new
//! file (`create` with the service user as owner) or copy and truncate (`copytruncate`).
//! [`Logger::install`] makes a logger the process's one [`log`] backend.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use log::{LevelFilter, Log, Metadata, Record};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use nix::fcntl::OFlag;

use crate::civil::Utc;
use crate::error::{Error, Result};
use crate::safepath::{self, Dir};

/// A log level as the `--log-level` flag and the `log_level` key spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LogLevel {
    /// `error`
    Error,
    /// `warn`
    Warn,
    /// `info` (the default)
    #[default]
    Info,
    /// `debug`
    Debug,
    /// `trace`
    Trace,
}

impl LogLevel {
    /// Every level, most severe first.
    pub const ALL: [LogLevel; 5] = [
        Self::Error,
        Self::Warn,
        Self::Info,
        Self::Debug,
        Self::Trace,
    ];

    /// The name used on the command line and in configuration files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }

    /// The matching [`log`] filter.
    pub const fn to_level_filter(self) -> LevelFilter {
        match self {
            Self::Error => LevelFilter::Error,
            Self::Warn => LevelFilter::Warn,
            Self::Info => LevelFilter::Info,
            Self::Debug => LevelFilter::Debug,
            Self::Trace => LevelFilter::Trace,
        }
    }

    fn from_index(i: usize) -> Self {
        Self::ALL[i.min(4)]
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = String;

    /// Parses one of `error`, `warn`, `info`, `debug`, `trace` (ASCII case ignored).
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| "expected one of error, warn, info, debug, trace".to_owned())
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard error, in the console format.
    Console,
    /// This file, appended to (created with mode 0640 if missing), in the file format.
    File(PathBuf),
}

enum Sink {
    Console,
    File {
        path: PathBuf,
        file: File,
        /// The file's directory, opened when the file first was.
        dir: Dir,
    },
}

/// A [`log`] backend. Create it with [`Logger::new`], then [`Logger::install`] it.
pub struct Logger {
    name: String,
    level: AtomicUsize,
    installed: AtomicBool,
    sink: Mutex<Sink>,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &*self.sink.lock().unwrap_or_else(|e| e.into_inner()) {
            Sink::Console => Target::Console,
            Sink::File { path, .. } => Target::File(path.clone()),
        };
        f.debug_struct("Logger")
            .field("name", &self.name)
            .field("level", &self.level())
            .field("target", &target)
            .finish()
    }
}

/// Opens the log file at `path` for appending (see the module documentation), with its
/// directory, which is held for the life of the process.
fn open_log(path: &Path) -> Result<(File, Dir)> {
    let (dir, name) = Dir::open_parent(path).map_err(|e| Error::io("open log file", path, e))?;
    let file = open_in(&dir, &name, path)?;
    safepath::hold_dir(dir.clone());
    Ok((file, dir))
}

fn open_in(dir: &Dir, name: &OsStr, path: &Path) -> Result<File> {
    dir.open_file(
        name,
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
        0o640,
    )
    .map_err(|e| Error::io("open log file", path, e))
}

impl Logger {
    /// A logger for daemon `name` that writes to `target` the records at `level` or above.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the log file cannot be opened for appending.
    pub fn new(name: &str, target: Target, level: LogLevel) -> Result<Self> {
        let sink = match target {
            Target::Console => Sink::Console,
            Target::File(path) => {
                let (file, dir) = open_log(&path)?;
                Sink::File { path, file, dir }
            }
        };
        Ok(Self {
            name: name.to_owned(),
            level: AtomicUsize::new(level as usize),
            installed: AtomicBool::new(false),
            sink: Mutex::new(sink),
        })
    }

    /// Makes this logger the process's [`log`] backend and returns a handle to it for
    /// [`set_level`](Self::set_level) and [`reopen`](Self::reopen). The logger lives until the
    /// process exits.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] when a logger is already installed in this process (there can be one).
    pub fn install(self) -> Result<&'static Logger> {
        let level = self.level();
        let logger: &'static Logger = Box::leak(Box::new(self));
        log::set_logger(logger).map_err(|_| {
            Error::os(
                "install logger",
                io::Error::other("a logger is already installed in this process"),
            )
        })?;
        logger.installed.store(true, Ordering::Relaxed);
        log::set_max_level(level.to_level_filter());
        Ok(logger)
    }

    /// The current level.
    pub fn level(&self) -> LogLevel {
        LogLevel::from_index(self.level.load(Ordering::Relaxed))
    }

    /// Changes the level; for an installed logger also the facade's global maximum, so filtered
    /// records cost nothing.
    pub fn set_level(&self, level: LogLevel) {
        self.level.store(level as usize, Ordering::Relaxed);
        if self.installed.load(Ordering::Relaxed) {
            log::set_max_level(level.to_level_filter());
        }
    }

    /// Sends the following lines to `target` instead (for example the console before
    /// daemonizing, the log file after).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the new log file cannot be opened; the old target is kept.
    pub fn set_target(&self, target: Target) -> Result<()> {
        let sink = match target {
            Target::Console => Sink::Console,
            Target::File(path) => {
                let (file, dir) = open_log(&path)?;
                Sink::File { path, file, dir }
            }
        };
        *self.lock() = sink;
        Ok(())
    }

    /// Opens the log file's name again in the directory held since it was first opened
    /// (after logrotate renamed the file, the following lines go to a new file by the old
    /// name). Does nothing for the console.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be opened (or is refused); lines keep going to the
    /// old file.
    pub fn reopen(&self) -> Result<()> {
        let mut sink = self.lock();
        if let Sink::File { path, file, dir } = &mut *sink {
            let name = path.file_name().unwrap_or_default().to_os_string();
            *file = open_in(dir, &name, path)?;
        }
        Ok(())
    }

    /// The log file's descriptor, `None` on the console. The daemon keeps it open across
    /// [`daemonize`](crate::daemonize::daemonize) (in
    /// [`DaemonOptions::keep_fds`](crate::daemonize::DaemonOptions::keep_fds)), so a log file
    /// opened before forking stays usable after a chroot or a privilege drop. [`reopen`](Self::reopen) and
    /// [`set_target`](Self::set_target) change it.
    pub fn file_fd(&self) -> Option<RawFd> {
        match &*self.lock() {
            Sink::Console => None,
            Sink::File { file, .. } => Some(file.as_raw_fd()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        // A panic while holding the lock cannot leave the sink inconsistent: keep logging.
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn format(&self, sink: &Sink, record: &Record<'_>) -> String {
        use fmt::Write as _;
        let ts = Utc::from_system_time(SystemTime::now()).display();
        let mut line = String::with_capacity(64);
        let _ = match sink {
            Sink::Console => writeln!(line, "{ts} {}: {}", record.level(), record.args()),
            Sink::File { .. } => writeln!(
                line,
                "{ts} {} [{}] {}: {}",
                self.name,
                std::process::id(),
                record.level(),
                record.args()
            ),
        };
        line
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level().to_level_filter()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut sink = self.lock();
        let line = self.format(&sink, record);
        // A failed log write has nowhere to be reported; it is dropped.
        let _ = match &mut *sink {
            Sink::Console => io::stderr().lock().write_all(line.as_bytes()),
            Sink::File { file, .. } => file.write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {
        if let Sink::File { file, .. } = &mut *self.lock() {
            let _ = file.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    fn emit(logger: &Logger, level: Level, msg: &str) {
        logger.log(
            &Record::builder()
                .level(level)
                .args(format_args!("{msg}"))
                .build(),
        );
    }

    #[test]
    fn levels_parse_and_print() {
        for l in LogLevel::ALL {
            assert_eq!(l.as_str().parse::<LogLevel>().unwrap(), l);
            assert_eq!(l.to_string(), l.as_str());
        }
        assert_eq!("DEBUG".parse::<LogLevel>().unwrap(), LogLevel::Debug);
        assert!("warning".parse::<LogLevel>().is_err());
        assert!("".parse::<LogLevel>().is_err());
        assert_eq!(LogLevel::default(), LogLevel::Info);
        assert_eq!(
            serde_json::to_string(&LogLevel::Warn).unwrap(),
            "\"warn\"".to_owned()
        );
        assert_eq!(
            serde_json::from_str::<LogLevel>("\"trace\"").unwrap(),
            LogLevel::Trace
        );
        assert!(serde_json::from_str::<LogLevel>("\"loud\"").is_err());
    }

    #[test]
    fn file_lines_and_filtering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        let logger = Logger::new("tail", Target::File(path.clone()), LogLevel::Info).unwrap();
        emit(&logger, Level::Info, "hello");
        emit(&logger, Level::Debug, "hidden");
        emit(&logger, Level::Error, "bad");
        logger.set_level(LogLevel::Debug);
        assert_eq!(logger.level(), LogLevel::Debug);
        emit(&logger, Level::Debug, "now visible");
        emit(&logger, Level::Trace, "still hidden");

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let pid = std::process::id();
        let suffixes = [
            format!(" tail [{pid}] INFO: hello"),
            format!(" tail [{pid}] ERROR: bad"),
            format!(" tail [{pid}] DEBUG: now visible"),
        ];
        for (line, suffix) in lines.iter().zip(&suffixes) {
            assert!(line.ends_with(suffix.as_str()), "{line}");
            // "YYYY-mm-dd HH:MM:SS" prefix.
            let ts = &line[..19];
            assert_eq!(ts.len(), 19);
            assert_eq!(&ts[4..5], "-");
            assert_eq!(&ts[10..11], " ");
            assert_eq!(&ts[13..14], ":");
            assert!(ts[..4].chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn appends_to_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        std::fs::write(&path, "old line\n").unwrap();
        let logger = Logger::new("d", Target::File(path.clone()), LogLevel::Info).unwrap();
        emit(&logger, Level::Warn, "new");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("old line\n"));
        assert!(text.trim_end().ends_with("WARN: new"));
    }

    #[test]
    fn reopen_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        let rotated = dir.path().join("d.log.1");
        let logger = Logger::new("d", Target::File(path.clone()), LogLevel::Info).unwrap();
        emit(&logger, Level::Info, "before");
        std::fs::rename(&path, &rotated).unwrap();
        emit(&logger, Level::Info, "after rename");
        logger.reopen().unwrap();
        emit(&logger, Level::Info, "after reopen");

        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            old.contains("before") && old.contains("after rename"),
            "{old}"
        );
        assert!(!old.contains("after reopen"));
        assert_eq!(new.lines().count(), 1);
        assert!(new.contains("after reopen"), "{new}");
    }

    #[test]
    fn open_and_reopen_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("missing/d.log");
        let err = Logger::new("d", Target::File(bad), LogLevel::Info).unwrap_err();
        assert!(err.to_string().contains("missing/d.log"), "{err}");

        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("d.log");
        let logger = Logger::new("d", Target::File(path.clone()), LogLevel::Info).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_dir(&sub).unwrap();
        assert!(logger.reopen().is_err());
        // The old (unlinked) file is kept; logging does not panic.
        emit(&logger, Level::Info, "into the void");
    }

    #[test]
    fn switch_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        let logger = Logger::new("d", Target::Console, LogLevel::Error).unwrap();
        assert!(logger.reopen().is_ok());
        logger.set_target(Target::File(path.clone())).unwrap();
        emit(&logger, Level::Error, "to file");
        assert!(std::fs::read_to_string(&path).unwrap().contains("to file"));
        assert!(logger
            .set_target(Target::File(dir.path().join("no/x.log")))
            .is_err());
        emit(&logger, Level::Error, "still to file");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        assert!(format!("{logger:?}").contains("d.log"));
    }

    #[test]
    fn install_once() {
        // The only test that installs: the facade's logger is process-global.
        let logger = Logger::new("d", Target::Console, LogLevel::Warn)
            .unwrap()
            .install()
            .unwrap();
        assert_eq!(log::max_level(), LevelFilter::Warn);
        logger.set_level(LogLevel::Trace);
        assert_eq!(log::max_level(), LevelFilter::Trace);
        logger.set_level(LogLevel::Warn);
        let again = Logger::new("d", Target::Console, LogLevel::Warn).unwrap();
        assert!(again.install().is_err());
    }
}
