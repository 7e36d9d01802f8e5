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
//! sleeps until the next deadline does so automatically, because a deadline always lies less
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

/// A span of time the kernel takes as a delay, a period or a timeout: [`core::time::Duration`]
/// (what every Rust user knows, also in `no_std`) or one of embedded-time's `u32` durations
/// (`Milliseconds(500)`, `Seconds(2)`, …).
///
/// Only the `u32` flavour of each embedded-time duration implements it, so an unsuffixed
/// literal such as `Milliseconds(500)` infers `u32` instead of failing on `i32`.
///
/// # Conversion cost
///
/// [`ticks`](Self::in_ticks) scales by the ratio of the span's unit to the clock's tick, and both
/// are constants: the ratio is reduced at compile time (an inline `const` block), and what is
/// left of the division at run time is a multiplication by a precomputed reciprocal with one
/// correction step ([`Divisor`]). So no 64- or 128-bit division (`__aeabi_uldivmod`,
/// `__udivti3`) is linked in for it on a 32-bit MCU.
///
/// ```
/// use core::time::Duration;
/// use zendaemon_core::embedded_time::duration::Milliseconds;
/// use zendaemon_core::{Delay, ManualClock};
///
/// assert_eq!(Milliseconds(500).in_ticks::<ManualClock>(), Some(500));
/// assert_eq!(Duration::from_millis(500).in_ticks::<ManualClock>(), Some(500));
/// // A fraction of a tick rounds up: a timer never fires early.
/// assert_eq!(Duration::from_micros(1).in_ticks::<ManualClock>(), Some(1));
/// ```
pub trait Delay: Copy {
    /// The span in ticks of clock `C`, rounded up, so that a deadline computed from it is
    /// never earlier than asked for. `None` when it does not fit into `u64` ticks (far beyond
    /// any clock's horizon).
    fn in_ticks<C: Clock>(self) -> Option<u64>;
}

impl Delay for core::time::Duration {
    #[inline]
    fn in_ticks<C: Clock>(self) -> Option<u64> {
        // ticks = (secs + nanos / 1e9) · den / num for a clock of `num / den` seconds a tick.
        // With R / S = den / num reduced: secs · R = q · S + r, and
        // ticks = q + ceil((r · 1e9 + nanos · R) / (S · 1e9)), every term below 2^63.
        let (r_num, by_s, by_s_ns) = const {
            let c = C::SCALING_FACTOR;
            let (r_num, s_den) = reduce(*c.denominator() as u64, *c.numerator() as u64);
            (
                r_num,
                Divisor::new(s_den),
                Divisor::new(s_den * NANOS_PER_SECOND),
            )
        };
        let (q, r) = by_s.div_rem(self.as_secs().checked_mul(r_num)?);
        let rest = r * NANOS_PER_SECOND + u64::from(self.subsec_nanos()) * r_num;
        q.checked_add(by_s_ns.div_ceil(rest))
    }
}

/// `units` of `NUM / DEN` seconds each in ticks of clock `C`, rounded up; `None` when they
/// do not fit into `u64` ticks. The ratio to the clock's tick is reduced at compile time, so
/// no division runs for it (see [`Delay`]). For implementing [`Delay`] on a duration type of
/// one's own:
///
/// ```
/// use zendaemon_core::embedded_time::Clock;
/// use zendaemon_core::time::units_to_ticks;
/// use zendaemon_core::{Delay, ManualClock};
///
/// /// Sevenths of three seconds.
/// #[derive(Clone, Copy)]
/// struct ThreeSevenths(u32);
///
/// impl Delay for ThreeSevenths {
///     fn in_ticks<C: Clock>(self) -> Option<u64> {
///         units_to_ticks::<C, 3, 7>(self.0.into())
///     }
/// }
///
/// // 5 × 3/7 s = 2142.857… ms: 2143 ticks of a millisecond clock, never 2142.
/// assert_eq!(ThreeSevenths(5).in_ticks::<ManualClock>(), Some(2_143));
/// ```
#[inline]
pub fn units_to_ticks<C: Clock, const NUM: u64, const DEN: u64>(units: u64) -> Option<u64> {
    let (num, by) = const {
        let c = C::SCALING_FACTOR;
        assert!(
            NUM <= u32::MAX as u64 && DEN <= u32::MAX as u64,
            "NUM and DEN fit into u32"
        );
        let (num, den) = reduce(NUM * *c.denominator() as u64, DEN * *c.numerator() as u64);
        (num, Divisor::new(den))
    };
    Some(by.div_ceil(units.checked_mul(num)?))
}

/// Implements [`Delay`] for embedded-time's `u32` durations, whose unit is `$num / $den` s.
macro_rules! delay_for_embedded_time {
    ($($ty:ident = $num:literal / $den:literal),*) => {$(
        impl Delay for embedded_time::duration::$ty<u32> {
            #[inline]
            fn in_ticks<C: Clock>(self) -> Option<u64> {
                units_to_ticks::<C, $num, $den>(u64::from(self.integer()))
            }
        }
    )*};
}

delay_for_embedded_time!(
    Hours = 3600 / 1,
    Minutes = 60 / 1,
    Seconds = 1 / 1,
    Milliseconds = 1 / 1_000,
    Microseconds = 1 / 1_000_000,
    Nanoseconds = 1 / 1_000_000_000
);

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// `(a, b)` divided by their greatest common divisor (`b` at least 1). For `const` blocks;
/// `#[inline]` keeps it (and its divisions) out of the object code when only they call it.
#[inline]
pub(crate) const fn reduce(a: u64, b: u64) -> (u64, u64) {
    assert!(
        b > 0,
        "a clock's or a duration's scaling factor must not be zero"
    );
    let (mut x, mut y) = (a, b);
    while y != 0 {
        let t = x % y;
        x = y;
        y = t;
    }
    (a / x, b / x)
}

/// Division by a divisor known at compile time, without a division instruction or call at run
/// time: a multiplication by the precomputed reciprocal `⌊(2^64 − 1) / d⌋` gives the quotient
/// or one less, and one comparison corrects it (exact for every `u64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Divisor {
    d: u64,
    reciprocal: u64,
}

impl Divisor {
    /// A divisor of `d` (at least 1). Meant for a `const` block: computing the reciprocal
    /// divides.
    #[inline]
    pub const fn new(d: u64) -> Self {
        assert!(d > 0, "division by zero");
        Self {
            d,
            reciprocal: if d == 1 { 0 } else { u64::MAX / d },
        }
    }

    /// `(y / d, y % d)`.
    #[inline]
    pub fn div_rem(self, y: u64) -> (u64, u64) {
        if self.d == 1 {
            return (y, 0);
        }
        // reciprocal > 2^64 / d − 1, so y · reciprocal / 2^64 > y / d − 1: the estimate is the
        // quotient or one less.
        let mut q = mul_high(y, self.reciprocal);
        let mut r = y - q * self.d;
        if r >= self.d {
            q += 1;
            r -= self.d;
        }
        (q, r)
    }

    /// `y / d`, rounded up.
    #[inline]
    pub fn div_ceil(self, y: u64) -> u64 {
        let (q, r) = self.div_rem(y);
        q + u64::from(r != 0)
    }
}

/// The high 64 bits of `a · b`.
#[inline]
fn mul_high(a: u64, b: u64) -> u64 {
    if cfg!(target_pointer_width = "64") {
        ((u128::from(a) * u128::from(b)) >> 64) as u64
    } else {
        mul_high_by_halves(a, b)
    }
}

/// [`mul_high`] with four 32 × 32 → 64 multiplications (one `umull` each on Cortex-M3 and
/// up), rather than a call to a 128-bit multiplication on 32-bit targets.
#[inline]
fn mul_high_by_halves(a: u64, b: u64) -> u64 {
    let (a0, a1) = (a & 0xffff_ffff, a >> 32);
    let (b0, b1) = (b & 0xffff_ffff, b >> 32);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let mid = (p00 >> 32) + (p01 & 0xffff_ffff) + (p10 & 0xffff_ffff);
    p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32)
}

/// A clock whose time is never read: a fixed tick rate for conversions (and tests).
macro_rules! fixed_rate_clock {
    ($(#[$meta:meta])* $name:ident, $tick:ty, $num:expr, $den:expr) => {
        $(#[$meta])*
        struct $name;
        impl Clock for $name {
            type T = $tick;
            const SCALING_FACTOR: Fraction = Fraction::new($num, $den);
            fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
                Ok(Instant::new(0))
            }
        }
    };
}

/// A span in whole milliseconds, rounded up and saturated at `u32::MAX` (49.7 days): how
/// [`Settings`](crate::Settings) keeps the delays it is given.
pub fn to_millis(span: impl Delay) -> Milliseconds<u32> {
    fixed_rate_clock!(
        /// A clock of millisecond ticks, for the conversion only.
        Millis,
        u32,
        1,
        1_000
    );
    let ms = span.in_ticks::<Millis>().unwrap_or(u64::MAX);
    Milliseconds(u32::try_from(ms).unwrap_or(u32::MAX))
}

/// Converts a span into ticks of clock `C`, rounding *up*, so that a deadline computed from
/// it is never earlier than asked for. `None` when it does not fit into `u64` ticks.
#[inline]
pub fn duration_to_ticks<C: Clock, D: Delay>(span: D) -> Option<u64> {
    span.in_ticks::<C>()
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
    use embedded_time::duration::{Hours, Microseconds, Minutes, Nanoseconds, Seconds};

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

    fixed_rate_clock!(
        /// A clock of 3/1000 s ticks: no whole number of ticks per second or per millisecond.
        Tick3ms,
        u32,
        3,
        1_000
    );

    fixed_rate_clock!(
        /// A 32.768 kHz clock.
        Khz32,
        u32,
        1,
        32_768
    );

    fixed_rate_clock!(
        /// A 1 GHz clock with `u64` ticks.
        Ghz,
        u64,
        1,
        1_000_000_000
    );

    /// `d` in ticks of `C` the slow way (u128 arithmetic with a division), rounded up.
    fn reference<C: Clock>(d: core::time::Duration) -> Option<u64> {
        let c = C::SCALING_FACTOR;
        let nanos = d.as_nanos();
        let num = nanos * u128::from(*c.denominator());
        let den = 1_000_000_000 * u128::from(*c.numerator());
        u64::try_from(num.div_ceil(den)).ok()
    }

    /// A deterministic stream of `u64`s (SplitMix64).
    fn stream(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d1_049b_d133_111e);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn divisor_agrees_with_division() {
        let mut next = stream(1);
        let divisors = [
            1,
            2,
            3,
            7,
            125,
            1_000,
            3_000_000,
            1_000_000_000,
            3_000_000_000,
            (1 << 32) - 1,
            1 << 32,
            (1 << 32) + 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        let random: std::vec::Vec<u64> = (0..200).map(|_| next() >> (next() % 64)).collect();
        for d in divisors.into_iter().chain(random).filter(|&d| d > 0) {
            let div = Divisor::new(d);
            let mut ys = std::vec![0, 1, d - 1, d, d.saturating_add(1), u64::MAX - 1, u64::MAX];
            ys.extend((0..200).map(|_| next()));
            for y in ys {
                assert_eq!(div.div_rem(y), (y / d, y % d), "{y} / {d}");
                assert_eq!(div.div_ceil(y), y.div_ceil(d), "ceil {y} / {d}");
            }
        }
    }

    #[test]
    fn the_32_bit_high_multiplication_agrees_with_u128() {
        let mut next = stream(4);
        let edges = [0, 1, u64::from(u32::MAX), 1 << 32, u64::MAX - 1, u64::MAX];
        let mut values: std::vec::Vec<u64> = edges.to_vec();
        values.extend((0..300).map(|_| next()));
        for &a in &values {
            for &b in &values {
                let wide = ((u128::from(a) * u128::from(b)) >> 64) as u64;
                assert_eq!(mul_high_by_halves(a, b), wide, "{a} * {b}");
            }
        }
    }

    #[test]
    fn std_durations_convert_exactly_and_never_early() {
        use core::time::Duration;
        // 3 ms ticks: a fraction of a tick rounds up.
        assert_eq!(Duration::ZERO.in_ticks::<Tick3ms>(), Some(0));
        assert_eq!(Duration::from_nanos(1).in_ticks::<Tick3ms>(), Some(1));
        assert_eq!(Duration::from_millis(3).in_ticks::<Tick3ms>(), Some(1));
        assert_eq!(Duration::from_micros(3_001).in_ticks::<Tick3ms>(), Some(2));
        assert_eq!(Duration::from_secs(3).in_ticks::<Tick3ms>(), Some(1_000));
        assert_eq!(Duration::new(3, 1).in_ticks::<Tick3ms>(), Some(1_001));
        assert_eq!(Duration::from_secs(1).in_ticks::<Tick3ms>(), Some(334));
        // 1 ms is 32.768 ticks of a 32 kHz clock: 33, never 32.
        assert_eq!(Duration::from_millis(1).in_ticks::<Khz32>(), Some(33));
        assert_eq!(Duration::from_secs(1).in_ticks::<Khz32>(), Some(32_768));
        // Beyond u64 ticks: refused, not wrapped.
        assert_eq!(Duration::MAX.in_ticks::<Ghz>(), None);
        assert_eq!(Duration::MAX.in_ticks::<ManualClock>(), None);
        // Against the slow reference, over every scale of duration.
        let mut next = stream(2);
        for _ in 0..20_000 {
            let secs = next() >> (next() % 64);
            let d = Duration::new(secs, (next() % 1_000_000_000) as u32);
            for (got, want) in [
                (d.in_ticks::<Tick3ms>(), reference::<Tick3ms>(d)),
                (d.in_ticks::<Khz32>(), reference::<Khz32>(d)),
                (d.in_ticks::<Ghz>(), reference::<Ghz>(d)),
                (d.in_ticks::<ManualClock>(), reference::<ManualClock>(d)),
            ] {
                // `None` only where the exact figure does not fit (or `secs · rate` overflows,
                // which is beyond every horizon too).
                match got {
                    Some(t) => assert_eq!(Some(t), want, "{d:?}"),
                    None => assert!(want.is_none_or(|w| w > u64::MAX / 4), "{d:?}"),
                }
            }
        }
    }

    #[test]
    fn embedded_time_durations_convert_exactly_and_never_early() {
        // Unsuffixed literals infer `u32`: `Milliseconds(500)` compiles.
        assert_eq!(Milliseconds(500).in_ticks::<ManualClock>(), Some(500));
        assert_eq!(Milliseconds(1).in_ticks::<Tick3ms>(), Some(1));
        assert_eq!(Milliseconds(3).in_ticks::<Tick3ms>(), Some(1));
        assert_eq!(Milliseconds(4).in_ticks::<Tick3ms>(), Some(2));
        assert_eq!(Seconds(3).in_ticks::<Tick3ms>(), Some(1_000));
        assert_eq!(Microseconds(1).in_ticks::<Tick3ms>(), Some(1));
        assert_eq!(Nanoseconds(0).in_ticks::<Tick3ms>(), Some(0));
        assert_eq!(Hours(1).in_ticks::<Tick3ms>(), Some(1_200_000));
        assert_eq!(Minutes(1).in_ticks::<Khz32>(), Some(60 * 32_768));
        assert_eq!(
            Seconds(u32::MAX).in_ticks::<Tick3ms>(),
            Some(u64::from(u32::MAX) / 3 * 1_000)
        );
        assert_eq!(Hours(u32::MAX).in_ticks::<Ghz>(), None);
        // Against the slow reference.
        let mut next = stream(3);
        for _ in 0..20_000 {
            let n = (next() >> (next() % 32)) as u32;
            let ms = core::time::Duration::from_millis(n.into());
            assert_eq!(
                Milliseconds(n).in_ticks::<Tick3ms>(),
                reference::<Tick3ms>(ms)
            );
            assert_eq!(Milliseconds(n).in_ticks::<Khz32>(), reference::<Khz32>(ms));
            let us = core::time::Duration::from_micros(n.into());
            assert_eq!(
                Microseconds(n).in_ticks::<Tick3ms>(),
                reference::<Tick3ms>(us)
            );
        }
    }

    #[test]
    fn to_millis_rounds_up_and_saturates() {
        use core::time::Duration;
        assert_eq!(to_millis(Duration::from_micros(1)), Milliseconds(1u32));
        assert_eq!(to_millis(Seconds(2)), Milliseconds(2_000u32));
        assert_eq!(to_millis(Duration::MAX), Milliseconds(u32::MAX));
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

    fixed_rate_clock!(
        /// A clock with ticks of 3 ms: `u64` ticks and a scaling factor of 3/1000 s.
        #[derive(Debug)]
        ThreeMs,
        u64,
        3,
        1_000
    );

    /// A duration counted in sevenths of three seconds (3/7 s).
    #[derive(Debug, Clone, Copy)]
    struct ThreeSevenths(u32);

    impl Delay for ThreeSevenths {
        fn in_ticks<C: Clock>(self) -> Option<u64> {
            units_to_ticks::<C, 3, 7>(self.0.into())
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
        assert_eq!(duration_to_ticks::<ThreeMs, _>(Milliseconds(9u32)), Some(3));
        // The same sevenths on a millisecond clock: 2142.857… → 2143.
        assert_eq!(
            duration_to_ticks::<ManualClock<u64>, _>(ThreeSevenths(5)),
            Some(2_143)
        );
        // Too many ticks for a u64.
        assert_eq!(
            duration_to_ticks::<ThreeMs, _>(core::time::Duration::from_secs(u64::MAX)),
            None
        );
        // The largest whole number of seconds that still fits, in u128 arithmetic.
        let most = u64::MAX / 1_000;
        assert_eq!(
            duration_to_ticks::<ThreeMs, _>(core::time::Duration::from_secs(most)),
            Some(most * 1_000 / 3)
        );
        assert_eq!(
            duration_to_ticks::<ThreeMs, _>(core::time::Duration::from_secs(most - 1)),
            Some(((most - 1) * 1_000).div_ceil(3))
        );
    }

    // A zero scaling factor no longer reaches run time: the ratio is reduced in a `const`
    // block, whose assertion makes it a compile-time error.
    #[test]
    fn a_second_is_a_third_of_a_thousand_three_ms_ticks_rounded_up() {
        assert_eq!(Seconds(1u32).in_ticks::<ThreeMs>(), Some(334));
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
