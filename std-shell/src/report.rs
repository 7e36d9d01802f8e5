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
//!   "time": 1764000000.5,                          // the save, seconds since the epoch
//!   "kernel": {
//!     "dispatched": { "start": 1, "stop": 0, …, "work": 42 },   // per event kind
//!     "events": 43, "unhandled": 0, "stop_requests": 0, "inbox_deferred": 0,
//!     "lateness": { "max_us": 180, "bucket_floor_us": [0, 1, 4, …], "buckets": [3, 0, …] }
//!   },
//!   "queue": { "rejected": 0, "sequential_high_water": 2, "timed_high_water": 3, "missed_periods": 0 },
//!   "components": { "worker": { "work": { "cnt": 42, "inc": 6, "spd": 2.0, "pct": 14.285 } } }
//! }
//! ```
//!
//! `components` has every component, `{}` for one without counters. The rates are pyzenkit's
//! (`inc`, `spd` per second and `pct`, see `zendaemon_core::stats`) since the previous
//! statistics log line (or the start).
//!
//! # State file
//!
//! `time`, `name`, `pid`; `config`: the effective configuration (every key, as
//! `config-view` shows it); `routes`: every event kind with the names of the components
//! handling it, in pipeline order; `components`: each component's own state (its
//! [`Component::state`](zendaemon_core::Component::state) fields); `runlog`: the runlog as it
//! would be saved now.
//!
//! Keys are sorted at every level and the JSON is indented, as pyzenkit wrote it.

use std::time::{Instant as StdInstant, SystemTime};

use embedded_time::Instant;
use serde_json::{json, Map, Value};
use zendaemon_core::event::BUILTIN_KINDS;
use zendaemon_core::stats::{Lateness, LATENESS_BUCKETS};
use zendaemon_core::{Kernel, Kind, StateValue, StateVisitor, UserEvent};

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

/// The kind at routing-table index `i`.
pub(crate) fn kind_at(i: usize) -> Kind {
    const BUILTIN: [Kind; BUILTIN_KINDS] = [
        Kind::START,
        Kind::STOP,
        Kind::TERMINATE,
        Kind::RELOAD,
        Kind::SAVE_RUNLOG,
        Kind::SAVE_STATE,
        Kind::LOG_STATISTICS,
    ];
    BUILTIN
        .get(i)
        .copied()
        .unwrap_or_else(|| Kind::user(i - BUILTIN_KINDS))
}

/// The number of kinds a kernel for `U` uses (its table may have spare room).
fn used_kinds<U: UserEvent>(capacity: usize) -> usize {
    (BUILTIN_KINDS + U::KINDS).min(capacity)
}

fn lateness(l: &Lateness) -> Value {
    let floors: Vec<u64> = (0..LATENESS_BUCKETS).map(Lateness::bucket_floor).collect();
    json!({
        "max_us": l.max_ticks,
        "bucket_floor_us": floors,
        "buckets": l.buckets,
    })
}

/// The runlog's `statistics` (see the [module documentation](self)).
pub fn statistics<
    U,
    const M: usize,
    const K: usize,
    const H: usize,
    const S: usize,
    const T: usize,
>(
    kernel: &Kernel<'_, U, StdClock, M, K, H, S, T>,
    now: Instant<StdClock>,
) -> Value
where
    U: UserEvent + Clone,
{
    let stats = kernel.stats();
    let mut dispatched = Map::new();
    for (i, n) in stats.dispatched.iter().enumerate().take(used_kinds::<U>(K)) {
        dispatched.insert(kind_at(i).name::<U>().to_owned(), Value::from(*n));
    }
    let q = kernel.queue_stats();
    let mut components = Map::new();
    for c in kernel.components() {
        components.insert(c.name().to_owned(), Value::Object(Map::new()));
    }
    kernel.for_each_rate(now, |component, key, rate| {
        if let Some(Value::Object(m)) = components.get_mut(component) {
            m.insert(
                key.to_owned(),
                json!({
                    "cnt": rate.cnt,
                    "inc": rate.inc,
                    "spd": rate.spd(),
                    "pct": rate.pct(),
                }),
            );
        }
    });
    json!({
        "time": runlog::unix_seconds(SystemTime::now()),
        "kernel": {
            "dispatched": dispatched,
            "events": stats.total_dispatched(),
            "unhandled": stats.unhandled,
            "stop_requests": stats.stop_requests,
            "inbox_deferred": stats.inbox_deferred,
            "lateness": lateness(&stats.lateness),
        },
        "queue": {
            "rejected": q.rejected,
            "sequential_high_water": q.sequential_high_water,
            "timed_high_water": q.timed_high_water,
            "missed_periods": q.missed_periods,
        },
        "components": components,
    })
}

/// The runlog document as a sorted JSON value.
pub fn runlog<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>(
    info: &RunInfo,
    kernel: &Kernel<'_, U, StdClock, M, K, H, S, T>,
    now: Instant<StdClock>,
) -> Value
where
    U: UserEvent + Clone,
{
    let header = info.header(kernel.stats().total_dispatched(), statistics(kernel, now));
    let mut v = serde_json::to_value(header).unwrap_or(Value::Null);
    v.sort_all_objects();
    v
}

/// Collects a component's state fields into a JSON object.
#[derive(Debug, Default)]
struct Fields(Map<String, Value>);

impl StateVisitor for Fields {
    fn field(&mut self, key: &str, value: StateValue<'_>) {
        let v = match value {
            StateValue::U64(n) => Value::from(n),
            StateValue::I64(n) => Value::from(n),
            StateValue::Bool(b) => Value::Bool(b),
            StateValue::Str(s) => Value::from(s),
        };
        self.0.insert(key.to_owned(), v);
    }
}

/// The state file's document (see the [module documentation](self)).
pub fn state<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>(
    info: &RunInfo,
    config: &Config,
    kernel: &Kernel<'_, U, StdClock, M, K, H, S, T>,
    now: Instant<StdClock>,
) -> Value
where
    U: UserEvent + Clone,
{
    let mut routes = Map::new();
    for i in 0..used_kinds::<U>(K) {
        let kind = kind_at(i);
        let names: Vec<Value> = kernel.route(kind).map(Value::from).collect();
        routes.insert(kind.name::<U>().to_owned(), Value::Array(names));
    }
    let mut components = Map::new();
    for c in kernel.components() {
        let mut fields = Fields::default();
        c.state(&mut fields);
        components.insert(c.name().to_owned(), Value::Object(fields.0));
    }
    let mut v = json!({
        "time": runlog::unix_seconds(SystemTime::now()),
        "name": info.name,
        "pid": info.pid,
        "config": Value::Object(config.raw().clone()),
        "routes": routes,
        "components": components,
        "runlog": runlog(info, kernel, now),
    });
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
        Component, Context, CounterSet, Counters, Event, Flow, RouteError, Routes, Settings,
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
        let mut k: Kernel<'_, Job, StdClock, 2, 8, 2, 4, 4> = Kernel::new(Settings::default());
        k.add(&mut w).unwrap();
        k.add(&mut q).unwrap();
        k.start(StdClock::now()).unwrap();
        k.queue().schedule(Event::User(Job)).unwrap();
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
        assert_eq!(st["components"]["w"]["jobs"]["cnt"], 2); // start and job
        assert_eq!(st["components"]["quiet"], json!({}));
        assert_eq!(st["queue"]["rejected"], 0);
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
