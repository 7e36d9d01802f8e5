//! zendaemon-core on a Cortex-M0 (ARMv6-M): firmware for QEMU's `microbit` board (nRF51).
//!
//! ARMv6-M has atomic loads and stores but no atomic read-modify-write, so every post into
//! the kernel ([`Inbox::post`], [`Requests::post`]) runs in a critical section (interrupts
//! masked by `cortex-m`'s single-core implementation). This firmware runs those paths:
//!
//! * TIMER0 of the nRF51, free-running at 1 MHz in 32-bit mode, is the kernel's clock
//!   ([`Timer0Clock`]): it keeps counting while the core sleeps in `wfi`. QEMU emulates the
//!   nRF51's TIMER peripherals (not its RTC), so this is the one that ticks.
//! * Its compare channel 1 stands in for a button: its interrupt posts a `Press` into the
//!   [`Inbox`] every 70 ms, and after the last press a stop request into [`Requests`].
//! * Its compare channel 2 wakes the core at the kernel's next deadline (tick-less sleep).
//! * One component blinks on a 100 ms periodic timer from `start`, counts the presses, and
//!   cancels its timer on `stop`; the kernel logs statistics every 240 ms (a periodic
//!   lifecycle event).
//!
//! Output goes over semihosting. The order of events is fixed by the timer schedule (no two
//! deadlines lie closer than 5 ms), not by how fast QEMU runs; `run.sh` diffs it with
//! `expected.txt`.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use embedded_time::duration::Milliseconds;
use embedded_time::fraction::Fraction;
use embedded_time::{Clock, Instant};
use panic_semihosting as _;
use zendaemon_core::{
    Component, Context, EndReason, Event, Flow, Inbox, Kernel, Kind, Periodic, Request, Requests,
    RouteError, Routes, Settings, Step, TimerHandle, UserEvent,
};

// ---------------------------------------------------------------------------------------------
// The clock: nRF51 TIMER0
// ---------------------------------------------------------------------------------------------

/// The registers of TIMER0 this firmware uses (nRF51 Reference Manual, chapter 18).
mod timer0 {
    const BASE: usize = 0x4000_8000;
    const TASKS_START: usize = 0x000;
    const TASKS_CAPTURE0: usize = 0x040;
    const EVENTS_COMPARE0: usize = 0x140;
    const INTENSET: usize = 0x304;
    const INTENCLR: usize = 0x308;
    const MODE: usize = 0x504;
    const BITMODE: usize = 0x508;
    const PRESCALER: usize = 0x510;
    const CC0: usize = 0x540;

    /// TIMER0's interrupt line.
    pub const IRQ: u16 = 8;

    fn write(offset: usize, value: u32) {
        // SAFETY: BASE + offset is one of TIMER0's 32-bit registers (the offsets above); a
        // register write has no effect on memory the program owns.
        unsafe { core::ptr::write_volatile((BASE + offset) as *mut u32, value) }
    }

    fn read(offset: usize) -> u32 {
        // SAFETY: as in `write`; reading a register has no side effect here.
        unsafe { core::ptr::read_volatile((BASE + offset) as *const u32) }
    }

    /// Timer mode, 32 bits, 16 MHz / 2^4 = 1 MHz, compare interrupts on channels 1 and 2,
    /// started.
    pub fn start() {
        write(MODE, 0);
        write(BITMODE, 3);
        write(PRESCALER, 4);
        write(INTENSET, (1 << 17) | (1 << 18));
        write(TASKS_START, 1);
    }

    /// The counter, through capture channel 0 (the nRF51 has no readable counter register).
    /// Only the main loop uses channel 0, so no other capture lands between the two accesses.
    pub fn now() -> u32 {
        capture(0)
    }

    /// The counter, through capture channel `ch`.
    pub fn capture(ch: usize) -> u32 {
        write(TASKS_CAPTURE0 + 4 * ch, 1);
        read(CC0 + 4 * ch)
    }

    /// Stops compare channel `ch`'s interrupt.
    pub fn disable_compare(ch: usize) {
        write(INTENCLR, 1 << (16 + ch));
    }

    /// Sets compare channel `ch` to `at`.
    pub fn set_compare(ch: usize, at: u32) {
        write(CC0 + 4 * ch, at);
    }

    /// The compare value of channel `ch`.
    pub fn compare(ch: usize) -> u32 {
        read(CC0 + 4 * ch)
    }

    /// Takes channel `ch`'s compare event: true if it had fired.
    pub fn take_event(ch: usize) -> bool {
        let fired = read(EVENTS_COMPARE0 + 4 * ch) != 0;
        if fired {
            write(EVENTS_COMPARE0 + 4 * ch, 0);
        }
        fired
    }
}

/// TIMER0 as the kernel's clock: microseconds, 32 bits (wraps every 71.6 minutes, so
/// deadlines may lie up to 35.8 minutes ahead).
struct Timer0Clock;

impl Timer0Clock {
    fn now() -> Instant<Self> {
        Instant::new(timer0::now())
    }
}

impl Clock for Timer0Clock {
    type T = u32;
    const SCALING_FACTOR: Fraction = Fraction::new(1, 1_000_000);

    fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
        Ok(Self::now())
    }
}

#[derive(Clone, Copy)]
struct Timer0Irq;

// SAFETY: 8 is TIMER0's interrupt number on the nRF51.
unsafe impl InterruptNumber for Timer0Irq {
    fn number(self) -> u16 {
        timer0::IRQ
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
// The interrupt
// ---------------------------------------------------------------------------------------------

/// Presses the "button" makes, one every `PRESS_EVERY_US`, the first at `PRESS_FIRST_US`.
const PRESSES: u32 = 8;
const PRESS_FIRST_US: u32 = 35_000;
const PRESS_EVERY_US: u32 = 70_000;

static INBOX: Inbox<Ev, 4> = Inbox::new();
static REQUESTS: Requests = Requests::new();
/// Presses posted so far (only the interrupt writes it).
static PRESSED: AtomicU32 = AtomicU32::new(0);
/// Set when the interrupt posted something: the main loop must not sleep before a step.
static POSTED: Flag = Flag(AtomicBool::new(false));
/// Presses the inbox had no room for (none expected).
static LOST: AtomicU32 = AtomicU32::new(0);

/// TIMER0's interrupt: channel 1 is the button, channel 2 only wakes the core.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn != timer0::IRQ as i16 {
        return;
    }
    let _ = timer0::take_event(2);
    // QEMU's TIMER model raises a compare event again shortly after the compare value is
    // moved on: a press counts only when the counter really reached the compare value
    // (read through capture channel 3, which only this handler uses).
    let reached = timer0::capture(3).wrapping_sub(timer0::compare(1)) as i32 >= 0;
    if timer0::take_event(1) && reached {
        // ARMv6-M has no atomic add: a load and a store, which only this handler does.
        let n = PRESSED.load(Ordering::Relaxed) + 1;
        PRESSED.store(n, Ordering::Relaxed);
        if INBOX.post(Ev::Press(n)).is_err() {
            LOST.store(LOST.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        if n < PRESSES {
            timer0::set_compare(1, timer0::compare(1).wrapping_add(PRESS_EVERY_US));
        } else {
            // The last press: ask for a graceful stop, as a long press would.
            timer0::disable_compare(1);
            REQUESTS.post(Request::Stop);
        }
        POSTED.set();
    }
}

// ---------------------------------------------------------------------------------------------
// The main loop
// ---------------------------------------------------------------------------------------------

#[entry]
fn main() -> ! {
    hprintln!("zendaemon on a Cortex-M0 (nRF51, thumbv6m): TIMER0 clock at 1 MHz");
    timer0::set_compare(1, PRESS_FIRST_US);
    timer0::set_compare(2, u32::MAX);
    timer0::start();
    // SAFETY: unmasking TIMER0's line is sound: its handler touches only the statics above,
    // through critical sections and atomics.
    unsafe { NVIC::unmask(Timer0Irq) };

    let mut blinker = Blinker {
        blinks: 0,
        presses: 0,
        timer: None,
    };
    let settings = Settings::default()
        .with_period(Periodic::Statistics, Milliseconds(240))
        .with_stop_timeout(Milliseconds(1_000));
    // 1 component, the lifecycle kinds and 2 of its own, 1 handler per kind, 4 sequential and 4 timed.
    let mut kernel =
        Kernel::<'_, Ev, Timer0Clock, 1, { zendaemon_core::kinds::<Ev>() }, 1, 4, 4>::new(settings);
    if let Err(e) = kernel.add(&mut blinker) {
        fail(format_args!("add: {e}"));
    }
    kernel.attach_inbox(&INBOX);
    kernel.attach_requests(&REQUESTS);
    if let Err(e) = kernel.start(Timer0Clock::now()) {
        fail(format_args!("start: {e}"));
    }

    let reason = loop {
        cortex_m::interrupt::free(|_| POSTED.swap_clear());
        match kernel.step(Timer0Clock::now()) {
            Ok(Step::Dispatched { .. }) => {}
            Ok(Step::Idle) => sleep_until(kernel.next_deadline()),
            Ok(Step::Ended(reason)) => break reason,
            Err(e) => fail(format_args!("step: {e}")),
        }
    };
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
    drop(kernel);
    let ok = reason == EndReason::Stopped
        && blinker.blinks == 5
        && blinker.presses == PRESSES
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

/// Sleeps until `deadline` or an interrupt, whichever comes first. Compare channel 2 wakes
/// the core at the deadline. Interrupts are masked from the check to `wfi`: a post that lands
/// after the kernel's step set `POSTED` (then no sleep), and one that lands after the check
/// leaves its interrupt pending, on which `wfi` returns at once.
fn sleep_until(deadline: Option<Instant<Timer0Clock>>) {
    cortex_m::interrupt::free(|_| {
        if POSTED.swap_clear() {
            return;
        }
        if let Some(at) = deadline {
            let at = at.duration_since_epoch().integer();
            timer0::set_compare(2, at);
            // Already due (or due while the compare was being set): no sleep.
            if at.wrapping_sub(timer0::now()) as i32 <= 0 {
                return;
            }
        }
        cortex_m::asm::wfi();
    });
}

/// A flag the interrupt sets after posting; ARMv6-M has no atomic swap, so the main loop
/// reads and clears it with interrupts masked.
struct Flag(AtomicBool);

impl Flag {
    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Reads and clears the flag; call it with interrupts masked.
    fn swap_clear(&self) -> bool {
        let set = self.0.load(Ordering::Acquire);
        self.0.store(false, Ordering::Relaxed);
        set
    }
}

fn fail(what: core::fmt::Arguments<'_>) -> ! {
    hprintln!("error: {}", what);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
