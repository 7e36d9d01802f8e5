//! Helpers for the examples' process tests: a private directory per test, every path flag
//! pointing into it, the daemon in the foreground (`--no-daemon`) as our child, signals only
//! to the PIDs a test started. Waiting polls under a generous timeout: the tests check what
//! happens, never how fast.
#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// How long anything may take before a test gives up on it.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `f` until it gives a value, at most [`TIMEOUT`].
pub fn poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `f` until it gives a value; panics naming `what` after [`TIMEOUT`].
pub fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll(f).unwrap_or_else(|| panic!("timed out after {TIMEOUT:?} waiting for {what}"))
}

/// Reads and parses a JSON file.
pub fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read '{}': {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("'{}' is not JSON ({e}):\n{text}", path.display()))
}

/// A test's directory and the command line of one daemon in it.
pub struct Sandbox {
    dir: tempfile::TempDir,
    program: &'static str,
    name: &'static str,
    runs: usize,
}

impl Sandbox {
    /// A new directory for `program` (a binary path), whose files are named after `name`.
    pub fn new(program: &'static str, name: &'static str) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("zendaemon-examples-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("conf.d")).unwrap();
        let s = Sandbox {
            dir,
            program,
            name,
            runs: 0,
        };
        s.write_config("{}");
        s
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config_file(&self) -> PathBuf {
        self.path(&format!("{}.conf", self.name))
    }

    pub fn state_file(&self) -> PathBuf {
        self.path(&format!("{}.state", self.name))
    }

    pub fn pstate_file(&self) -> PathBuf {
        self.path(&format!("{}.pstate", self.name))
    }

    pub fn runlog_dir(&self) -> PathBuf {
        self.path("runlogs")
    }

    pub fn write_config(&self, text: &str) {
        fs::write(self.config_file(), text).unwrap();
    }

    /// The program with every path flag in the sandbox, then `extra`.
    pub fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(self.program);
        let flag = |f: &str, p: PathBuf| format!("--{f}={}", p.display());
        cmd.arg(flag("pid-file", self.path(&format!("{}.pid", self.name))))
            .arg(flag("runlog-dir", self.runlog_dir()))
            .arg(flag("state-file", self.state_file()))
            .arg(flag("pstate-file", self.pstate_file()))
            .arg(flag("log-file", self.path(&format!("{}.log", self.name))))
            .arg(flag("config-file", self.config_file()))
            .arg(flag("config-dir", self.path("conf.d")))
            .arg(flag("work-dir", self.dir.path().to_path_buf()))
            .args(extra)
            .env_remove("NOTIFY_SOCKET")
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Starts the daemon in the foreground and waits until it logged that it started (its
    /// signal handlers are installed then).
    pub fn start(&mut self, extra: &[&str]) -> Fg {
        self.runs += 1;
        let out = self.path(&format!("run{}.out", self.runs));
        let err = self.path(&format!("run{}.err", self.runs));
        let mut cmd = self.command(&["--no-daemon"]);
        cmd.args(extra)
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        let child = cmd.spawn().expect("spawn the daemon");
        let fg = Fg {
            pid: child.id() as i32,
            child,
            stderr: err,
        };
        let needle = format!("started (pid {}", fg.pid);
        wait_for(&needle, || fg.log().contains(&needle).then_some(()));
        fg
    }

    /// Removes the state file, sends `SIGUSR2` and returns the state once written.
    pub fn dump_state(&self, fg: &Fg) -> Value {
        let _ = fs::remove_file(self.state_file());
        fg.signal(Signal::SIGUSR2);
        wait_for("the state file", || {
            self.state_file().exists().then_some(())
        });
        read_json(&self.state_file())
    }

    /// The runlog files, oldest first.
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
}

/// A daemon running in the foreground: our child, killed if a test leaves it running.
pub struct Fg {
    pub child: Child,
    pub pid: i32,
    stderr: PathBuf,
}

impl Fg {
    /// The console log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid), sig).unwrap();
    }

    /// Waits for its exit; returns the exit code.
    pub fn wait(&mut self) -> i32 {
        let child = &mut self.child;
        let status = wait_for("the daemon to exit", || child.try_wait().unwrap());
        status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {status:?}\n{}", self.log()))
    }

    /// `SIGINT`, then its exit code.
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
