//! The control actions: their output and exit codes against a running daemon, a dead one, none,
//! and a pidfile naming an unrelated process.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::{alive, code, read_json, read_pid, signal, wait_gone, wait_until, Env};
use nix::sys::signal::Signal;

#[test]
fn status_and_signal_check_follow_the_lsb_codes() {
    let env = Env::new("lsb");
    // Not running: no pidfile.
    for action in ["status", "signal-check"] {
        let out = env.action(action, &[]);
        assert_eq!(out.code, code::LSB_NOT_RUNNING, "{action}: {out:?}");
        assert!(
            out.stdout.contains("lsb is not running"),
            "{action}: {out:?}"
        );
        assert!(!env.pid_file().exists(), "{action} created the pidfile");
    }

    // Running (and the `--action=X` form).
    let pid = env.start_daemon(&[]);
    for action in ["status", "signal-check"] {
        let out = env.run(&[&format!("--action={action}")]);
        assert_eq!(out.code, code::LSB_RUNNING, "{action}: {out:?}");
        assert_eq!(
            out.stdout,
            format!("lsb is running (pid {pid})\n"),
            "{action}"
        );
    }
    assert!(alive(pid), "signal-check hurt the daemon");

    // Dead, its pidfile left.
    signal(pid, Signal::SIGKILL);
    wait_gone(pid);
    for action in ["status", "signal-check"] {
        let out = env.action(action, &[]);
        assert_eq!(out.code, code::LSB_DEAD_PIDFILE, "{action}: {out:?}");
        assert!(out.stdout.contains("not running"), "{action}: {out:?}");
        assert!(out.stdout.contains("pidfile"), "{action}: {out:?}");
        assert!(
            out.stdout.contains(&format!("pid {pid}")),
            "{action}: {out:?}"
        );
    }
    // Actions write nothing: the stale file is still there, unchanged.
    assert_eq!(read_pid(&env.pid_file()), Some(pid));
}

#[test]
fn an_unrelated_process_named_by_a_stale_pidfile_is_never_signalled() {
    let env = Env::new("reused");
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    let victim = sleeper.id() as i32;
    // Its PID in the pidfile, as if a dead daemon's PID had been reused; nobody locks it.
    fs::write(env.pid_file(), format!("{victim}\n")).unwrap();

    for action in [
        "signal-int",
        "signal-term",
        "signal-hup",
        "signal-usr1",
        "signal-usr2",
        "signal-alrm",
    ] {
        let out = env.action(action, &[]);
        assert_eq!(out.code, code::LSB_DEAD_PIDFILE, "{action}: {out:?}");
        assert!(out.stderr.contains("cannot send"), "{action}: {out:?}");
        assert!(
            sleeper.try_wait().unwrap().is_none(),
            "{action} signalled it"
        );
    }
    for action in ["status", "signal-check"] {
        let out = env.action(action, &[]);
        assert_eq!(out.code, code::LSB_DEAD_PIDFILE, "{action}: {out:?}");
        assert!(out.stdout.contains("not running"), "{action}: {out:?}");
    }
    let out = env.action("stop", &["--stop-timeout", "0.2"]);
    assert_eq!(out.code, code::OK, "{out:?}");
    assert!(out.stdout.contains("not running"), "{out:?}");
    // Give a stray signal time to land before the last look.
    thread::sleep(Duration::from_millis(50));
    assert!(sleeper.try_wait().unwrap().is_none(), "stop signalled it");
    assert_eq!(read_pid(&env.pid_file()), Some(victim));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

#[test]
fn signal_actions_reach_the_daemon() {
    let env = Env::new("sig");
    let pid = env.start_daemon(&["--runlog-interval", "3600"]);

    let out = env.action("signal-usr1", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    assert_eq!(out.stdout, format!("sent SIGUSR1 to sig (pid {pid})\n"));
    wait_until("a runlog", || !env.runlogs().is_empty());

    let out = env.action("signal-usr2", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    wait_until("the state file", || env.state_file().exists());
    assert_eq!(read_json(&env.state_file())["pid"], pid);

    let out = env.action("signal-alrm", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");

    env.write_config(r#"{"worker": {"state_marker": "reloaded"}}"#);
    let out = env.action("signal-hup", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    wait_until("the reload in the log", || {
        env.log().contains("configuration reloaded")
    });
    assert_eq!(
        env.dump_state(pid)["components"]["worker"]["state_marker"],
        "reloaded"
    );
    assert!(alive(pid));

    let out = env.action("signal-int", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    wait_gone(pid);
    wait_until("the pidfile to be removed", || !env.pid_file().exists());
    let out = env.action("signal-term", &[]);
    assert_eq!(out.code, code::LSB_NOT_RUNNING, "{out:?}");
}

#[test]
fn stop_stops_the_daemon_and_waits_for_it() {
    let env = Env::new("stopper");
    let pid = env.start_daemon(&[]);
    let out = env.action("stop", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    assert_eq!(out.stdout, format!("stopped stopper (pid {pid})\n"));
    // When stop returns, the daemon is gone (no waiting here) and cleaned up after itself.
    assert!(
        !env.pid_file().exists(),
        "stop returned before the pidfile went"
    );
    wait_gone(pid);
    assert!(env.log().contains("graceful stop"), "{}", env.log());
    assert_eq!(read_json(&env.pstate_file())["worker"]["runs"], 1);

    let out = env.action("status", &[]);
    assert_eq!(out.code, code::LSB_NOT_RUNNING, "{out:?}");
    // Stopping what does not run is fine.
    let out = env.action("stop", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    assert!(out.stdout.contains("not running"), "{out:?}");
}

#[test]
fn stop_ends_a_daemon_whose_stop_handler_hangs() {
    let env = Env::new("stuck");
    env.write_config(r#"{"worker": {"hang_on_stop": true}}"#);
    let pid = env.start_daemon(&["--stop-timeout", "1"]);
    let out = env.action("stop", &["--stop-timeout", "1"]);
    assert_eq!(out.code, code::OK, "{out:?}");
    assert!(out.stdout.contains("stopped stuck"), "{out:?}");
    wait_gone(pid);
    assert!(!env.pid_file().exists());
    assert!(
        env.log().contains("hanging in its stop handler"),
        "{}",
        env.log()
    );
}

#[test]
fn config_view_prints_the_effective_configuration_as_json() {
    let env = Env::new("view");
    // Precedence, lowest first: the directory's files in name order, the file, the command line.
    fs::write(
        env.config_dir().join("10-a.json.conf"),
        r#"{"log_level": "debug", "runlog_interval": 11, "stats_interval": 1}"#,
    )
    .unwrap();
    fs::write(
        env.config_dir().join("20-b.json.conf"),
        "# a comment line\n{\"runlog_interval\": 22, \"stats_interval\": 2}",
    )
    .unwrap();
    env.write_config(
        r#"{"stats_interval": 3, "stop_timeout": 4, "worker": {"state_marker": "from-file"}}"#,
    );
    let out = env.action("config-view", &["--stop-timeout", "5"]);
    assert_eq!(out.code, code::OK, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("config-view is not JSON ({e}): {}", out.stdout));
    assert_eq!(v["name"], "view");
    assert_eq!(v["log_level"], "debug");
    assert_eq!(v["runlog_interval"], 22);
    assert_eq!(v["stats_interval"], 3);
    assert_eq!(v["stop_timeout"], 5);
    assert_eq!(v["worker"]["state_marker"], "from-file");
    assert_eq!(v["pid_file"], env.pid_file().to_string_lossy().as_ref());
    assert_eq!(v["runlog_dir"], env.runlog_dir().to_string_lossy().as_ref());
    // An action starts nothing and writes nothing.
    assert!(!env.pid_file().exists());
    assert!(!env.runlog_dir().exists());
    assert!(!env.log_file().exists());
    assert!(!env.pstate_file().exists());
}

/// Waits until the wall clock's second changes, so the next runlog's name sorts after the
/// previous one's (names carry the second, then the PID).
fn next_second() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let start = now();
    while now() == start {
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn runlog_actions_after_two_runs() {
    let env = Env::new("runs");
    let out = env.action("runlogs-list", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    assert!(out.stdout.contains("Runlog(s) found: 0"), "{out:?}");
    let out = env.action("runlog-view", &[]);
    assert_ne!(out.code, code::OK, "{out:?}");
    assert!(out.stderr.contains("no runlog"), "{out:?}");

    // Two runs, each leaving its final runlog; the second's errors make it a failure.
    let mut first = env.spawn_fg(&[]);
    assert_eq!(first.stop(), code::OK, "{}", first.stderr());
    next_second();
    env.write_config(r#"{"worker": {"unhandled_at_start": true}}"#);
    let mut second = env.spawn_fg(&[]);
    second.wait_log("orphan");
    assert_eq!(second.stop(), code::FAILURE, "{}", second.stderr());
    let files = env.runlogs();
    assert_eq!(files.len(), 2, "{files:?}");
    let (older, newer) = (&files[0], &files[1]);
    assert_eq!(read_json(older)["pid"], first.pid);
    assert_eq!(read_json(newer)["pid"], second.pid);

    let out = env.action("runlogs-list", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    assert!(out.stdout.contains("Runlog(s) found: 2"), "{out:?}");
    let (n, o) = (
        out.stdout
            .find(&*newer.to_string_lossy())
            .expect("newer listed"),
        out.stdout
            .find(&*older.to_string_lossy())
            .expect("older listed"),
    );
    assert!(n < o, "not newest first: {}", out.stdout);
    let out = env.action("runlogs-list", &["--limit", "1"]);
    assert_eq!(out.code, code::OK, "{out:?}");
    assert!(out.stdout.contains("Result limit: 1"), "{out:?}");
    assert!(out.stdout.contains(&*newer.to_string_lossy()), "{out:?}");
    assert!(!out.stdout.contains(&*older.to_string_lossy()), "{out:?}");

    // runlog-view: the newest by default, or --input.
    let out = env.action("runlog-view", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    assert!(
        out.stdout.contains(&format!("PID:      {}", second.pid)),
        "{out:?}"
    );
    assert!(out.stdout.contains("failure"), "{out:?}");
    assert!(
        out.stdout.contains("orphan"),
        "the errors are not shown: {out:?}"
    );
    let out = env.action("runlog-view", &[&format!("--input={}", older.display())]);
    assert_eq!(out.code, code::OK, "{out:?}");
    assert!(
        out.stdout.contains(&format!("PID:      {}", first.pid)),
        "{out:?}"
    );
    assert!(out.stdout.contains("success"), "{out:?}");

    // runlogs-evaluate: a row per runlog, then minimum, maximum and average.
    let out = env.action("runlogs-evaluate", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    let rows = out
        .stdout
        .lines()
        .filter(|l| l.ends_with("success") || l.ends_with("failure"))
        .count();
    assert_eq!(rows, 2, "{}", out.stdout);
    for label in ["Minimal value", "Maximal value", "Average value"] {
        assert!(out.stdout.contains(label), "{label}: {}", out.stdout);
    }
    let out = env.action("runlogs-evaluate", &["--limit", "1"]);
    assert_eq!(out.code, code::OK, "{out:?}");
    let rows = out
        .stdout
        .lines()
        .filter(|l| l.ends_with("success") || l.ends_with("failure"))
        .count();
    assert_eq!(rows, 1, "{}", out.stdout);

    // A malformed runlog given with --input is an error naming it.
    let bad = env.path("bad.runlog");
    fs::write(&bad, "{ half").unwrap();
    let out = env.action("runlog-view", &["--input", &bad.to_string_lossy()]);
    assert_ne!(out.code, code::OK, "{out:?}");
    assert!(out.stderr.contains("bad.runlog"), "{out:?}");
}
