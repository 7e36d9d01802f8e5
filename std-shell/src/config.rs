//! The effective configuration: defaults, configuration files and the command line, merged.
//!
//! # Sources and precedence
//!
//! Lowest first (pyzenkit's order):
//! 1. the defaults ([`DefaultPaths`] for the paths, the `DEFAULT_*` constants for the rest);
//! 2. the configuration directory's `*.json.conf` files, in file-name order (other files are
//!    ignored, and so are directories and broken links);
//! 3. the configuration file;
//! 4. the command line ([`Cli::overrides`]).
//!
//! The merge is shallow: a later source's top-level value replaces the earlier one whole (a
//! component's section in the file replaces the directory's section; it is not merged key by
//! key). A `null` value in a file is skipped, so it never erases anything.
//!
//! # File format
//!
//! JSON whose top level is an object. A whole line whose first non-blank characters are `#` or
//! `//` is a comment (pyzenkit's rule; there are no trailing comments). An empty file, or one with
//! only comments, is an empty object.
//!
//! # Errors (all [`Error::Config`], exit code 78, naming the file and what is wrong)
//!
//! - A missing configuration file or directory is fine while it is the default path, and an error
//!   when it was given with `--config-file` or `--config-dir`.
//! - Malformed JSON: the message has the line and column (comment lines count, so they match an
//!   editor's).
//! - A key that neither the shell ([`SHELL_KEYS`]) nor a component declares: a typo, named with
//!   the file it came from.
//! - A shell key with a bad value (umask `"abc"`, a negative interval).
//! - `name`, `config_file` and `config_dir` belong to the command line: the name decides where the
//!   configuration is looked for, so a file cannot change it or redirect the loading that found
//!   it. A file may repeat the value in effect (so the output of `config-view` can be saved as a
//!   configuration file); any other value is an error.
//!
//! # Value types in files
//!
//! Paths, `user`, `group`: strings. `no_daemon`, `parallel`, `precise_timers`: booleans.
//! `stats_interval`, `runlog_interval`, `pstate_interval`, `stop_timeout`, `start_timeout`,
//! `watchdog_margin`, `precise_max_spin`: numbers of seconds,
//! decimals allowed, at least 0.001.
//! `umask`: an octal string (`"022"`, `"0o022"`) or, as pyzenkit wrote it, a decimal integer
//! (`18` is `0o022`). `log_level`: `"error"`…`"trace"`. `log_target`, `log_format`, `sigterm`:
//! one word (see [`crate::words`]). `action`: an action name. `limit`: a
//! positive integer. `chroot_dir`, `user`, `group`, `action`, `input`, `limit`, `metrics_file`
//! may be `null`.
//!
//! # Components
//!
//! Each component declares a top-level key (for example `"tail": {...}`) and reads its value
//! with [`Config::component`], deserialized with serde into its own settings type.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::cli::{self, Action, Cli};
use crate::error::{Error, Result};
use crate::logging::LogLevel;
use crate::paths::{self, DefaultPaths};
use crate::words::{LogFormat, LogTarget, Sigterm};

/// Every configuration key of the shell: the long flag names with `_` for `-`.
pub const SHELL_KEYS: [&str; 32] = [
    "name",
    "no_daemon",
    "pid_file",
    "work_dir",
    "chroot_dir",
    "umask",
    "user",
    "group",
    "state_file",
    "runlog_dir",
    "stats_interval",
    "runlog_interval",
    "pstate_interval",
    "stop_timeout",
    "start_timeout",
    "watchdog_margin",
    "parallel",
    "precise_timers",
    "precise_max_spin",
    "config_file",
    "config_dir",
    "pstate_file",
    "log_file",
    "log_level",
    "log_target",
    "log_format",
    "syslog_socket",
    "metrics_file",
    "sigterm",
    "action",
    "input",
    "limit",
];

/// Keys a file may only repeat with the value in effect (see the module documentation).
const COMMAND_LINE_ONLY: [&str; 3] = ["name", "config_file", "config_dir"];

/// Shell keys a program cannot give its own default for ([`Config::load_with_defaults`]): they
/// say where the configuration is or what this command does, not how the daemon runs.
const NO_PROGRAM_DEFAULT: [&str; 4] = ["name", "config_file", "config_dir", "action"];

/// The suffix of the files read from the configuration directory.
pub const DIR_SUFFIX: &str = ".json.conf";

/// Default seconds between statistics log lines.
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(300);
/// Default seconds between runlog saves.
pub const DEFAULT_RUNLOG_INTERVAL: Duration = Duration::from_secs(300);
/// Default seconds between checkpoints of the persistent state: a crash redoes at most this
/// much work.
pub const DEFAULT_PSTATE_INTERVAL: Duration = Duration::from_secs(60);
/// Default seconds a graceful stop may take.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default seconds the launching process waits for the daemon's readiness.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(90);
/// Default margin of the stop watchdog (see [`crate::watchdog`]).
pub const DEFAULT_WATCHDOG_MARGIN: Duration = Duration::from_secs(1);
/// Default longest spin per wake-up with precise timers (see [`crate::precise`]).
pub const DEFAULT_PRECISE_MAX_SPIN: Duration = crate::precise::DEFAULT_MAX_SPIN;
/// Default umask.
pub const DEFAULT_UMASK: u32 = 0o002;
/// Default working directory.
pub const DEFAULT_WORK_DIR: &str = "/";
/// Default syslog socket.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

/// The shell's settings, typed. Built by [`Config::load`]; serializes back to the same keys and
/// value forms (for the state file).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Settings {
    /// The daemon's name.
    pub name: String,
    /// Stay in the foreground.
    pub no_daemon: bool,
    /// The pidfile.
    pub pid_file: PathBuf,
    /// The daemon's working directory.
    pub work_dir: PathBuf,
    /// The directory to chroot into, if any.
    pub chroot_dir: Option<PathBuf>,
    /// The umask.
    #[serde(serialize_with = "ser_umask")]
    pub umask: u32,
    /// The user to run as (name or number, resolved at privilege drop).
    pub user: Option<String>,
    /// The group to run as (name or number).
    pub group: Option<String>,
    /// The state file (SIGUSR2).
    pub state_file: PathBuf,
    /// The runlog directory.
    pub runlog_dir: PathBuf,
    /// Between statistics log lines.
    #[serde(serialize_with = "ser_seconds")]
    pub stats_interval: Duration,
    /// Between runlog saves.
    #[serde(serialize_with = "ser_seconds")]
    pub runlog_interval: Duration,
    /// Between checkpoints of the persistent state file.
    #[serde(serialize_with = "ser_seconds")]
    pub pstate_interval: Duration,
    /// How long a graceful stop may take.
    #[serde(serialize_with = "ser_seconds")]
    pub stop_timeout: Duration,
    /// How long the launching process waits for the daemon to report ready (daemon mode).
    #[serde(serialize_with = "ser_seconds")]
    pub start_timeout: Duration,
    /// How long the stop watchdog lets the run go on beyond the stop timeout, and after
    /// `SIGTERM` or the third `SIGINT`, before it ends the process (see [`crate::watchdog`]).
    #[serde(serialize_with = "ser_seconds")]
    pub watchdog_margin: Duration,
    /// Parallel mode.
    pub parallel: bool,
    /// Precise timers: the loop wakes a learned margin before each deadline and spins on the
    /// clock for the rest, trading CPU time (up to `precise_max_spin` per timed wake-up) for
    /// timers on time to a few microseconds (see [`crate::precise`]). Off by default.
    pub precise_timers: bool,
    /// With precise timers, the largest margin, so the longest spin per wake-up.
    #[serde(serialize_with = "ser_seconds")]
    pub precise_max_spin: Duration,
    /// The configuration file (whether or not it exists).
    pub config_file: PathBuf,
    /// The configuration directory (whether or not it exists).
    pub config_dir: PathBuf,
    /// The persistent state file.
    pub pstate_file: PathBuf,
    /// The log file (daemon mode).
    pub log_file: PathBuf,
    /// The log level.
    pub log_level: LogLevel,
    /// Where log lines go.
    pub log_target: LogTarget,
    /// How console and file lines look.
    pub log_format: LogFormat,
    /// The syslog socket (`log_target` `syslog`).
    pub syslog_socket: PathBuf,
    /// The Prometheus text file written every statistics interval, if any.
    pub metrics_file: Option<PathBuf>,
    /// What `SIGTERM` means.
    pub sigterm: Sigterm,
    /// The action to run instead of the daemon, if any.
    pub action: Option<Action>,
    /// The runlog for `runlog-view`, if given.
    pub input: Option<PathBuf>,
    /// The limit of the `runlogs-*` actions, if given.
    pub limit: Option<usize>,
}

fn ser_umask<S: Serializer>(mask: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&cli::format_umask(*mask))
}

fn ser_seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    cli::seconds_value(*d).serialize(s)
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in defaults.
    Default,
    /// A configuration file (from the directory, or the file itself).
    File(PathBuf),
    /// The command line.
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("the defaults"),
            Self::File(p) => write!(f, "{}", p.display()),
            Self::CommandLine => f.write_str("the command line"),
        }
    }
}

/// What a (re)load starts from: everything but the files' contents.
#[derive(Debug, Clone)]
struct Sources {
    defaults: Map<String, Value>,
    cli: Map<String, Value>,
    config_file: PathBuf,
    file_explicit: bool,
    config_dir: PathBuf,
    dir_explicit: bool,
    component_keys: BTreeSet<String>,
}

/// The effective configuration: the typed [`Settings`], the merged raw JSON (with components'
/// sections), and where each key came from.
#[derive(Debug, Clone)]
pub struct Config {
    settings: Settings,
    raw: Map<String, Value>,
    origins: BTreeMap<String, Origin>,
    files: Vec<PathBuf>,
    sources: Sources,
}

fn path_value(p: &Path) -> Value {
    Value::from(p.to_string_lossy())
}

/// The defaults layer: every shell key, `null` for those without a default.
fn defaults_map(name: &str, d: &DefaultPaths) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("name", Value::from(name));
    put("no_daemon", Value::Bool(false));
    put("pid_file", path_value(&d.pid_file));
    put("work_dir", Value::from(DEFAULT_WORK_DIR));
    put("chroot_dir", Value::Null);
    put("umask", Value::from(cli::format_umask(DEFAULT_UMASK)));
    put("user", Value::Null);
    put("group", Value::Null);
    put("state_file", path_value(&d.state_file));
    put("runlog_dir", path_value(&d.runlog_dir));
    put("stats_interval", cli::seconds_value(DEFAULT_STATS_INTERVAL));
    put(
        "runlog_interval",
        cli::seconds_value(DEFAULT_RUNLOG_INTERVAL),
    );
    put(
        "pstate_interval",
        cli::seconds_value(DEFAULT_PSTATE_INTERVAL),
    );
    put("stop_timeout", cli::seconds_value(DEFAULT_STOP_TIMEOUT));
    put("start_timeout", cli::seconds_value(DEFAULT_START_TIMEOUT));
    put(
        "watchdog_margin",
        cli::seconds_value(DEFAULT_WATCHDOG_MARGIN),
    );
    put("parallel", Value::Bool(false));
    put("precise_timers", Value::Bool(false));
    put(
        "precise_max_spin",
        cli::seconds_value(DEFAULT_PRECISE_MAX_SPIN),
    );
    put("config_file", path_value(&d.config_file));
    put("config_dir", path_value(&d.config_dir));
    put("pstate_file", path_value(&d.pstate_file));
    put("log_file", path_value(&d.log_file));
    put("log_level", Value::from(LogLevel::default().as_str()));
    put("log_target", Value::from(LogTarget::default().as_str()));
    put("log_format", Value::from(LogFormat::default().as_str()));
    put("syslog_socket", Value::from(DEFAULT_SYSLOG_SOCKET));
    put("metrics_file", Value::Null);
    put("sigterm", Value::from(Sigterm::default().as_str()));
    put("action", Value::Null);
    put("input", Value::Null);
    put("limit", Value::Null);
    m
}

/// Parses a configuration file's text: JSON, whole-line `#` and `//` comments, top-level object.
/// `source` names the file in errors.
///
/// # Errors
///
/// [`Error::Config`] naming `source`, with line and column for malformed JSON.
pub fn parse_json_conf(text: &str, source: &str) -> Result<Map<String, Value>> {
    // Comment lines become empty lines, so line numbers in errors stay the file's.
    let stripped: String = text
        .split('\n')
        .map(|line| {
            let t = line.trim_start();
            if t.starts_with('#') || t.starts_with("//") {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    if stripped.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(&stripped) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::config(source, "the top level must be a JSON object")),
        Err(e) => Err(Error::config(source, format!("malformed JSON: {e}"))),
    }
}

/// Reads the configuration file at `path`; `Ok(None)` when it does not exist and may be missing.
fn read_file(path: &Path, explicit: bool) -> Result<Option<Map<String, Value>>> {
    let source = path.display().to_string();
    match fs::read_to_string(path) {
        Ok(text) => parse_json_conf(&text, &source).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::config(
            source,
            "the configuration file does not exist",
        )),
        Err(e) => Err(Error::config(source, format!("cannot read: {e}"))),
    }
}

/// The `*.json.conf` files of the directory at `path`, in name order.
fn dir_files(path: &Path, explicit: bool) -> Result<Vec<PathBuf>> {
    let source = || path.display().to_string();
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => return Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::config(
                source(),
                "the configuration directory does not exist",
            ))
        }
        Err(e) => return Err(Error::config(source(), format!("cannot read: {e}"))),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::config(source(), format!("cannot read: {e}")))?;
        let p = entry.path();
        let matches = entry
            .file_name()
            .as_bytes()
            .ends_with(DIR_SUFFIX.as_bytes());
        if matches && fs::metadata(&p).is_ok_and(|m| m.is_file()) {
            files.push(p);
        }
    }
    files.sort_unstable_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

impl Sources {
    /// Checks a file's keys: declared by the shell or a component; command-line-only keys
    /// only with the value in effect.
    fn check_keys(&self, map: &Map<String, Value>, path: &Path) -> Result<()> {
        for (key, value) in map {
            if COMMAND_LINE_ONLY.contains(&key.as_str()) {
                let effective = self.cli.get(key).or_else(|| self.defaults.get(key));
                if !value.is_null() && Some(value) != effective {
                    let flag = key.replace('_', "-");
                    return Err(Error::config(
                        path.display().to_string(),
                        format!(
                            "key '{key}' cannot be changed in a configuration file (it may only \
                             repeat the value in effect, {}); use --{flag}",
                            effective.unwrap_or(&Value::Null)
                        ),
                    ));
                }
            } else if !SHELL_KEYS.contains(&key.as_str()) && !self.component_keys.contains(key) {
                return Err(Error::config(
                    path.display().to_string(),
                    format!("unknown key '{key}': neither the shell nor any component declares it"),
                ));
            }
        }
        Ok(())
    }

    fn load(self) -> Result<Config> {
        let mut raw = self.defaults.clone();
        let mut origins: BTreeMap<String, Origin> =
            raw.keys().map(|k| (k.clone(), Origin::Default)).collect();
        let mut files = Vec::new();

        let mut layers = Vec::new();
        for path in dir_files(&self.config_dir, self.dir_explicit)? {
            let map = read_file(&path, true)?.unwrap_or_default();
            layers.push((path, map));
        }
        if let Some(map) = read_file(&self.config_file, self.file_explicit)? {
            layers.push((self.config_file.clone(), map));
        }
        for (path, map) in layers {
            self.check_keys(&map, &path)?;
            for (key, value) in map {
                if !value.is_null() {
                    origins.insert(key.clone(), Origin::File(path.clone()));
                    raw.insert(key, value);
                }
            }
            files.push(path);
        }
        for (key, value) in &self.cli {
            origins.insert(key.clone(), Origin::CommandLine);
            raw.insert(key.clone(), value.clone());
        }

        let settings = Fields {
            raw: &raw,
            origins: &origins,
        }
        .settings()?;
        Ok(Config {
            settings,
            raw,
            origins,
            files,
            sources: self,
        })
    }
}

/// Typed access to the merged keys, with errors naming the key and its origin.
struct Fields<'a> {
    raw: &'a Map<String, Value>,
    origins: &'a BTreeMap<String, Origin>,
}

impl Fields<'_> {
    fn get<T>(&self, key: &str, conv: impl Fn(&Value) -> Result<T, String>) -> Result<Option<T>> {
        match self.raw.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => conv(v).map(Some).map_err(|why| {
                let origin = self.origins.get(key).unwrap_or(&Origin::Default);
                Error::config(origin.to_string(), format!("key '{key}': {why} (got {v})"))
            }),
        }
    }

    fn required<T>(&self, key: &str, conv: impl Fn(&Value) -> Result<T, String>) -> Result<T> {
        self.get(key, conv)?.ok_or_else(|| {
            let origin = self.origins.get(key).unwrap_or(&Origin::Default);
            Error::config(origin.to_string(), format!("key '{key}' has no value"))
        })
    }

    fn settings(&self) -> Result<Settings> {
        Ok(Settings {
            name: self.required("name", name)?,
            no_daemon: self.required("no_daemon", boolean)?,
            pid_file: self.required("pid_file", path)?,
            work_dir: self.required("work_dir", path)?,
            chroot_dir: self.get("chroot_dir", path)?,
            umask: self.required("umask", umask)?,
            user: self.get("user", account)?,
            group: self.get("group", account)?,
            state_file: self.required("state_file", path)?,
            runlog_dir: self.required("runlog_dir", path)?,
            stats_interval: self.required("stats_interval", seconds)?,
            runlog_interval: self.required("runlog_interval", seconds)?,
            pstate_interval: self.required("pstate_interval", seconds)?,
            stop_timeout: self.required("stop_timeout", seconds)?,
            start_timeout: self.required("start_timeout", seconds)?,
            watchdog_margin: self.required("watchdog_margin", seconds)?,
            parallel: self.required("parallel", boolean)?,
            precise_timers: self.required("precise_timers", boolean)?,
            precise_max_spin: self.required("precise_max_spin", seconds)?,
            config_file: self.required("config_file", path)?,
            config_dir: self.required("config_dir", path)?,
            pstate_file: self.required("pstate_file", path)?,
            log_file: self.required("log_file", path)?,
            log_level: self.required("log_level", |v| str_of(v)?.parse())?,
            log_target: self.required("log_target", |v| str_of(v)?.parse())?,
            log_format: self.required("log_format", |v| str_of(v)?.parse())?,
            syslog_socket: self.required("syslog_socket", path)?,
            metrics_file: self.get("metrics_file", path)?,
            sigterm: self.required("sigterm", |v| str_of(v)?.parse())?,
            action: self.get("action", |v| str_of(v)?.parse())?,
            input: self.get("input", path)?,
            limit: self.get("limit", limit)?,
        })
    }
}

fn str_of(v: &Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| "expected a string".to_owned())
}

fn string(v: &Value) -> Result<String, String> {
    match str_of(v)? {
        "" => Err("expected a non-empty string".into()),
        s => Ok(s.to_owned()),
    }
}

fn name(v: &Value) -> Result<String, String> {
    let s = str_of(v)?;
    match paths::name_problem(s) {
        None => Ok(s.to_owned()),
        Some(why) => Err(why.to_owned()),
    }
}

/// A user or group: a name or number, without control characters (they cannot be in an
/// account name, and would garble the messages that repeat it).
fn account(v: &Value) -> Result<String, String> {
    let s = string(v)?;
    if s.chars().any(char::is_control) {
        return Err("a user or group name cannot contain control characters".into());
    }
    Ok(s)
}

fn path(v: &Value) -> Result<PathBuf, String> {
    let s = string(v)?;
    if s.contains('\0') {
        return Err("a path cannot contain a NUL byte".into());
    }
    Ok(PathBuf::from(s))
}

fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| "expected true or false".to_owned())
}

fn seconds(v: &Value) -> Result<Duration, String> {
    let secs = v
        .as_f64()
        .ok_or_else(|| "expected a number of seconds".to_owned())?;
    cli::seconds_from_f64(secs)
}

fn umask(v: &Value) -> Result<u32, String> {
    match v {
        Value::String(s) => cli::parse_umask(s),
        Value::Number(n) => match n.as_u64() {
            Some(m) if m <= 0o777 => Ok(m as u32),
            _ => Err("a umask is a number from 0 to 511 (0o777), or an octal string".into()),
        },
        _ => Err("expected an octal string such as \"022\"".into()),
    }
}

fn limit(v: &Value) -> Result<usize, String> {
    match v.as_u64() {
        Some(n) if n > 0 => usize::try_from(n).map_err(|_| "too large".to_owned()),
        _ => Err("expected a positive integer".into()),
    }
}

impl Config {
    /// Loads the configuration of daemon `name` (the `--name` value, or the program's name)
    /// from `defaults`, the configuration directory and file, and `cli`, in that order of
    /// precedence. `component_keys` are the top-level keys the daemon's components declare.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for an invalid `name`; [`Error::Config`] (exit code 78) naming the file
    /// or key, for everything listed in the [module documentation](self).
    pub fn load(
        name: &str,
        cli: &Cli,
        defaults: &DefaultPaths,
        component_keys: &[&str],
    ) -> Result<Config> {
        Self::load_with_defaults(name, cli, defaults, &Map::new(), component_keys)
    }

    /// [`Config::load`] with some of the shell's defaults replaced by the program's own:
    /// `program_defaults` maps shell keys to values in the file format (`{"stats_interval": 5}`).
    /// They belong to the defaults layer, so configuration files and the command line still
    /// override them, and a reload keeps them. This is how a daemon picks, say, its own
    /// statistics interval ([`Daemon::default_setting`](crate::Daemon::default_setting)).
    ///
    /// # Errors
    ///
    /// As [`Config::load`]. A key that is not a shell key, or is `name`, `config_file`,
    /// `config_dir` or `action`, is an [`Error::Config`] from "the program's defaults"; a bad
    /// value is one naming the key, from "the defaults".
    pub fn load_with_defaults(
        name: &str,
        cli: &Cli,
        defaults: &DefaultPaths,
        program_defaults: &Map<String, Value>,
        component_keys: &[&str],
    ) -> Result<Config> {
        paths::validate_name(name)?;
        let mut cli_map = cli.overrides();
        // The name is resolved by the caller (the flag, or the program's name).
        cli_map.remove("name");
        let mut defaults_map = defaults_map(name, defaults);
        for (key, value) in program_defaults {
            if !SHELL_KEYS.contains(&key.as_str()) || NO_PROGRAM_DEFAULT.contains(&key.as_str()) {
                return Err(Error::config(
                    "the program's defaults",
                    format!("key '{key}' is not a shell setting a program may give a default for"),
                ));
            }
            defaults_map.insert(key.clone(), value.clone());
        }
        if cli.name.is_some() {
            cli_map.insert("name".into(), Value::from(name));
        }
        Sources {
            config_file: cli
                .config_file
                .clone()
                .unwrap_or_else(|| defaults.config_file.clone()),
            file_explicit: cli.config_file.is_some(),
            config_dir: cli
                .config_dir
                .clone()
                .unwrap_or_else(|| defaults.config_dir.clone()),
            dir_explicit: cli.config_dir.is_some(),
            defaults: defaults_map,
            cli: cli_map,
            component_keys: component_keys.iter().map(|k| (*k).to_owned()).collect(),
        }
        .load()
    }

    /// [`Config::load`] for this process: the name from `--name` or `argv0`'s file name, the
    /// default paths from the environment ([`paths::defaults_from_env`]).
    ///
    /// # Errors
    ///
    /// As [`Config::load`], and [`Error::Usage`] when `argv0` gives no valid name.
    pub fn from_env(cli: &Cli, argv0: &str, component_keys: &[&str]) -> Result<Config> {
        let name = match &cli.name {
            Some(name) => name.clone(),
            None => paths::name_from_program(argv0)?,
        };
        let defaults = paths::defaults_from_env(&name)?;
        Self::load(&name, cli, &defaults, component_keys)
    }

    /// Reads the configuration files again, with the same defaults, command line and component
    /// keys, and returns the new configuration (SIGHUP). The caller keeps `self` on error.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn reload(&self) -> Result<Config> {
        self.sources.clone().load()
    }

    /// The shell's typed settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The merged configuration as JSON: every shell key (`null` where unset) and every key the
    /// files set.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// Where `key`'s value came from; `None` for a key nobody set.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.origins.get(key)
    }

    /// The configuration files that were read, in merge order (directory files, then the file).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// A component's settings: the value of top-level `key`, deserialized into `T`; `None` when
    /// the key is absent or `null`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `key`, the file it came from and serde's message when the value
    /// does not fit `T`.
    pub fn component<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.raw.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|e| {
                let origin = self.origins.get(key).unwrap_or(&Origin::Default);
                Error::config(origin.to_string(), format!("key '{key}': {e}"))
            }),
        }
    }

    /// [`Config::component`], with `T::default()` when the key is absent or `null`.
    ///
    /// # Errors
    ///
    /// As [`Config::component`].
    pub fn component_or_default<T: DeserializeOwned + Default>(&self, key: &str) -> Result<T> {
        Ok(self.component(key)?.unwrap_or_default())
    }
}

/// The `config-view` action's output: the effective configuration as pretty JSON with sorted
/// keys (at every level), ending with a newline.
///
/// The `action` key is left out: it says how this command was run (`config-view`), not how the
/// daemon is configured, and leaving it out makes the output safe to save as a configuration
/// file (with it, the saved file would turn every later start into `config-view`).
pub fn config_view(config: &Config) -> String {
    let mut raw = config.raw.clone();
    raw.remove("action");
    let mut v = Value::Object(raw);
    v.sort_all_objects();
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Parsed;
    use crate::error::exit;
    use serde::Deserialize;

    struct Fixture {
        dir: tempfile::TempDir,
        defaults: DefaultPaths,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let defaults = DefaultPaths {
                pid_file: d.join("run/tail.pid"),
                runlog_dir: d.join("run/runlogs"),
                state_file: d.join("run/tail.state"),
                pstate_file: d.join("run/tail.pstate"),
                pstate_dir: d.join("run"),
                old_pstate_file: d.join("run/old.pstate"),
                log_file: d.join("run/tail.log"),
                config_file: d.join("etc/tail.conf"),
                config_dir: d.join("etc/tail"),
                runtime_dir: Some(d.join("run")),
            };
            Self { dir, defaults }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.path(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, text).unwrap();
            p
        }

        fn load(&self, args: &[&str], keys: &[&str]) -> Result<Config> {
            let argv: Vec<String> = std::iter::once("tail")
                .chain(args.iter().copied())
                .map(String::from)
                .collect();
            let Parsed::Run(cli) = Cli::parse(&argv).unwrap() else {
                panic!("help")
            };
            let name = cli.name.clone().unwrap_or_else(|| "tail".into());
            Config::load(&name, &cli, &self.defaults, keys)
        }
    }

    fn config_err(r: Result<Config>) -> (String, String) {
        match r {
            Err(Error::Config {
                source_name,
                message,
            }) => (source_name, message),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_only() {
        let f = Fixture::new();
        let c = f.load(&[], &[]).unwrap();
        let s = c.settings();
        assert_eq!(s.name, "tail");
        assert!(!s.no_daemon && !s.parallel);
        assert_eq!(s.pid_file, f.defaults.pid_file);
        assert_eq!(s.runlog_dir, f.defaults.runlog_dir);
        assert_eq!(s.state_file, f.defaults.state_file);
        assert_eq!(s.pstate_file, f.defaults.pstate_file);
        assert_eq!(s.log_file, f.defaults.log_file);
        assert_eq!(s.config_file, f.defaults.config_file);
        assert_eq!(s.config_dir, f.defaults.config_dir);
        assert_eq!(s.work_dir, Path::new("/"));
        assert_eq!(s.umask, 0o002);
        assert_eq!(s.stats_interval, Duration::from_secs(300));
        assert_eq!(s.runlog_interval, Duration::from_secs(300));
        assert_eq!(s.stop_timeout, Duration::from_secs(30));
        assert!(!s.precise_timers);
        assert_eq!(s.precise_max_spin, Duration::from_millis(2));
        assert_eq!(s.log_level, LogLevel::Info);
        assert_eq!(
            (s.chroot_dir.as_ref(), s.user.as_ref(), s.group.as_ref()),
            (None, None, None)
        );
        assert_eq!((s.action, s.input.as_ref(), s.limit), (None, None, None));
        assert!(c.files().is_empty());
        assert_eq!(c.origin("umask"), Some(&Origin::Default));
        // Every shell key is in the raw view.
        for k in SHELL_KEYS {
            assert!(c.raw().contains_key(k), "{k}");
        }
        // Settings serialize to the same forms as the raw view.
        let ser = serde_json::to_value(s).unwrap();
        assert_eq!(ser, Value::Object(c.raw().clone()));
    }

    #[test]
    fn precedence_dir_file_cli() {
        let f = Fixture::new();
        f.write(
            "etc/tail/10-a.json.conf",
            r#"{"stats_interval": 10, "runlog_interval": 11, "stop_timeout": 12, "user": "a", "tail": {"path": "/a", "from_start": true}}"#,
        );
        f.write(
            "etc/tail/20-b.json.conf",
            r#"{"stats_interval": 20, "runlog_interval": 21, "group": null, "user": null}"#,
        );
        f.write("etc/tail/30-ignored.conf", r#"{"stats_interval": 99}"#);
        f.write("etc/tail/notes.txt", "not json at all");
        fs::create_dir_all(f.path("etc/tail/40-dir.json.conf")).unwrap();
        f.write(
            "etc/tail.conf",
            r#"{"stats_interval": 30, "tail": {"path": "/file"}, "group": "g"}"#,
        );
        let c = f.load(&["--stats-interval=40"], &["tail"]).unwrap();
        let s = c.settings();
        assert_eq!(s.stats_interval, Duration::from_secs(40));
        assert_eq!(s.runlog_interval, Duration::from_secs(21));
        assert_eq!(s.stop_timeout, Duration::from_secs(12));
        // null skipped: "a" from 10-a survives 20-b's null.
        assert_eq!(s.user.as_deref(), Some("a"));
        assert_eq!(s.group.as_deref(), Some("g"));
        assert_eq!(c.origin("stats_interval"), Some(&Origin::CommandLine));
        assert_eq!(
            c.origin("runlog_interval"),
            Some(&Origin::File(f.path("etc/tail/20-b.json.conf")))
        );
        assert_eq!(
            c.origin("group"),
            Some(&Origin::File(f.path("etc/tail.conf")))
        );
        assert_eq!(
            c.files(),
            [
                f.path("etc/tail/10-a.json.conf"),
                f.path("etc/tail/20-b.json.conf"),
                f.path("etc/tail.conf")
            ]
        );
        // Shallow merge: the file's section replaces the directory's whole.
        assert_eq!(c.raw()["tail"], serde_json::json!({"path": "/file"}));
    }

    #[test]
    fn comments_and_empty_files() {
        let f = Fixture::new();
        f.write(
            "etc/tail.conf",
            "# a comment\n   // another\n{\n  # inside\n  \"umask\": \"022\",\n\t// x\n  \"no_daemon\": true\n}\n",
        );
        f.write("etc/tail/a.json.conf", "");
        f.write("etc/tail/b.json.conf", "# only comments\n// here\n");
        let c = f.load(&[], &[]).unwrap();
        assert_eq!(c.settings().umask, 0o022);
        assert!(c.settings().no_daemon);
        assert_eq!(c.files().len(), 3);
        // A '#' after a value is not a comment.
        let err = parse_json_conf("{\"a\": 1} # no", "x").unwrap_err();
        assert!(err.to_string().contains("malformed JSON"), "{err}");
    }

    #[test]
    fn malformed_json_names_file_line_column() {
        let f = Fixture::new();
        let p = f.write(
            "etc/tail.conf",
            "# comment\n{\n  \"umask\": \"022\"\n  \"x\": 1\n}\n",
        );
        let (src, msg) = config_err(f.load(&[], &[]));
        assert_eq!(src, p.display().to_string());
        assert!(msg.contains("line 4") && msg.contains("column 3"), "{msg}");

        let f = Fixture::new();
        let p = f.write("etc/tail/a.json.conf", "[1, 2]");
        let (src, msg) = config_err(f.load(&[], &[]));
        assert_eq!(src, p.display().to_string());
        assert!(msg.contains("JSON object"), "{msg}");

        let err = f.load(&[], &[]).unwrap_err();
        assert_eq!(err.exit_code(), exit::CONFIG);
    }

    #[test]
    fn missing_files() {
        let f = Fixture::new();
        // Default paths missing: fine.
        assert!(f.load(&[], &[]).is_ok());
        // Given explicitly: errors naming the path.
        let missing = f.path("nope.conf");
        let (src, msg) = config_err(f.load(&["--config-file", missing.to_str().unwrap()], &[]));
        assert_eq!(src, missing.display().to_string());
        assert!(msg.contains("does not exist"), "{msg}");
        let missing = f.path("nope.d");
        let (src, msg) = config_err(f.load(&["--config-dir", missing.to_str().unwrap()], &[]));
        assert_eq!(src, missing.display().to_string());
        assert!(msg.contains("does not exist"), "{msg}");
        // A directory given as the file, a file given as the directory.
        let d = f.path("adir");
        fs::create_dir(&d).unwrap();
        let (src, _) = config_err(f.load(&["--config-file", d.to_str().unwrap()], &[]));
        assert_eq!(src, d.display().to_string());
        let file = f.write("afile", "{}");
        let (src, _) = config_err(f.load(&["--config-dir", file.to_str().unwrap()], &[]));
        assert_eq!(src, file.display().to_string());
        // Explicit paths that exist are used.
        let cf = f.write("other.conf", r#"{"limit": 7}"#);
        let cd = f.path("other.d");
        f.write(
            "other.d/x.json.conf",
            r#"{"limit": 3, "log_level": "debug"}"#,
        );
        let c = f
            .load(
                &[
                    "--config-file",
                    cf.to_str().unwrap(),
                    "--config-dir",
                    cd.to_str().unwrap(),
                ],
                &[],
            )
            .unwrap();
        assert_eq!(c.settings().limit, Some(7));
        assert_eq!(c.settings().log_level, LogLevel::Debug);
        assert_eq!(c.settings().config_file, cf);
    }

    #[test]
    fn unknown_keys() {
        let f = Fixture::new();
        let p = f.write("etc/tail/a.json.conf", r#"{"stats_intervall": 5}"#);
        let (src, msg) = config_err(f.load(&[], &["tail"]));
        assert_eq!(src, p.display().to_string());
        assert!(msg.contains("'stats_intervall'"), "{msg}");
        // Declared by a component: fine, and null unknown keys are still typos.
        fs::write(&p, r#"{"tail": {"x": 1}}"#).unwrap();
        assert!(f.load(&[], &["tail"]).is_ok());
        fs::write(&p, r#"{"tial": null}"#).unwrap();
        let (_, msg) = config_err(f.load(&[], &["tail"]));
        assert!(msg.contains("'tial'"), "{msg}");
    }

    #[test]
    fn bad_values_name_key_and_file() {
        let cases = [
            (r#"{"umask": "abc"}"#, "umask"),
            (r#"{"umask": 512}"#, "umask"),
            (r#"{"umask": -1}"#, "umask"),
            (r#"{"umask": true}"#, "umask"),
            (r#"{"stats_interval": -5}"#, "stats_interval"),
            (r#"{"runlog_interval": 0}"#, "runlog_interval"),
            (r#"{"stop_timeout": "30"}"#, "stop_timeout"),
            (r#"{"no_daemon": "yes"}"#, "no_daemon"),
            (r#"{"precise_timers": 1}"#, "precise_timers"),
            (r#"{"precise_max_spin": 0}"#, "precise_max_spin"),
            (r#"{"log_level": "loud"}"#, "log_level"),
            (r#"{"action": "bogus"}"#, "action"),
            (r#"{"limit": 0}"#, "limit"),
            (r#"{"limit": 1.5}"#, "limit"),
            (r#"{"pid_file": ""}"#, "pid_file"),
            (r#"{"pid_file": 5}"#, "pid_file"),
            (r#"{"user": ["x"]}"#, "user"),
        ];
        for (text, key) in cases {
            let f = Fixture::new();
            let p = f.write("etc/tail.conf", text);
            let (src, msg) = config_err(f.load(&[], &[]));
            assert_eq!(src, p.display().to_string(), "{text}");
            assert!(msg.contains(&format!("'{key}'")), "{text}: {msg}");
        }
    }

    #[test]
    fn value_forms() {
        let f = Fixture::new();
        f.write(
            "etc/tail.conf",
            r#"{"umask": 18, "stats_interval": 0.5, "action": "status", "limit": 2,
                "chroot_dir": "/jail", "parallel": true, "precise_timers": true,
                "precise_max_spin": 0.004}"#,
        );
        let c = f.load(&[], &[]).unwrap();
        let s = c.settings();
        assert_eq!(s.umask, 0o022);
        assert_eq!(s.stats_interval, Duration::from_millis(500));
        assert_eq!(s.action, Some(Action::Status));
        assert_eq!(s.limit, Some(2));
        assert_eq!(s.chroot_dir.as_deref(), Some(Path::new("/jail")));
        assert!(s.parallel && s.precise_timers);
        assert_eq!(s.precise_max_spin, Duration::from_millis(4));
        // The command line's umask wins and shows as octal.
        let c = f.load(&["--umask", "0o077"], &[]).unwrap();
        assert_eq!(c.settings().umask, 0o077);
        assert_eq!(c.raw()["umask"], "0077");
    }

    #[test]
    fn command_line_only_keys() {
        let f = Fixture::new();
        let p = f.write("etc/tail.conf", r#"{"config_dir": "/elsewhere"}"#);
        let (src, msg) = config_err(f.load(&[], &[]));
        assert_eq!(src, p.display().to_string());
        assert!(
            msg.contains("'config_dir'") && msg.contains("--config-dir"),
            "{msg}"
        );
        fs::write(&p, r#"{"name": "other"}"#).unwrap();
        let (_, msg) = config_err(f.load(&[], &[]));
        assert!(msg.contains("'name'"), "{msg}");
        // The value in effect may be repeated: config-view output loads back.
        fs::write(&p, "{}").unwrap();
        let view = config_view(
            &f.load(&["--umask", "027", "--action", "config-view"], &[])
                .unwrap(),
        );
        assert!(!view.contains("\"action\""), "{view}");
        fs::write(&p, &view).unwrap();
        let c = f.load(&[], &[]).unwrap();
        assert_eq!(c.settings().umask, 0o027);
        assert_eq!(c.settings().action, None);
        assert_eq!(c.origin("umask"), Some(&Origin::File(p.clone())));
    }

    #[test]
    fn name_from_command_line() {
        let f = Fixture::new();
        let c = f.load(&["--name", "other"], &[]).unwrap();
        assert_eq!(c.settings().name, "other");
        assert_eq!(c.origin("name"), Some(&Origin::CommandLine));
        let cli = Cli::default();
        let err = Config::load("bad name", &cli, &f.defaults, &[]).unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE);
    }

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct TailSettings {
        path: String,
        from_start: bool,
    }

    #[test]
    fn components() {
        let f = Fixture::new();
        let p = f.write(
            "etc/tail.conf",
            r#"{"tail": {"path": "/var/log/x", "from_start": true}, "other": null, "count": 3}"#,
        );
        let c = f.load(&[], &["tail", "other", "count", "absent"]).unwrap();
        assert_eq!(
            c.component::<TailSettings>("tail").unwrap(),
            Some(TailSettings {
                path: "/var/log/x".into(),
                from_start: true
            })
        );
        assert_eq!(c.component::<TailSettings>("other").unwrap(), None);
        assert_eq!(c.component::<u32>("absent").unwrap(), None);
        assert_eq!(
            c.component_or_default::<TailSettings>("absent").unwrap(),
            TailSettings::default()
        );
        assert_eq!(c.component::<u32>("count").unwrap(), Some(3));
        let (src, msg) = match c.component::<String>("count").unwrap_err() {
            Error::Config {
                source_name,
                message,
            } => (source_name, message),
            e => panic!("{e:?}"),
        };
        assert_eq!(src, p.display().to_string());
        assert!(
            msg.contains("'count'") && msg.contains("invalid type"),
            "{msg}"
        );
        fs::write(&p, r#"{"tail": {"path": 5}}"#).unwrap();
        let c = f.load(&[], &["tail"]).unwrap();
        let err = c.component::<TailSettings>("tail").unwrap_err();
        assert_eq!(err.exit_code(), exit::CONFIG);
        assert!(err.to_string().contains("'tail'"), "{err}");
    }

    #[test]
    fn view_is_sorted_pretty_json() {
        let f = Fixture::new();
        f.write("etc/tail.conf", r#"{"zz": {"b": 1, "a": 2}, "aa": 1}"#);
        let c = f.load(&["--no-daemon"], &["zz", "aa"]).unwrap();
        let view = config_view(&c);
        assert!(view.ends_with("}\n"));
        let parsed: Value = serde_json::from_str(&view).unwrap();
        assert_eq!(parsed["no_daemon"], true);
        assert_eq!(parsed["chroot_dir"], Value::Null);
        let keys: Vec<String> = view
            .lines()
            .filter(|l| l.starts_with("  \""))
            .map(|l| l.trim().split('"').nth(1).unwrap().to_owned())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        // Every shell key but `action`, and the two component keys.
        assert_eq!(keys.len(), SHELL_KEYS.len() - 1 + 2);
        assert!(view.find("\"a\": 2").unwrap() < view.find("\"b\": 1").unwrap());
    }

    #[test]
    fn reload_rereads_files_keeps_cli() {
        let f = Fixture::new();
        let p = f.write(
            "etc/tail.conf",
            r#"{"stats_interval": 10, "log_level": "warn"}"#,
        );
        let c = f.load(&["--log-level", "debug"], &[]).unwrap();
        assert_eq!(c.settings().stats_interval, Duration::from_secs(10));
        fs::write(&p, r#"{"stats_interval": 20, "log_level": "error"}"#).unwrap();
        let c2 = c.reload().unwrap();
        assert_eq!(c2.settings().stats_interval, Duration::from_secs(20));
        assert_eq!(c2.settings().log_level, LogLevel::Debug);
        fs::write(&p, r#"{"stats_interval": -1}"#).unwrap();
        let err = c2.reload().unwrap_err();
        assert_eq!(err.exit_code(), exit::CONFIG);
        // The old configuration is untouched.
        assert_eq!(c2.settings().stats_interval, Duration::from_secs(20));
        // A file that disappears (default path) falls back to defaults.
        fs::remove_file(&p).unwrap();
        assert_eq!(
            c2.reload().unwrap().settings().stats_interval,
            DEFAULT_STATS_INTERVAL
        );
    }

    #[test]
    fn program_defaults_sit_below_files_and_the_command_line() {
        let f = Fixture::new();
        let argv = |args: &[&str]| -> Cli {
            let argv: Vec<String> = std::iter::once("tail")
                .chain(args.iter().copied())
                .map(String::from)
                .collect();
            let Parsed::Run(cli) = Cli::parse(&argv).unwrap() else {
                panic!("help")
            };
            *cli
        };
        let mut program = Map::new();
        program.insert("stats_interval".into(), Value::from(5));
        program.insert("runlog_interval".into(), Value::from(10));
        let load = |cli: &Cli, program: &Map<String, Value>| {
            Config::load_with_defaults("tail", cli, &f.defaults, program, &[])
        };
        let c = load(&argv(&[]), &program).unwrap();
        assert_eq!(c.settings().stats_interval, Duration::from_secs(5));
        assert_eq!(c.settings().runlog_interval, Duration::from_secs(10));
        assert_eq!(c.origin("stats_interval"), Some(&Origin::Default));
        // A file and the command line still win, and a reload keeps the program's defaults.
        let p = f.write("etc/tail.conf", r#"{"runlog_interval": 20}"#);
        let c = load(&argv(&["--stats-interval", "7"]), &program).unwrap();
        assert_eq!(c.settings().stats_interval, Duration::from_secs(7));
        assert_eq!(c.settings().runlog_interval, Duration::from_secs(20));
        fs::remove_file(&p).unwrap();
        let c = c.reload().unwrap();
        assert_eq!(c.settings().runlog_interval, Duration::from_secs(10));
        // Keys that are not the program's to default, and bad values, are errors.
        for key in ["name", "action", "config_file", "tail"] {
            let mut bad = Map::new();
            bad.insert(key.into(), Value::from("x"));
            let err = load(&argv(&[]), &bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{key}'")), "{err}");
        }
        let mut bad = Map::new();
        bad.insert("stats_interval".into(), Value::from(-1));
        let err = load(&argv(&[]), &bad).unwrap_err().to_string();
        assert!(err.contains("stats_interval"), "{err}");
    }
}
