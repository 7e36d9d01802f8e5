//! The smallest useful zendaemon-core firmware: the size benchmark (Cortex-M4F).
//!
//! What a firmware engineer would write first, and what `.ci/size` measures:
//!
//! * one component that blinks an LED on a 500 ms periodic timer, and pauses or resumes the
//!   blinking (cancelling or re-arming the timer) when a button is pressed;
//! * the button's interrupt posts a `Button` event into an [`Inbox`];
//! * the DWT cycle counter is the kernel's clock;
//! * the main loop steps the kernel.
//!
//! The kernel is the whole kernel: lifecycle (start, stop, terminate), statistics, cancellable
//! timers and the fairness rule are all linked, not configured away.
//!
//! There is no output and no PAC: the "LED" is a field, and the button is any external
//! interrupt (`DefaultHandler`). A real board adds its HAL's GPIO calls in the same places.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::DWT;
use cortex_m_rt::{entry, exception};
use embedded_time::duration::Milliseconds;
use embedded_time::fraction::Fraction;
use embedded_time::{Clock, Instant};
use panic_halt as _;
use zendaemon_core::{
    kinds, Component, Context, Event, Flow, Inbox, Kernel, Kind, RouteError, Routes, Settings,
    Step, TimerHandle, UserEvent,
};

/// The core clock, and so the DWT cycle counter's rate.
const CORE_HZ: u32 = 16_000_000;

/// The DWT cycle counter (32 bits at 16 MHz: it wraps every 268 s, so deadlines may lie up to
/// 134 s ahead). It stops while the core sleeps, so this loop never sleeps (see the README).
struct CycleClock;

impl CycleClock {
    fn now() -> Instant<Self> {
        Instant::new(DWT::cycle_count())
    }
}

impl Clock for CycleClock {
    type T = u32;
    const SCALING_FACTOR: Fraction = Fraction::new(1, CORE_HZ);

    fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
        Ok(Self::now())
    }
}

/// The firmware's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    /// The blink period came.
    Blink,
    /// The button was pressed.
    Button,
}

impl UserEvent for Ev {
    const KINDS: usize = 2;

    fn kind(&self) -> usize {
        match self {
            Ev::Blink => 0,
            Ev::Button => 1,
        }
    }

    fn kind_name(kind: usize) -> &'static str {
        match kind {
            0 => "blink",
            _ => "button",
        }
    }
}

const BLINK: Kind = Kind::user(0);
const BUTTON: Kind = Kind::user(1);
const PERIOD: Milliseconds<u32> = Milliseconds(500);

/// Blinks on a periodic timer; the button pauses and resumes it.
struct Blinker {
    led_on: bool,
    presses: u32,
    timer: Option<TimerHandle>,
}

impl Component<Ev, CycleClock> for Blinker {
    fn name(&self) -> &'static str {
        "blinker"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::START)?;
        routes.append(BLINK)?;
        routes.append(BUTTON)
    }

    fn handle(&mut self, ctx: &mut Context<'_, Ev, CycleClock>, event: &mut Event<Ev>) -> Flow {
        match event {
            Event::User(Ev::Blink) => self.led_on = !self.led_on,
            Event::User(Ev::Button) => {
                self.presses += 1;
                match self.timer.take() {
                    Some(handle) => {
                        let _ = ctx.cancel(handle);
                    }
                    None => self.timer = ctx.schedule_every(PERIOD, Ev::Blink).ok(),
                }
            }
            Event::Start => self.timer = ctx.schedule_every(PERIOD, Ev::Blink).ok(),
            _ => {}
        }
        Flow::Continue
    }
}

/// Button presses from the interrupt.
static INBOX: Inbox<Ev, 4> = Inbox::new();
/// Presses the inbox had no room for.
static LOST: AtomicU32 = AtomicU32::new(0);

/// The button's interrupt (on a real board: its GPIO or EXTI line's handler).
#[exception]
unsafe fn DefaultHandler(_irqn: i16) {
    if INBOX.post(Ev::Button).is_err() {
        LOST.fetch_add(1, Ordering::Relaxed);
    }
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| unreachable!());
    cp.DCB.enable_trace();
    cp.DWT.enable_cycle_counter();

    let mut blinker = Blinker {
        led_on: false,
        presses: 0,
        timer: None,
    };
    // 1 component, the lifecycle kinds and 2 of its own, 1 handler per kind, 4 sequential and 2 timed.
    let mut kernel =
        Kernel::<'_, Ev, CycleClock, 1, { kinds::<Ev>() }, 1, 4, 2>::new(Settings::default());
    let _ = kernel.add(&mut blinker);
    kernel.attach_inbox(&INBOX);
    let _ = kernel.start(CycleClock::now());
    loop {
        if let Ok(Step::Ended(_)) = kernel.step(CycleClock::now()) {
            break;
        }
    }
    loop {
        cortex_m::asm::wfi();
    }
}
