//! Statistics: per-component counters with pyzenkit's `cnt` / `inc` / `spd` / `pct` snapshots,
//! and the kernel's own figures.
//!
//! # How rates are computed without an FPU
//!
//! A snapshot compares each counter with its value at the previous snapshot, over the clock
//! ticks between the two. Everything is integer arithmetic in `u128` (so no product can
//! overflow): `spd` and `pct` are kept in thousandths (`spd_milli = inc · 1000 · ticks_per_s /
//! elapsed_ticks`, truncated). Only serialization turns them into decimal numbers
//! (`spd_milli / 1000`), so a Cortex-M0 pays for float formatting only when it writes JSON.
//!
//! `pct` keeps pyzenkit's meaning: the share of the current count that is new since the
//! previous snapshot (`inc / cnt · 100`), not the growth against the previous value.
//! A snapshot over zero elapsed time gives a rate of 0 instead of pyzenkit's division by zero.

use core::fmt;

/// Names a counter registered with [`Counters::register`], for the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CounterId(u8);

/// The counter table is full: the key could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CountersFull;

impl fmt::Display for CountersFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("counter table full")
    }
}

impl core::error::Error for CountersFull {}

/// Up to `N` named counters of one component, with their values at the previous snapshot.
#[derive(Debug, Clone)]
pub struct Counters<const N: usize> {
    keys: [&'static str; N],
    current: [u64; N],
    previous: [u64; N],
    len: usize,
    /// The timeline tick of the previous snapshot; `None` before the first.
    previous_at: Option<u64>,
}

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Counters<N> {
    /// An empty table.
    pub const fn new() -> Self {
        const { assert!(N > 0 && N <= 255, "between 1 and 255 counters") };
        Self {
            keys: [""; N],
            current: [0; N],
            previous: [0; N],
            len: 0,
            previous_at: None,
        }
    }

    /// Adds a counter (or finds an existing one) and returns its id for [`inc_id`](Self::inc_id).
    pub fn register(&mut self, key: &'static str) -> Result<CounterId, CountersFull> {
        if let Some(i) = self.position(key) {
            return Ok(CounterId(i as u8));
        }
        if self.len == N {
            return Err(CountersFull);
        }
        self.keys[self.len] = key;
        self.len += 1;
        Ok(CounterId((self.len - 1) as u8))
    }

    /// Adds `n` to the counter `key`, registering it on first use.
    pub fn inc(&mut self, key: &'static str, n: u64) -> Result<(), CountersFull> {
        let id = self.register(key)?;
        self.inc_id(id, n);
        Ok(())
    }

    /// Adds `n` to a registered counter: no lookup, for hot paths.
    pub fn inc_id(&mut self, id: CounterId, n: u64) {
        let c = &mut self.current[usize::from(id.0)];
        *c = c.saturating_add(n);
    }

    /// The current value of `key` (0 if absent).
    pub fn get(&self, key: &str) -> u64 {
        self.position(key).map_or(0, |i| self.current[i])
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.keys[..self.len].iter().position(|k| *k == key)
    }
}

/// Read access to a component's counters, whatever their capacity (object-safe, so the kernel
/// can hold components of different types).
pub trait CounterSet {
    /// Number of counters.
    fn len(&self) -> usize;
    /// True without counters.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Counter `i`: its key, current value and value at the previous snapshot.
    fn entry(&self, i: usize) -> (&'static str, u64, u64);
    /// The timeline tick of the previous snapshot.
    fn previous_at(&self) -> Option<u64>;
    /// Makes the current values the baseline of the next snapshot.
    fn rotate(&mut self, now: u64);
}

impl<const N: usize> CounterSet for Counters<N> {
    fn len(&self) -> usize {
        self.len
    }
    fn entry(&self, i: usize) -> (&'static str, u64, u64) {
        (self.keys[i], self.current[i], self.previous[i])
    }
    fn previous_at(&self) -> Option<u64> {
        self.previous_at
    }
    fn rotate(&mut self, now: u64) {
        self.previous = self.current;
        self.previous_at = Some(now);
    }
}

/// One counter in a snapshot (pyzenkit's `{cnt, inc, spd, pct}`), in integer form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rate {
    /// The current count.
    pub cnt: u64,
    /// Increase since the previous snapshot.
    pub inc: u64,
    /// Increase per second, in thousandths.
    pub spd_milli: u64,
    /// Increase as a share of the current count, in thousandths of a percent.
    pub pct_milli: u64,
}

impl Rate {
    /// Computes a counter's rate between two snapshots `elapsed_ticks` apart on a clock with
    /// `ticks_per_second` (from the clock's scaling factor; may be a fraction, hence `num/den`).
    pub fn compute(cnt: u64, prev: u64, elapsed_ticks: u64, ticks_per_s: (u64, u64)) -> Rate {
        let inc = cnt.saturating_sub(prev);
        let (tps_num, tps_den) = ticks_per_s;
        let spd_milli = if elapsed_ticks == 0 || tps_den == 0 {
            0
        } else {
            let num = u128::from(inc) * 1000 * u128::from(tps_num);
            let den = u128::from(elapsed_ticks) * u128::from(tps_den);
            u64::try_from(num / den).unwrap_or(u64::MAX)
        };
        let pct_milli = if cnt == 0 {
            0
        } else {
            (u128::from(inc) * 100_000 / u128::from(cnt)) as u64
        };
        Rate {
            cnt,
            inc,
            spd_milli,
            pct_milli,
        }
    }

    /// `spd` as a decimal number (only for output).
    pub fn spd(&self) -> f64 {
        self.spd_milli as f64 / 1000.0
    }

    /// `pct` as a decimal number (only for output).
    pub fn pct(&self) -> f64 {
        self.pct_milli as f64 / 1000.0
    }
}

/// Number of buckets in [`Lateness`]'s histogram.
pub const LATENESS_BUCKETS: usize = 12;

/// How late timed events were dispatched, in clock ticks: the maximum, the sum (for a mean,
/// and a Prometheus histogram's `_sum`) and a histogram with power-of-four buckets (`0`,
/// `1..4`, `4..16`, … ; the last takes everything above).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Lateness {
    /// The latest dispatch so far, in ticks.
    pub max_ticks: u64,
    /// All dispatches' lateness added up, in ticks (saturating).
    pub sum_ticks: u64,
    /// Dispatches per bucket.
    pub buckets: [u32; LATENESS_BUCKETS],
}

impl Lateness {
    /// Records one dispatch `ticks` late.
    #[inline]
    pub fn record(&mut self, ticks: u64) {
        self.max_ticks = self.max_ticks.max(ticks);
        self.sum_ticks = self.sum_ticks.saturating_add(ticks);
        let b = Self::bucket(ticks);
        self.buckets[b] = self.buckets[b].saturating_add(1);
    }

    /// The bucket for `ticks`: 0 for on time, then one per factor of four.
    #[inline]
    pub fn bucket(ticks: u64) -> usize {
        if ticks == 0 {
            0
        } else {
            let log4 = (63 - ticks.leading_zeros() as usize) / 2;
            (log4 + 1).min(LATENESS_BUCKETS - 1)
        }
    }

    /// The smallest tick count that falls into bucket `b` (its lower bound).
    pub fn bucket_floor(b: usize) -> u64 {
        if b == 0 {
            0
        } else {
            1u64 << (2 * (b - 1))
        }
    }

    /// Total dispatches recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|&b| u64::from(b)).sum()
    }
}

/// The kernel's own figures, with `K` event kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KernelStats<const K: usize> {
    /// Events dispatched, per kind.
    pub dispatched: [u64; K],
    /// User events that had no handler.
    pub unhandled: u64,
    /// Stop requests received.
    pub stop_requests: u32,
    /// Events posted by interrupts or signal handlers that had to wait in the inbox because
    /// the sequential queue was full.
    pub inbox_deferred: u64,
    /// Timed event lateness.
    pub lateness: Lateness,
}

impl<const K: usize> Default for KernelStats<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const K: usize> KernelStats<K> {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            dispatched: [0; K],
            unhandled: 0,
            stop_requests: 0,
            inbox_deferred: 0,
            lateness: Lateness {
                max_ticks: 0,
                sum_ticks: 0,
                buckets: [0; LATENESS_BUCKETS],
            },
        }
    }

    /// Events dispatched in all.
    pub fn total_dispatched(&self) -> u64 {
        self.dispatched.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_register_and_count() {
        let mut c = Counters::<2>::new();
        let id = c.register("work").unwrap();
        c.inc_id(id, 3);
        c.inc("work", 2).unwrap();
        c.inc("other", 1).unwrap();
        assert_eq!(c.inc("third", 1), Err(CountersFull));
        assert_eq!((c.get("work"), c.get("other"), c.get("none")), (5, 1, 0));
        assert_eq!(CounterSet::len(&c), 2);
    }

    #[test]
    fn rate_matches_pyzenkit_calc_statistics() {
        // pyzenkit: cur 10, prev 4, tdiff 2 s -> {cnt 10, inc 6, spd 3.0, pct 60.0}
        let ms = (1000, 1); // a millisecond clock: 1000 ticks per second
        let r = Rate::compute(10, 4, 2_000, ms);
        assert_eq!(
            r,
            Rate {
                cnt: 10,
                inc: 6,
                spd_milli: 3_000,
                pct_milli: 60_000
            }
        );
        assert_eq!((r.spd(), r.pct()), (3.0, 60.0));
        // A counter at zero is all zeros, and zero elapsed time gives no rate (no panic).
        assert_eq!(
            Rate::compute(0, 0, 2_000, ms),
            Rate {
                cnt: 0,
                inc: 0,
                spd_milli: 0,
                pct_milli: 0
            }
        );
        assert_eq!(Rate::compute(5, 0, 0, ms).spd_milli, 0);
        // A 32768 Hz clock: 7 events over 16384 ticks (0.5 s) is 14 per second.
        assert_eq!(Rate::compute(7, 0, 16_384, (32_768, 1)).spd_milli, 14_000);
        // One third of a percent: thousandths truncate.
        assert_eq!(Rate::compute(300, 299, 1000, ms).pct_milli, 333);
    }

    #[test]
    fn rotate_moves_the_baseline() {
        let mut c = Counters::<4>::new();
        c.inc("a", 5).unwrap();
        c.rotate(100);
        c.inc("a", 2).unwrap();
        assert_eq!(c.entry(0), ("a", 7, 5));
        assert_eq!(c.previous_at(), Some(100));
    }

    #[test]
    fn lateness_buckets_by_powers_of_four() {
        assert_eq!(Lateness::bucket(0), 0);
        assert_eq!(Lateness::bucket(1), 1);
        assert_eq!(Lateness::bucket(3), 1);
        assert_eq!(Lateness::bucket(4), 2);
        assert_eq!(Lateness::bucket(15), 2);
        assert_eq!(Lateness::bucket(16), 3);
        assert_eq!(Lateness::bucket(u64::MAX), LATENESS_BUCKETS - 1);
        for b in 1..LATENESS_BUCKETS {
            assert_eq!(Lateness::bucket(Lateness::bucket_floor(b)), b);
        }
        let mut l = Lateness::default();
        l.record(0);
        l.record(5);
        l.record(5);
        assert_eq!((l.max_ticks, l.count(), l.buckets[2]), (5, 3, 2));
        assert_eq!(l.sum_ticks, 10);
        l.record(u64::MAX);
        assert_eq!(l.sum_ticks, u64::MAX);
    }
}

/// Tests that close gaps a mutation run found (issue 16; see TESTING.md): clocks whose ticks
/// per second are a fraction, and predicates asserted both ways.
#[cfg(test)]
mod strength {
    use super::*;

    #[test]
    fn rates_on_a_clock_with_a_non_unit_denominator() {
        // Ticks of 3 ms: 1000/3 ticks per second. 6 new over 3000 ticks (9 s) is 0.666… per
        // second: 666 thousandths, truncated.
        let three_ms = (1_000, 3);
        let r = Rate::compute(10, 4, 3_000, three_ms);
        assert_eq!((r.inc, r.spd_milli, r.pct_milli), (6, 666, 60_000));
        // 1 over one tick of 3 ms is 333.33… per second.
        assert_eq!(Rate::compute(1, 0, 1, three_ms).spd_milli, 333_333);
        // A zero denominator (no real clock has one) gives no rate rather than a panic.
        assert_eq!(Rate::compute(10, 4, 3_000, (1_000, 0)).spd_milli, 0);
        // A rate too large for u64 thousandths saturates.
        assert_eq!(
            Rate::compute(u64::MAX, 0, 1, (1_000, 1)).spd_milli,
            u64::MAX
        );
        // A counter that went down (reset) counts no increase.
        assert_eq!(
            Rate::compute(3, 5, 1_000, (1_000, 1)),
            Rate::compute(3, 3, 1_000, (1_000, 1))
        );
    }

    #[test]
    fn counter_sets_say_whether_they_are_empty() {
        let mut c = Counters::<2>::new();
        assert!(CounterSet::is_empty(&c));
        assert_eq!(CounterSet::len(&c), 0);
        assert_eq!(c.previous_at(), None);
        c.inc("a", 0).unwrap();
        assert!(!CounterSet::is_empty(&c));
        assert_eq!(CounterSet::len(&c), 1);
        // Through the trait object the kernel holds.
        let set: &dyn CounterSet = &c;
        assert!(!set.is_empty());
        assert_eq!(set.entry(0), ("a", 0, 0));
    }

    #[test]
    fn register_finds_existing_counters_and_ids_name_their_own() {
        let mut c = Counters::<3>::new();
        let a = c.register("a").unwrap();
        let b = c.register("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(c.register("a"), Ok(a));
        assert_eq!(c.register("b"), Ok(b));
        c.inc_id(b, 4);
        c.inc_id(a, 1);
        assert_eq!((c.get("a"), c.get("b")), (1, 4));
        assert_eq!(c.entry(1), ("b", 4, 0));
        // Saturating, not wrapping.
        c.inc_id(a, u64::MAX);
        assert_eq!(c.get("a"), u64::MAX);
        c.rotate(7);
        c.inc("b", 1).unwrap();
        assert_eq!(c.entry(1), ("b", 5, 4));
        assert_eq!(c.previous_at(), Some(7));
    }

    #[test]
    fn counters_full_says_so() {
        assert_eq!(std::format!("{CountersFull}"), "counter table full");
    }

    #[test]
    fn kernel_stats_sum_every_kind() {
        let mut s = KernelStats::<3>::new();
        assert_eq!(s.total_dispatched(), 0);
        s.dispatched = [2, 0, 5];
        assert_eq!(s.total_dispatched(), 7);
        assert_eq!(KernelStats::<3>::default(), KernelStats::<3>::new());
    }

    #[test]
    fn lateness_records_the_maximum_and_counts_every_dispatch() {
        let mut l = Lateness::default();
        assert_eq!(l.count(), 0);
        l.record(17);
        l.record(2);
        assert_eq!(l.max_ticks, 17);
        assert_eq!(l.count(), 2);
        assert_eq!(l.buckets[Lateness::bucket(17)], 1);
        assert_eq!(Lateness::bucket(17), 3);
        assert_eq!(Lateness::bucket_floor(0), 0);
        assert_eq!(Lateness::bucket_floor(3), 16);
        assert_eq!(
            Lateness::bucket_floor(LATENESS_BUCKETS - 1),
            1 << (2 * (LATENESS_BUCKETS - 2))
        );
    }
}
