//! Smoke tests of the runner through `testd`: one foreground run driven by signals, one
//! daemon run driven by the control actions, one start that fails after the fork. The full
//! end-to-end suite lives beside this file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const TESTD: &str = env!("CARGO_BIN_EXE_testd");
const PATIENCE: Duration = Duration::from_secs(15);

/// A temporary directory with every file of one testd instance in it.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new(config: &str) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("testd.conf"), config).unwrap();
        fs::create_dir(dir.path().join("testd.d")).unwrap();
        Sandbox { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// testd with every path flag pointing into the sandbox, then `extra`.
    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(TESTD);
        let flag = |name: &str, file: &str| format!("--{name}={}", self.path(file).display());
        cmd.arg(flag("pid-file", "testd.pid"))
            .arg(flag("runlog-dir", "runlogs"))
            .arg(flag("state-file", "testd.state"))
            .arg(flag("pstate-file", "testd.pstate"))
            .arg(flag("log-file", "testd.log"))
            .arg(flag("config-file", "testd.conf"))
            .arg(flag("config-dir", "testd.d"))
            .args(extra)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null());
        cmd
    }

    fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.path("testd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn runlogs(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.path("runlogs"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|x| x == "runlog"));
        files.sort();
        files
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("testd.log")).unwrap_or_default()
    }
}

/// A daemon a failed test left behind is killed with its sandbox, not left running.
impl Drop for Sandbox {
    fn drop(&mut self) {
        let Some(pid) = self.pid() else { return };
        let is_testd = fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe.to_string_lossy().starts_with(TESTD));
        if is_testd {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("testd did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn action(sandbox: &Sandbox, name: &str) -> Output {
    sandbox
        .command(&[&format!("--action={name}")])
        .output()
        .unwrap()
}

#[test]
fn foreground_run_with_usr1_then_int() {
    let sandbox = Sandbox::new(r#"{"worker": {"work_interval_ms": 10, "state_marker": "smoke"}}"#);
    let stderr = fs::File::create(sandbox.path("stderr")).unwrap();
    let mut child = sandbox
        .command(&["--no-daemon"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    wait_for("the pidfile", || sandbox.pid() == Some(pid));
    // Started: the console log says so (readiness comes after `start`).
    wait_for("the start line", || {
        fs::read_to_string(sandbox.path("stderr"))
            .unwrap()
            .contains("started (pid")
    });
    std::thread::sleep(Duration::from_millis(100));

    kill(Pid::from_raw(pid), Signal::SIGUSR1).unwrap();
    wait_for("the SIGUSR1 runlog", || !sandbox.runlogs().is_empty());
    let runlog = json(&sandbox.runlogs()[0]);
    assert_eq!(runlog["name"], "testd");
    assert_eq!(runlog["pid"], pid);
    assert_eq!(runlog["result"], "success");

    kill(Pid::from_raw(pid), Signal::SIGUSR2).unwrap();
    wait_for("the state file", || sandbox.path("testd.state").exists());
    let state = json(&sandbox.path("testd.state"));
    assert_eq!(state["components"]["worker"]["state_marker"], "smoke");
    assert_eq!(state["routes"]["work"], serde_json::json!(["worker"]));

    kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
    let status = wait_exit(&mut child);
    let stderr = fs::read_to_string(sandbox.path("stderr")).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!sandbox.path("testd.pid").exists(), "pidfile left behind");

    let newest = sandbox.runlogs().pop().unwrap();
    let runlog = json(&newest);
    assert_eq!(runlog["rc"], 0);
    assert!(runlog["events"].as_u64().unwrap() >= 3, "{runlog}");
    assert!(
        runlog["statistics"]["components"]["worker"]["work"]["cnt"]
            .as_u64()
            .unwrap()
            > 0,
        "{runlog}"
    );
    let pstate = json(&sandbox.path("testd.pstate"));
    assert_eq!(pstate["worker"]["runs"], 1);
}

#[test]
fn daemon_run_driven_by_actions() {
    let sandbox = Sandbox::new("");
    // The launcher returns once the daemon is ready.
    let launched = sandbox.command(&[]).output().unwrap();
    assert_eq!(
        launched.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&launched.stderr)
    );
    let pid = sandbox.pid().expect("a pid in the pidfile");
    assert!(sandbox.log().contains(&format!("started (pid {pid}")));

    let status = action(&sandbox, "status");
    assert_eq!(status.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        format!("testd is running (pid {pid})\n")
    );

    // A second instance is refused and leaves the first one's pidfile alone.
    let second = sandbox.command(&[]).output().unwrap();
    assert_eq!(second.status.code(), Some(75));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains(&format!("already running (pid {pid})"))
    );
    assert_eq!(sandbox.pid(), Some(pid));

    let stop = action(&sandbox, "stop");
    assert_eq!(
        stop.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert!(String::from_utf8_lossy(&stop.stdout).contains(&format!("stopped testd (pid {pid})")));
    assert!(!sandbox.path("testd.pid").exists());
    assert_eq!(action(&sandbox, "status").status.code(), Some(3));
    assert!(!sandbox.runlogs().is_empty());
}

#[test]
fn a_start_that_fails_after_the_fork_fails_the_launcher() {
    let sandbox = Sandbox::new(r#"{"worker": {"fail_after_fork": true}}"#);
    let launched = sandbox.command(&[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&launched.stderr);
    assert_eq!(launched.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("worker refused to start"), "{stderr}");
    assert!(!sandbox.path("testd.pid").exists());
}
