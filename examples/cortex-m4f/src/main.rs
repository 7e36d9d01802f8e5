//! zendaemon-core on a Cortex-M4F with a 32-bit hardware-timer clock and tick-less sleep:
//! firmware for QEMU's `mps2-an386` (a template to copy).
//!
//! * TIMER0, a 32-bit CMSDK APB timer at 25 MHz, free-runs as the kernel's clock
//!   ([`Timer0Clock`]). It counts down, so the clock reads its complement. It keeps counting
//!   while the core sleeps in `wfi`, unlike the DWT cycle counter (see the tiny firmware's
//!   README); 32 bits at 25 MHz wrap every 171.8 s, so deadlines may lie up to 85.9 s ahead.
//! * TIMER1, a second one, is the wake-up: before `wfi` it is loaded with the ticks until the
//!   kernel's next deadline, and its interrupt ends the sleep (tick-less: no periodic tick).
//! * SysTick stands in for a button: every 70 ms its handler posts a `Press` into the
//!   [`Inbox`], and after the last press a stop request into [`Requests`].
//! * One component blinks on a 100 ms periodic timer from `start`, counts the presses, and
//!   cancels its timer on `stop`; the kernel logs statistics every 240 ms.
//!
//! Output goes over semihosting; `run.sh` diffs it with `expected.txt`. The timer schedule
//! fixes the order of events (no two deadlines closer than 5 ms), not QEMU's speed.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use embedded_time::duration::Milliseconds;
use embedded_time::fraction::Fraction;
use embedded_time::{Clock, Instant};
use panic_semihosting as _;
use zendaemon_core::{
    kinds, Component, Context, EndReason, Event, Flow, Inbox, Kernel, Kind, Periodic, Request,
    Requests, RouteError, Routes, Settings, Step, TimerHandle, UserEvent,
};

// ---------------------------------------------------------------------------------------------
// The clock and the wake-up: two CMSDK APB timers
// ---------------------------------------------------------------------------------------------

/// A CMSDK APB timer (Arm DDI 0479C, "APB timer"): a 32-bit down-counter that reloads from
/// `RELOAD` when it reaches zero and then raises its interrupt, if enabled.
#[derive(Clone, Copy)]
struct ApbTimer {
    base: usize,
}

impl ApbTimer {
    const CTRL: usize = 0x00;
    const VALUE: usize = 0x04;
    const RELOAD: usize = 0x08;
    const INTCLEAR: usize = 0x0C;
    const CTRL_ENABLE: u32 = 1 << 0;
    const CTRL_IRQ: u32 = 1 << 3;

    fn write(self, offset: usize, value: u32) {
        // SAFETY: `base + offset` is one of this timer's 32-bit registers (the offsets above,
        // the bases below); a register write touches no memory the program owns.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn read(self, offset: usize) -> u32 {
        // SAFETY: as in `write`; reading these registers has no side effect.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    /// Counts down from `value`, reloading `reload`, interrupt on or off.
    fn start(self, value: u32, reload: u32, irq: bool) {
        self.write(Self::CTRL, 0);
        self.write(Self::RELOAD, reload);
        self.write(Self::VALUE, value);
        self.write(Self::INTCLEAR, 1);
        let irq = if irq { Self::CTRL_IRQ } else { 0 };
        self.write(Self::CTRL, Self::CTRL_ENABLE | irq);
    }

    fn stop(self) {
        self.write(Self::CTRL, 0);
        self.write(Self::INTCLEAR, 1);
    }

    fn value(self) -> u32 {
        self.read(Self::VALUE)
    }
}

/// The free-running clock.
const TIMER0: ApbTimer = ApbTimer { base: 0x4000_0000 };
/// The one-shot wake-up.
const TIMER1: ApbTimer = ApbTimer { base: 0x4000_1000 };
/// TIMER1's interrupt line on the MPS2 (CMSDK) boards.
const TIMER1_IRQ: u16 = 9;
/// The APB clock of QEMU's MPS2 boards, which drives both timers.
const TIMER_HZ: u32 = 25_000_000;

/// TIMER0 as the kernel's clock: 25 MHz ticks, counting up.
struct Timer0Clock;

impl Timer0Clock {
    fn now() -> Instant<Self> {
        // A down-counter from u32::MAX: its complement counts up from 0 and wraps at 2^32.
        Instant::new(!TIMER0.value())
    }
}

impl Clock for Timer0Clock {
    type T = u32;
    const SCALING_FACTOR: Fraction = Fraction::new(1, TIMER_HZ);

    fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
        Ok(Self::now())
    }
}

#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: the numbers used are the MPS2's external interrupt lines.
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

// ---------------------------------------------------------------------------------------------
// Events and the component
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    /// The blink period came.
    Blink,
    /// The button was pressed (posted by the interrupt), with its number.
    Press(u32),
}

impl UserEvent for Ev {
    const KINDS: usize = 2;

    fn kind(&self) -> usize {
        match self {
            Ev::Blink => 0,
            Ev::Press(_) => 1,
        }
    }

    fn kind_name(kind: usize) -> &'static str {
        match kind {
            0 => "blink",
            _ => "press",
        }
    }
}

const BLINK: Kind = Kind::user(0);
const PRESS: Kind = Kind::user(1);
const BLINK_PERIOD: Milliseconds<u32> = Milliseconds(100);

struct Blinker {
    blinks: u32,
    presses: u32,
    timer: Option<TimerHandle>,
}

impl Component<Ev, Timer0Clock> for Blinker {
    fn name(&self) -> &'static str {
        "blinker"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::START)?;
        routes.append(Kind::STOP)?;
        routes.append(Kind::LOG_STATISTICS)?;
        routes.append(BLINK)?;
        routes.append(PRESS)
    }

    fn handle(&mut self, ctx: &mut Context<'_, Ev, Timer0Clock>, event: &mut Event<Ev>) -> Flow {
        match *event {
            Event::Start => match ctx.schedule_every(BLINK_PERIOD, Ev::Blink) {
                Ok(handle) => {
                    self.timer = Some(handle);
                    hprintln!("start: blinking every 100 ms");
                }
                Err(e) => hprintln!("start: cannot arm the blink timer: {}", e),
            },
            Event::User(Ev::Blink) => self.blinks += 1,
            Event::User(Ev::Press(n)) => {
                self.presses += 1;
                hprintln!("press {} after {} blinks", n, self.blinks);
            }
            Event::LogStatistics => {
                hprintln!(
                    "statistics: {} blinks, {} presses",
                    self.blinks,
                    self.presses
                );
            }
            Event::Stop => {
                let cancelled = self.timer.take().is_some_and(|h| ctx.cancel(h).is_ok());
                hprintln!("stop: blink timer cancelled: {}", cancelled);
            }
            _ => {}
        }
        Flow::Continue
    }
}

// ---------------------------------------------------------------------------------------------
// Interrupts
// ---------------------------------------------------------------------------------------------

/// Presses the "button" makes, one per SysTick period of 70 ms.
const PRESSES: u32 = 8;
const PRESS_EVERY_MS: u32 = 70;

static INBOX: Inbox<Ev, 4> = Inbox::new();
static REQUESTS: Requests = Requests::new();
/// Presses posted so far (only the SysTick handler writes it).
static PRESSED: AtomicU32 = AtomicU32::new(0);
/// Presses the inbox had no room for (none expected).
static LOST: AtomicU32 = AtomicU32::new(0);
/// Set when an interrupt posted something: the main loop must not sleep before a step.
static POSTED: AtomicBool = AtomicBool::new(false);

/// The "button".
#[exception]
fn SysTick() {
    let n = PRESSED.fetch_add(1, Ordering::Relaxed) + 1;
    if n > PRESSES {
        return;
    }
    if INBOX.post(Ev::Press(n)).is_err() {
        LOST.fetch_add(1, Ordering::Relaxed);
    }
    if n == PRESSES {
        // The last press: ask for a graceful stop, as a long press would.
        REQUESTS.post(Request::Stop);
    }
    POSTED.store(true, Ordering::Release);
}

/// TIMER1: the wake-up at the kernel's next deadline. Its work is done by waking the core.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == TIMER1_IRQ as i16 {
        TIMER1.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// The main loop
// ---------------------------------------------------------------------------------------------

#[entry]
fn main() -> ! {
    hprintln!("zendaemon on a Cortex-M4F (MPS2 AN386): 32-bit timer clock at 25 MHz, tick-less");
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        panic!("the core peripherals were taken before main");
    };
    TIMER0.start(u32::MAX, u32::MAX, false);
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(TIMER_HZ / 1_000 * PRESS_EVERY_MS - 1);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();
    // SAFETY: TIMER1's handler only stops TIMER1; nothing else shares state with it.
    unsafe { NVIC::unmask(Irq(TIMER1_IRQ)) };

    let mut blinker = Blinker {
        blinks: 0,
        presses: 0,
        timer: None,
    };
    let settings = Settings::default()
        .with_period(Periodic::Statistics, Milliseconds(240))
        .with_stop_timeout(Milliseconds(1_000));
    // 1 component, the lifecycle kinds and the 2 of `Ev`, 1 handler per kind, 4 sequential
    // and 4 timed events.
    let mut kernel = Kernel::<'_, Ev, Timer0Clock, 1, { kinds::<Ev>() }, 1, 4, 4>::new(settings);
    if let Err(e) = kernel.add(&mut blinker) {
        fail(format_args!("add: {e}"));
    }
    kernel.attach_inbox(&INBOX);
    kernel.attach_requests(&REQUESTS);
    if let Err(e) = kernel.start(Timer0Clock::now()) {
        fail(format_args!("start: {e}"));
    }

    let reason = loop {
        POSTED.store(false, Ordering::Relaxed);
        match kernel.step(Timer0Clock::now()) {
            Ok(Step::Dispatched { .. }) => {}
            Ok(Step::Idle) => sleep_until(kernel.next_deadline()),
            Ok(Step::Ended(reason)) => break reason,
            Err(e) => fail(format_args!("step: {e}")),
        }
    };
    cp.SYST.disable_interrupt();
    hprintln!("end: {:?} ({})", reason, reason);
    let stats = kernel.stats();
    hprintln!(
        "kernel: unhandled {}, stop requests {}, inbox deferred {}",
        stats.unhandled,
        stats.stop_requests,
        stats.inbox_deferred
    );
    for kind in [Kind::START, Kind::STOP, Kind::LOG_STATISTICS, BLINK, PRESS] {
        hprintln!(
            "  {}: {}",
            kind.name::<Ev>(),
            stats.dispatched[kind.index()]
        );
    }
    // Tick-less sleep works when no timer waited for the next press to wake the core: each
    // one ran within a millisecond of its deadline (the statistics printout is the slowest
    // handler, well under that).
    let on_time = stats.lateness.max_ticks < u64::from(TIMER_HZ / 1_000);
    hprintln!("timers on time (within 1 ms): {}", on_time);
    drop(kernel);
    let ok = reason == EndReason::Stopped
        && on_time
        && blinker.presses == PRESSES
        && blinker.blinks == 5
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

/// Sleeps until `deadline` or an interrupt, whichever comes first: TIMER1 is loaded with the
/// ticks left and wakes the core. Interrupts are masked from the check to `wfi`: a post that
/// landed after the step set `POSTED` (then no sleep), and one that lands after the check
/// leaves its interrupt pending, on which `wfi` returns at once.
fn sleep_until(deadline: Option<Instant<Timer0Clock>>) {
    cortex_m::interrupt::free(|_| {
        if POSTED.load(Ordering::Acquire) {
            return;
        }
        if let Some(at) = deadline {
            let left = at
                .duration_since_epoch()
                .integer()
                .wrapping_sub(Timer0Clock::now().duration_since_epoch().integer());
            // Already due, or a wrapped difference (the deadline passed): no sleep.
            if left == 0 || left > u32::MAX / 2 {
                return;
            }
            TIMER1.start(left, 0, true);
        }
        cortex_m::asm::wfi();
    });
}

fn fail(what: core::fmt::Arguments<'_>) -> ! {
    hprintln!("error: {}", what);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
