//! The `demo` daemon as a process: its own default intervals, a runlog on `SIGUSR1`, a clean
//! stop on `SIGINT`, and a restart that goes on where it stopped.

mod common;

use std::process::Stdio;

use common::{read_json, wait_for, Sandbox};
use nix::sys::signal::Signal;
use serde_json::Value;

const DEMO: &str = env!("CARGO_BIN_EXE_demo");

#[test]
fn statistics_every_5_s_and_a_runlog_every_10_s_unless_configured() {
    let s = Sandbox::new(DEMO, "demo");
    let view = |extra: &[&str]| -> Value {
        let out = s
            .command(&["--action", "config-view"])
            .args(extra)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = view(&[]);
    assert_eq!(
        (&v["stats_interval"], &v["runlog_interval"]),
        (&5.into(), &10.into())
    );
    s.write_config(r#"{"runlog_interval": 60}"#);
    let v = view(&["--stats-interval", "2"]);
    assert_eq!(
        (&v["stats_interval"], &v["runlog_interval"]),
        (&2.into(), &60.into())
    );
}

#[test]
fn works_saves_a_runlog_on_sigusr1_and_stops_on_sigint() {
    let mut s = Sandbox::new(DEMO, "demo");
    s.write_config(r#"{"demo": {"work_interval_ms": 20, "batch": 1000}}"#);
    let mut fg = s.start(&[]);
    wait_for("three units of work", || {
        fg.log().contains("work #3:").then_some(())
    });

    fg.signal(Signal::SIGUSR1);
    let runlog = wait_for("a runlog", || s.runlogs().pop());
    let doc = read_json(&runlog);
    assert_eq!(doc["name"], "demo");
    let worker = &doc["statistics"]["components"]["worker"];
    assert!(worker["work"]["cnt"].as_u64().unwrap() >= 3, "{doc:#}");
    assert!(worker["primes"]["cnt"].as_u64().unwrap() >= 168, "{doc:#}");

    assert_eq!(fg.stop(), 0, "{}", fg.log());
    let next = read_json(&s.pstate_file())["worker"]["next"]
        .as_u64()
        .unwrap();
    assert!(next > 3000, "next {next}");

    // The next run goes on from there.
    let mut fg = s.start(&[]);
    wait_for("the restored start", || {
        fg.log()
            .contains(&format!("worker: starting at {next}"))
            .then_some(())
    });
    assert_eq!(fg.stop(), 0, "{}", fg.log());
}
