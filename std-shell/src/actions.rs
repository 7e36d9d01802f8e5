//! The control actions (`--action X`): signal, query or stop a running daemon, show its
//! configuration, read its runlogs.
//!
//! Actions never start components or write files. They find the daemon through its pidfile
//! (in `--parallel` mode, every instance's pidfile, see [`instances`]) and
//! check the pidfile's lock ([`pidfile::probe`]) before they signal anything: only a locked
//! pidfile names a live daemon, so a PID left in a stale file, which may belong to an unrelated
//! process by now, is never signalled.
//!
//! Each action prints one line per instance (answers on standard output, failures on standard
//! error) and exits with:
//!
//! | action | exit code |
//! |---|---|
//! | `status`, `signal-check`, `signal-hup` … `signal-alrm` | LSB: 0 running (signal sent), 1 dead but the pidfile is left, 3 not running, 4 unknown (no permission, unreadable pidfile) |
//! | `stop` | 0 stopped or not running, 1 still running after `SIGTERM`, 4 unknown |
//! | `config-view`, `runlogs-list`, `runlog-view`, `runlogs-evaluate` | 0, or the error's [exit code](crate::error::exit) |
//! | `config-check` | 0 when a start would accept the configuration ([`preflight`](crate::preflight)), else 78 naming the file |
//!
//! With several instances the worst code wins (4 over 3 over 1 over 0). In parallel mode with
//! no instance pidfile, the daemon is "not running" (3).
//!
//! `stop` sends `SIGINT`, waits until the pidfile's lock is released, up to the stop timeout,
//! then sends `SIGTERM` and waits again, long enough for the daemon's own stop watchdog to end
//! a stuck handler (see [`daemon`](crate::daemon)).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::Action;
use crate::config::{config_view, Config};
use crate::error::{exit, Error, Result};
use crate::instances;
use crate::pidfile::{self, Probe};
use crate::runlog;
use crate::watchdog::LAST_WORDS_GRACE;

/// How often `stop` looks whether the daemon is gone.
const POLL: Duration = Duration::from_millis(20);

/// Runs `action` with `config`, printing to standard output and error; returns the exit code.
pub fn run(config: &Config, action: Action) -> i32 {
    run_with(
        config,
        action,
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    )
}

/// [`run`], printing to `out` (answers) and `err` (failures).
pub fn run_with(config: &Config, action: Action, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let s = config.settings();
    let name = s.name.as_str();
    // The service user's directories pass the ownership rules when the pidfile is read, as
    // they do for the daemon (crate::safepath).
    if let Some(uid) = s
        .user
        .as_deref()
        .and_then(|u| crate::daemonize::resolve_user(u).ok())
    {
        crate::safepath::set_service_user(Some(uid));
    }
    let result = match action {
        Action::SignalCheck => signal_all(config, None, out, err),
        Action::SignalHup => signal_all(config, Some(Signal::SIGHUP), out, err),
        Action::SignalInt => signal_all(config, Some(Signal::SIGINT), out, err),
        Action::SignalTerm => signal_all(config, Some(Signal::SIGTERM), out, err),
        Action::SignalUsr1 => signal_all(config, Some(Signal::SIGUSR1), out, err),
        Action::SignalUsr2 => signal_all(config, Some(Signal::SIGUSR2), out, err),
        Action::SignalAlrm => signal_all(config, Some(Signal::SIGALRM), out, err),
        Action::Status => status(config, out, err),
        Action::Stop => stop(config, out, err),
        Action::ConfigView => write!(out, "{}", config_view(config))
            .map(|()| exit::OK)
            .map_err(|e| Error::os("write to standard output", e)),
        Action::ConfigCheck => crate::preflight::check(config).and_then(|_| {
            let files: Vec<String> = config
                .files()
                .iter()
                .map(|p| format!("'{}'", p.display()))
                .collect();
            let read = if files.is_empty() {
                "no configuration file".to_owned()
            } else {
                files.join(", ")
            };
            print(out, &format!("{name}: configuration OK ({read})\n"))
        }),
        Action::RunlogsList => {
            runlog::runlogs_list(&s.runlog_dir, s.limit).and_then(|text| print(out, &text))
        }
        Action::RunlogView => newest_or_input(s.input.as_deref(), &s.runlog_dir)
            .and_then(|p| runlog::runlog_view(&p))
            .and_then(|text| print(out, &text)),
        Action::RunlogsEvaluate => {
            runlog::runlogs_evaluate(&s.runlog_dir, s.limit).and_then(|text| print(out, &text))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "{name}: {e}");
            e.exit_code()
        }
    }
}

fn print(out: &mut dyn Write, text: &str) -> Result<i32> {
    out.write_all(text.as_bytes())
        .map(|()| exit::OK)
        .map_err(|e| Error::os("write to standard output", e))
}

/// `--input`, or the newest runlog.
fn newest_or_input(input: Option<&Path>, dir: &Path) -> Result<PathBuf> {
    if let Some(p) = input {
        return Ok(p.to_path_buf());
    }
    runlog::list_runlogs(dir)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            Error::io(
                "find a runlog in",
                dir,
                io::Error::new(io::ErrorKind::NotFound, "no runlog files"),
            )
        })
}

/// The pidfiles to look at: the configured one, or every instance's in parallel mode.
fn pidfiles(config: &Config) -> Result<Vec<PathBuf>> {
    let s = config.settings();
    if s.parallel {
        Ok(instances::instance_paths(&s.pid_file)?
            .into_iter()
            .map(|(p, _)| p)
            .collect())
    } else {
        Ok(vec![s.pid_file.clone()])
    }
}

/// What the instances' pidfiles say; a parallel daemon without instances is "not running".
fn probes(config: &Config) -> Result<Vec<(PathBuf, Probe)>> {
    let files = pidfiles(config)?;
    if files.is_empty() {
        return Ok(vec![(
            config.settings().pid_file.clone(),
            Probe::NotRunning,
        )]);
    }
    Ok(files
        .into_iter()
        .map(|p| {
            let probe = pidfile::probe(&p);
            (p, probe)
        })
        .collect())
}

/// The LSB code of a probe, and a line that says it.
fn describe(name: &str, path: &Path, probe: &Probe) -> (i32, String) {
    let code = probe.lsb_code();
    let line = match probe {
        Probe::Running { pid } => format!("{name} is running (pid {pid})"),
        Probe::Stale { pid: Some(pid) } => format!(
            "{name} is not running, but its pidfile '{}' is left (pid {pid})",
            path.display()
        ),
        Probe::Stale { pid: None } => format!(
            "{name} is not running, but its pidfile '{}' is left (without a valid pid)",
            path.display()
        ),
        Probe::NotRunning => format!("{name} is not running (no pidfile '{}')", path.display()),
        Probe::Unknown(why) => format!("{name} status is unknown: {why}"),
    };
    (code, line)
}

/// The worst of two exit codes (see the module documentation).
fn worst(a: i32, b: i32) -> i32 {
    a.max(b)
}

fn status(config: &Config, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let name = &config.settings().name;
    let mut code = exit::OK;
    for (path, probe) in probes(config)? {
        let (c, line) = describe(name, &path, &probe);
        let _ = if c == exit::LSB_UNKNOWN {
            writeln!(err, "{line}")
        } else {
            writeln!(out, "{line}")
        };
        code = worst(code, c);
    }
    Ok(code)
}

fn signal_name(signal: Option<Signal>) -> &'static str {
    signal.map_or("signal 0", Signal::as_str)
}

/// Sends `signal` (none: the null signal, a check) to every running instance.
fn signal_all(
    config: &Config,
    signal: Option<Signal>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let name = &config.settings().name;
    let sig = signal_name(signal);
    let mut code = exit::OK;
    for (path, probe) in probes(config)? {
        let (c, line) = match probe {
            Probe::Running { pid } => match kill(Pid::from_raw(pid), signal) {
                Ok(()) if signal.is_none() => {
                    (exit::LSB_RUNNING, format!("{name} is running (pid {pid})"))
                }
                Ok(()) => (exit::OK, format!("sent {sig} to {name} (pid {pid})")),
                Err(Errno::ESRCH) => (
                    exit::LSB_NOT_RUNNING,
                    format!("cannot send {sig} to {name} (pid {pid}): it has just exited"),
                ),
                Err(Errno::EPERM) if signal.is_none() => (
                    exit::LSB_RUNNING,
                    format!("{name} is running (pid {pid}; no permission to signal it)"),
                ),
                Err(e) => (
                    exit::LSB_UNKNOWN,
                    format!("cannot send {sig} to {name} (pid {pid}): {}", e.desc()),
                ),
            },
            other if signal.is_none() => describe(name, &path, &other),
            other => {
                let (c, why) = describe(name, &path, &other);
                (c, format!("cannot send {sig}: {why}"))
            }
        };
        let _ = if c == exit::OK {
            writeln!(out, "{line}")
        } else if signal.is_none() && c != exit::LSB_UNKNOWN {
            // signal-check answers the question like status does.
            writeln!(out, "{line}")
        } else {
            writeln!(err, "{line}")
        };
        code = worst(code, c);
    }
    Ok(code)
}

/// Whether the pidfile at `path` still names a live daemon with `pid`.
fn still_running(path: &Path, pid: i32) -> bool {
    matches!(pidfile::probe(path), Probe::Running { pid: now } if now == pid)
}

/// Waits until none of `targets` runs any more, or `timeout`; returns those still running.
fn wait_gone(targets: Vec<(PathBuf, i32)>, timeout: Duration) -> Vec<(PathBuf, i32)> {
    let deadline = Instant::now() + timeout;
    let mut left = targets;
    loop {
        left.retain(|(path, pid)| still_running(path, *pid));
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(POLL);
    }
}

/// SIGINT to every running instance at once, then wait for them together; SIGTERM to those
/// left after the stop timeout, and wait again.
fn stop(config: &Config, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let s = config.settings();
    let name = &s.name;
    let after_term = s.watchdog_margin + LAST_WORDS_GRACE + Duration::from_secs(2);
    let mut code = exit::OK;
    let mut signalled = Vec::new();
    for (path, probe) in probes(config)? {
        let pid = match probe {
            Probe::Running { pid } => pid,
            Probe::Unknown(why) => {
                let _ = writeln!(err, "cannot stop {name}: status unknown: {why}");
                code = worst(code, exit::LSB_UNKNOWN);
                continue;
            }
            other => {
                let (_, line) = describe(name, &path, &other);
                let _ = writeln!(out, "{line}");
                continue;
            }
        };
        match kill(Pid::from_raw(pid), Signal::SIGINT) {
            Ok(()) | Err(Errno::ESRCH) => signalled.push((path, pid)),
            Err(e) => {
                let _ = writeln!(
                    err,
                    "cannot send SIGINT to {name} (pid {pid}): {}",
                    e.desc()
                );
                code = worst(code, exit::LSB_UNKNOWN);
            }
        }
    }
    let left = wait_gone(signalled.clone(), s.stop_timeout);
    for (_, pid) in &left {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let stuck = wait_gone(left.clone(), after_term);
    for (_, pid) in &signalled {
        if stuck.iter().any(|(_, p)| p == pid) {
            let _ = writeln!(
                err,
                "{name} (pid {pid}) is still running after SIGINT and SIGTERM"
            );
            code = worst(code, exit::FAILURE);
        } else if left.iter().any(|(_, p)| p == pid) {
            let _ = writeln!(
                out,
                "stopped {name} (pid {pid}), after SIGTERM: SIGINT had not stopped it within {} s",
                s.stop_timeout.as_secs_f64()
            );
        } else {
            let _ = writeln!(out, "stopped {name} (pid {pid})");
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::paths::DefaultPaths;
    use crate::pidfile::ChildHolder;
    use std::fs;

    fn config(dir: &Path, parallel: bool) -> Config {
        let defaults = DefaultPaths {
            pid_file: dir.join("d.pid"),
            runlog_dir: dir.join("runlogs"),
            state_file: dir.join("d.state"),
            pstate_file: dir.join("d.pstate"),
            pstate_dir: dir.to_path_buf(),
            old_pstate_file: dir.join("old.pstate"),
            log_file: dir.join("d.log"),
            config_file: dir.join("d.conf"),
            config_dir: dir.join("d"),
            runtime_dir: None,
        };
        let cli = Cli {
            parallel,
            stop_timeout: Some(Duration::from_millis(300)),
            ..Cli::default()
        };
        Config::load("d", &cli, &defaults, &[]).unwrap()
    }

    fn act(config: &Config, action: Action) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(config, action, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn not_running_without_a_pidfile() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), false);
        let (code, out, _) = act(&c, Action::Status);
        assert_eq!(code, exit::LSB_NOT_RUNNING);
        assert!(out.contains("d is not running"), "{out}");
        let (code, out, _) = act(&c, Action::SignalCheck);
        assert_eq!((code, out.lines().count()), (exit::LSB_NOT_RUNNING, 1));
        let (code, _, err) = act(&c, Action::SignalHup);
        assert_eq!(code, exit::LSB_NOT_RUNNING);
        assert!(err.contains("cannot send SIGHUP"), "{err}");
        let (code, out, _) = act(&c, Action::Stop);
        assert_eq!(code, exit::OK);
        assert!(out.contains("not running"), "{out}");
        // Parallel mode without instances.
        let c = config(dir.path(), true);
        assert_eq!(act(&c, Action::Status).0, exit::LSB_NOT_RUNNING);
    }

    #[test]
    fn a_stale_pidfile_is_never_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), false);
        // Our own PID, in a file nobody locks: a process that reused the PID must be left
        // alone (a SIGTERM here would end the test).
        fs::write(
            dir.path().join("d.pid"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        let (code, out, _) = act(&c, Action::Status);
        assert_eq!(code, exit::LSB_DEAD_PIDFILE);
        assert!(out.contains("pidfile"), "{out}");
        let (code, _, err) = act(&c, Action::SignalTerm);
        assert_eq!(code, exit::LSB_DEAD_PIDFILE);
        assert!(err.contains("cannot send SIGTERM"), "{err}");
        assert_eq!(act(&c, Action::Stop).0, exit::OK);
    }

    #[test]
    fn a_locked_pidfile_is_running_and_gets_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), false);
        let held = ChildHolder::lock(&dir.path().join("d.pid"));
        let (code, out, _) = act(&c, Action::Status);
        assert_eq!(code, exit::LSB_RUNNING);
        assert_eq!(out, format!("d is running (pid {})\n", held.pid));
        let (code, out, _) = act(&c, Action::SignalCheck);
        assert_eq!(code, exit::LSB_RUNNING);
        assert!(out.contains("is running"), "{out}");
    }

    #[test]
    fn parallel_instances_each_get_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), true);
        let held = ChildHolder::lock(&instances::instance_path(
            &dir.path().join("d.pid"),
            std::process::id(),
        ));
        let me = held.pid;
        fs::write(dir.path().join("d.999999.pid"), "999999\n").unwrap();
        let (code, out, _) = act(&c, Action::Status);
        assert_eq!(code, exit::LSB_DEAD_PIDFILE, "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains(&format!("running (pid {me})")), "{out}");
    }

    #[test]
    fn config_view_and_runlog_actions() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), false);
        let (code, out, _) = act(&c, Action::ConfigView);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["name"], "d");
        let (code, out, _) = act(&c, Action::RunlogsList);
        assert_eq!(code, 0);
        assert!(out.contains("Runlog(s) found: 0"), "{out}");
        let (code, _, err) = act(&c, Action::RunlogView);
        assert_ne!(code, 0);
        assert!(err.contains("no runlog files"), "{err}");
        assert_eq!(act(&c, Action::RunlogsEvaluate).0, 0);
    }
}
