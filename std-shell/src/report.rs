//! The JSON documents the daemon writes: the runlog (`SIGUSR1`, periodically, at exit) and the
//! state file (`SIGUSR2`).
//!
//! # Runlog
//!
//! [`RunlogHeader`]'s keys (`name`, `pid`, `argv`, `ts`, `ts_str`, `result`, `errors`, `rc`,
//! `runtime`, `events`) and `statistics`:
//!
//! ```json
//! "statistics": {
//!   "time": 1764000000.5,                 // the save, seconds since the epoch
//!   "ticks_per_second": 1000000,          // the unit of the kernel's `*_ticks` figures
//!   "kernel": { … },                      // zendaemon_core's `Kernel::runlog` snapshot
//!   "components": {                       // zendaemon_core's `Kernel::statistics` snapshot
//!     "worker": { "work": { "cnt": 42, "inc": 6, "spd": 2.0, "pct": 14.285 } }
//!   }
//! }
//! ```
//!
//! `kernel` holds the kernel's figures: `events`, `dispatched` per event kind, `unhandled`,
//! `rejected`, `stop_requests`, `inbox_deferred`, `missed_periods`, `high_water`, `lateness`
//! (in clock ticks, microseconds here), `end` and each component's raw counters. `components`
//! has pyzenkit's rates per counter of each component that has counters (`inc`, `spd` per
//! second and `pct`, see `zendaemon_core::stats`), since the previous statistics log line (or
//! the start).
//!
//! # State file
//!
//! `time`, `name`, `pid`; `config`: the effective configuration (every key, as
//! `config-view` shows it); from zendaemon_core's `Kernel::state` snapshot, `routes`: every
//! event kind with the names of the components handling it, in pipeline order, and
//! `components`: each component's own state (its
//! [`Component::state`] fields); `runlog`: the shell's runlog
//! as it would be saved now.
//!
//! Keys are sorted at every level and the JSON is indented, as pyzenkit wrote it.

use std::time::{Instant as StdInstant, SystemTime};

use embedded_time::Instant;
use serde_json::{json, Map, Value};
use zendaemon_core::{Component, Kernel, UserEvent};

use crate::clock::StdClock;
use crate::config::Config;
use crate::runlog::{self, RunResult, RunlogHeader};

/// How many error messages a runlog lists; later ones are only counted.
pub const MAX_LISTED_ERRORS: usize = 100;

/// What the runlog says about the run besides statistics.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The daemon's name.
    pub name: String,
    /// The daemon's PID.
    pub pid: u32,
    /// The command line.
    pub argv: Vec<String>,
    started: SystemTime,
    started_mono: StdInstant,
    errors: Vec<String>,
    unlisted_errors: u64,
}

impl RunInfo {
    /// A run that starts now.
    pub fn new(name: String, pid: u32, argv: Vec<String>) -> Self {
        Self {
            name,
            pid,
            argv,
            started: SystemTime::now(),
            started_mono: StdInstant::now(),
            errors: Vec::new(),
            unlisted_errors: 0,
        }
    }

    /// Records an error (the first [`MAX_LISTED_ERRORS`] messages are kept).
    pub fn record_error(&mut self, message: String) {
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(message);
        } else {
            self.unlisted_errors += 1;
        }
    }

    /// Errors recorded so far.
    pub fn error_count(&self) -> u64 {
        self.errors.len() as u64 + self.unlisted_errors
    }

    /// The exit code so far: 0, or 1 once an error was recorded.
    pub fn rc(&self) -> i32 {
        i32::from(self.error_count() > 0)
    }

    /// The runlog's common keys with `statistics`.
    pub fn header<S>(&self, events: u64, statistics: S) -> RunlogHeader<S> {
        let mut errors = self.errors.clone();
        if self.unlisted_errors > 0 {
            errors.push(format!("… and {} more errors", self.unlisted_errors));
        }
        RunlogHeader {
            name: self.name.clone(),
            pid: self.pid,
            argv: self.argv.clone(),
            ts: runlog::unix_seconds(self.started),
            ts_str: runlog::ts_string(self.started),
            result: if self.error_count() == 0 {
                RunResult::Success
            } else {
                RunResult::Failure
            },
            errors,
            rc: self.rc(),
            runtime: self.started_mono.elapsed().as_secs_f64(),
            events,
            statistics,
        }
    }
}

/// The runlog's `statistics` (see the [module documentation](self)). `D` is how the kernel
/// holds its components (any [`Component`] object type: the runner's kernel holds
/// [`Service`](crate::Service)s).
pub fn statistics<
    U,
    const M: usize,
    const K: usize,
    const H: usize,
    const S: usize,
    const T: usize,
    D,
>(
    kernel: &Kernel<'_, U, StdClock, M, K, H, S, T, D>,
    now: Instant<StdClock>,
) -> Value
where
    U: UserEvent + Clone,
    D: ?Sized + Component<U, StdClock>,
{
    json!({
        "time": runlog::unix_seconds(SystemTime::now()),
        "ticks_per_second": 1_000_000,
        "kernel": serde_json::to_value(kernel.runlog()).unwrap_or(Value::Null),
        "components": serde_json::to_value(kernel.statistics(now)).unwrap_or(Value::Null),
    })
}

/// The runlog document as a sorted JSON value.
pub fn runlog<
    U,
    const M: usize,
    const K: usize,
    const H: usize,
    const S: usize,
    const T: usize,
    D,
>(
    info: &RunInfo,
    kernel: &Kernel<'_, U, StdClock, M, K, H, S, T, D>,
    now: Instant<StdClock>,
) -> Value
where
    U: UserEvent + Clone,
    D: ?Sized + Component<U, StdClock>,
{
    let header = info.header(kernel.stats().total_dispatched(), statistics(kernel, now));
    let mut v = serde_json::to_value(header).unwrap_or(Value::Null);
    v.sort_all_objects();
    v
}

/// The state file's document (see the [module documentation](self)).
pub fn state<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize, D>(
    info: &RunInfo,
    config: &Config,
    kernel: &Kernel<'_, U, StdClock, M, K, H, S, T, D>,
    now: Instant<StdClock>,
) -> Value
where
    U: UserEvent + Clone,
    D: ?Sized + Component<U, StdClock>,
{
    let mut v = match serde_json::to_value(kernel.state()) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    v.insert(
        "time".into(),
        Value::from(runlog::unix_seconds(SystemTime::now())),
    );
    v.insert("name".into(), Value::from(info.name.as_str()));
    v.insert("pid".into(), Value::from(info.pid));
    v.insert("config".into(), Value::Object(config.raw().clone()));
    v.insert("runlog".into(), runlog(info, kernel, now));
    let mut v = Value::Object(v);
    v.sort_all_objects();
    v
}

/// A JSON value as the files hold it: indented, with a final newline.
pub fn to_text(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use zendaemon_core::{
        Component, Context, CounterSet, Counters, Event, Flow, Kind, RouteError, Routes, Settings,
        StateValue, StateVisitor,
    };

    #[derive(Debug, Clone)]
    struct Job;
    impl UserEvent for Job {
        const KINDS: usize = 1;
        fn kind(&self) -> usize {
            0
        }
        fn kind_name(_: usize) -> &'static str {
            "job"
        }
    }

    struct W(Counters<2>);
    impl Component<Job, StdClock> for W {
        fn name(&self) -> &'static str {
            "w"
        }
        fn setup(&mut self, r: &mut Routes<'_>) -> Result<(), RouteError> {
            r.append(Kind::user(0))?;
            r.append(Kind::START)
        }
        fn handle(&mut self, _: &mut Context<'_, Job, StdClock>, _: &mut Event<Job>) -> Flow {
            let _ = self.0.inc("jobs", 1);
            Flow::Continue
        }
        fn counters(&self) -> Option<&dyn CounterSet> {
            Some(&self.0)
        }
        fn state(&self, out: &mut dyn StateVisitor) {
            out.field("marker", StateValue::Str("m"));
            out.field("n", StateValue::I64(-1));
        }
    }

    struct Quiet;
    impl Component<Job, StdClock> for Quiet {
        fn name(&self) -> &'static str {
            "quiet"
        }
        fn setup(&mut self, _: &mut Routes<'_>) -> Result<(), RouteError> {
            Ok(())
        }
        fn handle(&mut self, _: &mut Context<'_, Job, StdClock>, _: &mut Event<Job>) -> Flow {
            Flow::Continue
        }
    }

    #[test]
    fn errors_make_a_failure_and_are_capped() {
        let mut info = RunInfo::new("d".into(), 1, vec!["d".into()]);
        assert_eq!((info.rc(), info.error_count()), (0, 0));
        for i in 0..MAX_LISTED_ERRORS + 3 {
            info.record_error(format!("e{i}"));
        }
        let h = info.header(0, ());
        assert_eq!(h.rc, 1);
        assert_eq!(h.result, RunResult::Failure);
        assert_eq!(h.errors.len(), MAX_LISTED_ERRORS + 1);
        assert_eq!(h.errors.last().unwrap(), "… and 3 more errors");
    }

    #[test]
    fn documents_have_the_documented_keys() {
        let mut w = W(Counters::new());
        let mut q = Quiet;
        let mut k: Kernel<'_, Job, StdClock, 2, { zendaemon_core::kinds::<Job>() }, 2, 4, 4> =
            Kernel::new(Settings::default());
        k.add(&mut w).unwrap();
        k.add(&mut q).unwrap();
        k.start(StdClock::now()).unwrap();
        k.queue().schedule(Job).unwrap();
        while let Ok(zendaemon_core::Step::Dispatched { .. }) = k.step(StdClock::now()) {}
        let info = RunInfo::new("d".into(), 7, vec!["d".into(), "--x".into()]);
        let now = StdClock::now();
        let r = runlog(&info, &k, now);
        for key in [
            "name",
            "pid",
            "argv",
            "ts",
            "ts_str",
            "result",
            "errors",
            "rc",
            "runtime",
            "events",
            "statistics",
        ] {
            assert!(r.get(key).is_some(), "runlog lacks {key}: {r}");
        }
        assert_eq!(r["events"], 2);
        let st = &r["statistics"];
        assert_eq!(st["kernel"]["dispatched"]["start"], 1);
        assert_eq!(st["kernel"]["dispatched"]["job"], 1);
        assert_eq!(st["kernel"]["rejected"], 0);
        assert_eq!(st["components"]["w"]["jobs"]["cnt"], 2); // start and job
        assert_eq!(st["ticks_per_second"], 1_000_000);
        // The runlog is readable by the runlog actions.
        let header: RunlogHeader = serde_json::from_value(r.clone()).unwrap();
        assert_eq!(header.pid, 7);

        let dir = tempfile::tempdir().unwrap();
        let cli = crate::cli::Cli::default();
        let defaults = crate::paths::DefaultPaths {
            pid_file: dir.path().join("d.pid"),
            runlog_dir: dir.path().join("r"),
            state_file: dir.path().join("d.state"),
            pstate_file: dir.path().join("d.pstate"),
            pstate_dir: dir.path().to_path_buf(),
            old_pstate_file: dir.path().join("old.pstate"),
            log_file: dir.path().join("d.log"),
            config_file: dir.path().join("d.conf"),
            config_dir: dir.path().join("d"),
            runtime_dir: None,
        };
        let config = Config::load("d", &cli, &defaults, &[]).unwrap();
        let s = state(&info, &config, &k, now);
        assert_eq!(s["routes"]["job"], json!(["w"]));
        assert_eq!(s["routes"]["start"], json!(["w"]));
        assert_eq!(s["routes"]["stop"], json!([]));
        assert_eq!(s["components"]["w"], json!({"marker": "m", "n": -1}));
        assert_eq!(s["config"]["name"], "d");
        assert_eq!(s["runlog"]["pid"], 7);
        let text = to_text(&s);
        assert!(text.ends_with("}\n"));
    }
}
