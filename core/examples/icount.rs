//! A fixed workload for instruction counting (`.ci/icount`), a wall-clock rate, and sizes.
//!
//! ```text
//! cargo run --release -p zendaemon-core --example icount -- <scenario> <n>         # n events
//! cargo run --release -p zendaemon-core --example icount -- rate <scenario> <n>    # and time them
//! cargo run --release -p zendaemon-core --example icount -- sizes                  # size_of
//! ```
//!
//! Scenarios (each iteration schedules one event and takes one out, so the queue keeps its
//! length; the same steady state as `benches/kernel.rs`):
//!
//! * `queue`: `EventQueue::schedule` + `EventQueue::next(now)`, the event summed inline.
//! * `kernel1`: `schedule` + `Kernel::step(now)` through a pipeline of 1 handler.
//! * `kernel3`: the same through a pipeline of 3 handlers.
//! * `kernel1-run`, `kernel3-run`: the same pipelines, with the events scheduled 16 at a
//!   time and dispatched by one `Kernel::run(now, 16)`, as a host that reads its clock once
//!   per batch does.
//! * `shell-kernel3`: `kernel3` with the std shell's default capacities (`Daemon::new`), to
//!   show that larger tables and queues do not slow a dispatch.
//!
//! `.ci/icount` runs a scenario under callgrind for two values of `n` and divides the
//! difference in instructions by the difference in `n`: the setup cost (process start, the
//! kernel's construction, the backlog) drops out and what is left is instructions per event.
//! The run prints a checksum so the optimizer cannot drop the work.

use std::hint::black_box;
use std::mem::size_of;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Instant as WallInstant;

use embedded_time::duration::Milliseconds;
use zendaemon_core::{
    Component, Context, Event, EventQueue, Flow, Kernel, Kind, ManualClock, Next, RouteError,
    Routes, Run, Settings, Step, TimerQueue, UserEvent,
};

#[derive(Debug, Clone, Copy)]
struct Ev(u32);

impl UserEvent for Ev {
    const KINDS: usize = 1;
    fn kind(&self) -> usize {
        0
    }
    fn kind_name(_: usize) -> &'static str {
        "ev"
    }
}

/// A handler that does the least work the optimizer cannot remove.
struct Sum(u64);

impl Component<Ev, ManualClock> for Sum {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::user(0))
    }
    fn handle(&mut self, _: &mut Context<'_, Ev, ManualClock>, event: &mut Event<Ev>) -> Flow {
        if let Event::User(Ev(n)) = event {
            self.0 = self.0.wrapping_add(u64::from(*n));
        }
        Flow::Continue
    }
}

/// The kernel of `benches/kernel.rs`: 3 components, 8 kinds, 3 handlers per kind, 64
/// sequential and 4 timed events.
type BenchKernel<'c> = Kernel<'c, Ev, ManualClock, 3, { zendaemon_core::kinds::<Ev>() }, 3, 64, 4>;
/// The capacities of the std shell's `Daemon::new` (16 components, 64 kinds, 16 handlers per
/// kind, 1024 sequential and 256 timed events).
type ShellKernel<'c> = Kernel<'c, Ev, ManualClock, 16, 64, 16, 1024, 256>;
/// The queue inside `BenchKernel`.
type BenchQueue = EventQueue<Event<Ev>, ManualClock, 64, 4>;

/// Events kept waiting in the sequential queue while the loop runs.
const BACKLOG: u32 = 8;
/// Events per `Kernel::run` call in the `-run` scenarios.
const BATCH: u32 = 16;

fn run_queue(n: u64) -> u64 {
    let clock = ManualClock::new();
    let mut queue = BenchQueue::new();
    let now = clock.now();
    queue.advance(now);
    queue
        .schedule_after(Milliseconds(3_600_000u32), Event::User(Ev(0)))
        .unwrap();
    for i in 0..BACKLOG {
        queue.schedule(Event::User(Ev(i))).unwrap();
    }
    let mut sum = 0u64;
    for i in 0..n {
        let _ = queue.schedule(Event::User(Ev(black_box(i as u32))));
        if let Next::Sequential(Event::User(Ev(v))) = queue.next(black_box(now)) {
            sum = sum.wrapping_add(u64::from(v));
        }
    }
    sum
}

/// `run_kernel` for a kernel type (generic code over the capacities would need every bound of
/// `Kernel` repeated; a macro keeps the two loops the same).
macro_rules! kernel_loop {
    ($kernel:ty, $handlers:expr, $n:expr, $batch:expr) => {{
        let (handlers, n): (usize, u64) = ($handlers, $n);
        let clock = ManualClock::new();
        let mut sums = [Sum(0), Sum(0), Sum(0)];
        let mut kernel = <$kernel>::new(Settings::default());
        for sum in sums.iter_mut().take(handlers) {
            kernel.add(sum).unwrap();
        }
        let now = clock.now();
        kernel.start(now).unwrap();
        // A far timer keeps the loop from ending; a backlog keeps the sequential queue busy.
        kernel
            .queue()
            .schedule_after(Milliseconds(3_600_000u32), Ev(0))
            .unwrap();
        for i in 0..BACKLOG {
            kernel.queue().schedule(Ev(i)).unwrap();
        }
        assert!(matches!(
            kernel.step(now),
            Ok(Step::Dispatched {
                kind: Kind::START,
                ..
            })
        ));
        let mut dispatched = 0u64;
        match NonZeroU32::new($batch) {
            // One `step` per event.
            None => {
                for i in 0..n {
                    let _ = kernel.queue().schedule(Ev(black_box(i as u32)));
                    if let Ok(Step::Dispatched { .. }) = kernel.step(black_box(now)) {
                        dispatched += 1;
                    }
                }
            }
            // `batch` events scheduled, then one `run` for them.
            Some(batch) => {
                for i in 0..n / u64::from(batch.get()) {
                    for j in 0..batch.get() {
                        let _ = kernel.queue().schedule(Ev(black_box(i as u32 ^ j)));
                    }
                    if let Ok(Run::Limit) = kernel.run(black_box(now), batch) {
                        dispatched += u64::from(batch.get());
                    }
                }
            }
        }
        assert_eq!(dispatched, n, "every event was dispatched");
        drop(kernel);
        sums.iter().fold(0u64, |a, s| a.wrapping_add(s.0))
    }};
}

fn run_kernel(handlers: usize, n: u64) -> u64 {
    kernel_loop!(BenchKernel<'_>, handlers, n, 0)
}

fn run_kernel_batched(handlers: usize, n: u64) -> u64 {
    kernel_loop!(BenchKernel<'_>, handlers, n, BATCH)
}

fn run_shell_kernel(handlers: usize, n: u64) -> u64 {
    kernel_loop!(ShellKernel<'_>, handlers, n, 0)
}

fn run(scenario: &str, n: u64) -> Option<u64> {
    match scenario {
        "queue" => Some(run_queue(n)),
        "kernel1" => Some(run_kernel(1, n)),
        "kernel3" => Some(run_kernel(3, n)),
        "kernel1-run" => Some(run_kernel_batched(1, n)),
        "kernel3-run" => Some(run_kernel_batched(3, n)),
        "shell-kernel3" => Some(run_shell_kernel(3, n)),
        _ => None,
    }
}

/// Event types shaped like those of the examples, for `sizes`.
mod shapes {
    /// `examples/cortex-m`: 4 kinds, the largest carries a `u32` and a `u16`.
    #[derive(Debug, Clone)]
    #[allow(dead_code)]
    pub enum CortexM {
        Sample { seq: u32, value: u16 },
        Work(u16),
        Alarm { seq: u32, value: u16 },
        Blink,
    }
    /// `examples/freestanding`: 3 kinds, the largest carries a `u32`.
    #[derive(Debug, Clone)]
    #[allow(dead_code)]
    pub enum Freestanding {
        Tick,
        Work(u32),
        Deadline,
    }
}

fn print_sizes() {
    use shapes::{CortexM, Freestanding};
    fn row(what: &str, size: usize) {
        println!("{size:>8}  {what}");
    }
    println!("   bytes  type (host: {}-bit)", usize::BITS);
    row("Event<Ev(u32)>", size_of::<Event<Ev>>());
    row(
        "TimerQueue<Event<Ev>, 4> (bench timers)",
        size_of::<TimerQueue<Event<Ev>, 4>>(),
    );
    row(
        "EventQueue<Event<Ev>, _, 64, 4> (bench queue)",
        size_of::<BenchQueue>(),
    );
    row(
        "Kernel<Ev, _, M=3, K=8, H=3, S=64, T=4> (benches, icount)",
        size_of::<BenchKernel<'static>>(),
    );
    row(
        "Kernel<Ev, _, M=1, K=8, H=1, S=8, T=1> (smallest useful)",
        size_of::<Kernel<'static, Ev, ManualClock, 1, { zendaemon_core::kinds::<Ev>() }, 1, 8, 1>>(
        ),
    );
    row(
        "Kernel<cortex-m Ev, _, M=4, K=11, H=2, S=16, T=8> (examples/cortex-m shape)",
        size_of::<
            Kernel<
                'static,
                CortexM,
                ManualClock,
                4,
                { zendaemon_core::kinds::<CortexM>() },
                2,
                16,
                8,
            >,
        >(),
    );
    row(
        "Kernel<freestanding Ev, _, M=3, K=10, H=2, S=32, T=4> (examples/freestanding shape)",
        size_of::<
            Kernel<
                'static,
                Freestanding,
                ManualClock<u64>,
                3,
                { zendaemon_core::kinds::<Freestanding>() },
                2,
                32,
                4,
            >,
        >(),
    );
    row(
        "Kernel<Ev, _, M=16, K=64, H=16, S=1024, T=256> (std shell's Daemon::new)",
        size_of::<ShellKernel<'static>>(),
    );
}

impl UserEvent for shapes::CortexM {
    const KINDS: usize = 4;
    fn kind(&self) -> usize {
        match self {
            Self::Sample { .. } => 0,
            Self::Work(_) => 1,
            Self::Alarm { .. } => 2,
            Self::Blink => 3,
        }
    }
    fn kind_name(_: usize) -> &'static str {
        "?"
    }
}

impl UserEvent for shapes::Freestanding {
    const KINDS: usize = 3;
    fn kind(&self) -> usize {
        match self {
            Self::Tick => 0,
            Self::Work(_) => 1,
            Self::Deadline => 2,
        }
    }
    fn kind_name(_: usize) -> &'static str {
        "?"
    }
}

const USAGE: &str = "usage: icount <queue|kernel1|kernel3|shell-kernel3> <n>\n       \
                     icount rate <queue|kernel1|kernel3|shell-kernel3> <n>\n       \
                     icount sizes";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let parse = |s: &str| s.replace('_', "").parse::<u64>().ok();
    match args.as_slice() {
        ["sizes"] => print_sizes(),
        ["rate", scenario, n] => {
            let Some(n) = parse(n) else {
                eprintln!("icount: not a count: {n}\n{USAGE}");
                return ExitCode::FAILURE;
            };
            let start = WallInstant::now();
            let Some(sum) = run(scenario, n) else {
                eprintln!("icount: unknown scenario: {scenario}\n{USAGE}");
                return ExitCode::FAILURE;
            };
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{scenario}: {n} events in {:.3} s: {:.1} ns/event, {:.0} events/s (checksum {sum})",
                secs,
                secs * 1e9 / n as f64,
                n as f64 / secs
            );
        }
        [scenario, n] => {
            let Some(n) = parse(n) else {
                eprintln!("icount: not a count: {n}\n{USAGE}");
                return ExitCode::FAILURE;
            };
            let Some(sum) = run(scenario, n) else {
                eprintln!("icount: unknown scenario: {scenario}\n{USAGE}");
                return ExitCode::FAILURE;
            };
            println!("{scenario} {n}: checksum {sum}");
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
