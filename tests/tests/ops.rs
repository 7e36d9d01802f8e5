//! Operations: the `sigterm` policy, log targets (journald, syslog, `<N>` prefixes, JSON
//! lines, a program-installed logger) and the metrics file, driven from the outside.

mod common;

use common::{code, Env};
use nix::sys::signal::Signal;

#[test]
fn sigterm_terminate_skips_the_stop_handlers() {
    let env = Env::new("termdefault");
    let mut fg = env.spawn_fg(&[]);
    fg.signal(Signal::SIGTERM);
    assert_eq!(fg.wait(), code::OK, "{}", fg.stderr());
    let log = fg.stderr();
    assert!(log.contains("received SIGTERM: terminating"), "{log}");
    assert!(!log.contains("worker: stop handler runs"), "{log}");
}

#[test]
fn sigterm_stop_runs_the_stop_handlers() {
    let env = Env::new("termstop");
    let mut fg = env.spawn_fg(&["--sigterm", "stop"]);
    fg.signal(Signal::SIGTERM);
    assert_eq!(fg.wait(), code::OK, "{}", fg.stderr());
    let log = fg.stderr();
    assert!(log.contains("graceful stop requested"), "{log}");
    assert!(log.contains("worker: stop handler runs"), "{log}");
    assert!(log.contains("graceful stop initiated"), "{log}");
    assert!(!env.pid_file().exists(), "pidfile left behind");
}

#[test]
fn sigterm_stop_from_a_configuration_file_keeps_the_stop_timeout() {
    let env = Env::new("termhang");
    env.write_config(r#"{"sigterm": "stop", "worker": {"hang_on_stop": true}}"#);
    let mut fg = env.spawn_fg(&["--stop-timeout", "0.5"]);
    fg.signal(Signal::SIGTERM);
    // The hanging stop handler is cut off by the stop watchdog: exit 1, pidfile removed.
    assert_eq!(fg.wait(), code::FAILURE, "{}", fg.stderr());
    let log = fg.stderr();
    assert!(log.contains("worker: stop handler runs"), "{log}");
    assert!(!env.pid_file().exists(), "pidfile left behind");
}
