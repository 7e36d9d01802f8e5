//! Instructions per event on a Cortex-M3, counted by QEMU: run it with `./icount.sh`.
//!
//! QEMU's `-icount shift=0` makes guest time advance one nanosecond per instruction executed,
//! so the SysTick counter (12.5 MHz on this board: one count per 80 ns of guest time) counts
//! instructions in steps of 80. Each scenario runs `N` iterations twice over, for `N_LOW` and
//! `N_HIGH`; the difference divided by the difference in iterations is the cost of one, with
//! the setup and the clock reads removed (as `.ci/icount` does on the host). A calibration
//! loop of known length checks the 80 instructions per count.
//!
//! Scenarios (the workloads of `core/examples/icount.rs`):
//!
//! * `kernel1`, `kernel3`: `schedule` + `Kernel::step(now)` through 1 or 3 handlers;
//! * `timer`: `TimerQueue::insert` + `pop_due` of a due timer, 8 more timers pending.
//!
//! QEMU counts instructions, not cycles: on a Cortex-M3 or M4 most instructions take one
//! cycle, loads two (or one, pipelined), taken branches two to four; BENCHMARKS.md gives both.

#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{DWT, SYST};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use embedded_time::fraction::Fraction;
use embedded_time::{Clock, Instant};
use panic_semihosting as _;
use zendaemon_core::{
    Component, Context, Event, Flow, Kernel, Kind, RouteError, Routes, Settings, Step, TimerQueue,
    UserEvent,
};

/// A clock that never moves: the kernel only needs `now` values.
#[derive(Debug)]
struct Frozen;

impl Clock for Frozen {
    type T = u32;
    const SCALING_FACTOR: Fraction = Fraction::new(1, 1_000);

    fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
        Ok(Instant::new(0))
    }
}

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
struct Sum(u32);

impl Component<Ev, Frozen> for Sum {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::user(0))
    }
    fn handle(&mut self, _: &mut Context<'_, Ev, Frozen>, event: &mut Event<Ev>) -> Flow {
        if let Event::User(Ev(n)) = event {
            self.0 = self.0.wrapping_add(*n);
        }
        Flow::Continue
    }
}

const N_LOW: u32 = 1_000;
const N_HIGH: u32 = 11_000;
/// Events kept waiting in the sequential queue, timers pending in the timer queue.
const BACKLOG: u32 = 8;

/// SysTick counts (down, 24 bits) while `f` runs.
fn counts(syst: &mut SYST, f: impl FnOnce() -> u32) -> u32 {
    syst.clear_current();
    let start = SYST::get_current();
    black_box(f());
    let end = SYST::get_current();
    start.wrapping_sub(end) & 0x00FF_FFFF
}

/// Instructions per iteration of `f(n)`, from its counts at `N_LOW` and `N_HIGH`, in
/// hundredths.
fn per_iteration(syst: &mut SYST, f: impl Fn(u32) -> u32, per_count: u32) -> u32 {
    let low = counts(syst, || f(N_LOW));
    let high = counts(syst, || f(N_HIGH));
    (high - low) * per_count * 100 / (N_HIGH - N_LOW)
}

/// 100 `nop`s per iteration, plus the loop's own few instructions.
fn calibration(n: u32) -> u32 {
    for _ in 0..n {
        seq_macro_nops();
    }
    n
}

#[inline(always)]
fn seq_macro_nops() {
    // 10 × 10 nops.
    for _ in 0..10 {
        cortex_m::asm::nop();
        cortex_m::asm::nop();
        cortex_m::asm::nop();
        cortex_m::asm::nop();
        cortex_m::asm::nop();
        cortex_m::asm::nop();
        cortex_m::asm::nop();
        cortex_m::asm::nop();
        cortex_m::asm::nop();
        cortex_m::asm::nop();
    }
}

fn kernel(handlers: usize, n: u32) -> u32 {
    let mut sums = [Sum(0), Sum(0), Sum(0)];
    let mut kernel = Kernel::<'_, Ev, Frozen, 3, { zendaemon_core::kinds::<Ev>() }, 3, 16, 4>::new(
        Settings::default(),
    );
    for sum in sums.iter_mut().take(handlers) {
        let _ = kernel.add(sum);
    }
    let now = Instant::<Frozen>::new(0);
    let _ = kernel.start(now);
    // A far timer keeps the loop from ending; a backlog keeps the sequential queue busy.
    let _ = kernel
        .queue()
        .schedule_after(embedded_time::duration::Milliseconds(3_600_000u32), Ev(0));
    for i in 0..BACKLOG {
        let _ = kernel.queue().schedule(Ev(i));
    }
    let _ = kernel.step(now); // start
    let mut dispatched = 0;
    for i in 0..n {
        let _ = kernel.queue().schedule(Ev(black_box(i)));
        if let Ok(Step::Dispatched { .. }) = kernel.step(black_box(now)) {
            dispatched += 1;
        }
    }
    drop(kernel);
    dispatched + sums.iter().map(|s| s.0).fold(0, u32::wrapping_add)
}

fn timer(n: u32) -> u32 {
    let mut q = TimerQueue::<u32, 16>::new();
    for i in 0..BACKLOG {
        let _ = q.insert(1_000_000 + u64::from(i), i);
    }
    let mut sum = 0u32;
    for i in 0..n {
        let now = u64::from(black_box(i));
        let _ = q.insert(now, i);
        if let Some(fired) = q.pop_due(now) {
            sum = sum.wrapping_add(fired.event);
        }
    }
    sum
}

#[entry]
fn main() -> ! {
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        panic!("the core peripherals were taken before main");
    };
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(0x00FF_FFFF);
    cp.SYST.enable_counter();

    // One SysTick count per 80 instructions: the calibration loop, 124 instructions per
    // iteration by its disassembly (100 nops, 10 inner loops of 2, 4 for the outer loop),
    // must come out at 124.
    let per_count = 80;
    // QEMU does not model the DWT cycle counter: show that it stands still.
    cp.DCB.enable_trace();
    cp.DWT.enable_cycle_counter();
    let before = DWT::cycle_count();
    let calib = per_iteration(&mut cp.SYST, calibration, per_count);
    hprintln!(
        "DWT cycle counter moved by {} during the calibration",
        DWT::cycle_count().wrapping_sub(before)
    );
    hprintln!(
        "calibration: {}.{:02} instructions per iteration (124 expected)",
        calib / 100,
        calib % 100
    );
    for (name, scenario) in [
        ("kernel1", (|n| kernel(1, n)) as fn(u32) -> u32),
        ("kernel3", |n| kernel(3, n)),
        ("timer insert+pop", timer),
    ] {
        let per = per_iteration(&mut cp.SYST, scenario, per_count);
        hprintln!(
            "{}: {}.{:02} instructions per event",
            name,
            per / 100,
            per % 100
        );
    }
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}
