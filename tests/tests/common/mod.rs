//! Helpers shared by the end-to-end tests.
//!
//! Every test gets its own temporary directory ([`Env`]) and passes every path flag to `testd`
//! explicitly (pidfile, runlog directory, state, persistent state, log and configuration files,
//! working directory), and points `XDG_RUNTIME_DIR` and `XDG_CONFIG_HOME` into that directory as
//! well, so nothing outside it is ever touched and tests can run in parallel. Signals go to the
//! PIDs a test started itself.
//!
//! Waiting is polling with short sleeps under a generous overall timeout ([`TIMEOUT`]): the
//! tests check what happens, never how fast.
#![allow(dead_code)]

use std::cell::RefCell;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// How long anything may take before a test gives up on it.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The pause between two looks.
pub const POLL: Duration = Duration::from_millis(10);

/// Exit codes (see `zendaemon::error::exit`), spelled out so a changed constant fails here.
pub mod code {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const WATCHDOG: i32 = 70;
    pub const ALREADY_RUNNING: i32 = 75;
    pub const CONFIG: i32 = 78;
    pub const LSB_RUNNING: i32 = 0;
    pub const LSB_DEAD_PIDFILE: i32 = 1;
    pub const LSB_NOT_RUNNING: i32 = 3;
}

/// The test daemon.
pub fn testd() -> &'static str {
    env!("CARGO_BIN_EXE_testd")
}

/// Polls `f` until it gives a value, at most `timeout`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `f` until it gives a value, at most [`TIMEOUT`]; panics naming `what` otherwise.
pub fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll(TIMEOUT, f).unwrap_or_else(|| panic!("timed out after {TIMEOUT:?} waiting for {what}"))
}

/// Polls until `cond` holds, at most [`TIMEOUT`]; panics naming `what` otherwise.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(what, || cond().then_some(()))
}

/// True while the process `pid` exists and is not a zombie (daemons are reparented to PID 1,
/// which in a container does not necessarily reap them).
pub fn alive(pid: i32) -> bool {
    // Every thread, not only the leader: after SIGKILL the leader is a zombie while the other
    // threads still exit, and the process's descriptors (and the pidfile's lock) go only
    // with the last of them.
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(|t| t.ok()).any(|task| {
        fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name in parentheses (which may contain spaces).
            stat.rsplit_once(')').is_some_and(|(_, rest)| {
                !matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))
            })
        })
    })
}

/// The parent PID of `pid`, from `/proc`.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A line of `/proc/<pid>/status` (`Umask`, `PPid`…), its value trimmed.
pub fn proc_status(pid: i32, key: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    })
}

/// True when `pid` runs the test daemon (so a cleanup never hits a reused PID).
pub fn is_testd(pid: i32) -> bool {
    fs::read_link(format!("/proc/{pid}/exe"))
        .map(|exe| {
            let exe = exe.to_string_lossy().into_owned();
            let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe).to_owned();
            Path::new(&exe) == Path::new(testd())
        })
        .unwrap_or(false)
}

/// Whether `pid` runs one of this package's binaries (testd, echod, …): the ones a test may
/// kill when it ends, whatever state it failed in.
pub fn is_ours(pid: i32) -> bool {
    let Some(bin_dir) = Path::new(testd()).parent() else {
        return false;
    };
    fs::read_link(format!("/proc/{pid}/exe"))
        .map(|exe| {
            let exe = exe.to_string_lossy().into_owned();
            let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe).to_owned();
            Path::new(&exe).parent() == Some(bin_dir)
        })
        .unwrap_or(false)
}

/// Sends `sig` to `pid`, which must exist.
pub fn signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

/// Waits until `pid` is gone.
pub fn wait_gone(pid: i32) {
    wait_until(&format!("process {pid} to exit"), || !alive(pid));
}

/// The PID in a pidfile, `None` while it is missing, empty or not a number.
pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Reads and parses a JSON file; panics with its content when it is not JSON.
pub fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read '{}': {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("'{}' is not JSON ({e}):\n{text}", path.display()))
}

/// True when `needle` appears as a string anywhere in `v`.
pub fn contains_string(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s == needle,
        Value::Array(a) => a.iter().any(|v| contains_string(v, needle)),
        Value::Object(m) => m.values().any(|v| contains_string(v, needle)),
        _ => false,
    }
}

/// The exit code of a finished process, panicking on death by a signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| panic!("the process was killed: {status:?}"))
}

/// What a finished command left.
#[derive(Debug)]
pub struct Out {
    pub pid: i32,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A test's private directory and the command line of `testd` in it.
#[derive(Debug)]
pub struct Env {
    dir: tempfile::TempDir,
    /// The daemon's name (`--name`).
    pub name: String,
    /// Daemons started through this environment, killed (`SIGKILL`) if still alive at the end.
    daemons: RefCell<Vec<i32>>,
    serial: AtomicUsize,
}

impl Env {
    /// A new directory with an empty configuration file and configuration directory.
    pub fn new(name: &str) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("zendaemon-e2e-")
            .tempdir()
            .expect("create a temporary directory");
        let env = Env {
            dir,
            name: name.to_owned(),
            daemons: RefCell::new(Vec::new()),
            serial: AtomicUsize::new(0),
        };
        fs::create_dir(env.config_dir()).unwrap();
        fs::create_dir(env.path("xdg-runtime")).unwrap();
        fs::create_dir(env.path("xdg-config")).unwrap();
        env.write_config("{}");
        env
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn pid_file(&self) -> PathBuf {
        self.path(&format!("{}.pid", self.name))
    }

    pub fn runlog_dir(&self) -> PathBuf {
        self.path("runlogs")
    }

    pub fn state_file(&self) -> PathBuf {
        self.path(&format!("{}.state", self.name))
    }

    pub fn pstate_file(&self) -> PathBuf {
        self.path(&format!("{}.pstate", self.name))
    }

    pub fn log_file(&self) -> PathBuf {
        self.path(&format!("{}.log", self.name))
    }

    pub fn config_file(&self) -> PathBuf {
        self.path(&format!("{}.conf", self.name))
    }

    pub fn config_dir(&self) -> PathBuf {
        self.path("conf.d")
    }

    pub fn work_dir(&self) -> PathBuf {
        self.path("work")
    }

    /// Replaces the configuration file (written in place: the daemon only reads it on start
    /// and on `SIGHUP`).
    pub fn write_config(&self, text: &str) {
        let tmp = self.path("config.tmp");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, self.config_file()).unwrap();
    }

    /// Every path flag, explicit, half of them in the `--opt=value` form.
    pub fn path_args(&self) -> Vec<String> {
        self.path_args_except(&[])
    }

    /// [`Env::path_args`] without the flags in `drop` (`"--pid-file"`…).
    pub fn path_args_except(&self, drop: &[&str]) -> Vec<String> {
        fs::create_dir_all(self.work_dir()).unwrap();
        let p = |p: PathBuf| p.to_string_lossy().into_owned();
        let flags = [
            ("--name", self.name.clone()),
            ("--pid-file", p(self.pid_file())),
            ("--runlog-dir", p(self.runlog_dir())),
            ("--state-file", p(self.state_file())),
            ("--pstate-file", p(self.pstate_file())),
            ("--log-file", p(self.log_file())),
            ("--config-file", p(self.config_file())),
            ("--config-dir", p(self.config_dir())),
            ("--work-dir", p(self.work_dir())),
        ];
        let mut args = Vec::new();
        for (i, (flag, value)) in flags.into_iter().enumerate() {
            if drop.contains(&flag) {
                continue;
            }
            if i % 2 == 1 {
                args.push(format!("{flag}={value}"));
            } else {
                args.push(flag.to_owned());
                args.push(value);
            }
        }
        args
    }

    /// `testd` with every path flag and `extra`, in a clean environment (no systemd
    /// variables, XDG directories inside the test directory), standard input closed.
    pub fn command(&self, extra: &[&str]) -> Command {
        self.command_except(&[], extra)
    }

    /// [`Env::command`] without the path flags in `drop`.
    pub fn command_except(&self, drop: &[&str], extra: &[&str]) -> Command {
        let mut cmd = Command::new(testd());
        cmd.args(self.path_args_except(drop))
            .args(extra)
            .current_dir(self.dir())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("INVOCATION_ID")
            .env_remove("JOURNAL_STREAM")
            .env("XDG_RUNTIME_DIR", self.path("xdg-runtime"))
            .env("XDG_CONFIG_HOME", self.path("xdg-config"))
            .stdin(Stdio::null());
        cmd
    }

    /// Two fresh files for a process's standard output and error.
    fn output_files(&self, what: &str) -> (PathBuf, PathBuf) {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        (
            self.path(&format!("{what}.{n}.stdout")),
            self.path(&format!("{what}.{n}.stderr")),
        )
    }

    /// Runs `cmd` to its end (at most [`TIMEOUT`] plus the stop action's own waits), with its
    /// output in files (a daemon that kept a pipe open would hang a reader).
    pub fn run_command(&self, mut cmd: Command, what: &str) -> Out {
        let (out, err) = self.output_files(what);
        cmd.stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        let mut child = cmd.spawn().expect("spawn testd");
        let pid = child.id() as i32;
        let status = poll(TIMEOUT * 3, || child.try_wait().unwrap());
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish; stderr:\n{}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        };
        Out {
            pid,
            code: exit_code(status),
            stdout: fs::read_to_string(&out).unwrap(),
            stderr: fs::read_to_string(&err).unwrap(),
        }
    }

    /// Runs `testd` with `extra` to its end.
    pub fn run(&self, extra: &[&str]) -> Out {
        self.run_command(self.command(extra), "run")
    }

    /// Runs `--action <action>` with `extra`.
    pub fn action(&self, action: &str, extra: &[&str]) -> Out {
        let mut args = vec!["--action", action];
        args.extend_from_slice(extra);
        self.run_command(self.command(&args), action)
    }

    /// Starts the daemon in daemon mode: the launcher must exit 0; returns the daemon's PID
    /// from the pidfile (which must not be the launcher's).
    pub fn start_daemon(&self, extra: &[&str]) -> i32 {
        let out = self.run(extra);
        assert_eq!(out.code, code::OK, "the launcher failed: {out:?}");
        let pid = read_pid(&self.pid_file()).unwrap_or_else(|| {
            panic!(
                "no PID in '{}' once the launcher returned",
                self.pid_file().display()
            )
        });
        self.track(pid);
        assert_ne!(pid, out.pid, "the daemon is the launcher itself");
        assert!(alive(pid), "the daemon {pid} is not running: {out:?}");
        pid
    }

    /// Kills `pid` at the end of the test if it still runs one of our binaries.
    pub fn track(&self, pid: i32) {
        self.daemons.borrow_mut().push(pid);
    }

    /// Starts the daemon in the foreground (`--no-daemon` and `extra`) and waits until it
    /// logged that it started.
    pub fn spawn_fg(&self, extra: &[&str]) -> Fg {
        let fg = self.spawn_fg_unready(extra);
        fg.wait_started();
        fg
    }

    /// Starts the daemon in the foreground without waiting for anything.
    pub fn spawn_fg_unready(&self, extra: &[&str]) -> Fg {
        let mut cmd = self.command(&["--no-daemon"]);
        cmd.args(extra);
        self.spawn_command(cmd)
    }

    /// Starts `cmd` with its output in files, without waiting for anything.
    pub fn spawn_command(&self, mut cmd: Command) -> Fg {
        let (out, err) = self.output_files("fg");
        cmd.stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        let child = cmd.spawn().expect("spawn testd");
        Fg {
            pid: child.id() as i32,
            child,
            stdout: out,
            stderr: err,
        }
    }

    /// The log file's content (empty while it does not exist).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// The runlog files, sorted by name.
    pub fn runlogs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = match fs::read_dir(self.runlog_dir()) {
            Ok(d) => d
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "runlog"))
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    /// Writes the configuration `text` and sends `SIGHUP` to `pid`.
    pub fn reload(&self, pid: i32, text: &str) {
        self.write_config(text);
        signal(pid, Signal::SIGHUP);
    }

    /// Removes the state file, sends `SIGUSR2` and returns the state file once it appeared.
    pub fn dump_state(&self, pid: i32) -> Value {
        let _ = fs::remove_file(self.state_file());
        signal(pid, Signal::SIGUSR2);
        wait_until("the state file", || self.state_file().exists());
        read_json(&self.state_file())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for &pid in self.daemons.borrow().iter() {
            if alive(pid) && is_ours(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// A daemon running in the foreground: our child.
#[derive(Debug)]
pub struct Fg {
    pub child: Child,
    pub pid: i32,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Fg {
    /// Its standard error so far (the console log in the foreground).
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Waits for the line the daemon logs once it is ready (after its signal handlers are
    /// installed, so signals sent from now on are handled).
    pub fn wait_started(&self) {
        let needle = format!("started (pid {}", self.pid);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if self.stderr().contains(&needle) {
                return;
            }
            if !alive(self.pid) || Instant::now() >= deadline {
                panic!(
                    "testd {} did not log '{needle}'; stderr:\n{}",
                    self.pid,
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until its log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        wait_until(&format!("'{needle}' in the log of {}", self.pid), || {
            self.stderr().contains(needle)
        });
    }

    /// Sends it `sig`.
    pub fn signal(&self, sig: Signal) {
        signal(self.pid, sig);
    }

    /// True while it runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for its exit, at most [`TIMEOUT`]; returns the exit code.
    pub fn wait(&mut self) -> i32 {
        let child = &mut self.child;
        match poll(TIMEOUT, || child.try_wait().unwrap()) {
            Some(status) => exit_code(status),
            None => panic!(
                "testd {} did not exit; stderr:\n{}",
                self.pid,
                self.stderr()
            ),
        }
    }

    /// SIGINT, then its exit code.
    pub fn stop(&mut self) -> i32 {
        self.signal(Signal::SIGINT);
        self.wait()
    }
}

impl Drop for Fg {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The runlog keys every runlog carries (pyzenkit's, `name` … `statistics`).
pub const RUNLOG_KEYS: [&str; 9] = [
    "name",
    "pid",
    "argv",
    "ts",
    "ts_str",
    "result",
    "errors",
    "rc",
    "statistics",
];

/// Checks a runlog document: every key, of the right type, for the daemon `name` with `pid`.
pub fn check_runlog(doc: &Value, name: &str, pid: i32) {
    for key in RUNLOG_KEYS {
        assert!(doc.get(key).is_some(), "runlog lacks '{key}': {doc:#}");
    }
    assert_eq!(doc["name"], name, "{doc:#}");
    assert_eq!(doc["pid"], pid, "{doc:#}");
    let argv = doc["argv"].as_array().expect("argv is an array");
    assert!(
        argv.iter().any(|a| a == "--name") && argv.iter().any(|a| a == name),
        "argv is not the command line: {argv:?}"
    );
    assert!(doc["ts"].as_f64().is_some_and(|t| t > 1.0e9), "{doc:#}");
    assert!(
        doc["ts_str"].as_str().is_some_and(|s| s.len() >= 19),
        "{doc:#}"
    );
    assert!(
        matches!(doc["result"].as_str(), Some("success" | "failure")),
        "{doc:#}"
    );
    assert!(doc["errors"].is_array(), "{doc:#}");
    assert!(doc["rc"].is_i64(), "{doc:#}");
    assert!(doc["statistics"].is_object(), "{doc:#}");
}
