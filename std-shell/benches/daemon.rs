//! What a daemon built with zendaemon costs and how quickly it reacts, measured from outside.
//!
//! `cargo bench -p zendaemon --bench daemon` (BENCHMARKS.md holds the results). The binary is
//! both the driver and the daemon under test: the driver starts copies of itself with
//! `ZD_BENCH_ROLE` set, which run a real daemon through [`zendaemon::Daemon`] with the shell's
//! default capacities, in a temporary directory, and send what they measured to the driver
//! over a Unix datagram socket. Groups (all by default; name some to run only those):
//!
//! * `dispatch`: events per second through the full shell loop (signals installed, none sent)
//!   with pipelines of 1 and 3 handlers; heap allocations during the run; resident memory
//!   after start and after the run (a million events by default, `--events N`).
//! * `timers`: how late a periodic timer's handler runs (p50, p99, max) for periods of 1 ms,
//!   10 ms, 100 ms and 1 s, with the loop idle, idle with `--precise-timers`, and busy (a
//!   stream of sequential events that never lets it sleep); for the idle rows also the CPU
//!   time the daemon spent per timer (`getrusage` user + system, first to last sample).
//! * `signal`: SIGUSR1 to the idle daemon until its `save_runlog` handler runs (p50, p99, max),
//!   both instants read from `CLOCK_MONOTONIC`; one signal at a time.
//! * `start`: from spawning the daemon until systemd's `READY=1` arrives on a `NOTIFY_SOCKET`
//!   the driver listens on, in the foreground and in daemon mode (there also until the
//!   launching process exits with the daemon's result); resident memory after start, in both
//!   modes, and the anonymous part of it (the rest is mapped files: the binary, and libc when
//!   it is linked dynamically; `.ci/rss-bench` compares a glibc and a static musl build).
//!
//! * `icount` (not in the default set; needs valgrind): instructions per event through the
//!   full shell loop, 1 and 3 handlers: the `dispatch` daemon under callgrind with two event
//!   counts, the difference divided by the difference in events (`.ci/icount` checks these
//!   against its baseline).
//!
//! `--quick` takes fewer samples. `--figures` adds `figure <name> <value>` lines for scripts
//! (`.ci/pyzenkit-bench` reads them). The figures are wall-clock times: they vary with the
//! machine and its load, so nothing here is asserted; the driver prints the load average.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::signal::{kill, Signal};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;
use zendaemon::core::{
    Component, Context, Event, Flow, Kind, RouteError, Routes, TimerHandle, UserEvent,
};
use zendaemon::{Daemon, Service, StdClock};

// ---------------------------------------------------------------------------------------------
// Allocation counting
// ---------------------------------------------------------------------------------------------

/// Counts every allocation of the process (the daemon's: the driver does not look).
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

// ---------------------------------------------------------------------------------------------
// Shared by both sides
// ---------------------------------------------------------------------------------------------

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in the driver and the daemon.
fn mono_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// The process's CPU time so far (`getrusage`: user plus system), ns.
fn cpu_time_ns() -> u64 {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let ns =
        |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1_000;
    ns(usage.user_time()) + ns(usage.system_time())
}

/// `VmRSS` (or another `/proc/<pid>/status` field) in KiB.
fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The daemon under test
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    /// Sequential work.
    Work(u32),
    /// The periodic timer of the `timer` role.
    Tick,
}

impl UserEvent for Ev {
    const KINDS: usize = 2;
    fn kind(&self) -> usize {
        match self {
            Ev::Work(_) => 0,
            Ev::Tick => 1,
        }
    }
    fn kind_name(kind: usize) -> &'static str {
        ["work", "tick"].get(kind).copied().unwrap_or("?")
    }
}

const WORK: Kind = Kind::user(0);
const TICK: Kind = Kind::user(1);

/// Work events kept queued during `dispatch` and busy `timer` runs.
const BACKLOG: u64 = 8;

/// What the daemon does, from its environment.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// `events` work events through `handlers` handlers, then report and stop.
    Dispatch { handlers: usize, events: u64 },
    /// A periodic timer of `period_us`; `samples` lateness samples, then report and stop.
    Timer {
        period_us: u64,
        samples: usize,
        busy: bool,
    },
    /// Report the instant of every `save_runlog` (SIGUSR1); otherwise idle.
    Signal,
    /// Nothing: start, report ready, wait for SIGTERM.
    Idle,
}

impl Role {
    fn from_env() -> Option<Role> {
        let var = |name: &str| std::env::var(name).ok();
        let num = |name: &str| var(name).and_then(|v| v.parse::<u64>().ok());
        Some(match var("ZD_BENCH_ROLE")?.as_str() {
            "dispatch" => Role::Dispatch {
                handlers: num("ZD_BENCH_HANDLERS")? as usize,
                events: num("ZD_BENCH_EVENTS")?,
            },
            "timer" => Role::Timer {
                period_us: num("ZD_BENCH_PERIOD_US")?,
                samples: num("ZD_BENCH_SAMPLES")? as usize,
                busy: num("ZD_BENCH_BUSY")? != 0,
            },
            "signal" => Role::Signal,
            "idle" => Role::Idle,
            _ => return None,
        })
    }
}

/// The first handler of every pipeline: drives the workload and measures.
struct Probe {
    role: Role,
    /// The driver's socket.
    report_to: PathBuf,
    socket: Option<UnixDatagram>,
    scheduled: u64,
    handled: u64,
    sum: u64,
    first: Option<(Instant, u64)>,
    rss_start_kib: u64,
    /// Timer role: tick of the first deadline's base, periods seen, lateness samples.
    timer_base: u64,
    timer: Option<TimerHandle>,
    last_period: u64,
    skipped: u64,
    lateness_ns: Vec<u64>,
    /// The process's CPU time at the first sample, ns.
    cpu_start_ns: u64,
}

impl Probe {
    fn new(role: Role, report_to: PathBuf) -> Self {
        let samples = match role {
            Role::Timer { samples, .. } => samples,
            _ => 0,
        };
        Self {
            role,
            report_to,
            socket: None,
            scheduled: 0,
            handled: 0,
            sum: 0,
            first: None,
            rss_start_kib: 0,
            timer_base: 0,
            timer: None,
            last_period: 0,
            skipped: 0,
            // Allocated now, so the handler does not allocate while it measures.
            lateness_ns: Vec::with_capacity(samples),
            cpu_start_ns: 0,
        }
    }

    fn report(&self, message: &[u8]) {
        if let Some(socket) = &self.socket {
            if let Err(e) = socket.send_to(message, &self.report_to) {
                log::error!("bench: cannot report to the driver: {e}");
            }
        }
    }

    fn work(&mut self, ctx: &mut Context<'_, Ev, StdClock>, n: u32) {
        self.sum = self.sum.wrapping_add(u64::from(n));
        match self.role {
            Role::Dispatch { events, .. } => {
                self.handled += 1;
                if self.first.is_none() {
                    self.first = Some((Instant::now(), ALLOCS.load(Ordering::Relaxed)));
                }
                if self.scheduled < events {
                    self.scheduled += 1;
                    let _ = ctx.schedule(Ev::Work(self.scheduled as u32));
                }
                if self.handled == events {
                    let allocs = ALLOCS.load(Ordering::Relaxed);
                    let (t0, allocs0) = self.first.unwrap_or((Instant::now(), allocs));
                    let secs = t0.elapsed().as_secs_f64();
                    let rss = proc_status_kib("self", "VmRSS:").unwrap_or(0);
                    let hwm = proc_status_kib("self", "VmHWM:").unwrap_or(0);
                    let message = format!(
                        "events={} secs={secs:.6} allocs={} rss_start_kib={} rss_end_kib={rss} \
                         hwm_kib={hwm} sum={}",
                        events - 1,
                        allocs - allocs0,
                        self.rss_start_kib,
                        self.sum
                    );
                    self.report(message.as_bytes());
                    ctx.request_stop();
                }
            }
            Role::Timer { busy: true, .. } if !ctx.is_done() => {
                let _ = ctx.schedule(Ev::Work(n.wrapping_add(1)));
            }
            _ => {}
        }
    }

    fn tick(&mut self, ctx: &mut Context<'_, Ev, StdClock>) {
        let Role::Timer {
            period_us, samples, ..
        } = self.role
        else {
            return;
        };
        let now_ns = Instant::now()
            .saturating_duration_since(StdClock::origin())
            .as_nanos() as u64;
        // Deadlines are base + k * period (drift-free); a period missed by a late wake-up is
        // skipped by the kernel, so take the latest deadline not after now, past the last one.
        let since_base = (now_ns / 1_000).saturating_sub(self.timer_base);
        let period = (self.last_period + 1).max(since_base / period_us);
        self.skipped += period - self.last_period - 1;
        self.last_period = period;
        let deadline_ns = (self.timer_base + period * period_us) * 1_000;
        self.lateness_ns.push(now_ns.saturating_sub(deadline_ns));
        if self.lateness_ns.len() == 1 {
            self.cpu_start_ns = cpu_time_ns();
        }
        if self.lateness_ns.len() == samples {
            // Per wake-up after the first sample's.
            let cpu_ns =
                cpu_time_ns().saturating_sub(self.cpu_start_ns) / (samples as u64 - 1).max(1);
            if let Some(handle) = self.timer.take() {
                let _ = ctx.cancel(handle);
            }
            let mut sorted = self.lateness_ns.clone();
            sorted.sort_unstable();
            let message = format!(
                "samples={} skipped={} p50_ns={} p99_ns={} max_ns={} cpu_ns={cpu_ns}",
                sorted.len(),
                self.skipped,
                percentile(&sorted, 50.0),
                percentile(&sorted, 99.0),
                sorted.last().copied().unwrap_or(0)
            );
            self.report(message.as_bytes());
            ctx.request_stop();
        }
    }
}

impl Component<Ev, StdClock> for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::START)?;
        routes.append(Kind::SAVE_RUNLOG)?;
        routes.append(WORK)?;
        routes.append(TICK)
    }

    fn handle(&mut self, ctx: &mut Context<'_, Ev, StdClock>, event: &mut Event<Ev>) -> Flow {
        match event {
            Event::User(Ev::Work(n)) => self.work(ctx, *n),
            Event::User(Ev::Tick) => self.tick(ctx),
            Event::SaveRunlog => {
                if matches!(self.role, Role::Signal) {
                    self.report(&mono_ns().to_le_bytes());
                }
            }
            Event::Start => match self.role {
                Role::Dispatch { events, .. } => {
                    self.rss_start_kib = proc_status_kib("self", "VmRSS:").unwrap_or(0);
                    while self.scheduled < events.min(BACKLOG) {
                        self.scheduled += 1;
                        let _ = ctx.schedule(Ev::Work(self.scheduled as u32));
                    }
                }
                Role::Timer {
                    period_us, busy, ..
                } => {
                    self.timer_base = StdClock::ticks(ctx.now());
                    self.timer = ctx
                        .schedule_every(Duration::from_micros(period_us), Ev::Tick)
                        .ok();
                    if busy {
                        for n in 0..BACKLOG as u32 {
                            let _ = ctx.schedule(Ev::Work(n));
                        }
                    }
                }
                Role::Signal | Role::Idle => {}
            },
            _ => {}
        }
        Flow::Continue
    }
}

impl Service<Ev> for Probe {
    fn activate(&mut self) -> zendaemon::Result<()> {
        let socket = UnixDatagram::unbound()
            .map_err(|e| zendaemon::Error::Daemon(format!("bench: report socket: {e}")))?;
        self.socket = Some(socket);
        Ok(())
    }
}

/// Handlers after the first: the least work the optimizer cannot remove.
#[derive(Default)]
struct Sum(u64);

impl Component<Ev, StdClock> for Sum {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(WORK)
    }
    fn handle(&mut self, _: &mut Context<'_, Ev, StdClock>, event: &mut Event<Ev>) -> Flow {
        if let Event::User(Ev::Work(n)) = event {
            self.0 = self.0.wrapping_add(u64::from(*n));
        }
        Flow::Continue
    }
}

impl Service<Ev> for Sum {}

fn run_daemon(role: Role) -> ExitCode {
    let report_to = std::env::var_os("ZD_BENCH_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_default();
    let handlers = match role {
        Role::Dispatch { handlers, .. } => handlers.clamp(1, 3),
        _ => 1,
    };
    let mut probe = Probe::new(role, report_to);
    let mut sums = [Sum::default(), Sum::default()];
    let mut daemon = Daemon::<Ev>::new("benchd").component(&mut probe);
    for sum in sums.iter_mut().take(handlers - 1) {
        daemon = daemon.component(sum);
    }
    daemon.run()
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

/// Nearest-rank percentile of sorted values.
fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A temporary directory with every file the daemon uses, and the driver's sockets.
struct Env {
    dir: tempfile::TempDir,
    exe: PathBuf,
    report: UnixDatagram,
    notify: UnixDatagram,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("config.d")).expect("config.d");
        std::fs::write(dir.path().join("benchd.json.conf"), "{}\n").expect("config file");
        let report = UnixDatagram::bind(dir.path().join("report.sock")).expect("report socket");
        let notify = UnixDatagram::bind(dir.path().join("notify.sock")).expect("notify socket");
        Env {
            exe: std::env::current_exe().expect("the bench's own path"),
            dir,
            report,
            notify,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The daemon's command line: every path in the temporary directory, long periodic
    /// intervals (so no `log_statistics` or `save_runlog` falls into a measurement), logs at
    /// `warn` into the log file (daemon mode) or the null device (foreground).
    fn command(&self, role: &[(&str, String)], foreground: bool) -> Command {
        let mut cmd = Command::new(&self.exe);
        let p = |name: &str| self.path(name).into_os_string();
        cmd.arg("--name")
            .arg("benchd")
            .arg("--pid-file")
            .arg(p("benchd.pid"))
            .arg("--runlog-dir")
            .arg(p("runlogs"))
            .arg("--state-file")
            .arg(p("state.json"))
            .arg("--pstate-file")
            .arg(p("pstate.json"))
            .arg("--log-file")
            .arg(p("benchd.log"))
            .arg("--config-file")
            .arg(p("benchd.json.conf"))
            .arg("--config-dir")
            .arg(p("config.d"))
            .arg("--work-dir")
            .arg(self.dir.path())
            .arg("--stats-interval")
            .arg("3600")
            .arg("--runlog-interval")
            .arg("3600")
            .arg("--log-level")
            .arg("warn");
        if foreground {
            cmd.arg("--no-daemon");
        }
        cmd.env("XDG_RUNTIME_DIR", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path())
            .env("ZD_BENCH_SOCKET", self.path("report.sock"))
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in role {
            cmd.env(key, value);
        }
        cmd
    }

    /// The next datagram from the daemon, waiting at most `timeout`.
    fn receive(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.report.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = [0u8; 512];
        match self.report.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("report socket: {e}"),
        }
    }

    /// Waits for a notify message containing `READY=1`; the instant it arrived.
    fn wait_ready(&self, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.notify.set_read_timeout(Some(left)).ok()?;
            match self.notify.recv(&mut buf) {
                Ok(n) if buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1") => {
                    return Some(Instant::now());
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }

    /// Discards stale datagrams (from an earlier run that was cut short).
    fn drain(&self) {
        let mut buf = [0u8; 512];
        for socket in [&self.report, &self.notify] {
            let _ = socket.set_nonblocking(true);
            while socket.recv(&mut buf).is_ok() {}
            let _ = socket.set_nonblocking(false);
        }
    }
}

/// `key=value` pairs of a report.
fn field(report: &str, key: &str) -> f64 {
    report
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no '{key}' in the daemon's report: {report}"))
}

fn wait_exit(child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => panic!("{what}: the daemon exited with {status}"),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("{what}: the daemon did not exit within 30 s");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat.rsplit_once(')') {
            Some((_, rest)) => !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')),
            None => false,
        },
        Err(_) => false,
    }
}

struct Output {
    figures: bool,
}

impl Output {
    fn figure(&self, name: &str, value: f64) {
        if self.figures {
            println!("figure {name} {value}");
        }
    }
}

/// Instructions of one `dispatch` daemon run of `events` events under callgrind.
fn dispatch_instructions(env: &Env, handlers: usize, events: u64) -> u64 {
    env.drain();
    let role = [
        ("ZD_BENCH_ROLE", "dispatch".to_owned()),
        ("ZD_BENCH_HANDLERS", handlers.to_string()),
        ("ZD_BENCH_EVENTS", events.to_string()),
    ];
    let daemon = env.command(&role, true);
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(daemon.get_program())
        .args(daemon.get_args());
    for (key, value) in daemon.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run valgrind (is it installed?)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "callgrind run failed:\n{stderr}");
    let _ = env.receive(Duration::from_secs(1));
    stderr
        .lines()
        .find_map(|l| {
            l.split_once("Collected : ")
                .map(|(_, n)| n.trim().parse().ok())
        })
        .flatten()
        .unwrap_or_else(|| panic!("no instruction count in callgrind's output:\n{stderr}"))
}

fn bench_icount(env: &Env, out: &Output) {
    const LOW: u64 = 100_000;
    const HIGH: u64 = 300_000;
    println!("\n## icount: instructions per event through the full shell loop (callgrind)\n");
    println!("{:<10} {:>14}", "handlers", "instr/event");
    for handlers in [1usize, 3] {
        let low = dispatch_instructions(env, handlers, LOW);
        let high = dispatch_instructions(env, handlers, HIGH);
        let per_event = high.saturating_sub(low) as f64 / (HIGH - LOW) as f64;
        println!("{handlers:<10} {per_event:>14.2}");
        out.figure(&format!("shell{handlers}_instructions"), per_event);
    }
}

fn bench_dispatch(env: &Env, out: &Output, events: u64) {
    println!("\n## dispatch: {events} events through the full shell loop (no signals sent)\n");
    println!(
        "{:<10} {:>14} {:>10} {:>14} {:>16} {:>16}",
        "handlers", "events/s", "ns/event", "allocations", "RSS start KiB", "RSS end KiB"
    );
    for handlers in [1usize, 3] {
        env.drain();
        let role = [
            ("ZD_BENCH_ROLE", "dispatch".to_owned()),
            ("ZD_BENCH_HANDLERS", handlers.to_string()),
            ("ZD_BENCH_EVENTS", (events + 1).to_string()),
        ];
        let mut child = env.command(&role, true).spawn().expect("spawn the daemon");
        let report = env
            .receive(Duration::from_secs(120))
            .expect("the dispatch report");
        wait_exit(&mut child, "dispatch");
        let report = String::from_utf8_lossy(&report);
        let rate = field(&report, "events") / field(&report, "secs");
        let allocs = field(&report, "allocs");
        let rss_start = field(&report, "rss_start_kib");
        let rss_end = field(&report, "rss_end_kib");
        println!(
            "{handlers:<10} {rate:>14.0} {:>10.1} {allocs:>14} {rss_start:>16} {rss_end:>16}",
            1e9 / rate
        );
        out.figure(&format!("shell_dispatch_{handlers}_events_per_s"), rate);
        out.figure(&format!("shell_dispatch_{handlers}_allocs"), allocs);
        out.figure(&format!("shell_dispatch_{handlers}_rss_end_kib"), rss_end);
    }
}

fn bench_timers(env: &Env, out: &Output, quick: bool) {
    println!("\n## timers: lateness of a periodic timer's handler (µs)\n");
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "loop", "period", "samples", "skipped", "p50", "p99", "max", "cpu/wake"
    );
    // (period, samples) idle: 2 to 12 s each (half with --quick); 100 ms takes 120, so its p99
    // is the second-largest sample, not the largest; 1 s only 10 (p99 = max). Each idle period
    // runs without and then with precise timers, back to back, so both see the same load.
    let idle: [(u64, usize); 4] = [
        (1_000, 2_000),
        (10_000, 500),
        (100_000, 120),
        (1_000_000, 10),
    ];
    let busy: [(u64, usize); 4] = [
        (1_000, 2_000),
        (10_000, 300),
        (100_000, 50),
        (1_000_000, 10),
    ];
    let runs = idle
        .iter()
        .flat_map(|&p| [(p, "idle"), (p, "precise")])
        .chain(busy.iter().map(|&p| (p, "busy")));
    for ((period_us, samples), mode) in runs {
        let samples = if quick { samples.div_ceil(2) } else { samples };
        let busy = mode == "busy";
        env.drain();
        let role = [
            ("ZD_BENCH_ROLE", "timer".to_owned()),
            ("ZD_BENCH_PERIOD_US", period_us.to_string()),
            ("ZD_BENCH_SAMPLES", samples.to_string()),
            ("ZD_BENCH_BUSY", u8::from(busy).to_string()),
        ];
        let mut cmd = env.command(&role, true);
        if mode == "precise" {
            cmd.arg("--precise-timers");
        }
        let mut child = cmd.spawn().expect("spawn the daemon");
        let timeout = Duration::from_micros(period_us * samples as u64) + Duration::from_secs(30);
        let report = env.receive(timeout).expect("the timer report");
        wait_exit(&mut child, "timers");
        let report = String::from_utf8_lossy(&report);
        let us = |key: &str| field(&report, key) / 1_000.0;
        let period = match period_us {
            p if p >= 1_000_000 => format!("{} s", p / 1_000_000),
            p => format!("{} ms", p / 1_000),
        };
        // A busy loop is always on the CPU: its CPU per wake-up is the period.
        let cpu = if busy {
            "-".to_owned()
        } else {
            format!("{:.1}", us("cpu_ns"))
        };
        println!(
            "{mode:<8} {period:>8} {:>8} {:>8} {:>10.1} {:>10.1} {:>10.1} {cpu:>10}",
            field(&report, "samples"),
            field(&report, "skipped"),
            us("p50_ns"),
            us("p99_ns"),
            us("max_ns")
        );
        let name = format!("timer_{mode}_{period_us}us");
        out.figure(&format!("{name}_p50_us"), us("p50_ns"));
        out.figure(&format!("{name}_p99_us"), us("p99_ns"));
        out.figure(&format!("{name}_max_us"), us("max_ns"));
        if !busy {
            out.figure(&format!("{name}_cpu_us"), us("cpu_ns"));
        }
    }
}

fn bench_signal(env: &Env, out: &Output, quick: bool) {
    let count = if quick { 100 } else { 300 };
    println!(
        "\n## signal: SIGUSR1 until the save_runlog handler runs ({count} signals, idle loop)\n"
    );
    env.drain();
    let mut cmd = env.command(&[("ZD_BENCH_ROLE", "signal".to_owned())], true);
    cmd.env("NOTIFY_SOCKET", env.path("notify.sock"));
    let mut child = cmd.spawn().expect("spawn the daemon");
    // The signal handlers are installed once the daemon is ready.
    env.wait_ready_of(&mut child);
    let pid = Pid::from_raw(child.id() as i32);
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let sent = mono_ns();
        kill(pid, Signal::SIGUSR1).expect("SIGUSR1");
        let reply = env
            .receive(Duration::from_secs(5))
            .expect("the save_runlog report");
        let handled = u64::from_le_bytes(reply[..8].try_into().expect("8 bytes"));
        latencies.push(handled.saturating_sub(sent));
        // Let the shell write its runlog file (it fsyncs) before the next signal.
        std::thread::sleep(Duration::from_millis(15));
    }
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    wait_exit(&mut child, "signal");
    latencies.sort_unstable();
    let us = |ns: u64| ns as f64 / 1_000.0;
    let (p50, p99, max) = (
        us(percentile(&latencies, 50.0)),
        us(percentile(&latencies, 99.0)),
        us(latencies.last().copied().unwrap_or(0)),
    );
    println!("{:>10} {:>10} {:>10}  (µs)", "p50", "p99", "max");
    println!("{p50:>10.1} {p99:>10.1} {max:>10.1}");
    out.figure("signal_p50_us", p50);
    out.figure("signal_p99_us", p99);
    out.figure("signal_max_us", max);
}

impl Env {
    /// With `NOTIFY_SOCKET` pointing at the driver: spawned by the caller, so only the wait.
    fn wait_ready_of(&self, child: &mut Child) -> Instant {
        match self.wait_ready(Duration::from_secs(10)) {
            Some(t) => t,
            None => {
                let _ = child.kill();
                panic!("the daemon never reported READY=1");
            }
        }
    }
}

fn bench_start(env: &Env, out: &Output, quick: bool) {
    let runs = if quick { 10 } else { 30 };
    println!("\n## start: spawn until READY=1 ({runs} runs each; ms)\n");
    println!("{:<34} {:>8} {:>8} {:>8}", "mode", "p50", "p90", "max");
    let mut fg = Vec::new();
    let mut rss = Vec::new();
    let mut rss_anon = Vec::new();
    let mut rss_daemon = Vec::new();
    let mut bg_ready = Vec::new();
    let mut bg_launcher = Vec::new();
    for _ in 0..runs {
        // Foreground.
        env.drain();
        let mut cmd = env.command(&[("ZD_BENCH_ROLE", "idle".to_owned())], true);
        cmd.env("NOTIFY_SOCKET", env.path("notify.sock"));
        let t0 = Instant::now();
        let mut child = cmd.spawn().expect("spawn the daemon");
        let ready = env.wait_ready_of(&mut child);
        fg.push(ready.duration_since(t0));
        let pid = child.id().to_string();
        rss.push(proc_status_kib(&pid, "VmRSS:").unwrap_or(0));
        rss_anon.push(proc_status_kib(&pid, "RssAnon:").unwrap_or(0));
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        wait_exit(&mut child, "start (foreground)");

        // Daemon mode: the launcher exits once the daemon is set up.
        env.drain();
        let mut cmd = env.command(&[("ZD_BENCH_ROLE", "idle".to_owned())], false);
        cmd.env("NOTIFY_SOCKET", env.path("notify.sock"));
        let t0 = Instant::now();
        let mut launcher = cmd.spawn().expect("spawn the launcher");
        let status = launcher.wait().expect("the launcher's exit");
        let launched = Instant::now();
        assert!(status.success(), "the launcher exited with {status}");
        let ready = env.wait_ready_of(&mut launcher);
        bg_launcher.push(launched.duration_since(t0));
        bg_ready.push(ready.duration_since(t0));
        let pid: i32 = std::fs::read_to_string(env.path("benchd.pid"))
            .expect("the pidfile")
            .trim()
            .parse()
            .expect("a PID in the pidfile");
        rss_daemon.push(proc_status_kib(&pid.to_string(), "VmRSS:").unwrap_or(0));
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(pid) {
            assert!(Instant::now() < deadline, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (name, key, mut times) in [
        ("foreground (--no-daemon)", "start_fg", fg),
        ("daemon mode, until READY=1", "start_daemon", bg_ready),
        (
            "daemon mode, until launcher exits",
            "start_launcher",
            bg_launcher,
        ),
    ] {
        times.sort_unstable();
        let (p50, p90, max) = (
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 90.0)),
            ms(times.last().copied().unwrap_or_default()),
        );
        println!("{name:<34} {p50:>8.2} {p90:>8.2} {max:>8.2}");
        out.figure(&format!("{key}_p50_ms"), p50);
        out.figure(&format!("{key}_max_ms"), max);
    }
    let median = |mut kib: Vec<u64>| {
        kib.sort_unstable();
        percentile(&kib, 50.0)
    };
    let (rss, rss_anon, rss_daemon) = (median(rss), median(rss_anon), median(rss_daemon));
    println!(
        "\nRSS after start (VmRSS, median): {rss} KiB in the foreground ({rss_anon} KiB of it \
         anonymous), {rss_daemon} KiB in daemon mode"
    );
    out.figure("rss_start_kib", rss as f64);
    out.figure("rss_start_anon_kib", rss_anon as f64);
    out.figure("rss_start_daemon_kib", rss_daemon as f64);
}

/// How this binary was linked: its resident memory depends on it (a dynamic libc's mapped
/// pages count in the VmRSS of every process that uses them).
fn libc_linkage() -> &'static str {
    if cfg!(target_env = "musl") {
        "musl, static"
    } else if cfg!(target_feature = "crt-static") {
        "glibc, static"
    } else {
        "glibc, dynamic"
    }
}

fn main() -> ExitCode {
    if let Some(role) = Role::from_env() {
        return run_daemon(role);
    }
    if std::env::var_os("ZD_BENCH_ROLE").is_some() {
        eprintln!("daemon bench: bad ZD_BENCH_* settings");
        return ExitCode::FAILURE;
    }
    let mut groups = Vec::new();
    let mut quick = false;
    let mut figures = false;
    let mut events = 1_000_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // Passed by `cargo bench`.
            "--bench" => {}
            "--quick" => quick = true,
            "--figures" => figures = true,
            "--events" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => events = n,
                _ => {
                    eprintln!("daemon bench: --events takes a positive number");
                    return ExitCode::FAILURE;
                }
            },
            "dispatch" | "timers" | "signal" | "start" | "icount" => groups.push(arg),
            other => {
                eprintln!(
                    "daemon bench: unknown argument '{other}' \
                     (groups: dispatch timers signal start icount; --quick, --figures, --events N)"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    if groups.is_empty() {
        groups = ["dispatch", "timers", "signal", "start"]
            .map(String::from)
            .to_vec();
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "# zendaemon daemon bench ({}; {} CPUs; load average before: {})",
        libc_linkage(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let env = Env::new();
    let out = Output { figures };
    for group in &groups {
        match group.as_str() {
            "dispatch" => bench_dispatch(&env, &out, events),
            "timers" => bench_timers(&env, &out, quick),
            "signal" => bench_signal(&env, &out, quick),
            "start" => bench_start(&env, &out, quick),
            "icount" => bench_icount(&env, &out),
            _ => unreachable!(),
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n# load average after: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    ExitCode::SUCCESS
}
