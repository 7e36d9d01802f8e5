//! Each signal's effect on a running daemon, and a storm of them.
//!
//! The daemons run in the foreground (our children, so their exit codes are known) with their
//! console log in a file.

mod common;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{alive, check_runlog, code, proc_status, read_json, wait_for, wait_until, Env};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::{mkfifo, Pid};

#[test]
fn runlogs_saved_in_the_same_second_do_not_replace_each_other() {
    let env = Env::new("usr1-twice");
    let mut fg = env.spawn_fg(&["--runlog-interval", "3600"]);
    // Five saves as fast as the loop takes them: well within one second.
    for n in 1..=5 {
        fg.signal(Signal::SIGUSR1);
        wait_for("one more runlog", || {
            (env.runlogs().len() >= n).then_some(())
        });
    }
    let runlogs = env.runlogs();
    assert_eq!(runlogs.len(), 5, "{runlogs:?}");
    for r in &runlogs {
        check_runlog(&read_json(r), "usr1-twice", fg.pid);
    }
    assert_eq!(fg.stop(), code::OK);
    // And the final one at the exit.
    assert_eq!(env.runlogs().len(), 6);
}

#[test]
fn sigusr1_writes_a_runlog_with_the_runlog_keys() {
    let env = Env::new("usr1");
    env.write_config(r#"{"worker": {"work_interval_ms": 5}}"#);
    let mut fg = env.spawn_fg(&["--runlog-interval", "3600"]);
    assert!(env.runlogs().is_empty());
    fg.signal(Signal::SIGUSR1);
    let file = wait_for("a runlog file", || env.runlogs().pop());
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.ends_with(&format!(".{:010}.runlog", fg.pid)),
        "runlog file name {name}"
    );
    let doc = read_json(&file);
    check_runlog(&doc, "usr1", fg.pid);
    assert_eq!(doc["result"], "success", "{doc:#}");
    assert_eq!(doc["rc"], 0);
    assert_eq!(doc["errors"], serde_json::json!([]));
    let worker = &doc["statistics"]["components"]["worker"];
    assert!(worker["work"]["cnt"].is_u64(), "{doc:#}");
    // Still running.
    assert!(fg.running());
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}

#[test]
fn sigusr2_writes_the_state_with_the_components_state() {
    let env = Env::new("usr2");
    env.write_config(r#"{"worker": {"state_marker": "marker-5b1f"}}"#);
    let mut fg = env.spawn_fg(&[]);
    assert!(!env.state_file().exists());
    let state = env.dump_state(fg.pid);
    assert!(common::contains_string(&state, "marker-5b1f"), "{state:#}");
    assert_eq!(state["components"]["worker"]["state_marker"], "marker-5b1f");
    assert_eq!(state["pid"], fg.pid);
    assert_eq!(state["name"], "usr2");
    assert!(state["config"].is_object(), "{state:#}");
    assert_eq!(
        state["config"]["pid_file"],
        env.pid_file().to_string_lossy().as_ref()
    );
    assert_eq!(state["routes"]["work"], serde_json::json!(["worker"]));
    check_runlog(&state["runlog"], "usr2", fg.pid);
    assert!(fg.running());
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}

#[test]
fn sighup_applies_a_changed_configuration() {
    let env = Env::new("hup");
    env.write_config(
        r#"{"stats_interval": 3600,
            "worker": {"work_interval_ms": 3600000, "state_marker": "before"}}"#,
    );
    let mut fg = env.spawn_fg(&[]);
    let state = env.dump_state(fg.pid);
    let worker = &state["components"]["worker"];
    assert_eq!(worker["state_marker"], "before");
    assert_eq!(worker["work"], 0, "{state:#}");
    assert_eq!(worker["reloads"], 0);
    assert_eq!(state["config"]["stats_interval"], 3600);
    assert!(!fg.stderr().contains("statistics:"), "{}", fg.stderr());

    env.reload(
        fg.pid,
        // With a comment line, as configuration files may have.
        "// shorter intervals\n{\"stats_interval\": 0.05,\n\
         \"worker\": {\"work_interval_ms\": 5, \"state_marker\": \"after\"}}",
    );
    fg.wait_log("configuration reloaded");
    // The statistics interval now applies: lines come every 50 ms instead of every hour.
    wait_until("statistics lines after the reload", || {
        fg.stderr().matches("statistics:").count() >= 2
    });
    // The worker's interval applies at once (its pending hour-long wait was moved), and it
    // took its new section.
    let state = wait_for("work at the new interval", || {
        let state = env.dump_state(fg.pid);
        (state["components"]["worker"]["work"].as_u64() >= Some(3)).then_some(state)
    });
    let worker = &state["components"]["worker"];
    assert_eq!(worker["state_marker"], "after");
    assert_eq!(worker["work_interval_ms"], 5);
    assert_eq!(worker["reloads"], 1);
    assert_eq!(state["config"]["stats_interval"], 0.05);
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}

#[test]
fn sighup_keeps_the_old_configuration_when_the_new_one_is_broken() {
    let env = Env::new("badhup");
    env.write_config(r#"{"worker": {"state_marker": "good"}}"#);
    let mut fg = env.spawn_fg(&[]);
    let config_name = env.config_file().to_string_lossy().into_owned();
    let broken = [
        // Malformed JSON: the message names the file.
        ("{ \"worker\": { not json", config_name.as_str()),
        // A key nobody declares.
        (
            r#"{"bogus_key": 1, "worker": {"state_marker": "bad"}}"#,
            "bogus_key",
        ),
        // A bad shell value.
        (
            r#"{"stats_interval": -1, "worker": {"state_marker": "bad"}}"#,
            "stats_interval",
        ),
        // A section the worker refuses (wrong type).
        (
            r#"{"worker": {"state_marker": "bad", "work_interval_ms": "soon"}}"#,
            "worker",
        ),
    ];
    for (i, (text, named)) in broken.iter().enumerate() {
        env.reload(fg.pid, text);
        wait_until(&format!("refusal #{}", i + 1), || {
            fg.stderr().matches("reload refused").count() > i
        });
        let line = fg
            .stderr()
            .lines()
            .filter(|l| l.contains("reload refused"))
            .nth(i)
            .unwrap()
            .to_owned();
        assert!(
            line.contains(named),
            "the refusal does not name '{named}': {line}"
        );
        assert!(fg.running(), "the daemon died on a broken configuration");
        let state = env.dump_state(fg.pid);
        assert_eq!(
            state["components"]["worker"]["state_marker"], "good",
            "{text}"
        );
        assert_eq!(state["components"]["worker"]["reloads"], 0, "{text}");
        assert!(state["config"].get("bogus_key").is_none());
    }
    // A good one is applied after all that.
    env.reload(fg.pid, r#"{"worker": {"state_marker": "fixed"}}"#);
    fg.wait_log("configuration reloaded");
    let state = env.dump_state(fg.pid);
    assert_eq!(state["components"]["worker"]["state_marker"], "fixed");
    // Refused reloads are logged, not failures of the run.
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}

/// True once `sig` is neither pending for the process nor for its thread: its handler ran.
fn delivered(pid: i32, sig: Signal) -> bool {
    let bit = 1u64 << (sig as i32 - 1);
    ["ShdPnd", "SigPnd"].iter().all(|key| {
        proc_status(pid, key)
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .is_some_and(|mask| mask & bit == 0)
    })
}

#[test]
fn three_sigints_force_the_exit() {
    // The loop must be busy while the three SIGINTs arrive (each delivered before the next is
    // sent, or the kernel merges them): a reload blocks on a configuration file that is a FIFO
    // until we write into it.
    let env = Env::new("threeint");
    env.write_config(r#"{"worker": {"work_interval_ms": 5}}"#);
    // A long watchdog margin: the loop, not the stop watchdog, must end this run.
    let mut fg = env.spawn_fg(&["--stop-timeout", "30", "--watchdog-margin", "30"]);
    let fifo: PathBuf = env.path("config.fifo");
    mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    fs::rename(&fifo, env.config_file()).unwrap();
    fg.signal(Signal::SIGHUP);
    fg.wait_log("received SIGHUP");
    for _ in 0..3 {
        fg.signal(Signal::SIGINT);
        wait_until("SIGINT to be delivered", || {
            delivered(fg.pid, Signal::SIGINT)
        });
    }
    assert!(fg.running());
    // Unblock the reload.
    let mut w = fs::OpenOptions::new()
        .write(true)
        .open(env.config_file())
        .unwrap();
    w.write_all(br#"{"worker": {"work_interval_ms": 5}}"#)
        .unwrap();
    drop(w);
    let code = fg.wait();
    let log = fg.stderr();
    assert_eq!(code, code::OK, "{log}");
    assert!(
        log.contains("terminated by repeated stop requests"),
        "{log}"
    );
    assert!(!env.pid_file().exists());
}

#[test]
fn a_stop_handler_that_never_returns_is_ended_at_the_stop_timeout() {
    let env = Env::new("hang");
    env.write_config(r#"{"worker": {"hang_on_stop": true}}"#);
    let mut fg = env.spawn_fg(&["--stop-timeout", "1"]);
    fg.signal(Signal::SIGINT);
    fg.wait_log("hanging in its stop handler");
    // The stop watchdog, not the (stuck) event loop, ends it: exit 70, pidfile removed.
    let code = fg.wait();
    let log = fg.stderr();
    assert_eq!(code, code::WATCHDOG, "{log}");
    assert!(
        log.contains("component 'worker' was handling a 'stop' event"),
        "{log}"
    );
    assert!(log.contains("stop timeout"), "{log}");
    assert!(!env.pid_file().exists(), "pidfile left behind");
    // Documented: nothing is saved from a stuck run; the last checkpoint (here the one at
    // start) stays.
    assert!(env.runlogs().is_empty(), "{:?}", env.runlogs());
    let pstate = fs::read_to_string(env.pstate_file()).unwrap();
    assert!(pstate.contains("\"runs\": 1"), "{pstate}");
}

#[test]
fn a_stop_a_component_asks_for_is_guarded_by_the_watchdog_too() {
    // The worker asks for the stop itself, in the middle of a batch of events, and then hangs
    // in its stop handler: the shell must have started the stop watchdog before `stop` ran.
    let env = Env::new("selfhang");
    env.write_config(
        r#"{"worker": {"hang_on_stop": true, "stop_after": 3, "work_interval_ms": 20}}"#,
    );
    let mut fg = env.spawn_fg(&["--stop-timeout", "0.5"]);
    fg.wait_log("hanging in its stop handler");
    let code = fg.wait();
    let log = fg.stderr();
    assert_eq!(code, code::WATCHDOG, "{log}");
    assert!(log.contains("graceful stop initiated"), "{log}");
    assert!(log.contains("stop timeout"), "{log}");
    assert!(!env.pid_file().exists(), "pidfile left behind");
}

#[test]
fn sighup_applies_a_changed_stop_timeout_to_the_next_stop() {
    let env = Env::new("hupstop");
    // Started with the default stop timeout, 30 s: longer than the test waits.
    env.write_config(r#"{"worker": {"hang_on_stop": true}}"#);
    let mut fg = env.spawn_fg(&[]);
    env.reload(
        fg.pid,
        r#"{"stop_timeout": 0.2, "worker": {"hang_on_stop": true}}"#,
    );
    fg.wait_log("reload complete");
    let log = fg.stderr();
    assert!(
        log.contains("'stop_timeout' changed to 0.2 s: it applies to the next stop"),
        "{log}"
    );
    assert!(!log.contains("next start"), "{log}");
    fg.signal(Signal::SIGINT);
    fg.wait_log("hanging in its stop handler");
    // The stop watchdog uses the reloaded timeout.
    let code = fg.wait();
    let log = fg.stderr();
    assert_eq!(code, code::WATCHDOG, "{log}");
    assert!(
        log.contains("the stop timeout of 0.2 s (plus 1 s) ran out"),
        "{log}"
    );
    assert!(!env.pid_file().exists(), "pidfile left behind");
}

#[test]
fn sigterm_ends_the_daemon_and_removes_the_pidfile() {
    let env = Env::new("term");
    let mut fg = env.spawn_fg(&[]);
    assert!(env.pid_file().exists());
    fg.signal(Signal::SIGTERM);
    let code = fg.wait();
    let log = fg.stderr();
    assert_eq!(code, code::OK, "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(!env.pid_file().exists(), "pidfile left behind");
    assert_eq!(env.runlogs().len(), 1, "no final runlog");
    assert_eq!(read_json(&env.pstate_file())["worker"]["runs"], 1);
}

#[test]
fn sigalrm_only_wakes_the_loop() {
    let env = Env::new("alrm");
    let mut fg = env.spawn_fg(&["--log-level", "debug"]);
    for _ in 0..5 {
        fg.signal(Signal::SIGALRM);
        thread::sleep(Duration::from_millis(5));
    }
    fg.wait_log("SIGALRM");
    assert!(fg.running(), "SIGALRM killed it: {}", fg.stderr());
    assert!(env.runlogs().is_empty());
    assert!(!env.state_file().exists());
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}

/// Parses every runlog and the state file over and over until `done`; returns how many
/// documents it read, or the first that was not JSON.
fn reader(env_dir: PathBuf, state: PathBuf, done: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut parsed = 0;
        while !done.load(Ordering::Relaxed) {
            let mut files: Vec<PathBuf> = fs::read_dir(env_dir.join("runlogs"))
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            files.retain(|p| p.extension().is_some_and(|x| x == "runlog"));
            files.push(state.clone());
            for f in files {
                // Only finished documents may ever be visible (written atomically).
                if let Ok(text) = fs::read_to_string(&f) {
                    if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                        panic!("'{}' is not JSON ({e}):\n{text}", f.display());
                    }
                    parsed += 1;
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
        parsed
    })
}

#[test]
fn ten_thousand_mixed_signals_do_not_wedge_it() {
    let env = Env::new("storm");
    env.write_config(r#"{"worker": {"work_interval_ms": 5, "state_marker": "storm-0"}}"#);
    let mut fg = env.spawn_fg(&["--runlog-interval", "3600"]);
    let done = Arc::new(AtomicBool::new(false));
    let reading = reader(env.dir().to_path_buf(), env.state_file(), done.clone());

    let mix = [
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGHUP,
        Signal::SIGALRM,
    ];
    for i in 0..10_000 {
        let sig = mix[i % mix.len()];
        if let Err(e) = kill(Pid::from_raw(fg.pid), sig) {
            panic!("signal #{i} ({sig}): {e}; stderr:\n{}", fg.stderr());
        }
        if i % 64 == 0 {
            thread::yield_now();
        }
    }
    assert!(fg.running(), "the storm killed it: {}", fg.stderr());

    // It still answers: a new configuration reaches the state file. (Dumps from the storm may
    // still come, so look until the new marker shows.)
    env.write_config(r#"{"worker": {"work_interval_ms": 5, "state_marker": "storm-1"}}"#);
    fg.signal(Signal::SIGHUP);
    wait_for("the state after the storm", || {
        fg.signal(Signal::SIGUSR2);
        thread::sleep(Duration::from_millis(20));
        fs::read_to_string(env.state_file())
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter(|s| s["components"]["worker"]["state_marker"] == "storm-1")
    });
    // And stops on SIGINT.
    let code = fg.stop();
    assert_eq!(code, code::OK, "{}", fg.stderr());
    assert!(!alive(fg.pid));
    done.store(true, Ordering::Relaxed);
    let parsed = reading.join().expect("a half-written document was seen");
    assert!(parsed > 0, "the reader saw no document");
    // Every dump left is valid JSON with the runlog keys.
    let runlogs = env.runlogs();
    assert!(!runlogs.is_empty());
    for f in &runlogs {
        check_runlog(&read_json(f), "storm", fg.pid);
    }
    let state = read_json(&env.state_file());
    assert_eq!(state["pid"], fg.pid);
    assert!(!env.pid_file().exists());
}

#[test]
fn sighup_reopens_the_log_file_after_logrotate() {
    let env = Env::new("rotate");
    let pid = env.start_daemon(&[]);
    let rotated = env.path("rotate.log.1");
    fs::rename(env.log_file(), &rotated).unwrap();
    common::signal(pid, Signal::SIGHUP);
    wait_until("a new log file with the reload", || {
        env.log().contains("configuration reloaded")
    });
    let old = fs::read_to_string(&rotated).unwrap();
    assert!(old.contains(&format!("started (pid {pid}")), "{old}");
    // From now on, lines go to the new file only.
    let before = old.len();
    common::signal(pid, Signal::SIGUSR1);
    wait_until("the runlog line in the new log", || {
        env.log().contains("runlog saved")
    });
    assert_eq!(fs::read_to_string(&rotated).unwrap().len(), before);
    common::signal(pid, Signal::SIGTERM);
    common::wait_gone(pid);
}

#[test]
fn a_failed_dump_is_logged_and_the_daemon_keeps_running() {
    let env = Env::new("nowrite");
    // The state file's parent is a regular file: every write fails (even for root).
    fs::write(env.path("not-a-dir"), "").unwrap();
    let state = env.path("not-a-dir/nowrite.state");
    let cmd = env.command_except(
        &["--state-file"],
        &["--no-daemon", &format!("--state-file={}", state.display())],
    );
    let mut fg = env.spawn_command(cmd);
    fg.wait_started();
    fg.signal(Signal::SIGUSR2);
    fg.wait_log("not-a-dir");
    assert!(fg.running(), "a failed write ended the daemon");
    // It still works.
    fg.signal(Signal::SIGUSR1);
    wait_until("a runlog", || !env.runlogs().is_empty());
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}

#[test]
fn a_reload_that_moves_the_persistent_state_checkpoints_at_the_new_place() {
    let env = Env::new("pmove");
    let (first, second) = (env.path("first.pstate"), env.path("second.pstate"));
    let config =
        |p: &std::path::Path| format!(r#"{{"pstate_file": {:?}}}"#, p.display().to_string());
    env.write_config(&config(&first));
    let cmd = env.command_except(
        &["--pstate-file"],
        &["--no-daemon", "--pstate-interval", "0.05"],
    );
    let mut fg = env.spawn_command(cmd);
    fg.wait_started();
    wait_until("the start checkpoint", || first.exists());
    env.write_config(&config(&second));
    fg.signal(Signal::SIGHUP);
    // The state did not change, yet the next checkpoint writes it at its new place.
    wait_until("a checkpoint at the new place", || second.exists());
    assert_eq!(read_json(&second)["worker"]["runs"], 1);
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}
