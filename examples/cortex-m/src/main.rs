//! zendaemon-core on a Cortex-M3: firmware for QEMU's `lm3s6965evb` board.
//!
//! * A 1 kHz SysTick counter is the kernel's clock ([`SysTickClock`]).
//! * The SysTick interrupt also stands in for a sensor: every 50 ms it posts a reading into
//!   the kernel's [`Inbox`], and later a "dump the runlog" request into [`Requests`].
//! * PendSV, a software-pended interrupt, stands in for a shutdown button: it posts a stop
//!   request.
//! * Four components: a glitch filter and a sampler (the pipeline of a reading), a worker that
//!   consumes the work the sampler schedules and the alarms it times, and a blinker on a
//!   periodic timer.
//! * The main loop steps the kernel, prints statistics and the runlog JSON over semihosting,
//!   and sleeps with `wfi` until the next deadline or interrupt.
//!
//! Every printed figure depends on the order of events, which the SysTick schedule fixes, not
//! on how fast QEMU runs; `run.sh` diffs the output against `expected.txt`.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SCB;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use embedded_time::duration::Milliseconds;
use embedded_time::fraction::Fraction;
use embedded_time::{Clock, Instant};
use panic_semihosting as _;
use zendaemon_core::snapshot::to_json;
use zendaemon_core::{
    Component, Context, CounterId, CounterSet, Counters, EndReason, Event, Flow, Inbox, Kernel,
    Kind, Periodic, Request, Requests, RouteError, Routes, Settings, Step, TimerHandle, UserEvent,
};

// ---------------------------------------------------------------------------------------------
// The clock
// ---------------------------------------------------------------------------------------------

/// The core clock of QEMU's LM3S6965 after reset (its SYSDIV gives 200 MHz / 16).
const CORE_HZ: u32 = 12_500_000;
/// SysTick interrupts per second: one clock tick each.
const TICK_HZ: u32 = 1_000;

/// Milliseconds since the SysTick was started. Only the SysTick handler writes it, with a
/// single atomic add, so any reader sees a whole value without masking interrupts.
static TICKS: AtomicU32 = AtomicU32::new(0);

/// The kernel's clock: the SysTick tick count, in milliseconds. It wraps after 49.7 days;
/// the kernel's timeline handles the wrap.
#[derive(Debug, Clone, Copy)]
struct SysTickClock;

impl SysTickClock {
    fn now(self) -> Instant<Self> {
        Instant::new(TICKS.load(Ordering::Acquire))
    }
}

impl Clock for SysTickClock {
    type T = u32;
    const SCALING_FACTOR: Fraction = Fraction::new(1, TICK_HZ);

    fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
        Ok(self.now())
    }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// The firmware's own events.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    /// A sensor reading, posted by the SysTick interrupt.
    Sample { seq: u32, value: u16 },
    /// A unit of work derived from a reading.
    Work(u16),
    /// Timed by the sampler after a high reading.
    Alarm { seq: u32, value: u16 },
    /// The blinker's periodic event.
    Blink,
}

impl UserEvent for Ev {
    const KINDS: usize = 4;

    fn kind(&self) -> usize {
        match self {
            Ev::Sample { .. } => 0,
            Ev::Work(_) => 1,
            Ev::Alarm { .. } => 2,
            Ev::Blink => 3,
        }
    }

    fn kind_name(kind: usize) -> &'static str {
        ["sample", "work", "alarm", "blink"]
            .get(kind)
            .copied()
            .unwrap_or("?")
    }
}

const SAMPLE: Kind = Kind::user(0);
const WORK: Kind = Kind::user(1);
const ALARM: Kind = Kind::user(2);
const BLINK: Kind = Kind::user(3);

// ---------------------------------------------------------------------------------------------
// Components
// ---------------------------------------------------------------------------------------------

/// What the pseudo-ADC reads when the line glitches.
const GLITCH: u16 = 0xFFF;
/// Readings at or above this raise an alarm.
const HIGH: u16 = 80;
/// How long after a high reading the alarm goes off.
const ALARM_DELAY: Milliseconds<u32> = Milliseconds(7);
/// The blinker's period.
const BLINK_PERIOD: Milliseconds<u32> = Milliseconds(120);

/// First in the sample pipeline: swallows glitches (the chain stops there).
struct GlitchFilter {
    counters: Counters<1>,
    glitches: CounterId,
}

impl GlitchFilter {
    fn new() -> Self {
        let mut counters = Counters::new();
        let glitches = counters.register("glitches").unwrap();
        Self { counters, glitches }
    }
}

impl Component<Ev, SysTickClock> for GlitchFilter {
    fn name(&self) -> &'static str {
        "filter"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        // Added after the sampler, but its handler must run first.
        routes.prepend(SAMPLE)
    }

    fn handle(&mut self, _: &mut Context<'_, Ev, SysTickClock>, event: &mut Event<Ev>) -> Flow {
        match event {
            Event::User(Ev::Sample { value: GLITCH, .. }) => {
                self.counters.inc_id(self.glitches, 1);
                Flow::Stop
            }
            _ => Flow::Continue,
        }
    }

    fn counters(&self) -> Option<&dyn CounterSet> {
        Some(&self.counters)
    }

    fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> {
        Some(&mut self.counters)
    }
}

/// The producer: turns each good reading into work, and a high one into a timed alarm.
struct Sampler {
    counters: Counters<2>,
    samples: CounterId,
    high: CounterId,
}

impl Sampler {
    fn new() -> Self {
        let mut counters = Counters::new();
        let samples = counters.register("samples").unwrap();
        let high = counters.register("high").unwrap();
        Self {
            counters,
            samples,
            high,
        }
    }
}

impl Component<Ev, SysTickClock> for Sampler {
    fn name(&self) -> &'static str {
        "sampler"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(SAMPLE)
    }

    fn handle(&mut self, ctx: &mut Context<'_, Ev, SysTickClock>, event: &mut Event<Ev>) -> Flow {
        let Event::User(Ev::Sample { seq, value }) = *event else {
            return Flow::Continue;
        };
        self.counters.inc_id(self.samples, 1);
        if ctx.is_done() {
            // Stopping: no new work.
            return Flow::Continue;
        }
        if ctx.schedule(Ev::Work(value)).is_err() {
            hprintln!("sampler: work queue full, reading {} dropped", seq);
        }
        if value >= HIGH {
            self.counters.inc_id(self.high, 1);
            if ctx
                .schedule_after(ALARM_DELAY, Ev::Alarm { seq, value })
                .is_err()
            {
                hprintln!("sampler: timer queue full, alarm {} dropped", seq);
            }
        }
        Flow::Continue
    }

    fn counters(&self) -> Option<&dyn CounterSet> {
        Some(&self.counters)
    }

    fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> {
        Some(&mut self.counters)
    }
}

/// The consumer: does the work and answers the alarms.
struct Worker {
    counters: Counters<2>,
    work: CounterId,
    alarms: CounterId,
    /// Sum of the readings worked on.
    sum: u32,
}

impl Worker {
    fn new() -> Self {
        let mut counters = Counters::new();
        let work = counters.register("work").unwrap();
        let alarms = counters.register("alarms").unwrap();
        Self {
            counters,
            work,
            alarms,
            sum: 0,
        }
    }
}

impl Component<Ev, SysTickClock> for Worker {
    fn name(&self) -> &'static str {
        "worker"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(WORK)?;
        routes.append(ALARM)
    }

    fn handle(&mut self, _: &mut Context<'_, Ev, SysTickClock>, event: &mut Event<Ev>) -> Flow {
        match *event {
            Event::User(Ev::Work(value)) => {
                self.counters.inc_id(self.work, 1);
                self.sum += u32::from(value);
            }
            Event::User(Ev::Alarm { seq, value }) => {
                self.counters.inc_id(self.alarms, 1);
                hprintln!("worker: alarm, reading {} was {}", seq, value);
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
}

/// A periodic timer from `start` until `stop`, which cancels it by its handle.
struct Blinker {
    counters: Counters<1>,
    blinks: CounterId,
    timer: Option<TimerHandle>,
    led_on: bool,
}

impl Blinker {
    fn new() -> Self {
        let mut counters = Counters::new();
        let blinks = counters.register("blinks").unwrap();
        Self {
            counters,
            blinks,
            timer: None,
            led_on: false,
        }
    }
}

impl Component<Ev, SysTickClock> for Blinker {
    fn name(&self) -> &'static str {
        "blinker"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::START)?;
        routes.append(BLINK)?;
        routes.append(Kind::STOP)
    }

    fn handle(&mut self, ctx: &mut Context<'_, Ev, SysTickClock>, event: &mut Event<Ev>) -> Flow {
        match event {
            Event::Start => match ctx.schedule_every(BLINK_PERIOD, Ev::Blink) {
                Ok(handle) => self.timer = Some(handle),
                Err(e) => hprintln!("blinker: cannot arm its timer: {}", e),
            },
            Event::User(Ev::Blink) => {
                self.led_on = !self.led_on;
                self.counters.inc_id(self.blinks, 1);
            }
            Event::Stop => {
                if let Some(handle) = self.timer.take() {
                    let cancelled = ctx.cancel(handle).is_ok();
                    hprintln!("blinker: timer cancelled: {}", cancelled);
                }
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
}

// ---------------------------------------------------------------------------------------------
// Interrupts
// ---------------------------------------------------------------------------------------------

/// Readings the SysTick handler posts, one every [`SAMPLE_EVERY`] ms.
const READINGS: u32 = 20;
const SAMPLE_EVERY: u32 = 50;
/// Offset of the readings within their period: away from the other timers' ticks.
const SAMPLE_PHASE: u32 = 25;
/// When the SysTick handler asks for a runlog, and when it presses "shutdown".
const RUNLOG_AT: u32 = 1_130;
const SHUTDOWN_AT: u32 = 1_170;

/// User events from interrupts: the kernel drains it at every step.
static INBOX: Inbox<Ev, 8> = Inbox::new();
/// Lifecycle requests from interrupts.
static REQUESTS: Requests = Requests::new();
/// Set by an interrupt that posted something: the main loop must step the kernel.
static POSTED: AtomicBool = AtomicBool::new(false);
/// Readings the inbox had no room for (none expected).
static LOST: AtomicU32 = AtomicU32::new(0);

/// The pseudo-ADC: a fixed sequence of readings with a glitch every seventh.
fn read_adc(seq: u32) -> u16 {
    if seq % 7 == 6 {
        GLITCH
    } else {
        ((seq * 37 + 11) % 100) as u16
    }
}

#[exception]
fn SysTick() {
    let t = TICKS.fetch_add(1, Ordering::AcqRel) + 1;
    if t % SAMPLE_EVERY == SAMPLE_PHASE && t / SAMPLE_EVERY < READINGS {
        let seq = t / SAMPLE_EVERY;
        let sample = Ev::Sample {
            seq,
            value: read_adc(seq),
        };
        if INBOX.post(sample).is_err() {
            LOST.fetch_add(1, Ordering::Relaxed);
        }
        POSTED.store(true, Ordering::Release);
    } else if t == RUNLOG_AT {
        REQUESTS.post(Request::SaveRunlog);
        POSTED.store(true, Ordering::Release);
    } else if t == SHUTDOWN_AT {
        // As if a button's interrupt handler had been triggered.
        SCB::set_pendsv();
    }
}

/// The "shutdown button": a software-pended interrupt that asks for a graceful stop.
#[exception]
fn PendSV() {
    REQUESTS.post(Request::Stop);
    POSTED.store(true, Ordering::Release);
}

// ---------------------------------------------------------------------------------------------
// The main loop
// ---------------------------------------------------------------------------------------------

/// 4 components, the lifecycle and 4 user kinds ([`zendaemon_core::kinds`]), 2 handlers per kind, 16 sequential and 8 timed
/// events.
type App<'c> = Kernel<'c, Ev, SysTickClock, 4, { zendaemon_core::kinds::<Ev>() }, 2, 16, 8>;

#[entry]
fn main() -> ! {
    let mut core = cortex_m::Peripherals::take().unwrap();
    let clock = SysTickClock;

    let mut sampler = Sampler::new();
    let mut filter = GlitchFilter::new();
    let mut worker = Worker::new();
    let mut blinker = Blinker::new();

    let settings = Settings::default()
        .with_period(Periodic::Statistics, Milliseconds(500))
        .with_stop_timeout(Milliseconds(100));
    let mut kernel = App::new(settings);
    for component in [
        &mut sampler as &mut dyn Component<Ev, SysTickClock>,
        &mut filter,
        &mut worker,
        &mut blinker,
    ] {
        if let Err(e) = kernel.add(component) {
            hprintln!("setup failed: {}", e);
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    kernel.attach_inbox(&INBOX);
    kernel.attach_requests(&REQUESTS);
    let mut route = [""; 2];
    for (slot, name) in route.iter_mut().zip(kernel.route(SAMPLE)) {
        *slot = name;
    }
    hprintln!(
        "zendaemon on a Cortex-M3: sample pipeline {} -> {}",
        route[0],
        route[1]
    );

    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(CORE_HZ / TICK_HZ - 1);
    core.SYST.clear_current();
    core.SYST.enable_interrupt();
    core.SYST.enable_counter();

    kernel.start(clock.now()).unwrap();
    let mut statistics = 0u32;
    let end = loop {
        let now = clock.now();
        match kernel.step(now) {
            // The host acts on the lifecycle events that need it, after the components.
            Ok(Step::Dispatched {
                kind: Kind::LOG_STATISTICS,
                ..
            }) => {
                statistics += 1;
                print_statistics(&kernel, statistics, now);
                kernel.rotate_statistics(now);
            }
            Ok(Step::Dispatched {
                kind: Kind::SAVE_RUNLOG,
                ..
            }) => print_runlog(&kernel),
            Ok(Step::Dispatched { .. }) => {}
            Ok(Step::Idle) => sleep(kernel.next_deadline(), clock),
            Ok(Step::Ended(reason)) => break reason,
            Err(e) => hprintln!("step: {}", e),
        }
    };

    hprintln!("end: {:?} ({})", end, end);
    print_summary(&kernel);
    // The kernel borrows the components until it is gone.
    drop(kernel);
    hprintln!("worker: sum of readings {}", worker.sum);
    let ok = end == EndReason::Stopped
        && sampler.counters.get("samples") == u64::from(READINGS) - filter.counters.get("glitches")
        && worker.counters.get("work") == sampler.counters.get("samples")
        && worker.counters.get("alarms") == sampler.counters.get("high")
        && blinker.counters.get("blinks") == u64::from(SHUTDOWN_AT / BLINK_PERIOD.0)
        && LOST.load(Ordering::Relaxed) == 0;
    hprintln!("check: {}", if ok { "ok" } else { "FAILED" });
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

/// Sleeps until `deadline` has passed or an interrupt posted something.
///
/// The check and the `wfi` run with interrupts masked: an interrupt that comes in between
/// still ends the `wfi` (a pending interrupt wakes the core even while masked), and its
/// handler runs as soon as the mask is lifted. So no post waits for the next tick.
fn sleep(deadline: Option<Instant<SysTickClock>>, clock: SysTickClock) {
    loop {
        let wake = cortex_m::interrupt::free(|_| {
            let wake = POSTED.swap(false, Ordering::AcqRel)
                || deadline.is_some_and(|at| clock.now() >= at);
            if !wake {
                cortex_m::asm::wfi();
            }
            wake
        });
        if wake {
            return;
        }
    }
}

fn print_statistics(kernel: &App<'_>, n: u32, now: Instant<SysTickClock>) {
    hprintln!("statistics #{}:", n);
    kernel.for_each_rate(now, |component, key, rate| {
        hprintln!(
            "  {}.{}: cnt {} inc {} spd {}.{:03}/s pct {}.{:03}%",
            component,
            key,
            rate.cnt,
            rate.inc,
            rate.spd_milli / 1000,
            rate.spd_milli % 1000,
            rate.pct_milli / 1000,
            rate.pct_milli % 1000
        );
    });
}

fn print_runlog(kernel: &App<'_>) {
    let mut buf = [0u8; 1024];
    match to_json(&kernel.runlog(), &mut buf) {
        Ok(len) => match core::str::from_utf8(&buf[..len]) {
            Ok(json) => hprintln!("runlog: {}", json),
            Err(_) => hprintln!("runlog: not UTF-8"),
        },
        Err(e) => hprintln!("runlog: {}", e),
    }
}

fn print_summary(kernel: &App<'_>) {
    let stats = kernel.stats();
    hprintln!(
        "kernel: {} events, unhandled {}, rejected {}, stop requests {}, late timers {}",
        stats.total_dispatched(),
        stats.unhandled,
        kernel.queue_stats().rejected,
        stats.stop_requests,
        stats.lateness.count() - u64::from(stats.lateness.buckets[0])
    );
    for kind in [Kind::START, Kind::STOP, SAMPLE, WORK, ALARM, BLINK] {
        hprintln!(
            "  {}: {}",
            kind.name::<Ev>(),
            stats.dispatched[kind.index()]
        );
    }
}
