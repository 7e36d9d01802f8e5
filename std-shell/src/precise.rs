//! Precise timers: sleep until shortly before a deadline, then spin on the clock for the last
//! stretch. This module holds the part that decides how long that stretch is: a
//! [`WakeEstimator`] that learns how late the loop's timer wake-ups come.
//!
//! # Why
//!
//! [`Signals::wait_until`](crate::signals::Signals::wait_until) sleeps on an exact timer (a
//! `timerfd` without slack), yet an idle loop still runs its timers tens to hundreds of
//! microseconds late: the time the kernel takes to wake an idle CPU (deep C-states; on a
//! virtual machine, the host must also run the vCPU again), which grows with the length of the
//! sleep. No timer setting removes that. What does is waking up early, by about that latency,
//! and spending the rest of the way on the CPU, reading the clock
//! (`std::hint::spin_loop` between reads) until the deadline.
//!
//! # The margin
//!
//! How early to wake is learned, not a constant: each time the timer ends a sleep, the wait
//! measures how late the wake-up was against the instant the timer was armed for, and feeds it
//! to the estimator. The margin is a high percentile of the last [`WINDOW`] latencies: the
//! second largest of 32, about the 97th percentile. A percentile rather than a mean plus
//! deviations (TCP's retransmission-timeout estimate, tried first) because wake-up latencies
//! are mostly steady with rare large outliers (another process holding the CPU, the host
//! running something else): one outlier inflates a deviation-based margin for about ten
//! wake-ups, and on a loaded machine outliers come often enough to keep it at its maximum,
//! where the spin itself made matters worse in the bench (a task that spins uses up its CPU
//! share and is preempted sooner). Here a single outlier changes nothing, and the margin
//! follows the latencies down as soon as the high ones leave the window.
//!
//! A latency above the maximum is not recorded: spinning cannot cover it, so it says nothing
//! about how long to spin. The margin is therefore never above the maximum, and the CPU spent
//! per wake-up is bounded by it whatever the machine does. Before the first sample the margin
//! is the maximum, so even the first wake-up is on time.
//!
//! # The cost
//!
//! Every timed wake-up spends up to the margin on the CPU (the margin minus the wake-up's own
//! latency: tens of microseconds when wake-ups are steady, up to the maximum when they are
//! erratic): with a 1 ms timer and a 200 µs spin that would be a fifth of a CPU. A wake-up that
//! comes later than the deadline anyway is just late: nothing spins past a deadline. Signals
//! are not delayed: the spin checks for them between clock reads.
//!
//! A wait shorter than both the margin and [`SHORT_WAIT`] is spun through. Any longer wait
//! sleeps at least half the way, even when the margin is larger: only the timer's wake-ups
//! teach the estimator, and a margin that had grown beyond the loop's usual wait (a 1 ms timer
//! after a bad spell, or the maximum before the first sample) would otherwise never shrink
//! again, the loop spinning from one deadline to the next.

use std::time::Duration;

/// The default maximum margin (and so the longest spin per wake-up): 2 ms.
pub const DEFAULT_MAX_SPIN: Duration = Duration::from_millis(2);

/// The longest wait that precise timers spin through without sleeping (when the margin is
/// longer too): a sleep that short saves little CPU time and comes back late.
pub const SHORT_WAIT: Duration = Duration::from_micros(50);

/// How many recent latencies the margin is taken from.
pub const WINDOW: usize = 32;
/// Learns how late timer wake-ups are and how early to wake to be on time (see the [module
/// documentation](self)). Pure arithmetic on nanoseconds: it never reads a clock.
///
/// ```
/// use std::time::Duration;
/// use zendaemon::precise::WakeEstimator;
///
/// let mut e = WakeEstimator::new(Duration::from_millis(2));
/// assert_eq!(e.margin(), Duration::from_millis(2)); // no sample yet: the maximum
/// for us in [120, 90, 110, 130, 100] {
///     e.record(Duration::from_micros(us));
/// }
/// // The second largest: one outlier alone does not move it.
/// assert_eq!(e.margin(), Duration::from_micros(120));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeEstimator {
    /// The last latencies, ns (at most `max`, so they fit whenever `max` does).
    window: [u64; WINDOW],
    /// How many of `window` are filled.
    len: usize,
    /// Where the next sample goes.
    next: usize,
    /// Latencies recorded, and latencies left out for being above `max` (both saturating).
    samples: u64,
    beyond: u64,
    /// The current margin, ns (recomputed by each sample).
    margin: u64,
    /// The largest margin, ns.
    max: u64,
}

impl WakeEstimator {
    /// An estimator with no samples whose margin never exceeds `max`.
    pub const fn new(max: Duration) -> Self {
        let max = max.as_nanos();
        let max = if max > u64::MAX as u128 {
            u64::MAX
        } else {
            max as u64
        };
        Self {
            window: [0; WINDOW],
            len: 0,
            next: 0,
            samples: 0,
            beyond: 0,
            margin: max,
            max,
        }
    }

    /// The largest margin.
    pub const fn max(&self) -> Duration {
        Duration::from_nanos(self.max)
    }

    /// How many latencies were recorded (in the window or not).
    pub const fn samples(&self) -> u64 {
        self.samples
    }

    /// How many latencies were left out for being above the maximum.
    pub const fn beyond(&self) -> u64 {
        self.beyond
    }

    /// How long before a deadline to wake up: the second largest of the last [`WINDOW`]
    /// latencies (the only one after the first sample); the maximum before the first sample.
    pub const fn margin(&self) -> Duration {
        Duration::from_nanos(self.margin)
    }

    /// Records one wake-up's latency: how long after the instant the timer was armed for the
    /// waiting thread ran again. A latency above the maximum is counted but left out.
    pub fn record(&mut self, latency: Duration) {
        let x = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        if x > self.max {
            self.beyond = self.beyond.saturating_add(1);
            return;
        }
        self.samples = self.samples.saturating_add(1);
        self.window[self.next] = x;
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        // The second largest, also while the window fills (a 1 s timer takes 32 s to fill
        // it: one early outlier must not set the margin until then).
        let rank = (self.len - 1).max(1);
        let mut sorted = self.window;
        let filled = &mut sorted[..self.len];
        let (_, at, _) = filled.select_nth_unstable(rank - 1);
        self.margin = *at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_millis(2);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A deterministic pseudo-random sequence (xorshift64), for jittery latencies.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn starts_at_the_maximum() {
        let e = WakeEstimator::new(MAX);
        assert_eq!((e.samples(), e.beyond()), (0, 0));
        assert_eq!(e.margin(), MAX);
        assert_eq!(e.max(), MAX);
        assert_eq!(
            WakeEstimator::new(Duration::MAX).max(),
            Duration::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn converges_on_steady_latencies() {
        let mut e = WakeEstimator::new(MAX);
        e.record(us(100));
        assert_eq!(e.margin(), us(100));
        for _ in 0..200 {
            e.record(us(100));
        }
        assert_eq!(e.margin(), us(100));
        assert_eq!(e.samples(), 201);
    }

    #[test]
    fn covers_jittery_latencies() {
        // Latencies uniform in 80..=180 µs: the margin lands near the top, not at the maximum,
        // and covers almost every next wake-up.
        let mut e = WakeEstimator::new(MAX);
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut covered = 0;
        let n = 2_000;
        for i in 0..n {
            let latency = us(80 + xorshift(&mut seed) % 101);
            if i >= WINDOW && latency <= e.margin() {
                covered += 1;
            }
            e.record(latency);
        }
        let m = e.margin();
        assert!(m > us(160) && m <= us(180), "{m:?}");
        assert!(
            covered * 100 >= (n - WINDOW) * 90,
            "{covered} of {}",
            n - WINDOW
        );
    }

    #[test]
    fn a_single_outlier_changes_nothing() {
        // Not while the window fills…
        let mut e = WakeEstimator::new(MAX);
        for latency in [100, 1_500, 90, 110] {
            e.record(us(latency));
        }
        assert_eq!(e.margin(), us(110));
        // …nor once it is full.
        let mut e = WakeEstimator::new(MAX);
        for _ in 0..WINDOW {
            e.record(us(100));
        }
        e.record(Duration::from_micros(1_900));
        assert_eq!(e.margin(), us(100));
        // A second one within the window is the second largest: the margin follows.
        e.record(Duration::from_micros(1_800));
        assert_eq!(e.margin(), us(1_800));
    }

    #[test]
    fn clamps_to_the_maximum_and_to_zero() {
        let mut e = WakeEstimator::new(MAX);
        // Beyond the maximum: counted, left out; the margin stays within the maximum.
        for _ in 0..50 {
            e.record(Duration::from_millis(10));
        }
        e.record(Duration::MAX);
        assert_eq!(e.margin(), MAX);
        assert_eq!((e.samples(), e.beyond()), (0, 51));
        e.record(MAX);
        assert_eq!(e.margin(), MAX);

        let mut zero = WakeEstimator::new(MAX);
        for _ in 0..50 {
            zero.record(Duration::ZERO);
        }
        assert_eq!(zero.margin(), Duration::ZERO);

        // A zero maximum: never spin.
        let mut off = WakeEstimator::new(Duration::ZERO);
        assert_eq!(off.margin(), Duration::ZERO);
        off.record(us(500));
        off.record(Duration::ZERO);
        assert_eq!(off.margin(), Duration::ZERO);
    }

    #[test]
    fn adapts_down_after_a_bad_spell() {
        let mut e = WakeEstimator::new(MAX);
        for _ in 0..50 {
            e.record(us(100));
        }
        // A few very late wake-ups push the margin up at once…
        for _ in 0..3 {
            e.record(us(1_500));
        }
        assert_eq!(e.margin(), us(1_500));
        // …and it comes back once all but one of them left the window.
        for _ in 0..WINDOW - 2 {
            e.record(us(100));
        }
        assert_eq!(e.margin(), us(1_500));
        e.record(us(100));
        assert_eq!(e.margin(), us(100));
    }

    #[test]
    fn follows_a_rise() {
        let mut e = WakeEstimator::new(MAX);
        for _ in 0..50 {
            e.record(us(20));
        }
        for _ in 0..2 {
            e.record(us(300));
        }
        assert_eq!(e.margin(), us(300));
    }
}
