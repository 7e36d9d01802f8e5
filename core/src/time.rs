//! Time: the pluggable clock, a hand-driven clock for tests, and the wrap-safe timeline.
//!
//! The kernel works with any [`embedded_time::Clock`], so a HAL's timer peripheral, a
//! SysTick counter or the host's monotonic clock all plug in the same way. The kernel never
//! reads the clock itself: the host passes `now` into every call that needs it, which keeps
//! tests and simulations exact.
//!
//! # Why a timeline
//!
//! Tick counters of `u32` wrap (a 1 kHz counter every 49.7 days). Comparing raw tick values
//! across the wrap is only meaningful within half the wrap period, and a heap ordered by such a
//! comparison is no longer a total order once overdue and far-future deadlines are mixed.
//! [`Timeline`] therefore extends the clock's ticks into a `u64` that never wraps in practice:
//! each observed `now` adds the (wrapping) distance travelled since the previous one. Deadlines
//! are stored on that extended line, so ordering is a plain integer comparison.
//!
//! The one requirement on the host follows: it MUST pass `now` to the queue at least once per
//! wrap period of the clock (every call to `next`, `schedule*` or `advance` counts). A loop that
//! sleeps until the next deadline does so automatically, because a deadline can never lie more
//! than half a wrap period ahead.

use core::cell::Cell;

use embedded_time::duration::{Generic, Milliseconds};
use embedded_time::fixed_point::FixedPoint;
use embedded_time::fraction::Fraction;
use embedded_time::{Clock, Instant, TimeInt};

/// Tick integer types the kernel can extend onto its `u64` timeline (`u32` and `u64`).
///
/// embedded-time's [`TimeInt`] has no lossless conversion to `u64`; this trait adds it.
pub trait TickInt: TimeInt + core::hash::Hash {
    /// The largest value, widened.
    const MAX_U64: u64;
    /// The value as `u64`.
    fn widen(self) -> u64;
    /// The low bits of `v` (the tick value a clock of this width shows for timeline point `v`).
    fn truncate(v: u64) -> Self;
}

impl TickInt for u32 {
    const MAX_U64: u64 = u32::MAX as u64;
    #[inline]
    fn widen(self) -> u64 {
        u64::from(self)
    }
    #[inline]
    fn truncate(v: u64) -> Self {
        v as u32
    }
}

impl TickInt for u64 {
    const MAX_U64: u64 = u64::MAX;
    #[inline]
    fn widen(self) -> u64 {
        self
    }
    #[inline]
    fn truncate(v: u64) -> Self {
        v
    }
}

/// The furthest ahead (in ticks) a deadline may be scheduled on a clock of tick type `T`:
/// just under half its wrap period. Beyond it, an `Instant` of that clock could no longer
/// be told apart from one in the past.
pub const fn horizon_ticks(max: u64) -> u64 {
    max / 2
}

/// Converts a duration into ticks of clock `C`, rounding *up*, so that a deadline computed
/// from it is never earlier than asked for. `None` when it does not fit into `u64` ticks.
pub fn duration_to_ticks<C, D>(duration: D) -> Option<u64>
where
    C: Clock,
    D: FixedPoint,
    D::T: TickInt,
{
    fraction_to_ticks::<C>(duration.integer().widen(), D::SCALING_FACTOR)
}

/// `integer × scale` seconds in ticks of `C`, rounded up.
pub(crate) fn fraction_to_ticks<C: Clock>(integer: u64, scale: Fraction) -> Option<u64> {
    // ticks = integer * (s_num / s_den) / (c_num / c_den), in u128 so no step can overflow.
    let c = C::SCALING_FACTOR;
    let num = u128::from(integer) * u128::from(*scale.numerator()) * u128::from(*c.denominator());
    let den = u128::from(*scale.denominator()) * u128::from(*c.numerator());
    if den == 0 {
        return None;
    }
    u64::try_from(num.div_ceil(den)).ok()
}

/// A wrap-safe mapping from a clock's (possibly wrapping) ticks to a `u64` line that does not
/// wrap. See the module documentation for why, and for the one rule the host must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// The raw tick value last observed, widened.
    last_raw: u64,
    /// The timeline point that corresponds to `last_raw`.
    now: u64,
    /// Largest raw tick value (`u32::MAX` or `u64::MAX`).
    max: u64,
}

impl Timeline {
    /// A timeline for a clock whose tick type tops out at `max`, starting at raw tick `start`.
    ///
    /// The extended line starts at `start` as well, so logs and snapshots show familiar values.
    pub const fn new(max: u64, start: u64) -> Self {
        Self {
            last_raw: start,
            now: start,
            max,
        }
    }

    /// The current point on the timeline.
    #[inline]
    pub const fn now(&self) -> u64 {
        self.now
    }

    /// Takes in a new clock reading and returns the timeline's `now`.
    ///
    /// The clock is monotonic, so the wrapping distance from the previous reading is how far
    /// time moved (correct as long as readings come at least once per wrap period).
    #[inline]
    pub fn observe(&mut self, raw: u64) -> u64 {
        let delta = raw.wrapping_sub(self.last_raw) & self.max;
        self.last_raw = raw;
        self.now += delta;
        self.now
    }

    /// Places a raw tick value, as an `Instant` of the clock would carry it, on the timeline.
    ///
    /// The instant is taken as the nearest point within half a wrap period of `now`, the same
    /// reading embedded-time's `Ord` for `Instant` uses. Instants in the past come out as past
    /// points (they are due at once).
    #[inline]
    pub fn place(&self, raw: u64) -> u64 {
        let ahead = raw.wrapping_sub(self.last_raw) & self.max;
        if ahead <= horizon_ticks(self.max) {
            self.now + ahead
        } else {
            let behind = (self.max - ahead).wrapping_add(1);
            self.now.saturating_sub(behind)
        }
    }

    /// The raw tick value a clock shows at timeline point `point`.
    #[inline]
    pub fn raw_at(&self, point: u64) -> u64 {
        point & self.max
    }

    /// The latest deadline, measured from `now`, that [`place`](Self::place) would still read
    /// as future: `delay` ticks ahead is acceptable when `delay <= horizon()`.
    #[inline]
    pub const fn horizon(&self) -> u64 {
        horizon_ticks(self.max)
    }
}

/// A clock that only moves when told to: for tests, simulations and replay.
///
/// Ticks are milliseconds. Interior mutability lets a test hand `&clock` to several
/// components and still advance it. Start it near `T::MAX` to exercise the wrap.
///
/// ```
/// use zendaemon_core::time::ManualClock;
/// use embedded_time::{duration::Milliseconds, Clock};
///
/// let clock = ManualClock::<u32>::starting_at(u32::MAX - 5);
/// clock.advance(Milliseconds(10u32));
/// assert_eq!(clock.ticks(), 4); // wrapped
/// let _now = clock.try_now().unwrap();
/// ```
#[derive(Debug, Default)]
pub struct ManualClock<T: TickInt = u32> {
    ticks: Cell<T>,
}

impl<T: TickInt> ManualClock<T> {
    /// A clock at tick zero.
    pub fn new() -> Self {
        Self::starting_at(T::from(0))
    }

    /// A clock at the given tick.
    pub fn starting_at(ticks: T) -> Self {
        Self {
            ticks: Cell::new(ticks),
        }
    }

    /// The current tick value.
    pub fn ticks(&self) -> T {
        self.ticks.get()
    }

    /// The current instant (infallible, unlike [`Clock::try_now`]).
    pub fn now(&self) -> Instant<Self> {
        Instant::new(self.ticks.get())
    }

    /// Moves time forward by a whole number of milliseconds, wrapping like a hardware counter.
    pub fn advance(&self, by: Milliseconds<T>) {
        self.advance_ticks(by.integer());
    }

    /// Moves time forward by `ticks` (milliseconds), wrapping like a hardware counter.
    pub fn advance_ticks(&self, ticks: T) {
        self.ticks.set(self.ticks.get().wrapping_add(&ticks));
    }
}

impl<T: TickInt> Clock for ManualClock<T> {
    type T = T;
    const SCALING_FACTOR: Fraction = Fraction::new(1, 1_000);

    fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
        Ok(self.now())
    }
}

/// The raw tick value of an instant, widened.
pub fn instant_ticks<C: Clock>(instant: Instant<C>) -> u64
where
    C::T: TickInt,
{
    instant.duration_since_epoch().integer().widen()
}

/// A duration of `ticks` ticks of clock `C`, as embedded-time's generic duration.
///
/// # Panics
///
/// Never for durations the queue produces: they are below the clock's horizon.
pub fn ticks_duration<C: Clock>(ticks: u64) -> Generic<C::T>
where
    C::T: TickInt,
{
    Generic::new(C::T::truncate(ticks), C::SCALING_FACTOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_time::duration::{Microseconds, Seconds};

    #[test]
    fn timeline_extends_across_u32_wrap() {
        let mut line = Timeline::new(u32::MAX as u64, u64::from(u32::MAX - 2));
        assert_eq!(line.observe(u64::from(u32::MAX)), u64::from(u32::MAX));
        // Wraps to 3: five ticks later.
        assert_eq!(line.observe(3), u64::from(u32::MAX) + 4);
        assert_eq!(line.raw_at(line.now()), 3);
    }

    #[test]
    fn place_reads_future_and_past_around_now() {
        let line = Timeline::new(u32::MAX as u64, u64::from(u32::MAX - 2));
        let now = line.now();
        // A deadline just after the wrap is in the future.
        assert_eq!(line.place(5), now + 8);
        // One tick before now is in the past.
        assert_eq!(line.place(u64::from(u32::MAX - 3)), now - 1);
        // Exactly at the horizon is still future; one more is read as past.
        let h = line.horizon();
        assert_eq!(line.place((now + h) & u64::from(u32::MAX)), now + h);
        assert!(line.place((now + h + 1) & u64::from(u32::MAX)) < now);
    }

    #[test]
    fn durations_round_up_to_whole_ticks() {
        struct Khz32;
        impl Clock for Khz32 {
            type T = u32;
            const SCALING_FACTOR: Fraction = Fraction::new(1, 32_768);
            fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
                Ok(Instant::new(0))
            }
        }
        // 1 ms is 32.768 ticks: 33, never 32 (which would fire early).
        assert_eq!(duration_to_ticks::<Khz32, _>(Milliseconds(1u32)), Some(33));
        assert_eq!(
            duration_to_ticks::<ManualClock, _>(Seconds(2u32)),
            Some(2_000)
        );
        assert_eq!(
            duration_to_ticks::<ManualClock, _>(Microseconds(1u32)),
            Some(1)
        );
        assert_eq!(
            duration_to_ticks::<ManualClock, _>(Microseconds(0u32)),
            Some(0)
        );
    }

    #[test]
    fn manual_clock_wraps() {
        let clock = ManualClock::<u32>::starting_at(u32::MAX);
        clock.advance(Milliseconds(1u32));
        assert_eq!(clock.ticks(), 0);
        assert_eq!(instant_ticks(clock.now()), 0);
    }
}

/// Tests that close gaps a mutation run found (issue 16; see TESTING.md): the `u64` tick
/// path the daemon's own clock (`StdClock`) takes, and scaling factors whose numerator is not
/// 1, where multiplying and dividing by it would otherwise look the same.
#[cfg(test)]
mod strength {
    use super::*;
    use embedded_time::duration::Seconds;

    /// A clock with ticks of 3 ms: `u64` ticks and a scaling factor of 3/1000 s.
    #[derive(Debug)]
    struct ThreeMs;

    impl Clock for ThreeMs {
        type T = u64;
        const SCALING_FACTOR: Fraction = Fraction::new(3, 1_000);
        fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
            Ok(Instant::new(0))
        }
    }

    /// A duration counted in sevenths of three seconds (3/7 s).
    #[derive(Debug, Clone, Copy)]
    struct ThreeSevenths(u32);

    impl FixedPoint for ThreeSevenths {
        type T = u32;
        const SCALING_FACTOR: Fraction = Fraction::new(3, 7);
        fn new(value: u32) -> Self {
            Self(value)
        }
        fn integer(&self) -> u32 {
            self.0
        }
    }

    #[test]
    fn non_unit_scaling_factors_convert_exactly_and_round_up() {
        // 5 × 3/7 s = 2142.857… ms = 714.29 ticks of 3 ms: 715, never 714.
        assert_eq!(duration_to_ticks::<ThreeMs, _>(ThreeSevenths(5)), Some(715));
        // 7 × 3/7 s = 3 s = exactly 1000 ticks: no rounding.
        assert_eq!(
            duration_to_ticks::<ThreeMs, _>(ThreeSevenths(7)),
            Some(1_000)
        );
        // 10 ms is 3.33 ticks: 4. 9 ms is exactly 3.
        assert_eq!(
            duration_to_ticks::<ThreeMs, _>(Milliseconds(10u32)),
            Some(4)
        );
        assert_eq!(duration_to_ticks::<ThreeMs, _>(Milliseconds(9u64)), Some(3));
        // The same sevenths on a millisecond clock: 2142.857… → 2143.
        assert_eq!(
            duration_to_ticks::<ManualClock<u64>, _>(ThreeSevenths(5)),
            Some(2_143)
        );
        // Too many ticks for a u64.
        assert_eq!(duration_to_ticks::<ThreeMs, _>(Seconds(u64::MAX)), None);
        // The largest whole number of seconds that still fits, in u128 arithmetic.
        let most = u64::MAX / 1_000;
        assert_eq!(
            duration_to_ticks::<ThreeMs, _>(Seconds(most)),
            Some(most * 1_000 / 3)
        );
        assert_eq!(
            duration_to_ticks::<ThreeMs, _>(Seconds(most - 1)),
            Some(((most - 1) * 1_000).div_ceil(3))
        );
    }

    #[test]
    fn a_zero_scaling_factor_gives_none_instead_of_dividing_by_zero() {
        assert_eq!(fraction_to_ticks::<ThreeMs>(1, Fraction::new(1, 0)), None);
        assert_eq!(
            fraction_to_ticks::<ThreeMs>(1, Fraction::new(1, 1)),
            Some(334)
        );
    }

    #[test]
    fn u64_ticks_widen_and_truncate_losslessly() {
        let big = u64::from(u32::MAX) + 7;
        assert_eq!(<u64 as TickInt>::MAX_U64, u64::MAX);
        assert_eq!(big.widen(), big);
        assert_eq!(<u64 as TickInt>::truncate(big), big);
        assert_eq!(<u32 as TickInt>::truncate(big), 6);
        assert_eq!(7u32.widen(), 7);
        assert_eq!(horizon_ticks(u64::MAX), u64::MAX / 2);
        assert_eq!(horizon_ticks(u64::from(u32::MAX)), u64::from(u32::MAX / 2));
    }

    #[test]
    fn a_u64_manual_clock_counts_past_u32_and_reads_the_same_everywhere() {
        let clock = ManualClock::<u64>::starting_at(u64::from(u32::MAX) - 1);
        clock.advance(Milliseconds(3u64));
        assert_eq!(clock.ticks(), u64::from(u32::MAX) + 2);
        clock.advance_ticks(10);
        let ticks = u64::from(u32::MAX) + 12;
        assert_eq!(clock.ticks(), ticks);
        assert_eq!(instant_ticks(clock.now()), ticks);
        assert_eq!(clock.try_now(), Ok(clock.now()));
        assert_eq!(instant_ticks(clock.try_now().unwrap()), ticks);
        // A u64 counter wraps too, like hardware.
        let clock = ManualClock::<u64>::starting_at(u64::MAX);
        clock.advance_ticks(2);
        assert_eq!(clock.ticks(), 1);
        assert_eq!(ManualClock::<u64>::new().ticks(), 0);
    }

    #[test]
    fn a_u32_manual_clock_answers_try_now_with_its_ticks() {
        let clock = ManualClock::<u32>::starting_at(41);
        clock.advance(Milliseconds(1u32));
        assert_eq!(clock.try_now(), Ok(Instant::new(42)));
    }

    #[test]
    fn a_u64_timeline_is_the_clock_itself() {
        let start = u64::from(u32::MAX) + 100;
        let mut line = Timeline::new(u64::MAX, start);
        assert_eq!(line.now(), start);
        assert_eq!(line.horizon(), u64::MAX / 2);
        assert_eq!(line.observe(start + 5), start + 5);
        assert_eq!(line.observe(start + (1 << 33)), start + (1 << 33));
        let now = line.now();
        // Ahead and behind, without any wrap.
        assert_eq!(line.place(now + 10), now + 10);
        assert_eq!(line.place(now - 10), now - 10);
        assert_eq!(line.place(now + line.horizon()), now + line.horizon());
        assert_eq!(line.raw_at(now + 3), now + 3);
    }

    #[test]
    fn ticks_duration_carries_the_clock_scaling_factor() {
        let d = ticks_duration::<ThreeMs>(u64::from(u32::MAX) + 1);
        assert_eq!(d.integer(), u64::from(u32::MAX) + 1);
        assert_eq!(*d.scaling_factor(), Fraction::new(3, 1_000));
        let d = ticks_duration::<ManualClock<u32>>(25);
        assert_eq!(
            (d.integer(), *d.scaling_factor()),
            (25, Fraction::new(1, 1_000))
        );
    }
}
