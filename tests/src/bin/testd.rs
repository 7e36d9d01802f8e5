//! `testd`: the daemon the end-to-end tests drive. Its behaviour below is a contract: the
//! tests rely on it, so change it only together with them.
//!
//! # Command line and files
//!
//! Every flag of the zendaemon shell (`--help` lists them). The name is `testd` unless
//! `--name` gives another. Everything else (paths, signals, actions, exit codes, runlog and
//! state file formats) is the shell's behaviour, documented in `zendaemon::daemon`,
//! `zendaemon::actions` and `zendaemon::report`.
//!
//! # The one component: `worker`
//!
//! Configuration section `"worker"` (every key optional; an unknown key or a wrong type is a
//! configuration error: exit 78 at start, a refused reload later):
//!
//! | key | type, default | effect |
//! |---|---|---|
//! | `work_interval_ms` | u64, 100 | while not stopping, a `work` event every this many milliseconds, the first one interval after `start`. `0`: no `work` events at all (testd then idles until a signal: the shell's periodic `log_statistics` and `save_runlog` keep the queue from emptying) |
//! | `hang_on_stop` | bool, false | its `stop` handler never returns. The shell's stop watchdog ends the process at the stop timeout plus min(stop timeout / 2, 1 s): exit 1, pidfile removed, no final runlog, no persistent state written |
//! | `fail_after_fork` | bool, false | its start-up (`Service::activate`, after daemonizing) fails with the message `worker refused to start`: the launcher prints `testd: daemon failed to start: component 'worker': worker refused to start` and exits 1 (in the foreground, the same line is logged to the console and testd exits 1). The pidfile is removed |
//! | `state_marker` | string, `""` | echoed in the state file as `components.worker.state_marker` |
//! | `stop_after` | u64, 0 | after this many `work` events the worker asks for a graceful stop itself (0: never) |
//! | `unhandled_at_start` | bool, false | at `start` it schedules one `orphan` event, which no component handles: an error of the run (logged, in the runlog's `errors`, `result` `failure`, exit code 1 at the end) |
//!
//! Events: `start`, `stop`, `reload`, `work` go to the worker; `orphan` goes nowhere. Its
//! `stop` handler logs `worker: stop handler runs` (info) first.
//!
//! Reload (`SIGHUP`): a new `worker` section applies at once; the pending `work` event is moved
//! to one new interval from the reload (cancelled for `0`). A section with an unknown key or a
//! wrong type is refused and the old settings stay (the shell logs the refusal).
//!
//! Counters (statistics, runlog `statistics.components.worker`): `work`, the `work` events
//! handled.
//!
//! State file (`components.worker`): `state_marker` (string), `work` (work events handled),
//! `runs` (see below), `reloads` (reloads applied), `work_interval_ms`, `steady_allocs` and
//! `steady_intervals` (below).
//!
//! Persistent state (`worker` entry of the pstate file): `{"runs": n}`. At start `runs` becomes
//! the saved value plus one (1 without one); it is saved at the end of every run the event loop
//! ends (SIGINT, SIGTERM, stop timeout, three SIGINTs, `stop_after`), but not
//! when the stop watchdog or a signal kills the process or the start fails.
//!
//! Allocation probe: testd counts heap allocations (a counting global allocator). Between two
//! consecutive `work` events with no other event in between (the worker sees `start`, `stop`,
//! `reload`, `save_runlog`, `save_state` and `log_statistics` too), it adds the allocations made
//! since the previous `work` to `steady_allocs` and counts the interval in `steady_intervals`.
//! With the default log level and no signals, `steady_allocs` stays 0: the loop allocates
//! nothing per event. (What happens between two `work` events without an event of its own
//! counts too: a refused reload, a `SIGALRM` at log level `debug`, a failed systemd
//! notification.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use zendaemon::core::{
    Component, Context, CounterSet, Counters, Event, Flow, Kind, RouteError, Routes, StateValue,
    StateVisitor, TimerHandle, UserEvent,
};
use zendaemon::{Config, Daemon, Error, Service, StdClock};

/// Counts every allocation of the process.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; the counter is a relaxed atomic add,
// which neither allocates nor blocks.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// testd's own events.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Job {
    /// Periodic work.
    Work,
    /// An event nobody handles.
    Orphan,
}

impl UserEvent for Job {
    const KINDS: usize = 2;
    fn kind(&self) -> usize {
        match self {
            Job::Work => 0,
            Job::Orphan => 1,
        }
    }
    fn kind_name(kind: usize) -> &'static str {
        ["work", "orphan"].get(kind).copied().unwrap_or("?")
    }
}

const WORK: Kind = Kind::user(0);

/// The `worker` configuration section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    work_interval_ms: u64,
    hang_on_stop: bool,
    fail_after_fork: bool,
    state_marker: String,
    stop_after: u64,
    unhandled_at_start: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            work_interval_ms: 100,
            hang_on_stop: false,
            fail_after_fork: false,
            state_marker: String::new(),
            stop_after: 0,
            unhandled_at_start: false,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Saved {
    runs: u64,
}

#[derive(Debug, Default)]
struct Worker {
    settings: Settings,
    counters: Counters<2>,
    work: u64,
    runs: u64,
    reloads: u64,
    timer: Option<TimerHandle>,
    /// Allocations counted at the end of the previous `work` handler, if it was the last
    /// event the worker saw.
    quiet_since: Option<u64>,
    steady_allocs: u64,
    steady_intervals: u64,
}

impl Worker {
    fn interval(&self) -> Option<Duration> {
        (self.settings.work_interval_ms > 0)
            .then_some(Duration::from_millis(self.settings.work_interval_ms))
    }

    fn schedule_work(&mut self, ctx: &mut Context<'_, Job, StdClock>) {
        if let Some(interval) = self.interval() {
            match ctx.schedule_after(interval, Job::Work) {
                Ok(handle) => self.timer = Some(handle),
                Err(e) => log::error!("cannot schedule work: {e}"),
            }
        }
    }
}

impl Component<Job, StdClock> for Worker {
    fn name(&self) -> &'static str {
        "worker"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        for kind in [
            Kind::START,
            Kind::STOP,
            Kind::RELOAD,
            Kind::SAVE_RUNLOG,
            Kind::SAVE_STATE,
            Kind::LOG_STATISTICS,
            WORK,
        ] {
            routes.append(kind)?;
        }
        let _ = self.counters.register("work");
        Ok(())
    }

    fn handle(&mut self, ctx: &mut Context<'_, Job, StdClock>, event: &mut Event<Job>) -> Flow {
        if !matches!(event, Event::User(Job::Work)) {
            self.quiet_since = None;
        }
        match event {
            Event::Start => {
                self.schedule_work(ctx);
                if self.settings.unhandled_at_start {
                    let _ = ctx.schedule(Job::Orphan);
                }
            }
            Event::Stop => {
                log::info!("worker: stop handler runs");
                if let Some(handle) = self.timer.take() {
                    let _ = ctx.cancel(handle);
                }
                if self.settings.hang_on_stop {
                    log::warn!("worker: hanging in its stop handler, as configured");
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
            }
            Event::Reload => {
                self.reloads += 1;
                match (self.timer.take(), self.interval()) {
                    (Some(handle), Some(interval)) => {
                        if ctx.reschedule_after(handle, interval).is_ok() {
                            self.timer = Some(handle);
                        } else {
                            self.schedule_work(ctx);
                        }
                    }
                    (Some(handle), None) => {
                        let _ = ctx.cancel(handle);
                    }
                    (None, _) if !ctx.is_done() => self.schedule_work(ctx),
                    (None, _) => {}
                }
            }
            Event::User(Job::Work) => {
                self.timer = None;
                self.work += 1;
                let _ = self.counters.inc("work", 1);
                if self.settings.stop_after > 0 && self.work == self.settings.stop_after {
                    ctx.request_stop();
                } else if !ctx.is_done() {
                    self.schedule_work(ctx);
                }
                let now = ALLOCS.load(Ordering::Relaxed);
                if let Some(before) = self.quiet_since {
                    self.steady_allocs += now - before;
                    self.steady_intervals += 1;
                }
                self.quiet_since = Some(now);
            }
            _ => {}
        }
        Flow::Continue
    }

    fn counters(&self) -> Option<&dyn CounterSet> {
        Some(&self.counters)
    }

    fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> {
        Some(&mut self.counters)
    }

    fn state(&self, out: &mut dyn StateVisitor) {
        out.field("state_marker", StateValue::Str(&self.settings.state_marker));
        out.field("work", StateValue::U64(self.work));
        out.field("runs", StateValue::U64(self.runs));
        out.field("reloads", StateValue::U64(self.reloads));
        out.field(
            "work_interval_ms",
            StateValue::U64(self.settings.work_interval_ms),
        );
        out.field("steady_allocs", StateValue::U64(self.steady_allocs));
        out.field("steady_intervals", StateValue::U64(self.steady_intervals));
    }
}

impl Service<Job> for Worker {
    fn config_key(&self) -> Option<&'static str> {
        Some("worker")
    }

    fn configure(&mut self, config: &Config) -> zendaemon::Result<()> {
        self.settings = config.component_or_default("worker")?;
        Ok(())
    }

    fn restore(&mut self, pstate: Option<&serde_json::Value>) -> zendaemon::Result<()> {
        let previous = match pstate {
            Some(v) => Saved::deserialize(v).map(|s| s.runs).unwrap_or(0),
            None => 0,
        };
        self.runs = previous + 1;
        Ok(())
    }

    fn activate(&mut self) -> zendaemon::Result<()> {
        if self.settings.fail_after_fork {
            return Err(Error::Daemon("worker refused to start".into()));
        }
        Ok(())
    }

    fn persist(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "runs": self.runs }))
    }
}

fn main() {
    let mut worker = Worker::default();
    let code = Daemon::<Job>::new("testd").component(&mut worker).run();
    std::process::exit(code);
}
