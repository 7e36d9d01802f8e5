//! `demo`: pyzenkit's `DemoZenDaemon` in Rust.
//!
//! One component, `worker`, does a unit of work per `work` event: it looks for primes among
//! the next `batch` numbers. Then, unless the daemon is stopping, it schedules the next `work`
//! event `work_interval_ms` later (pyzenkit's demo slept one second in its handler, blocking
//! the loop; a timer keeps the loop free for signals). Statistics are logged every 5 seconds
//! and a runlog is saved every 10 seconds, pyzenkit's `DEMO_INTERVAL_STATS` and
//! `DEMO_INTERVAL_RUNLOG` (`--stats-interval`, `--runlog-interval` or a configuration file
//! change them; `--help` shows the shell's general defaults).
//!
//! ```sh
//! cargo run --release -p zendaemon-examples --bin demo -- --no-daemon
//! ```
//!
//! Ctrl-C (`SIGINT`) stops it gracefully, `SIGUSR1` saves a runlog, `SIGUSR2` a state dump,
//! `SIGHUP` reloads the configuration. Without `--no-daemon` it daemonizes, and
//! `demo --action status|stop|signal-usr1|…` controls it. Where its files go (pidfile, runlogs,
//! state): `/var/run/` for root, `$XDG_RUNTIME_DIR/demo/` (or `/tmp/demo-<uid>/`) for other
//! users; `demo --action config-view` prints them all.
//!
//! Configuration section `"demo"` (every key optional): `work_interval_ms` (default 1000),
//! `batch` (numbers per unit of work, default 20000). Counters: `work` (units done), `numbers`
//! (numbers examined), `primes` (primes found). The persistent state keeps the next number to
//! examine with the counters, checkpointed every 10 seconds (`--pstate-interval`), so a
//! restart goes on where the previous run stopped, and after a crash (kill -9) at most the
//! last 10 seconds of work are done again, and counted once.

use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;
use zendaemon::core::{
    Component, Context, CounterId, CounterSet, Counters, Event, Flow, Kind, RouteError, Routes,
    StateValue, StateVisitor, TimerHandle, UserEvent,
};
use zendaemon::{Config, Daemon, Error, Service, StdClock};

/// The demo's own event.
#[derive(Debug, Clone)]
struct Work;

impl UserEvent for Work {
    const KINDS: usize = 1;
    fn kind(&self) -> usize {
        0
    }
    fn kind_name(_: usize) -> &'static str {
        "work"
    }
}

/// The `"demo"` configuration section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    work_interval_ms: u64,
    batch: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            work_interval_ms: 1000,
            batch: 20_000,
        }
    }
}

/// What the persistent state keeps: the position of the search and the counters derived
/// from it, together, so a restart after a crash redoes the work since the last checkpoint
/// and counts it once.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Saved {
    next: u64,
    work: u64,
    numbers: u64,
    primes: u64,
    largest_prime: u64,
}

/// The counters' ids.
#[derive(Debug, Clone, Copy)]
struct Ids {
    work: CounterId,
    numbers: CounterId,
    primes: CounterId,
}

#[derive(Debug)]
struct Worker {
    settings: Settings,
    counters: Counters<3>,
    ids: Ids,
    /// The next number to examine.
    next: u64,
    largest_prime: u64,
    timer: Option<TimerHandle>,
}

impl Worker {
    fn new() -> Worker {
        let mut counters = Counters::new();
        let mut reg = |key| counters.register(key).expect("three counters fit in three");
        let ids = Ids {
            work: reg("work"),
            numbers: reg("numbers"),
            primes: reg("primes"),
        };
        Worker {
            settings: Settings::default(),
            counters,
            ids,
            next: 2,
            largest_prime: 0,
            timer: None,
        }
    }

    /// One unit of work: the primes among the next `batch` numbers.
    fn work(&mut self) {
        let from = self.next;
        let to = from.saturating_add(self.settings.batch);
        let mut found = 0;
        for n in from..to {
            if is_prime(n) {
                found += 1;
                self.largest_prime = n;
            }
        }
        self.next = to;
        self.counters.inc_id(self.ids.work, 1);
        self.counters.inc_id(self.ids.numbers, to - from);
        self.counters.inc_id(self.ids.primes, found);
        log::info!(
            "work #{}: {found} primes from {from} to {}, the largest so far {}",
            self.counters.get("work"),
            to - 1,
            self.largest_prime
        );
    }

    fn schedule(&mut self, ctx: &mut Context<'_, Work, StdClock>) {
        match ctx.schedule_after(Duration::from_millis(self.settings.work_interval_ms), Work) {
            Ok(handle) => self.timer = Some(handle),
            Err(e) => log::error!("cannot schedule the next unit of work: {:?}", e.kind()),
        }
    }
}

fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

impl Component<Work, StdClock> for Worker {
    fn name(&self) -> &'static str {
        "worker"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::START)?;
        routes.append(Kind::STOP)?;
        routes.append(Kind::user(0))
    }

    fn handle(&mut self, ctx: &mut Context<'_, Work, StdClock>, event: &mut Event<Work>) -> Flow {
        match event {
            Event::Start => {
                log::info!("worker: starting at {}", self.next);
                // The first unit at once.
                if let Err(e) = ctx.schedule(Work) {
                    log::error!("cannot schedule work: {:?}", e.kind());
                }
            }
            Event::User(Work) => {
                self.timer = None;
                self.work();
                // pyzenkit's rule: no new work once the daemon is stopping.
                if !ctx.is_done() {
                    self.schedule(ctx);
                }
            }
            Event::Stop => {
                // A unit waiting for its timer is not started.
                if let Some(handle) = self.timer.take() {
                    let _ = ctx.cancel(handle);
                }
                log::info!("worker: stopping; the next run starts at {}", self.next);
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
        out.field("next", StateValue::U64(self.next));
        out.field("largest_prime", StateValue::U64(self.largest_prime));
        out.field(
            "work_interval_ms",
            StateValue::U64(self.settings.work_interval_ms),
        );
        out.field("batch", StateValue::U64(self.settings.batch));
    }
}

impl Service<Work> for Worker {
    fn config_key(&self) -> Option<&'static str> {
        Some("demo")
    }

    fn configure(&mut self, config: &Config) -> zendaemon::Result<()> {
        let settings: Settings = config.component_or_default("demo")?;
        if settings.work_interval_ms == 0 || settings.batch == 0 {
            let origin = config
                .origin("demo")
                .map_or_else(|| "the configuration".to_owned(), ToString::to_string);
            return Err(Error::config(
                origin,
                "key 'demo': 'work_interval_ms' and 'batch' must be at least 1",
            ));
        }
        // A new interval applies from the next unit on.
        self.settings = settings;
        Ok(())
    }

    fn restore(&mut self, pstate: Option<&serde_json::Value>) -> zendaemon::Result<()> {
        if let Some(saved) = pstate.and_then(|v| Saved::deserialize(v).ok()) {
            self.next = saved.next.max(2);
            self.largest_prime = saved.largest_prime;
            self.counters.inc_id(self.ids.work, saved.work);
            self.counters.inc_id(self.ids.numbers, saved.numbers);
            self.counters.inc_id(self.ids.primes, saved.primes);
            // The restored counts are the baseline of the first statistics interval.
            self.counters.rotate(0);
        }
        Ok(())
    }

    fn persist(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "next": self.next,
            "work": self.counters.get("work"),
            "numbers": self.counters.get("numbers"),
            "primes": self.counters.get("primes"),
            "largest_prime": self.largest_prime,
        }))
    }
}

fn main() -> ExitCode {
    let mut worker = Worker::new();
    // pyzenkit's DemoZenDaemon: statistics every 5 s, a runlog every 10 s.
    Daemon::<Work>::new("demo")
        .about(
            "demo: pyzenkit's demo daemon; looks for primes, a batch of numbers per unit of \
             work. Section 'demo': work_interval_ms, batch.",
        )
        .default_setting("stats_interval", 5)
        .default_setting("runlog_interval", 10)
        .default_setting("pstate_interval", 10)
        .component(&mut worker)
        .run()
}
