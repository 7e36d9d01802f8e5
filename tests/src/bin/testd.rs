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
//! With `TESTD_OWN_LOGGER` in the environment, testd installs its own `log` logger before
//! `Daemon::run`, as a program may: it writes `own-logger LEVEL message` lines to stderr.
//!
//! # The one component: `worker`
//!
//! Configuration section `"worker"` (every key optional; an unknown key or a wrong type is a
//! configuration error: exit 78 at start, a refused reload later):
//!
//! | key | type, default | effect |
//! |---|---|---|
//! | `work_interval_ms` | u64, 100 | while not stopping, a `work` event every this many milliseconds, the first one interval after `start`. `0`: no `work` events at all (testd then idles until a signal: the shell's periodic `log_statistics` and `save_runlog` keep the queue from emptying) |
//! | `hang_on_stop` | bool, false | its `stop` handler never returns (it sleeps). The shell's stop watchdog ends the process at the stop timeout plus the watchdog margin: exit 70, pidfile removed, no final runlog, no persistent state written |
//! | `hang_on_work` | string, `""` | its first `work` handler never returns: `"loop"` spins on the CPU, `"read"` blocks in `read(2)` on a pipe nobody writes to, `"sleep"` sleeps; `""` does not hang. It logs `worker: hanging in its work handler (<how>)` first. The stop watchdog ends the process as for `hang_on_stop`, and within the margin after `SIGTERM` or the third `SIGINT` |
//! | `fail_after_fork` | bool, false | its start-up (`Service::activate`, after daemonizing) fails with the message `worker refused to start`: the launcher prints `testd: daemon failed to start: component 'worker': worker refused to start` and exits 1 (in the foreground, the same line is logged to the console and testd exits 1). The pidfile is removed |
//! | `fd_probe_dir` | string, `""` | at its first `configure` (before daemonizing), opens three descriptors without close-on-exec: `<dir>/nix-open.txt` with `nix::fcntl::open`, a `nix::unistd::dup` of `<dir>/dup.txt` (the original closed), and a Unix socket made without `SOCK_CLOEXEC`, listening at `<dir>/probe.sock`. At `start` it writes `started <pid>` and a newline through each of the two files; every `work` event accepts waiting connections on the socket and answers each with `hello from <pid>` and a newline |
//! | `state_marker` | string, `""` | echoed in the state file as `components.worker.state_marker` |
//! | `stop_after` | u64, 0 | after this many `work` events the worker asks for a graceful stop itself (0: never) |
//! | `unhandled_at_start` | bool, false | at `start` it schedules one `orphan` event, which no component handles: an error of the run (logged, in the runlog's `errors`, `result` `failure`, exit code 1 at the end) |
//! | `fork_sleeper_ms` | u64, 0 | its start-up (`Service::activate`) forks a child without exec that keeps every descriptor (the readiness pipe, the pidfile) and sleeps this long; it logs `forked a sleeper (pid N)` (0: no child) |
//! | `exit_in_activate` | bool, false | its start-up then ends the process with exit code 3, reporting nothing to the launcher |
//! | `activate_delay_ms` | u64, 0 | its start-up first sleeps this long (the launcher waits meanwhile) |
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
use std::process::ExitCode;
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
    hang_on_work: String,
    fail_after_fork: bool,
    state_marker: String,
    fd_probe_dir: String,
    stop_after: u64,
    unhandled_at_start: bool,
    fork_sleeper_ms: u64,
    exit_in_activate: bool,
    activate_delay_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            work_interval_ms: 100,
            hang_on_stop: false,
            hang_on_work: String::new(),
            fail_after_fork: false,
            state_marker: String::new(),
            fd_probe_dir: String::new(),
            stop_after: 0,
            unhandled_at_start: false,
            fork_sleeper_ms: 0,
            exit_in_activate: false,
            activate_delay_ms: 0,
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
    probe: Option<FdProbe>,
}

/// The descriptors of `fd_probe_dir`, opened without close-on-exec before daemonizing.
#[derive(Debug)]
struct FdProbe {
    opened: std::fs::File,
    duped: std::fs::File,
    socket: std::os::unix::net::UnixListener,
}

impl FdProbe {
    fn open(dir: &str) -> std::io::Result<FdProbe> {
        use nix::fcntl::OFlag;
        use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
        use nix::sys::stat::Mode;
        let dir = std::path::Path::new(dir);
        let opened = nix::fcntl::open(
            &dir.join("nix-open.txt"),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND,
            Mode::from_bits_truncate(0o644),
        )?;
        let original = std::fs::File::create(dir.join("dup.txt"))?;
        let duped = nix::unistd::dup(&original)?;
        drop(original);
        let sock = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )?;
        socket::bind(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            &UnixAddr::new(&dir.join("probe.sock"))?,
        )?;
        socket::listen(&sock, Backlog::new(8)?)?;
        let socket = std::os::unix::net::UnixListener::from(sock);
        socket.set_nonblocking(true)?;
        Ok(FdProbe {
            opened: opened.into(),
            duped: duped.into(),
            socket,
        })
    }

    fn started(&mut self) {
        use std::io::Write;
        let line = format!("started {}\n", std::process::id());
        for (what, file) in [("nix-open", &mut self.opened), ("dup", &mut self.duped)] {
            if let Err(e) = file.write_all(line.as_bytes()) {
                log::error!("fd probe: cannot write through the {what} descriptor: {e}");
            }
        }
    }

    fn answer(&mut self) {
        use std::io::Write;
        while let Ok((mut conn, _)) = self.socket.accept() {
            let _ = writeln!(conn, "hello from {}", std::process::id());
        }
    }
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
                if let Some(probe) = &mut self.probe {
                    probe.started();
                }
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
                hang(&self.settings.hang_on_work);
                if let Some(probe) = &mut self.probe {
                    probe.answer();
                }
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
        let settings: Settings = config.component_or_default("worker")?;
        if !["", "loop", "read", "sleep"].contains(&settings.hang_on_work.as_str()) {
            return Err(Error::config(
                "worker",
                format!(
                    "hang_on_work: '{}' is not \"loop\", \"read\" or \"sleep\"",
                    settings.hang_on_work
                ),
            ));
        }
        if self.probe.is_none() && !settings.fd_probe_dir.is_empty() {
            let probe = FdProbe::open(&settings.fd_probe_dir)
                .map_err(|e| Error::Daemon(format!("fd probe: {e}")))?;
            self.probe = Some(probe);
        }
        self.settings = settings;
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
        std::thread::sleep(Duration::from_millis(self.settings.activate_delay_ms));
        if self.settings.fork_sleeper_ms > 0 {
            // SAFETY: the daemon has one thread here; the child only sleeps and _exits.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    std::thread::sleep(Duration::from_millis(self.settings.fork_sleeper_ms));
                    // SAFETY: ends the child without running the daemon's exit code.
                    unsafe { nix::libc::_exit(0) }
                }
                Ok(nix::unistd::ForkResult::Parent { child }) => {
                    log::info!("forked a sleeper (pid {child})");
                }
                Err(e) => log::error!("cannot fork a sleeper: {e}"),
            }
        }
        if self.settings.exit_in_activate {
            std::process::exit(3);
        }
        if self.settings.fail_after_fork {
            return Err(Error::Daemon("worker refused to start".into()));
        }
        Ok(())
    }

    fn persist(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "runs": self.runs }))
    }
}

/// Never returns, in the way `how` says (see `hang_on_work`); returns at once for `""`.
fn hang(how: &str) {
    if how.is_empty() {
        return;
    }
    log::warn!("worker: hanging in its work handler ({how}), as configured");
    match how {
        "loop" => loop {
            std::hint::spin_loop();
        },
        "read" => {
            use std::io::Read;
            // We hold the write end, so the read never sees the end of the pipe.
            let (mut read, _write) = std::io::pipe().expect("create a pipe");
            let mut byte = [0u8; 1];
            loop {
                let _ = read.read(&mut byte);
            }
        }
        _ => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
}

/// The program's own logger (`TESTD_OWN_LOGGER=1`): `own-logger LEVEL message` lines on
/// stderr, every level.
struct OwnLogger;

impl log::Log for OwnLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        eprintln!("own-logger {} {}", record.level(), record.args());
    }
    fn flush(&self) {}
}

fn main() -> ExitCode {
    if std::env::var_os("TESTD_OWN_LOGGER").is_some() {
        log::set_logger(&OwnLogger).expect("no logger yet");
        log::set_max_level(log::LevelFilter::Info);
    }
    let mut worker = Worker::default();
    Daemon::<Job>::new("testd").component(&mut worker).run()
}
