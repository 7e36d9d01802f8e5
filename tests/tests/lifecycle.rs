//! The life of a daemon: foreground and daemon mode, readiness reported to the launcher, a start
//! that fails after the fork, the persistent state across restarts.

mod common;

use std::fs;

use common::{
    alive, code, parent_of, proc_status, read_json, read_pid, wait_gone, wait_until, Env,
};
use nix::sys::signal::Signal;
use nix::unistd::{getsid, Pid};

#[test]
fn foreground_mode_runs_in_place_and_stops_on_sigint() {
    let env = Env::new("fg");
    let mut fg = env.spawn_fg(&[]);
    // No fork: the pidfile names our own child, which is still running.
    assert_eq!(read_pid(&env.pid_file()), Some(fg.pid));
    assert!(fg.running());
    // Logs go to the console, not the log file.
    assert!(fg.stderr().contains("started (pid"));
    assert!(!env.log_file().exists(), "a log file in the foreground");
    assert!(env.runlogs().is_empty(), "a runlog before any save");

    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
    assert!(!env.pid_file().exists(), "pidfile left behind");
    // The final runlog of the run.
    let runlogs = env.runlogs();
    assert_eq!(runlogs.len(), 1, "{runlogs:?}");
    let doc = read_json(&runlogs[0]);
    common::check_runlog(&doc, "fg", fg.pid);
    assert_eq!(doc["result"], "success");
    assert_eq!(doc["rc"], 0);
}

#[test]
fn daemon_mode_launcher_exits_0_once_the_daemon_is_ready() {
    let env = Env::new("bg");
    let out = env.run(&["--umask", "027"]);
    assert_eq!(out.code, code::OK, "{out:?}");
    // The launcher printed nothing on success.
    assert_eq!(out.stderr, "", "{out:?}");
    let pid = read_pid(&env.pid_file()).expect("the daemon's PID in the pidfile");
    env.track(pid);
    assert_ne!(pid, out.pid, "the PID in the pidfile is the launcher's");
    assert!(alive(pid), "the daemon is not running");
    // Detached: a new session, not the launcher's child, working directory and umask applied.
    let sid = getsid(Some(Pid::from_raw(pid))).expect("getsid");
    assert_ne!(
        sid,
        getsid(None).unwrap(),
        "the daemon stayed in our session"
    );
    assert_ne!(
        sid.as_raw(),
        pid,
        "the daemon is a session leader (one fork only)"
    );
    assert_ne!(parent_of(pid), Some(out.pid));
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        env.work_dir()
    );
    if let Some(umask) = proc_status(pid, "Umask") {
        assert_eq!(umask, "0027");
    }
    // Ready before the launcher returned: the start line is in the log file already.
    let log = env.log();
    assert!(log.contains(&format!("started (pid {pid}")), "{log}");
    assert!(log.contains(&format!("[{pid}]")), "{log}");

    // SIGTERM ends it and removes the pidfile.
    common::signal(pid, Signal::SIGTERM);
    wait_gone(pid);
    wait_until("the pidfile to be removed", || !env.pid_file().exists());
    assert!(!env.runlogs().is_empty(), "no final runlog");
}

#[test]
fn a_daemon_failing_after_the_fork_fails_the_launcher_with_its_message() {
    let env = Env::new("failing");
    env.write_config(r#"{"worker": {"fail_after_fork": true}}"#);
    let out = env.run(&[]);
    assert_ne!(out.code, code::OK, "{out:?}");
    assert_eq!(out.code, code::FAILURE, "{out:?}");
    assert!(
        out.stderr.contains("worker refused to start"),
        "the launcher did not print the daemon's message: {out:?}"
    );
    assert!(!env.pid_file().exists(), "pidfile left behind");
    // The failure is in the daemon's log too, and nothing runs.
    assert!(
        env.log().contains("worker refused to start"),
        "{}",
        env.log()
    );
    let status = env.action("status", &[]);
    assert_eq!(status.code, code::LSB_NOT_RUNNING, "{status:?}");
}

#[test]
fn a_foreground_start_failure_exits_non_zero_with_the_message() {
    let env = Env::new("fgfail");
    env.write_config(r#"{"worker": {"fail_after_fork": true}}"#);
    let mut fg = env.spawn_fg_unready(&[]);
    assert_eq!(fg.wait(), code::FAILURE, "{}", fg.stderr());
    assert!(
        fg.stderr().contains("worker refused to start"),
        "{}",
        fg.stderr()
    );
    assert!(!env.pid_file().exists(), "pidfile left behind");
    // Not started, so no persistent state.
    assert!(!env.pstate_file().exists());
}

#[test]
fn the_persistent_state_counts_runs_across_restarts() {
    let env = Env::new("pstate");
    let runs = || read_json(&env.pstate_file())["worker"]["runs"].clone();

    let mut fg = env.spawn_fg(&[]);
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
    assert_eq!(runs(), 1);

    // A daemon-mode run in between, stopped by the stop action.
    let pid = env.start_daemon(&[]);
    assert_eq!(env.dump_state(pid)["components"]["worker"]["runs"], 2);
    let stop = env.action("stop", &[]);
    assert_eq!(stop.code, code::OK, "{stop:?}");
    wait_gone(pid);
    assert_eq!(runs(), 2);

    let mut fg = env.spawn_fg(&[]);
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
    assert_eq!(runs(), 3);

    // A run the event loop ends by itself (`stop_after`) saves it too.
    env.write_config(r#"{"worker": {"work_interval_ms": 1, "stop_after": 3}}"#);
    let mut fg = env.spawn_fg_unready(&[]);
    assert_eq!(fg.wait(), code::OK, "{}", fg.stderr());
    assert_eq!(runs(), 4);
}

#[test]
fn precise_timers_keep_the_timers_and_the_signals_working() {
    let env = Env::new("precise");
    // From a configuration file: a 1 ms timer that ends the run after 200 rounds.
    env.write_config(
        r#"{"precise_timers": true, "worker": {"work_interval_ms": 1, "stop_after": 200}}"#,
    );
    let mut fg = env.spawn_fg_unready(&["--precise-max-spin", "0.003"]);
    assert_eq!(fg.wait(), code::OK, "{}", fg.stderr());

    // From the command line; signals reach the idle, timed loop.
    env.write_config(r#"{"worker": {"work_interval_ms": 5}}"#);
    let mut fg = env.spawn_fg(&["--precise-timers"]);
    let state = env.dump_state(fg.pid);
    assert_eq!(state["config"]["precise_timers"], true, "{state:#}");
    assert_eq!(state["config"]["precise_max_spin"], 0.002, "{state:#}");
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
    assert!(!env.pid_file().exists(), "pidfile left behind");
}

#[test]
fn a_run_killed_with_kill_9_keeps_its_start_checkpoint() {
    // The first run never stops cleanly: without the checkpoint at start it would leave no
    // persistent state, and the next run would count itself as the first again.
    let env = Env::new("ckpt-start");
    let first = env.start_daemon(&[]);
    common::signal(first, Signal::SIGKILL);
    wait_gone(first);
    assert_eq!(read_json(&env.pstate_file())["worker"]["runs"], 1);
    let second = env.start_daemon(&[]);
    assert_eq!(read_json(&env.pstate_file())["worker"]["runs"], 2);
    common::signal(second, Signal::SIGKILL);
    wait_gone(second);
    let third = env.start_daemon(&[]);
    assert_eq!(read_json(&env.pstate_file())["worker"]["runs"], 3);
    common::signal(third, Signal::SIGTERM);
    wait_gone(third);
}

#[test]
fn the_default_persistent_state_survives_reboots_and_moves_from_its_old_place_once() {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: root's default paths need root");
        return;
    }
    // A name of its own, so the system directories it touches are this test's alone.
    let name = format!("zde2e-pstate-{}", std::process::id());
    let env = Env::new(&name);
    let dir = PathBuf::from("/var/lib").join(&name);
    let new = dir.join(format!("{name}.pstate"));
    let old = PathBuf::from("/var/run").join(format!("{name}.pstate"));
    struct Cleanup(PathBuf, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
            let _ = fs::remove_file(&self.1);
        }
    }
    let _cleanup = Cleanup(dir.clone(), old.clone());
    fs::write(&old, r#"{"worker": {"runs": 41}}"#).unwrap();

    let start = || {
        let out = env.run_command(env.command_except(&["--pstate-file"], &[]), "start");
        assert_eq!(out.code, code::OK, "{out:?}");
        let pid = read_pid(&env.pid_file()).unwrap();
        env.track(pid);
        pid
    };
    let stop = |pid| {
        common::signal(pid, Signal::SIGINT);
        wait_gone(pid);
    };
    // The old place is read, the new one written (by the checkpoint at start).
    let pid = start();
    assert_eq!(read_json(&new)["worker"]["runs"], 42);
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    stop(pid);
    assert!(env.log().contains("old place"), "{}", env.log());
    // Once: the next start reads the new place, not the old one again.
    let pid = start();
    assert_eq!(read_json(&new)["worker"]["runs"], 43);
    stop(pid);
    assert_eq!(read_json(&old)["worker"]["runs"], 41);
}
