//! The shell's backend for the [`log`] facade, and the choice of where lines go.
//!
//! # Targets
//!
//! If the program installed a `log` logger before [`Daemon::run`](crate::Daemon::run), the
//! shell leaves it in place, logs through it and says so ([`claim_facade`]). Otherwise
//! `log_target` decides ([`LogTarget`]); `auto`, the default, picks:
//!
//! | when | target |
//! |---|---|
//! | daemon mode | the log file (`log_file`), reopened on `SIGHUP` |
//! | foreground, stderr is the journal (`JOURNAL_STREAM` names stderr's device and inode) | journald's native protocol ([`Target::Journald`], feature `journald`) |
//! | foreground under systemd otherwise (`INVOCATION_ID` or `JOURNAL_STREAM` set) | stderr with `<N>` priority prefixes ([`Target::ConsolePrefixed`], sd-daemon(3)) |
//! | foreground | plain stderr |
//!
//! `syslog` sends RFC 3164 lines to `syslog_socket` (`/dev/log`; the `syslog`
//! module, feature `syslog`).
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
//!
//! # Formats
//!
//! - Console lines: `TIME LEVEL: message`.
//! - File lines: `TIME <name> [<pid>] LEVEL: message` (pyzenkit's two formats).
//! - Prefixed console lines: `<N>LEVEL: message`, without the time: the journal stamps every
//!   line itself.
//! - `log_format: json` ([`LogFormat::Json`]), for console and file: one JSON object per line,
//!   `{"time": TIME, "level": "info", "target": "zendaemon::daemon", "message": "...",
//!   "fields": {"daemon": name, "pid": pid, ...the record's key-values}}`.
//! - Journald: `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER` (the name), `SYSLOG_PID`, `TARGET`,
//!   the code location, and the record's key-values as fields.
//!
//! A line logged while a handler runs names it: `COMPONENT` and `EVENT` in the journal,
//! `component` and `event` among the JSON `fields` (the shell reads them from the kernel's
//! [`Activity`](zendaemon_core::Activity), [`Logger::set_context`]). The shell's own lines
//! about one component (statistics) or one event (no handler) carry the same fields, and so
//! can any line: `log::info!(component = "tail"; "...")`.
//!
//! TIME is RFC 3339 in UTC with a `Z`, to the millisecond (`2026-12-08T01:02:03.456Z`; see
//! the `civil` module for why not local time). Priorities, for prefixes, syslog and journald
//! alike (systemd-journal-logger's mapping): error 3, warn 4, info 5 (notice), debug 6, trace 7.
//!
//! The PID is read for every line, so it stays right after the daemon forks. Each line reaches
//! the OS in one `write` on a file opened with `O_APPEND` (and, as every file std opens,
//! `O_CLOEXEC`), so lines from several processes do not interleave. Nothing is buffered: a
//! line is on disk (in the page cache) before the log call returns, even if the daemon dies
//! right after.
//!
//! The level can change at run time ([`Logger::set_level`]), and [`Logger::reopen`] opens the
//! file path again after logrotate moved the old file away (call it on SIGHUP).
//! [`Logger::install`] makes a logger the process's one [`log`] backend.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use log::{LevelFilter, Log, Metadata, Record};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use nix::fcntl::OFlag;

use crate::civil::Utc;
use crate::error::{Error, Result};
use crate::safepath::{self, Dir};
pub use crate::words::{LogFormat, LogTarget};

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
    /// Standard error with sd-daemon `<N>` priority prefixes, for systemd without the journal.
    ConsolePrefixed,
    /// This file, appended to (created with mode 0640 if missing), in the file format.
    File(PathBuf),
    /// The syslog datagram socket at this path (feature `syslog`).
    Syslog(PathBuf),
    /// The systemd journal's native socket (feature `journald`).
    Journald,
}

enum Sink {
    Console,
    ConsolePrefixed,
    File {
        path: PathBuf,
        file: File,
        /// The file's directory, opened when the file first was.
        dir: Dir,
    },
    #[cfg(feature = "syslog")]
    Syslog(crate::syslog::Syslog),
    #[cfg(feature = "journald")]
    Journald(systemd_journal_logger::JournalLog),
}

impl Sink {
    fn open(name: &str, target: Target) -> Result<Sink> {
        Ok(match target {
            Target::Console => Sink::Console,
            Target::ConsolePrefixed => Sink::ConsolePrefixed,
            Target::File(path) => {
                let (file, dir) = open_log(&path)?;
                Sink::File { path, file, dir }
            }
            #[cfg(feature = "syslog")]
            Target::Syslog(path) => Sink::Syslog(crate::syslog::Syslog::connect(&path)?),
            #[cfg(feature = "journald")]
            Target::Journald => Sink::Journald(
                systemd_journal_logger::JournalLog::new()
                    .map_err(|e| Error::os("connect to the systemd journal", e))?
                    .with_syslog_identifier(name.to_owned()),
            ),
            #[allow(unreachable_patterns)]
            other => {
                let _ = name;
                let feature = match other {
                    Target::Syslog(_) => "syslog",
                    _ => "journald",
                };
                return Err(Error::config(
                    "log_target",
                    format!("'{feature}' needs zendaemon built with its '{feature}' feature"),
                ));
            }
        })
    }

    fn target(&self) -> Target {
        match self {
            Sink::Console => Target::Console,
            Sink::ConsolePrefixed => Target::ConsolePrefixed,
            Sink::File { path, .. } => Target::File(path.clone()),
            #[cfg(feature = "syslog")]
            Sink::Syslog(s) => Target::Syslog(s.path().to_path_buf()),
            #[cfg(feature = "journald")]
            Sink::Journald(_) => Target::Journald,
        }
    }
}

/// The syslog and journal priority of a level (see the module documentation).
pub const fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 5,
        log::Level::Debug => 6,
        log::Level::Trace => 7,
    }
}

/// What `log_target: auto` makes of stderr in the foreground.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// stderr is the journal: log natively.
    Journal,
    /// Under systemd, stderr is something else: `<N>` prefixes.
    Prefixed,
    /// A terminal or a plain file.
    Plain,
}

impl Console {
    /// Decides from `JOURNAL_STREAM` (`"<dev>:<ino>"`), stderr's device and inode, and whether
    /// `INVOCATION_ID` (set by systemd for every service) is present.
    pub fn detect(
        journal_stream: Option<&str>,
        stderr: Option<(u64, u64)>,
        invocation_id: bool,
    ) -> Console {
        match (journal_stream, stderr) {
            (Some(js), Some((dev, ino))) if js.trim() == format!("{dev}:{ino}") => Console::Journal,
            (Some(_), _) => Console::Prefixed,
            (None, _) if invocation_id => Console::Prefixed,
            (None, _) => Console::Plain,
        }
    }

    /// [`Console::detect`] on this process's environment and stderr.
    pub fn from_env() -> Console {
        let stderr = nix::sys::stat::fstat(std::io::stderr())
            .ok()
            .map(|st| (st.st_dev, st.st_ino));
        let js = std::env::var("JOURNAL_STREAM").ok();
        Console::detect(
            js.as_deref(),
            stderr,
            std::env::var_os("INVOCATION_ID").is_some(),
        )
    }
}

/// Names the handler running right now, if any: (component, event kind).
pub type Context = Box<dyn Fn() -> Option<(&'static str, &'static str)> + Send + Sync>;

/// A record's key-values plus the handler context's `component` and `event`.
#[cfg(feature = "journald")]
struct WithContext<'a> {
    record: &'a dyn log::kv::Source,
    component: &'static str,
    event: &'static str,
}

#[cfg(feature = "journald")]
impl log::kv::Source for WithContext<'_> {
    fn visit<'kvs>(
        &'kvs self,
        visitor: &mut dyn log::kv::VisitSource<'kvs>,
    ) -> std::result::Result<(), log::kv::Error> {
        let own = |key: &str| self.record.get(log::kv::Key::from_str(key)).is_some();
        if !own("component") {
            visitor.visit_pair("component".into(), self.component.into())?;
        }
        if !own("event") {
            visitor.visit_pair("event".into(), self.event.into())?;
        }
        self.record.visit(visitor)
    }
}

/// The shell's logger once installed; the facade calls it through [`FORWARD`].
static CURRENT: OnceLock<&'static Logger> = OnceLock::new();
/// Whether the facade's logger is ours ([`FORWARD`]).
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// The facade's logger when the shell owns the facade: hands records to [`CURRENT`].
struct Forward;

static FORWARD: Forward = Forward;

impl Log for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        CURRENT.get().is_some_and(|l| l.enabled(metadata))
    }

    fn log(&self, record: &Record<'_>) {
        if let Some(l) = CURRENT.get() {
            l.log(record);
        }
    }

    fn flush(&self) {
        if let Some(l) = CURRENT.get() {
            l.flush();
        }
    }
}

/// Takes the [`log`] facade for the shell, unless the program installed its own logger first.
/// True when the facade is the shell's (now or from before), false when the program's logger
/// has it: then [`Logger::install`] fails, and the shell logs through the program's logger.
///
/// Call it before opening a log file, so a program with its own logger never has one opened
/// for nothing.
pub fn claim_facade() -> bool {
    if CLAIMED.load(Ordering::Acquire) {
        return true;
    }
    if log::set_logger(&FORWARD).is_ok() {
        CLAIMED.store(true, Ordering::Release);
        true
    } else {
        false
    }
}

/// A [`log`] backend. Create it with [`Logger::new`], then [`Logger::install`] it.
pub struct Logger {
    name: String,
    level: AtomicUsize,
    json: AtomicBool,
    /// The handler in flight, for the `component` and `event` fields ([`Logger::set_context`]).
    context: OnceLock<Context>,
    installed: AtomicBool,
    sink: Mutex<Sink>,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.lock().target();
        f.debug_struct("Logger")
            .field("name", &self.name)
            .field("level", &self.level())
            .field("target", &target)
            .finish()
    }
}

/// Opens the log file at `path` for appending under the [ownership rules](crate::safepath),
/// with its directory, which is held for the life of the process (see the module
/// documentation).
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
    /// [`Error::Io`] when the log file cannot be opened for appending or the syslog socket
    /// cannot be reached, [`Error::Os`] when the journal cannot be reached, [`Error::Config`]
    /// for a target whose feature is off.
    pub fn new(name: &str, target: Target, level: LogLevel) -> Result<Self> {
        let sink = Sink::open(name, target)?;
        Ok(Self {
            name: name.to_owned(),
            level: AtomicUsize::new(level as usize),
            json: AtomicBool::new(false),
            context: OnceLock::new(),
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
    /// [`Error::Os`] when a logger is already installed in this process (there can be one: the
    /// shell's, or the program's, see [`claim_facade`]).
    pub fn install(self) -> Result<&'static Logger> {
        let already = || {
            Error::os(
                "install logger",
                io::Error::other("a logger is already installed in this process"),
            )
        };
        if CURRENT.get().is_some() || !claim_facade() {
            return Err(already());
        }
        let level = self.level();
        let logger: &'static Logger = Box::leak(Box::new(self));
        CURRENT.set(logger).map_err(|_| already())?;
        logger.installed.store(true, Ordering::Relaxed);
        log::set_max_level(level.to_level_filter());
        Ok(logger)
    }

    /// Tells the logger how to name the handler in flight: records logged while `context`
    /// answers get `component` and `event` fields (journald's `COMPONENT` and `EVENT`, JSON's
    /// `fields`), unless they carry their own. Set once; later calls do nothing.
    pub fn set_context(&self, context: Context) {
        let _ = self.context.set(context);
    }

    /// Writes console and file lines in `format` from now on.
    pub fn set_format(&self, format: LogFormat) {
        self.json
            .store(format == LogFormat::Json, Ordering::Relaxed);
    }

    /// The format of console and file lines.
    pub fn format(&self) -> LogFormat {
        if self.json.load(Ordering::Relaxed) {
            LogFormat::Json
        } else {
            LogFormat::Text
        }
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
        let sink = Sink::open(&self.name, target)?;
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
            Sink::File { file, .. } => Some(file.as_raw_fd()),
            _ => None,
        }
    }

    /// The syslog socket's descriptor, `None` for other targets; kept across daemonizing as
    /// [`file_fd`](Self::file_fd) is.
    pub fn socket_fd(&self) -> Option<RawFd> {
        match &*self.lock() {
            #[cfg(feature = "syslog")]
            Sink::Syslog(s) => Some(s.fd()),
            _ => None,
        }
    }

    /// The current target.
    pub fn target(&self) -> Target {
        self.lock().target()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        // A panic while holding the lock cannot leave the sink inconsistent: keep logging.
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn text_line(&self, sink: &Sink, record: &Record<'_>) -> String {
        use fmt::Write as _;
        let ts = Utc::from_system_time(SystemTime::now()).rfc3339();
        let mut line = String::with_capacity(64);
        let _ = match sink {
            Sink::File { .. } => writeln!(
                line,
                "{ts} {} [{}] {}: {}",
                self.name,
                std::process::id(),
                record.level(),
                record.args()
            ),
            Sink::ConsolePrefixed => writeln!(
                line,
                "<{}>{}: {}",
                priority(record.level()),
                record.level(),
                record.args()
            ),
            _ => writeln!(line, "{ts} {}: {}", record.level(), record.args()),
        };
        line
    }

    fn json_line(&self, record: &Record<'_>) -> String {
        let mut fields = serde_json::Map::new();
        fields.insert("daemon".into(), self.name.as_str().into());
        fields.insert("pid".into(), std::process::id().into());
        if let Some((component, event)) = self.context.get().and_then(|c| c()) {
            fields.insert("component".into(), component.into());
            fields.insert("event".into(), event.into());
        }
        let _ = record.key_values().visit(&mut JsonFields(&mut fields));
        let level = LogLevel::ALL[record.level() as usize - 1];
        let object = serde_json::json!({
            "time": Utc::from_system_time(SystemTime::now()).rfc3339().to_string(),
            "level": level.as_str(),
            "target": record.target(),
            "message": record.args().to_string(),
            "fields": fields,
        });
        let mut line = object.to_string();
        line.push('\n');
        line
    }
}

/// Collects a record's key-values as JSON values (numbers and booleans stay typed).
struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> std::result::Result<(), log::kv::Error> {
        let v = if let Some(b) = value.to_bool() {
            b.into()
        } else if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(x) = value.to_f64() {
            x.into()
        } else {
            value.to_string().into()
        };
        self.0.insert(key.as_str().to_owned(), v);
        Ok(())
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
        let line = match &*sink {
            #[cfg(feature = "syslog")]
            Sink::Syslog(_) => String::new(),
            #[cfg(feature = "journald")]
            Sink::Journald(_) => String::new(),
            _ if self.json.load(Ordering::Relaxed) => self.json_line(record),
            other => self.text_line(other, record),
        };
        // A failed log write has nowhere to be reported; it is dropped.
        let _ = match &mut *sink {
            Sink::Console | Sink::ConsolePrefixed => io::stderr().lock().write_all(line.as_bytes()),
            Sink::File { file, .. } => file.write_all(line.as_bytes()),
            #[cfg(feature = "syslog")]
            Sink::Syslog(s) => {
                let message = record.args().to_string();
                s.send(priority(record.level()), &self.name, &message);
                Ok(())
            }
            #[cfg(feature = "journald")]
            Sink::Journald(j) => match self.context.get().and_then(|c| c()) {
                None => j.journal_send(record),
                Some((component, event)) => {
                    let kvs = WithContext {
                        record: record.key_values(),
                        component,
                        event,
                    };
                    j.journal_send(
                        &Record::builder()
                            .args(*record.args())
                            .metadata(record.metadata().clone())
                            .module_path(record.module_path())
                            .file(record.file())
                            .line(record.line())
                            .key_values(&kvs)
                            .build(),
                    )
                }
            },
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
            // "YYYY-mm-ddTHH:MM:SS.mmmZ" prefix: RFC 3339, UTC.
            let ts = &line[..24];
            assert_eq!(&ts[4..5], "-");
            assert_eq!(&ts[10..11], "T");
            assert_eq!(&ts[13..14], ":");
            assert_eq!(&ts[19..20], ".");
            assert_eq!(&ts[23..24], "Z", "{line}");
            assert_eq!(&line[24..25], " ");
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
    fn console_detection() {
        use Console::*;
        assert_eq!(
            Console::detect(Some("8:1234"), Some((8, 1234)), true),
            Journal
        );
        assert_eq!(
            Console::detect(Some("8:1234\n"), Some((8, 1234)), false),
            Journal
        );
        // JOURNAL_STREAM names another file (stderr was redirected): systemd, not the journal.
        assert_eq!(
            Console::detect(Some("8:1234"), Some((8, 99)), false),
            Prefixed
        );
        assert_eq!(Console::detect(None, Some((8, 1)), true), Prefixed);
        assert_eq!(Console::detect(None, Some((8, 1)), false), Plain);
        assert_eq!(Console::detect(None, None, false), Plain);
    }

    #[test]
    fn prefixed_lines_carry_the_priority() {
        let logger = Logger::new("d", Target::ConsolePrefixed, LogLevel::Trace).unwrap();
        let sink = logger.lock();
        let line = |level: Level| {
            logger.text_line(
                &sink,
                &Record::builder()
                    .level(level)
                    .args(format_args!("m"))
                    .build(),
            )
        };
        assert_eq!(line(Level::Error), "<3>ERROR: m\n");
        assert_eq!(line(Level::Warn), "<4>WARN: m\n");
        assert_eq!(line(Level::Info), "<5>INFO: m\n");
        assert_eq!(line(Level::Debug), "<6>DEBUG: m\n");
        assert_eq!(line(Level::Trace), "<7>TRACE: m\n");
    }

    #[test]
    fn json_lines_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        let logger = Logger::new("jd", Target::File(path.clone()), LogLevel::Info).unwrap();
        logger.set_format(LogFormat::Json);
        assert_eq!(logger.format(), LogFormat::Json);
        let kvs: &[(&str, log::kv::Value<'_>)] = &[
            ("component", log::kv::Value::from("worker")),
            ("n", log::kv::Value::from(7u64)),
        ];
        logger.log(
            &Record::builder()
                .level(Level::Warn)
                .target("zendaemon::daemon")
                .args(format_args!("a \"quoted\"\nline"))
                .key_values(&kvs)
                .build(),
        );
        emit(&logger, Level::Info, "plain");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["level"], "warn");
        assert_eq!(first["target"], "zendaemon::daemon");
        assert_eq!(first["message"], "a \"quoted\"\nline");
        assert_eq!(first["fields"]["component"], "worker");
        assert_eq!(first["fields"]["n"], 7);
        assert_eq!(first["fields"]["daemon"], "jd");
        assert_eq!(first["fields"]["pid"], std::process::id());
        let time = first["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T",
            "{time}"
        );
        assert_eq!(lines[1]["level"], "info");
    }

    #[cfg(not(feature = "syslog"))]
    #[test]
    fn a_target_without_its_feature_is_a_configuration_error() {
        let err = Logger::new("d", Target::Syslog("/dev/log".into()), LogLevel::Info).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::CONFIG);
        assert!(err.to_string().contains("'syslog' feature"), "{err}");
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
