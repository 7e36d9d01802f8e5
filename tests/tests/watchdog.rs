//! A wedged handler cannot pin the daemon: the stop watchdog counts from the signal's arrival
//! and ends the run even while a handler spins, blocks in `read(2)` or sleeps.
//!
//! Each case starts testd with `hang_on_work` (its first `work` handler never returns), waits
//! until the handler hangs, then signals. The watchdog must end the process with exit code 70,
//! log the component and the event kind that were running, and remove the pidfile:
//!
//! - `SIGINT`: after the stop timeout (counted from the signal) plus the margin;
//! - `SIGTERM` and the third `SIGINT`: within the margin, however long the stop timeout.
//!
//! Timing is checked only from below (never earlier than the stop timeout); the upper bound is
//! the helpers' generous [`common::TIMEOUT`], far below the hour-long stop timeout the
//! `SIGTERM` and third-`SIGINT` cases run with.

mod common;

use std::time::{Duration, Instant};

use common::{alive, code, proc_status, read_pid, wait_gone, wait_until, Env, Fg};
use nix::sys::signal::Signal;

/// How the handler hangs (testd's `hang_on_work`).
const HANGS: [&str; 3] = ["loop", "read", "sleep"];

/// True once `sig` is neither pending for the process nor for its thread: its handler ran.
fn delivered(pid: i32, sig: Signal) -> bool {
    let bit = 1u64 << (sig as i32 - 1);
    ["ShdPnd", "SigPnd"].iter().all(|key| {
        proc_status(pid, key)
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .is_some_and(|mask| mask & bit == 0)
    })
}

/// testd in the foreground, its first `work` handler hanging the way `how` says.
fn wedged(env: &Env, how: &str, extra: &[&str]) -> Fg {
    env.write_config(&format!(
        r#"{{"worker": {{"hang_on_work": "{how}", "work_interval_ms": 10}}}}"#
    ));
    let fg = env.spawn_fg(extra);
    fg.wait_log("hanging in its work handler");
    fg
}

/// What every watchdog exit leaves: its code, the culprit in the log, no pidfile, no state.
fn check_watchdog_exit(env: &Env, fg: &mut Fg, why: &str) {
    let code = fg.wait();
    let log = fg.stderr();
    assert_eq!(code, code::WATCHDOG, "{log}");
    assert!(log.contains(why), "the log does not say '{why}':\n{log}");
    assert!(
        log.contains("component 'worker' was handling a 'work' event"),
        "the log does not name the culprit:\n{log}"
    );
    assert!(!env.pid_file().exists(), "pidfile left behind");
    assert!(env.runlogs().is_empty(), "{:?}", env.runlogs());
    // The persistent state is the last checkpoint (the one at start): whole, never half
    // written by the watchdog's exit.
    let pstate = std::fs::read(env.pstate_file()).expect("the start checkpoint");
    serde_json::from_slice::<serde_json::Value>(&pstate).expect("a whole JSON pstate");
}

#[test]
fn sigint_ends_a_wedged_handler_after_the_stop_timeout_from_the_signal() {
    for how in HANGS {
        let env = Env::new(&format!("wint-{how}"));
        let mut fg = wedged(
            &env,
            how,
            &["--stop-timeout", "1", "--watchdog-margin", "0.5"],
        );
        let sent = Instant::now();
        fg.signal(Signal::SIGINT);
        check_watchdog_exit(
            &env,
            &mut fg,
            "the stop timeout of 1 s (plus 0.5 s) ran out",
        );
        // From the signal: the stop never reached the loop, yet its timeout ran.
        assert!(sent.elapsed() >= Duration::from_secs(1), "{how}: too early");
    }
}

#[test]
fn sigterm_ends_a_wedged_handler_within_the_margin() {
    for how in HANGS {
        let env = Env::new(&format!("wterm-{how}"));
        // An hour-long stop timeout: only the margin can end it within the test's patience.
        let mut fg = wedged(&env, how, &["--stop-timeout", "3600"]);
        fg.signal(Signal::SIGTERM);
        check_watchdog_exit(&env, &mut fg, "did not end within 1 s of SIGTERM");
    }
}

#[test]
fn the_third_sigint_ends_a_wedged_handler_within_the_margin() {
    for how in HANGS {
        let env = Env::new(&format!("wint3-{how}"));
        let mut fg = wedged(
            &env,
            how,
            &["--stop-timeout", "3600", "--watchdog-margin", "0.3"],
        );
        for _ in 0..3 {
            fg.signal(Signal::SIGINT);
            // Each delivered before the next is sent, or the kernel merges them.
            wait_until("SIGINT to be delivered", || {
                delivered(fg.pid, Signal::SIGINT)
            });
        }
        check_watchdog_exit(&env, &mut fg, "within 0.3 s of SIGINT number 3");
    }
}

#[test]
fn the_stop_action_stops_a_wedged_daemon_with_code_0() {
    let env = Env::new("wstop");
    env.write_config(r#"{"worker": {"hang_on_work": "loop", "work_interval_ms": 10}}"#);
    let pid = env.start_daemon(&["--stop-timeout", "1"]);
    wait_until("the handler to hang", || {
        env.log().contains("hanging in its work handler")
    });
    let started = Instant::now();
    let stop = env.action("stop", &[]);
    assert_eq!(stop.code, code::OK, "{stop:?}\n{}", env.log());
    // Not before the stop timeout: SIGINT first, as a graceful stop.
    assert!(started.elapsed() >= Duration::from_secs(1));
    wait_gone(pid);
    assert!(!alive(pid));
    assert_eq!(read_pid(&env.pid_file()), None, "pidfile left behind");
    let log = env.log();
    assert!(
        log.contains("component 'worker' was handling a 'work' event"),
        "{log}"
    );
    let status = env.action("status", &[]);
    assert_eq!(status.code, code::LSB_NOT_RUNNING, "{status:?}");
}

#[test]
fn a_handler_that_returns_in_time_is_not_cut_off() {
    // The watchdog runs from the start: an ordinary run that stops on SIGINT and on SIGTERM
    // still exits 0 with its runlog and persistent state.
    let env = Env::new("wok");
    let mut fg = env.spawn_fg(&["--watchdog-margin", "0.2"]);
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
    let mut fg = env.spawn_fg(&["--watchdog-margin", "0.2"]);
    fg.signal(Signal::SIGTERM);
    assert_eq!(fg.wait(), code::OK, "{}", fg.stderr());
    assert_eq!(env.runlogs().len(), 2);
    assert!(env.pstate_file().exists());
}

#[test]
fn with_sigterm_stop_a_sigterm_gets_the_stop_timeout_as_a_sigint_does() {
    let env = Env::new("wtermstop");
    let mut fg = wedged(
        &env,
        "sleep",
        &[
            "--sigterm",
            "stop",
            "--stop-timeout",
            "1",
            "--watchdog-margin",
            "0.3",
        ],
    );
    let sent = Instant::now();
    fg.signal(Signal::SIGTERM);
    check_watchdog_exit(
        &env,
        &mut fg,
        "the stop timeout of 1 s (plus 0.3 s) ran out",
    );
    assert!(sent.elapsed() >= Duration::from_secs(1), "too early");
}
