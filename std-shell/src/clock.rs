//! The host's monotonic clock as an [`embedded_time::Clock`] for the kernel.
//!
//! [`StdClock`] counts microseconds (`u64` ticks) since a process-wide origin: the first time
//! any `StdClock` function runs. It reads [`std::time::Instant`], which is `CLOCK_MONOTONIC` on
//! Linux: it never goes back, and a change of the wall clock (NTP, an operator's `date`) does
//! not move the kernel's timers (pyzenkit's timers ran on `time.time()`).
//!
//! # Why these choices
//!
//! * Microseconds: fine enough that rounding never matters next to the wake-up latency of a
//!   sleeping loop (tens of microseconds), and a `u64` of them lasts 584,000 years, so the
//!   kernel's wrap-safe timeline never has to extend anything.
//! * One origin for the process (not per value): every `StdClock` agrees, so an instant taken
//!   from one can be handed to another, and [`StdClock::to_std`] / [`StdClock::from_std`] are
//!   plain functions. The origin survives `fork` (the monotonic clock is system-wide).
//! * Conversions round so the loop never wakes early: [`StdClock::from_std`] truncates (a
//!   reading is at most one microsecond behind the truth, so a timer is at most that late),
//!   [`StdClock::to_std`] is exact.

use std::sync::OnceLock;
use std::time::{Duration, Instant as StdInstant};

use embedded_time::fraction::Fraction;
use embedded_time::{Clock, Instant};

/// The process-wide origin of [`StdClock`]'s ticks.
static ORIGIN: OnceLock<StdInstant> = OnceLock::new();

/// The monotonic clock of the host, in microseconds since the process's first use of it.
///
/// A zero-sized handle: every value reads the same clock.
///
/// ```
/// use embedded_time::Clock;
/// use zendaemon::clock::StdClock;
///
/// let a = StdClock::now();
/// let b = StdClock.try_now().unwrap();
/// assert!(b >= a);
/// // Round trip through std's Instant, for the loop's deadlines.
/// assert_eq!(StdClock::from_std(StdClock::to_std(a).unwrap()), a);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StdClock;

impl StdClock {
    /// The std instant that is tick 0.
    pub fn origin() -> StdInstant {
        *ORIGIN.get_or_init(StdInstant::now)
    }

    /// The current instant (infallible, unlike [`Clock::try_now`]).
    pub fn now() -> Instant<StdClock> {
        Self::from_std(StdInstant::now())
    }

    /// The kernel instant of a std instant, truncated to the microsecond. Instants before the
    /// origin become tick 0.
    pub fn from_std(t: StdInstant) -> Instant<StdClock> {
        let since = t.saturating_duration_since(Self::origin());
        Instant::new(u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
    }

    /// The std instant of a kernel instant, for
    /// [`Signals::wait_until`](crate::signals::Signals::wait_until). `None` when std cannot
    /// represent it (further ahead than the platform's `Instant` reaches): wait for ever.
    pub fn to_std(instant: Instant<StdClock>) -> Option<StdInstant> {
        Self::origin().checked_add(Duration::from_micros(Self::ticks(instant)))
    }

    /// The tick count (microseconds since the origin) of an instant.
    pub fn ticks(instant: Instant<StdClock>) -> u64 {
        instant.duration_since_epoch().integer()
    }
}

impl Clock for StdClock {
    type T = u64;
    const SCALING_FACTOR: Fraction = Fraction::new(1, 1_000_000);

    fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
        Ok(Self::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_time::duration::{Microseconds, Milliseconds};

    #[test]
    fn ticks_are_microseconds_since_the_origin() {
        let origin = StdClock::origin();
        assert_eq!(StdClock::ticks(StdClock::from_std(origin)), 0);
        let later = origin + Duration::from_millis(1500);
        assert_eq!(StdClock::ticks(StdClock::from_std(later)), 1_500_000);
        // Sub-microsecond parts are truncated: never ahead of the real time.
        let odd = origin + Duration::from_nanos(2_999);
        assert_eq!(StdClock::ticks(StdClock::from_std(odd)), 2);
    }

    #[test]
    fn before_the_origin_is_tick_zero() {
        let origin = StdClock::origin();
        if let Some(before) = origin.checked_sub(Duration::from_secs(1)) {
            assert_eq!(StdClock::ticks(StdClock::from_std(before)), 0);
        }
    }

    #[test]
    fn round_trip_is_exact_on_whole_microseconds() {
        let i: Instant<StdClock> = Instant::new(123_456_789);
        let std = StdClock::to_std(i).unwrap();
        assert_eq!(std - StdClock::origin(), Duration::from_micros(123_456_789));
        assert_eq!(StdClock::from_std(std), i);
    }

    #[test]
    fn the_far_future_does_not_panic() {
        // Whether std reaches 584,000 years ahead depends on the platform: no panic either way.
        let _ = StdClock::to_std(Instant::new(u64::MAX));
    }

    #[test]
    fn now_is_monotonic_and_durations_convert() {
        let a = StdClock::now();
        let b = StdClock.try_now().unwrap();
        assert!(b >= a);
        let later = a + Milliseconds(5u64);
        assert_eq!(StdClock::ticks(later) - StdClock::ticks(a), 5_000);
        let later = a + Microseconds(7u64);
        assert_eq!(StdClock::ticks(later) - StdClock::ticks(a), 7);
    }
}
