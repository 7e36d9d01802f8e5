//! The command line: every flag of the shell, parsed with argh and validated.
//!
//! Every flag is optional, so "not given" stays distinguishable and the configuration can fill
//! it in ([`Cli::overrides`] gives the given ones as configuration keys). Both `--opt value` and
//! `--opt=value` work: [`normalize_args`] splits the second form before argh sees it. A bad flag
//! or value is an [`Error::Usage`] (exit code 2) whose message names the flag.
//!
//! Values:
//! - `--umask`: octal, with or without a `0`/`0o` prefix (`022`, `0022`, `0o022`), at most `0777`.
//! - `--stats-interval`, `--runlog-interval`, `--pstate-interval`, `--stop-timeout`,
//!   `--start-timeout`, `--watchdog-margin`, `--precise-max-spin`: seconds,
//!   decimals allowed (`300`, `0.5`), from 0.001 (one millisecond) up.
//! - `--log-level`: `error`, `warn`, `info`, `debug` or `trace`.
//! - `--log-target`, `--log-format`, `--sigterm`: one word (see [`crate::words`]).
//! - `--action`: see [`Action`].
//! - `--limit`: a positive integer.
//! - paths, `--user`, `--group`: any non-empty string.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use argh::FromArgs;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::logging::LogLevel;
use crate::words::{LogFormat, LogTarget, Sigterm};

/// A control action (`--action`): a short command run instead of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `signal-check`: tell whether the daemon runs (signal 0).
    SignalCheck,
    /// `signal-hup`: send SIGHUP (reload).
    SignalHup,
    /// `signal-int`: send SIGINT (graceful stop).
    SignalInt,
    /// `signal-term`: send SIGTERM (immediate stop).
    SignalTerm,
    /// `signal-usr1`: send SIGUSR1 (write the runlog).
    SignalUsr1,
    /// `signal-usr2`: send SIGUSR2 (write the state file).
    SignalUsr2,
    /// `signal-alrm`: send SIGALRM (wake the loop).
    SignalAlrm,
    /// `config-view`: print the effective configuration as JSON.
    ConfigView,
    /// `config-check`: check the configuration as a start would (accounts, directories) and
    /// start nothing.
    ConfigCheck,
    /// `status`: LSB status of the daemon.
    Status,
    /// `stop`: SIGINT, wait up to the stop timeout, then SIGTERM.
    Stop,
    /// `runlogs-list`: list the runlog files, newest first.
    RunlogsList,
    /// `runlog-view`: summarize one runlog (the newest, or `--input`).
    RunlogView,
    /// `runlogs-evaluate`: a table over the runlogs.
    RunlogsEvaluate,
}

impl Action {
    /// Every action, in the order `--help` lists them.
    pub const ALL: [Action; 14] = [
        Self::SignalCheck,
        Self::SignalHup,
        Self::SignalInt,
        Self::SignalTerm,
        Self::SignalUsr1,
        Self::SignalUsr2,
        Self::SignalAlrm,
        Self::ConfigView,
        Self::ConfigCheck,
        Self::Status,
        Self::Stop,
        Self::RunlogsList,
        Self::RunlogView,
        Self::RunlogsEvaluate,
    ];

    /// The action's name, as `--action` takes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SignalCheck => "signal-check",
            Self::SignalHup => "signal-hup",
            Self::SignalInt => "signal-int",
            Self::SignalTerm => "signal-term",
            Self::SignalUsr1 => "signal-usr1",
            Self::SignalUsr2 => "signal-usr2",
            Self::SignalAlrm => "signal-alrm",
            Self::ConfigView => "config-view",
            Self::ConfigCheck => "config-check",
            Self::Status => "status",
            Self::Stop => "stop",
            Self::RunlogsList => "runlogs-list",
            Self::RunlogView => "runlog-view",
            Self::RunlogsEvaluate => "runlogs-evaluate",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    /// Parses an action name exactly as [`Action::as_str`] spells it.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                format!("unknown action; expected one of {}", names.join(", "))
            })
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a umask written in octal: `022`, `0022` or `0o022`; at most `0o777`.
///
/// # Errors
///
/// A message saying what is wrong (without the flag's name; the caller adds it).
pub fn parse_umask(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("expected an octal number such as 022 or 0o022".into());
    }
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err("a umask is at most 0777".into()),
    }
}

/// The smallest interval or timeout accepted: one millisecond.
pub const MIN_SECONDS: f64 = 0.001;

/// Checks a number of seconds (finite, at least [`MIN_SECONDS`]) and makes it a [`Duration`].
///
/// # Errors
///
/// A message saying what is wrong.
pub fn seconds_from_f64(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs <= 0.0 {
        return Err("expected a positive number of seconds".into());
    }
    if secs < MIN_SECONDS {
        return Err("at least 0.001 seconds (one millisecond)".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| "too many seconds".into())
}

/// Parses a positive number of seconds, decimals allowed (`300`, `0.5`).
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    // Only plain decimal notation: f64's parser would also take "inf", "NaN" and "1e3".
    let plain = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.bytes().filter(|&b| b == b'.').count() <= 1
        && s.bytes().any(|b| b.is_ascii_digit());
    if !plain {
        return Err("expected a positive number of seconds such as 300 or 0.5".into());
    }
    seconds_from_f64(s.parse::<f64>().map_err(|e| e.to_string())?)
}

/// Parses `--limit`: a positive integer.
fn parse_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a positive integer".into()),
    }
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        Err("expected a non-empty path".into())
    } else {
        Ok(PathBuf::from(s))
    }
}

fn parse_nonempty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("expected a non-empty value".into())
    } else {
        Ok(s.to_owned())
    }
}

fn parse_name(s: &str) -> Result<String, String> {
    match crate::paths::name_problem(s) {
        None => Ok(s.to_owned()),
        Some(why) => Err(why.to_owned()),
    }
}

/// run a daemon built on zendaemon, or control one with --action
#[derive(FromArgs, Debug, Clone, PartialEq, Default)]
#[argh(help_triggers("-h", "--help"))]
pub struct Cli {
    /// daemon name (default: the program's file name): a letter or '_', then letters,
    /// digits, '-', '_' or '.'
    #[argh(option, from_str_fn(parse_name))]
    pub name: Option<String>,

    /// stay in the foreground, log to the console
    #[argh(switch)]
    pub no_daemon: bool,

    /// pidfile path
    #[argh(option, from_str_fn(parse_path))]
    pub pid_file: Option<PathBuf>,

    /// working directory of the daemon (default: /)
    #[argh(option, from_str_fn(parse_path))]
    pub work_dir: Option<PathBuf>,

    /// directory to chroot into
    #[argh(option, from_str_fn(parse_path))]
    pub chroot_dir: Option<PathBuf>,

    /// file mode creation mask, octal (default: 002)
    #[argh(option, from_str_fn(parse_umask))]
    pub umask: Option<u32>,

    /// user to run as (name or numeric uid)
    #[argh(option, from_str_fn(parse_nonempty))]
    pub user: Option<String>,

    /// group to run as (name or numeric gid)
    #[argh(option, from_str_fn(parse_nonempty))]
    pub group: Option<String>,

    /// file the state is written to on SIGUSR2
    #[argh(option, from_str_fn(parse_path))]
    pub state_file: Option<PathBuf>,

    /// directory of the runlog files
    #[argh(option, from_str_fn(parse_path))]
    pub runlog_dir: Option<PathBuf>,

    /// seconds between statistics log lines (default: 300)
    #[argh(option, from_str_fn(parse_seconds))]
    pub stats_interval: Option<Duration>,

    /// seconds between runlog saves (default: 300)
    #[argh(option, from_str_fn(parse_seconds))]
    pub runlog_interval: Option<Duration>,

    /// seconds between checkpoints of the persistent state file (default: 60)
    #[argh(option, from_str_fn(parse_seconds))]
    pub pstate_interval: Option<Duration>,

    /// seconds a graceful stop may take before the daemon terminates (default: 30)
    #[argh(option, from_str_fn(parse_seconds))]
    pub stop_timeout: Option<Duration>,

    /// seconds the launching process waits for the daemon to report ready (default: 90)
    #[argh(option, from_str_fn(parse_seconds))]
    pub start_timeout: Option<Duration>,
    /// seconds the stop watchdog allows beyond the stop timeout, and after SIGTERM or the
    /// third SIGINT, before it ends a daemon whose handler hangs (default: 1)
    #[argh(option, from_str_fn(parse_seconds))]
    pub watchdog_margin: Option<Duration>,

    /// parallel mode: several instances, each with its PID in its pidfile's name
    #[argh(switch)]
    pub parallel: bool,

    /// precise timers: wake a learned margin before each deadline and spin on the clock for
    /// the rest (timers on time to microseconds, at the cost of CPU time per wake-up)
    #[argh(switch)]
    pub precise_timers: bool,

    /// with --precise-timers, the longest spin per wake-up, in seconds (default: 0.002)
    #[argh(option, from_str_fn(parse_seconds))]
    pub precise_max_spin: Option<Duration>,

    /// configuration file (JSON; lines starting with # or // are comments)
    #[argh(option, from_str_fn(parse_path))]
    pub config_file: Option<PathBuf>,

    /// configuration directory (its *.json.conf files, in name order)
    #[argh(option, from_str_fn(parse_path))]
    pub config_dir: Option<PathBuf>,

    /// persistent state file
    #[argh(option, from_str_fn(parse_path))]
    pub pstate_file: Option<PathBuf>,

    /// log file (daemon mode)
    #[argh(option, from_str_fn(parse_path))]
    pub log_file: Option<PathBuf>,

    /// log level: error, warn, info, debug or trace (default: info)
    #[argh(option)]
    pub log_level: Option<LogLevel>,

    /// where log lines go: auto, console, file, syslog or journald (default: auto)
    #[argh(option)]
    pub log_target: Option<LogTarget>,

    /// log line format: text or json (default: text)
    #[argh(option)]
    pub log_format: Option<LogFormat>,

    /// syslog socket for --log-target syslog (default: /dev/log)
    #[argh(option, from_str_fn(parse_path))]
    pub syslog_socket: Option<PathBuf>,

    /// write Prometheus metrics to this file every statistics interval
    #[argh(option, from_str_fn(parse_path))]
    pub metrics_file: Option<PathBuf>,

    /// what SIGTERM means: terminate (at once, without stop) or stop (graceful, with the stop
    /// timeout) (default: terminate)
    #[argh(option)]
    pub sigterm: Option<Sigterm>,

    /// run an action instead of the daemon: signal-check, signal-hup, signal-int, signal-term,
    /// signal-usr1, signal-usr2, signal-alrm, config-view, config-check, status, stop,
    /// runlogs-list, runlog-view, runlogs-evaluate
    #[argh(option)]
    pub action: Option<Action>,

    /// runlog file for runlog-view (default: the newest)
    #[argh(option, from_str_fn(parse_path))]
    pub input: Option<PathBuf>,

    /// how many runlogs runlogs-list and runlogs-evaluate cover (newest first)
    #[argh(option, from_str_fn(parse_limit))]
    pub limit: Option<usize>,
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Run (the daemon, or the action in [`Cli::action`]).
    Run(Box<Cli>),
    /// `--help` or `-h`: print this text to stdout and exit 0.
    Help(String),
}

/// The flags that take no value (every other `--flag` takes one).
const SWITCHES: [&str; 5] = [
    "--no-daemon",
    "--parallel",
    "--precise-timers",
    "--help",
    "-h",
];

/// Splits every `--opt=value` into `--opt`, `value`, so argh (which only knows the first form)
/// accepts both. `args` excludes the program name.
///
/// Arguments after `--` and the value that follows a `--opt` are left alone (a value may itself
/// look like `--x=y`).
///
/// # Errors
///
/// [`Error::Usage`] for `--switch=value` on a flag that takes no value.
pub fn normalize_args(args: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            out.push(arg.clone());
            out.extend(iter.cloned());
            break;
        }
        if arg.starts_with("--") {
            if let Some((flag, value)) = arg.split_once('=') {
                if SWITCHES.contains(&flag) {
                    return Err(Error::Usage(format!("{flag} takes no value")));
                }
                out.push(flag.to_owned());
                out.push(value.to_owned());
                continue;
            }
            out.push(arg.clone());
            if !SWITCHES.contains(&arg.as_str()) {
                // The value: taken verbatim.
                out.extend(iter.next().cloned());
            }
            continue;
        }
        out.push(arg.clone());
    }
    Ok(out)
}

impl Cli {
    /// Parses a full command line: `args[0]` is the program (its file name appears in the help
    /// text), the rest are flags.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] with argh's message for an unknown flag, a missing or bad value, a flag
    /// given twice, or a positional argument; the message names the flag and value.
    pub fn parse(args: &[String]) -> Result<Parsed> {
        let (program, rest) = match args.split_first() {
            Some((p, rest)) => (p.as_str(), rest),
            None => ("zendaemon", &[][..]),
        };
        let command = std::path::Path::new(program)
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("zendaemon");
        let normalized = normalize_args(rest)?;
        let strs: Vec<&str> = normalized.iter().map(String::as_str).collect();
        match Cli::from_args(&[command], &strs) {
            Ok(cli) => Ok(Parsed::Run(Box::new(cli))),
            Err(argh::EarlyExit {
                output,
                status: Ok(()),
            }) => Ok(Parsed::Help(output)),
            Err(argh::EarlyExit { output, .. }) => {
                Err(Error::Usage(format!("{} (try --help)", output.trim_end())))
            }
        }
    }

    /// [`Cli::parse`] on this process's arguments.
    ///
    /// # Errors
    ///
    /// As [`Cli::parse`], and [`Error::Usage`] for an argument that is not valid UTF-8.
    pub fn from_env() -> Result<Parsed> {
        let args = std::env::args_os()
            .map(|a| {
                a.into_string().map_err(|a| {
                    Error::Usage(format!(
                        "argument is not valid UTF-8: {}",
                        a.to_string_lossy()
                    ))
                })
            })
            .collect::<Result<Vec<String>>>()?;
        Self::parse(&args)
    }

    /// The flags that were given, as configuration keys (`_` for `-`) with JSON values: the
    /// command line's layer of the configuration. Switches appear only when given (`true`),
    /// umasks as octal strings (`"0022"`), intervals as numbers of seconds.
    pub fn overrides(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |key: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(key.to_owned(), v);
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| Value::from(p.to_string_lossy()));
        let string = |s: &Option<String>| s.as_ref().map(|s| Value::from(s.as_str()));
        let switch = |b: bool| b.then_some(Value::Bool(true));
        put("name", string(&self.name));
        put("no_daemon", switch(self.no_daemon));
        put("pid_file", path(&self.pid_file));
        put("work_dir", path(&self.work_dir));
        put("chroot_dir", path(&self.chroot_dir));
        put("umask", self.umask.map(|m| Value::from(format_umask(m))));
        put("user", string(&self.user));
        put("group", string(&self.group));
        put("state_file", path(&self.state_file));
        put("runlog_dir", path(&self.runlog_dir));
        put("stats_interval", self.stats_interval.map(seconds_value));
        put("runlog_interval", self.runlog_interval.map(seconds_value));
        put("pstate_interval", self.pstate_interval.map(seconds_value));
        put("stop_timeout", self.stop_timeout.map(seconds_value));
        put("start_timeout", self.start_timeout.map(seconds_value));
        put("watchdog_margin", self.watchdog_margin.map(seconds_value));
        put("parallel", switch(self.parallel));
        put("precise_timers", switch(self.precise_timers));
        put("precise_max_spin", self.precise_max_spin.map(seconds_value));
        put("config_file", path(&self.config_file));
        put("config_dir", path(&self.config_dir));
        put("pstate_file", path(&self.pstate_file));
        put("log_file", path(&self.log_file));
        put("log_level", self.log_level.map(|l| Value::from(l.as_str())));
        put(
            "log_target",
            self.log_target.map(|v| Value::from(v.as_str())),
        );
        put(
            "log_format",
            self.log_format.map(|v| Value::from(v.as_str())),
        );
        put("syslog_socket", path(&self.syslog_socket));
        put("metrics_file", path(&self.metrics_file));
        put("sigterm", self.sigterm.map(|v| Value::from(v.as_str())));
        put("action", self.action.map(|a| Value::from(a.as_str())));
        put("input", path(&self.input));
        put("limit", self.limit.map(Value::from));
        m
    }
}

/// The first line of argh's description, which [`program_help`] replaces.
const SHELL_ABOUT: &str = "run a daemon built on zendaemon, or control one with --action";

/// Column where argh starts option descriptions, and the width it wraps them to.
const HELP_INDENT: usize = 20;
const HELP_WIDTH: usize = 80;

/// argh's help `text` made the program's own: its description (`about`) and configuration
/// sections instead of the shell's generic line, `name` as `--name`'s default, and the
/// program's own defaults (`defaults`, configuration keys to values, see
/// [`Daemon::default_setting`](crate::Daemon::default_setting)) instead of the shell's.
pub(crate) fn program_help(
    text: &str,
    name: &str,
    about: Option<&str>,
    sections: &[&str],
    defaults: &Map<String, Value>,
) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line == SHELL_ABOUT {
            wrap_paragraph(&mut out, about.unwrap_or(SHELL_ABOUT));
            if !sections.is_empty() {
                let paragraph = format!(
                    "Configuration file: the shell's keys (the long options below, with '_' \
                     for '-') and the sections {} (see the program's documentation).",
                    sections
                        .iter()
                        .map(|s| format!("'{s}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                out.push('\n');
                wrap_paragraph(&mut out, &paragraph);
            }
            continue;
        }
        let Some(flag) = line
            .strip_prefix("  --")
            .and_then(|l| l.split_whitespace().next())
        else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        // One option: its line and the description's continuation lines.
        let mut description = line.get(HELP_INDENT..).unwrap_or("").trim().to_owned();
        while let Some(next) = lines.peek() {
            if next.len() > HELP_INDENT && next[..HELP_INDENT].trim().is_empty() {
                description.push(' ');
                description.push_str(next.trim());
                lines.next();
            } else {
                break;
            }
        }
        let key = flag.replace('-', "_");
        let own = match defaults.get(&key) {
            Some(Value::String(v)) => Some(v.clone()),
            Some(v) => Some(v.to_string()),
            None if key == "name" => Some(name.to_owned()),
            None => None,
        };
        if let Some(value) = own {
            if let Some(start) = description.find("(default: ") {
                if let Some(len) = description[start..].find(')') {
                    description.replace_range(start..=start + len, &format!("(default: {value})"));
                }
            }
        }
        out.push_str(&format!("  --{flag:<w$}", w = HELP_INDENT - 4));
        if flag.len() + 4 >= HELP_INDENT {
            out.push(' ');
        }
        let mut column = HELP_INDENT.max(flag.len() + 5);
        let mut first = true;
        for word in description.split(' ') {
            if !first && column + 1 + word.len() > HELP_WIDTH {
                out.push('\n');
                out.push_str(&" ".repeat(HELP_INDENT));
                column = HELP_INDENT;
                first = true;
            }
            if !first {
                out.push(' ');
                column += 1;
            }
            out.push_str(word);
            column += word.len();
            first = false;
        }
        out.push('\n');
    }
    out
}

/// `text` wrapped at [`HELP_WIDTH`], then a line end.
fn wrap_paragraph(out: &mut String, text: &str) {
    let mut column = 0;
    for word in text.split(' ') {
        if column > 0 && column + 1 + word.len() > HELP_WIDTH {
            out.push('\n');
            column = 0;
        } else if column > 0 {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += word.len();
    }
    out.push('\n');
}

/// A umask as a four-digit octal string, as configuration files and `config-view` show it.
pub fn format_umask(mask: u32) -> String {
    format!("{mask:04o}")
}

/// A duration as a JSON number of seconds: an integer when whole, else a decimal.
pub fn seconds_value(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::from(d.as_secs())
    } else {
        Value::from(d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        std::iter::once("/usr/bin/tailer")
            .chain(list.iter().copied())
            .map(String::from)
            .collect()
    }

    fn run(list: &[&str]) -> Cli {
        match Cli::parse(&args(list)).unwrap() {
            Parsed::Run(cli) => *cli,
            Parsed::Help(h) => panic!("help: {h}"),
        }
    }

    fn usage(list: &[&str]) -> String {
        match Cli::parse(&args(list)) {
            Err(Error::Usage(msg)) => msg,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn nothing_given() {
        let cli = run(&[]);
        assert_eq!(cli, Cli::default());
        assert!(cli.overrides().is_empty());
    }

    #[test]
    fn every_flag_both_forms() {
        let spaced = [
            "--name",
            "tail",
            "--no-daemon",
            "--pid-file",
            "/p.pid",
            "--work-dir",
            "/w",
            "--chroot-dir",
            "/c",
            "--umask",
            "027",
            "--user",
            "nobody",
            "--group",
            "nogroup",
            "--state-file",
            "/s",
            "--runlog-dir",
            "/r",
            "--stats-interval",
            "10",
            "--runlog-interval",
            "0.5",
            "--pstate-interval",
            "7",
            "--stop-timeout",
            "30",
            "--parallel",
            "--precise-timers",
            "--precise-max-spin",
            "0.003",
            "--config-file",
            "/cf",
            "--config-dir",
            "/cd",
            "--pstate-file",
            "/ps",
            "--log-file",
            "/l",
            "--log-level",
            "debug",
            "--action",
            "runlog-view",
            "--input",
            "/i",
            "--limit",
            "5",
        ];
        let mut joined = Vec::new();
        let mut i = 0;
        while i < spaced.len() {
            if matches!(spaced[i], "--no-daemon" | "--parallel" | "--precise-timers") {
                joined.push(spaced[i].to_owned());
                i += 1;
            } else {
                joined.push(format!("{}={}", spaced[i], spaced[i + 1]));
                i += 2;
            }
        }
        let joined: Vec<&str> = joined.iter().map(String::as_str).collect();
        for list in [&spaced[..], &joined[..]] {
            let cli = run(list);
            assert_eq!(cli.name.as_deref(), Some("tail"));
            assert!(cli.no_daemon && cli.parallel && cli.precise_timers);
            assert_eq!(cli.precise_max_spin, Some(Duration::from_millis(3)));
            assert_eq!(cli.pid_file, Some("/p.pid".into()));
            assert_eq!(cli.work_dir, Some("/w".into()));
            assert_eq!(cli.chroot_dir, Some("/c".into()));
            assert_eq!(cli.umask, Some(0o027));
            assert_eq!(cli.user.as_deref(), Some("nobody"));
            assert_eq!(cli.group.as_deref(), Some("nogroup"));
            assert_eq!(cli.state_file, Some("/s".into()));
            assert_eq!(cli.runlog_dir, Some("/r".into()));
            assert_eq!(cli.stats_interval, Some(Duration::from_secs(10)));
            assert_eq!(cli.runlog_interval, Some(Duration::from_millis(500)));
            assert_eq!(cli.pstate_interval, Some(Duration::from_secs(7)));
            assert_eq!(cli.stop_timeout, Some(Duration::from_secs(30)));
            assert_eq!(cli.config_file, Some("/cf".into()));
            assert_eq!(cli.config_dir, Some("/cd".into()));
            assert_eq!(cli.pstate_file, Some("/ps".into()));
            assert_eq!(cli.log_file, Some("/l".into()));
            assert_eq!(cli.log_level, Some(LogLevel::Debug));
            assert_eq!(cli.action, Some(Action::RunlogView));
            assert_eq!(cli.input, Some("/i".into()));
            assert_eq!(cli.limit, Some(5));

            let o = cli.overrides();
            assert_eq!(o.len(), 25);
            assert_eq!(o["precise_timers"], true);
            assert_eq!(o["precise_max_spin"], 0.003);
            assert_eq!(o["umask"], "0027");
            assert_eq!(o["stats_interval"], 10);
            assert_eq!(o["runlog_interval"], 0.5);
            assert_eq!(o["pstate_interval"], 7);
            assert_eq!(o["no_daemon"], true);
            assert_eq!(o["action"], "runlog-view");
            assert_eq!(o["limit"], 5);
            assert_eq!(o["config_dir"], "/cd");
        }
    }

    #[test]
    fn program_help_shows_the_programs_own_defaults_and_description() {
        let args: Vec<String> = ["tail", "--help"].iter().map(|s| (*s).to_owned()).collect();
        let Parsed::Help(text) = Cli::parse(&args).unwrap() else {
            panic!("not help")
        };
        assert!(text.contains("(default: 300)"), "{text}");
        let mut own = Map::new();
        own.insert("stats_interval".into(), Value::from(60));
        own.insert("log_level".into(), Value::from("debug"));
        let help = program_help(
            &text,
            "tail",
            Some("follows files like tail -F"),
            &["tail", "count"],
            &own,
        );
        assert!(help.contains("follows files like tail -F"), "{help}");
        assert!(!help.contains(SHELL_ABOUT), "{help}");
        assert!(help.contains("'tail', 'count'"), "{help}");
        let line = |flag: &str| {
            let i = help.find(&format!("\n  {flag} ")).unwrap();
            let rest = &help[i..];
            rest[..rest[1..].find("\n  --").map_or(rest.len(), |j| j + 1)].to_owned()
        };
        assert!(line("--stats-interval").contains("(default: 60)"), "{help}");
        assert!(
            line("--runlog-interval").contains("(default: 300)"),
            "{help}"
        );
        assert!(line("--name").contains("(default: tail)"), "{help}");
        // Every option is still there, and no line is longer than argh's.
        for flag in [
            "--no-daemon",
            "--pstate-interval",
            "--limit",
            "--stop-timeout",
        ] {
            assert!(help.contains(flag), "{flag}: {help}");
        }
        assert!(
            help.lines().skip(1).all(|l| l.len() <= HELP_WIDTH),
            "{help}"
        );
        // Without program defaults or description, argh's text but for --name.
        let plain = program_help(&text, "zendaemon", None, &[], &Map::new());
        let options = |t: &str| t.lines().filter(|l| l.starts_with("  --")).count();
        assert_eq!(options(&plain), options(&text), "{plain}");
        assert!(plain.contains(SHELL_ABOUT));
    }

    #[test]
    fn help() {
        for flag in ["--help", "-h"] {
            match Cli::parse(&args(&[flag])).unwrap() {
                Parsed::Help(text) => {
                    assert!(text.contains("Usage: tailer"), "{text}");
                    assert!(text.contains("--stats-interval"));
                    assert!(text.contains("--runlog-interval"));
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(usage(&["--help=yes"]).contains("--help takes no value"));
    }

    #[test]
    fn umask_values() {
        for (s, m) in [
            ("022", 0o022),
            ("0022", 0o022),
            ("0o022", 0o022),
            ("0", 0),
            ("777", 0o777),
            ("0o0777", 0o777),
        ] {
            assert_eq!(parse_umask(s), Ok(m), "{s}");
        }
        for bad in [
            "abc",
            "",
            "0o",
            "8",
            "1000",
            "0o1000",
            "-1",
            "0x12",
            " 022",
            "99999999999999",
        ] {
            assert!(parse_umask(bad).is_err(), "{bad}");
        }
        let msg = usage(&["--umask", "abc"]);
        assert!(msg.contains("--umask") && msg.contains("abc"), "{msg}");
        let msg = usage(&["--umask=1000"]);
        assert!(msg.contains("--umask") && msg.contains("at most"), "{msg}");
    }

    #[test]
    fn seconds_values() {
        assert_eq!(parse_seconds("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds(".25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("2."), Ok(Duration::from_secs(2)));
        assert_eq!(parse_seconds("0.001"), Ok(Duration::from_millis(1)));
        for bad in [
            "0",
            "0.0",
            "-5",
            "abc",
            "",
            ".",
            "inf",
            "NaN",
            "1e3",
            "1.2.3",
            "0.0001",
            "+5",
            "5s",
            "99999999999999999999999",
        ] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
        for flag in [
            "--stats-interval",
            "--runlog-interval",
            "--pstate-interval",
            "--stop-timeout",
            "--precise-max-spin",
        ] {
            for bad in ["-5", "0", "abc"] {
                let msg = usage(&[flag, bad]);
                assert!(msg.contains(flag) && msg.contains(bad), "{msg}");
            }
            let msg = usage(&[&format!("{flag}=-1")]);
            assert!(msg.contains(flag), "{msg}");
        }
    }

    #[test]
    fn enums_and_limit() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
            assert_eq!(run(&["--action", a.as_str()]).action, Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
            assert_eq!(
                serde_json::from_value::<Action>(a.as_str().into()).unwrap(),
                a
            );
        }
        let msg = usage(&["--action", "bogus"]);
        assert!(
            msg.contains("--action") && msg.contains("bogus") && msg.contains("runlogs-evaluate"),
            "{msg}"
        );
        assert!(usage(&["--action=config_view"]).contains("config_view"));
        let msg = usage(&["--log-level", "loud"]);
        assert!(msg.contains("--log-level") && msg.contains("loud"), "{msg}");
        for bad in ["0", "-1", "x"] {
            assert!(usage(&["--limit", bad]).contains("--limit"));
        }
    }

    #[test]
    fn bad_command_lines() {
        assert!(usage(&["--bogus"]).contains("--bogus"));
        assert!(usage(&["--runlog-dir"]).contains("--runlog-dir"));
        assert!(usage(&["stray"]).contains("stray"));
        assert!(usage(&["--no-daemon=yes"]).contains("--no-daemon takes no value"));
        assert!(usage(&["--parallel=1"]).contains("--parallel"));
        assert!(usage(&["--name", "9x"]).contains("--name"));
        assert!(usage(&["--name="]).contains("--name"));
        assert!(usage(&["--pid-file="]).contains("--pid-file"));
        assert!(usage(&["--user", ""]).contains("--user"));
        let dup = usage(&["--limit", "1", "--limit=2"]);
        assert!(
            dup.contains("--limit") && dup.contains("duplicate"),
            "{dup}"
        );
        // Usage errors end with exit code 2.
        assert_eq!(Cli::parse(&args(&["--bogus"])).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn normalization_rules() {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // A value that looks like --x=y is left alone.
        assert_eq!(
            normalize_args(&s(&["--input", "--weird=name", "--limit=3"])).unwrap(),
            s(&["--input", "--weird=name", "--limit", "3"])
        );
        // Only the first '=' splits.
        assert_eq!(
            normalize_args(&s(&["--user=a=b"])).unwrap(),
            s(&["--user", "a=b"])
        );
        // Everything after -- is untouched.
        assert_eq!(
            normalize_args(&s(&["--no-daemon", "--", "--limit=3"])).unwrap(),
            s(&["--no-daemon", "--", "--limit=3"])
        );
        // Single-dash and plain arguments are untouched.
        assert_eq!(
            normalize_args(&s(&["-x=1", "a=b"])).unwrap(),
            s(&["-x=1", "a=b"])
        );
        // A path value with '=' works through parse.
        assert_eq!(run(&["--input=/tmp/a=b"]).input, Some("/tmp/a=b".into()));
        assert_eq!(run(&["--input", "--x=y"]).input, Some("--x=y".into()));
    }

    #[test]
    fn seconds_json() {
        assert_eq!(seconds_value(Duration::from_secs(300)), Value::from(300u64));
        assert_eq!(seconds_value(Duration::from_millis(1500)), Value::from(1.5));
        assert_eq!(format_umask(0o2), "0002");
    }
}
