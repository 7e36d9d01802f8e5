//! fugit: a HAL's fugit timer as the kernel's clock (feature `fugit`).
//!
//! Much of the embedded ecosystem (rtic-monotonics, the stm32/rp/nrf HALs' timers and
//! counters) hands out `fugit::Instant`s. The kernel's clock trait stays embedded-time's
//! [`Clock`]: [`FugitClock`] wraps anything that reads a fugit instant ([`FugitSource`]) into
//! such a clock with the same tick rate (`NOM / DENOM` seconds per tick), so an instant
//! crosses over as its tick count, with no arithmetic, and the kernel's wrap handling applies
//! unchanged (a `u32` fugit timer wraps like any `u32` clock: see [`crate::time`]).
//!
//! ```
//! use core::cell::Cell;
//! use zendaemon_core::fugit::FugitClock;
//! use zendaemon_core::embedded_time::Clock;
//!
//! // A HAL's 1 MHz timer, as a closure that reads it (here: a counter a test moves).
//! let ticks = Cell::new(41u32);
//! let clock = FugitClock::new(|| fugit::TimerInstantU32::<1_000_000>::from_ticks(ticks.get()));
//! ticks.set(42);
//! assert_eq!(clock.try_now().unwrap().duration_since_epoch().integer(), 42);
//! ```
//!
//! Durations: a fugit `u32` duration (`500.millis()`, `TimerDurationU32<HZ>`) is a
//! [`Delay`], as `core::time::Duration` and embedded-time's durations are, so
//! `schedule_after` and `schedule_every` take it as it is, scaled to the kernel's clock
//! without a run-time division.

use core::fmt;

use embedded_time::fraction::Fraction;
use embedded_time::{clock, Clock, Instant};

use crate::time::{reduce, Delay, Divisor};

/// Something that reads the time as a fugit instant of `u32` ticks, each `NOM / DENOM`
/// seconds: a HAL's free-running timer, a monotonic.
///
/// # Contract
///
/// * `now` MUST be monotonic, wrapping from `u32::MAX` to 0.
/// * It MUST keep counting while the core sleeps if the firmware sleeps until the kernel's
///   next deadline (see the tiny firmware's README in `examples/cortex-m-tiny/`).
pub trait FugitSource<const NOM: u32, const DENOM: u32> {
    /// The current instant.
    fn now(&self) -> ::fugit::Instant<u32, NOM, DENOM>;
}

/// A closure that reads the timer is a source.
impl<F, const NOM: u32, const DENOM: u32> FugitSource<NOM, DENOM> for F
where
    F: Fn() -> ::fugit::Instant<u32, NOM, DENOM>,
{
    #[inline]
    fn now(&self) -> ::fugit::Instant<u32, NOM, DENOM> {
        self()
    }
}

/// A [`FugitSource`] as an embedded-time [`Clock`] with the same ticks.
pub struct FugitClock<S, const NOM: u32, const DENOM: u32> {
    source: S,
}

impl<S, const NOM: u32, const DENOM: u32> fmt::Debug for FugitClock<S, NOM, DENOM> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FugitClock")
            .field("nom", &NOM)
            .field("denom", &DENOM)
            .finish()
    }
}

impl<S, const NOM: u32, const DENOM: u32> FugitClock<S, NOM, DENOM> {
    /// A clock reading `source`.
    pub const fn new(source: S) -> Self {
        const {
            assert!(
                NOM > 0 && DENOM > 0,
                "a tick of NOM / DENOM seconds, both > 0"
            )
        };
        Self { source }
    }

    /// The source, to reach the timer behind it.
    pub fn source(&self) -> &S {
        &self.source
    }
}

impl<S, const NOM: u32, const DENOM: u32> FugitClock<S, NOM, DENOM>
where
    S: FugitSource<NOM, DENOM>,
{
    /// A fugit instant as an instant of this clock (the same tick count).
    #[inline]
    pub fn instant(at: ::fugit::Instant<u32, NOM, DENOM>) -> Instant<Self> {
        Instant::new(at.ticks())
    }

    /// An instant of this clock as a fugit instant (the same tick count), for example the
    /// kernel's `next_deadline()` to program the timer's compare register.
    #[inline]
    pub fn to_fugit(at: Instant<Self>) -> ::fugit::Instant<u32, NOM, DENOM> {
        ::fugit::Instant::<u32, NOM, DENOM>::from_ticks(at.duration_since_epoch().integer())
    }

    /// The current instant.
    #[inline]
    pub fn now(&self) -> Instant<Self> {
        Self::instant(self.source.now())
    }
}

impl<S, const NOM: u32, const DENOM: u32> Clock for FugitClock<S, NOM, DENOM>
where
    S: FugitSource<NOM, DENOM>,
{
    type T = u32;
    const SCALING_FACTOR: Fraction = Fraction::new(NOM, DENOM);

    fn try_now(&self) -> Result<Instant<Self>, clock::Error> {
        Ok(self.now())
    }
}

/// A fugit duration of `NOM / DENOM`-second ticks, scaled to the clock's ticks (see
/// [`Delay`]).
impl<const NOM: u32, const DENOM: u32> Delay for ::fugit::Duration<u32, NOM, DENOM> {
    #[inline]
    fn in_ticks<C: Clock>(self) -> Option<u64> {
        let (num, by) = const {
            let c = C::SCALING_FACTOR;
            let (num, den) = reduce(
                NOM as u64 * *c.denominator() as u64,
                DENOM as u64 * *c.numerator() as u64,
            );
            (num, Divisor::new(den))
        };
        Some(by.div_ceil(
            u64::from(::fugit::Duration::<u32, NOM, DENOM>::ticks(&self)).checked_mul(num)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Component, Context, Event, Flow, Idle, Kernel, Kind, RouteError, Routes, Settings,
        UserEvent,
    };
    use core::sync::atomic::{AtomicU32, Ordering};
    use embedded_time::duration::Milliseconds;

    /// A 1 MHz fugit timer the test moves by hand (only the wrap test uses it).
    static TIMER: AtomicU32 = AtomicU32::new(0);

    fn read_timer() -> ::fugit::TimerInstantU32<1_000_000> {
        ::fugit::TimerInstantU32::from_ticks(TIMER.load(Ordering::Relaxed))
    }

    type Clk = FugitClock<fn() -> ::fugit::TimerInstantU32<1_000_000>, 1, 1_000_000>;

    #[derive(Debug, Clone)]
    struct Tick;

    impl UserEvent for Tick {
        const KINDS: usize = 1;
        fn kind(&self) -> usize {
            0
        }
        fn kind_name(_: usize) -> &'static str {
            "tick"
        }
    }

    struct Counter(u32);

    impl Component<Tick, Clk> for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
        fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
            routes.append(Kind::START)?;
            routes.append(Kind::user(0))
        }
        fn handle(&mut self, ctx: &mut Context<'_, Tick, Clk>, event: &mut Event<Tick>) -> Flow {
            match event {
                Event::Start => {
                    ctx.schedule_every(Milliseconds(10u32), Tick).unwrap();
                }
                _ => self.0 += 1,
            }
            Flow::Continue
        }
    }

    #[test]
    fn instants_cross_over_as_their_ticks() {
        let at = ::fugit::TimerInstantU32::<1_000_000>::from_ticks(u32::MAX - 3);
        let ours = Clk::instant(at);
        assert_eq!(ours.duration_since_epoch().integer(), u32::MAX - 3);
        assert_eq!(Clk::to_fugit(ours), at);
    }

    #[test]
    fn fugit_durations_are_delays() {
        // On the 1 MHz clock: exact.
        assert_eq!(
            ::fugit::MillisDurationU32::from_ticks(500).in_ticks::<Clk>(),
            Some(500_000)
        );
        // On a 1 kHz clock: a fraction of a tick rounds up.
        assert_eq!(
            ::fugit::MicrosDurationU32::from_ticks(1).in_ticks::<crate::ManualClock>(),
            Some(1)
        );
        assert_eq!(
            ::fugit::TimerDurationU32::<32_768>::from_ticks(33).in_ticks::<crate::ManualClock>(),
            Some(2)
        );
    }

    #[test]
    fn a_fugit_timer_drives_the_kernel_across_its_wrap() {
        // Starts 25 ms before the 32-bit wrap: a 10 ms period fires at the right microsecond
        // on both sides of it.
        TIMER.store(u32::MAX - 25_000, Ordering::Relaxed);
        let clock: Clk = FugitClock::new(read_timer);
        let mut counter = Counter(0);
        let mut kernel = Kernel::<'_, Tick, Clk, 1, { crate::kinds::<Tick>() }, 1, 4, 4>::new(
            Settings::default(),
        );
        kernel.add(&mut counter).unwrap();
        kernel.start(clock.now()).unwrap();
        assert_eq!(kernel.run_until_idle(clock.now()), Ok(Idle::Waiting));
        for step in 1..=5u32 {
            let next = kernel.next_deadline().unwrap();
            assert_eq!(
                Clk::to_fugit(next).ticks(),
                (u32::MAX - 25_000).wrapping_add(step * 10_000)
            );
            TIMER.store(Clk::to_fugit(next).ticks(), Ordering::Relaxed);
            assert_eq!(kernel.run_until_idle(clock.now()), Ok(Idle::Waiting));
        }
        drop(kernel);
        assert_eq!(counter.0, 5);
    }
}
