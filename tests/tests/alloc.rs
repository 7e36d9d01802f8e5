//! No heap allocation per event in the loop's steady state.
//!
//! testd counts every allocation (a counting global allocator). Its worker adds up the
//! allocations made between two consecutive `work` events with no other event in between
//! (`steady_allocs` over `steady_intervals`, in the state file): that span is one turn of the
//! loop — wait for the deadline, dispatch one event — and nothing else.

mod common;

use std::thread;
use std::time::Duration;

use common::{code, wait_for, Env};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Dumps the state until the worker measured at least `intervals` quiet intervals, sending
/// `between` (if any) to the daemon meanwhile; returns `(steady_allocs, steady_intervals)`.
fn measure(env: &Env, pid: i32, intervals: u64, between: Option<Signal>) -> (u64, u64) {
    let worker = wait_for("enough steady intervals", || {
        if let Some(sig) = between {
            for _ in 0..20 {
                common::signal(pid, sig);
                thread::sleep(Duration::from_millis(2));
            }
        } else {
            thread::sleep(Duration::from_millis(50));
        }
        let state = env.dump_state(pid);
        let worker: Value = state["components"]["worker"].clone();
        (worker["steady_intervals"].as_u64()? >= intervals).then_some(worker)
    });
    (
        worker["steady_allocs"].as_u64().unwrap(),
        worker["steady_intervals"].as_u64().unwrap(),
    )
}

const CONFIG: &str = r#"{"worker": {"work_interval_ms": 1}}"#;
const QUIET: [&str; 4] = ["--stats-interval", "3600", "--runlog-interval", "3600"];

#[test]
fn no_allocation_per_event_in_the_foreground() {
    let env = Env::new("alloc-fg");
    env.write_config(CONFIG);
    let mut fg = env.spawn_fg(&QUIET);
    let (allocs, intervals) = measure(&env, fg.pid, 200, None);
    assert_eq!(allocs, 0, "{allocs} allocations over {intervals} events");
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}

#[test]
fn no_allocation_per_event_in_daemon_mode() {
    let env = Env::new("alloc-bg");
    env.write_config(CONFIG);
    let pid = env.start_daemon(&QUIET);
    let (allocs, intervals) = measure(&env, pid, 200, None);
    assert_eq!(allocs, 0, "{allocs} allocations over {intervals} events");
    common::signal(pid, Signal::SIGTERM);
    common::wait_gone(pid);
}

#[test]
fn signal_wake_ups_do_not_allocate() {
    // SIGALRM only wakes the loop: no event, no log line at the default level.
    let env = Env::new("alloc-alrm");
    env.write_config(CONFIG);
    let mut fg = env.spawn_fg(&QUIET);
    let (allocs, intervals) = measure(&env, fg.pid, 200, Some(Signal::SIGALRM));
    assert_eq!(allocs, 0, "{allocs} allocations over {intervals} events");
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}

#[test]
fn the_probe_sees_allocations() {
    // The control: at debug level each SIGALRM logs a line (a formatted string) between two
    // `work` events, which the probe must count.
    let env = Env::new("alloc-probe");
    env.write_config(CONFIG);
    let mut fg = env.spawn_fg(&[&QUIET[..], &["--log-level", "debug"]].concat());
    let worker = wait_for("allocations seen by the probe", || {
        for _ in 0..20 {
            fg.signal(Signal::SIGALRM);
            thread::sleep(Duration::from_millis(2));
        }
        let state = env.dump_state(fg.pid);
        let worker = state["components"]["worker"].clone();
        (worker["steady_allocs"].as_u64()? > 0).then_some(worker)
    });
    assert!(worker["steady_intervals"].as_u64().unwrap() > 0);
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}
