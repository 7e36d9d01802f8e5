//! The daemon's signals as counters plus a self-pipe, so the loop can sleep until the next
//! deadline or a signal, with no lost wake-ups and no busy waiting.
//!
//! Each handler (installed through `signal-hook`) does two async-signal-safe things, in this
//! order: it increments the signal's counter and writes one byte into a non-blocking pipe.
//! The loop does the reverse: [`Signals::wait_until`] polls the pipe's read end and drains it,
//! then [`Signals::take_pending`] swaps the counters to zero. A signal that arrives anywhere
//! in between leaves its byte in the pipe, so the next wait returns at once: at worst a
//! spurious wake-up, never a lost one. (pyzenkit's `alarm()` + `pause()` lost a signal that
//! came between its check and the `pause`.)
//!
//! # Waking on time
//!
//! The deadline is a `timerfd` on `CLOCK_MONOTONIC`, armed with the absolute deadline
//! (`TFD_TIMER_ABSTIME`) and polled beside the pipe with no timeout. Why not a timeout on
//! `poll` itself: `poll` takes whole milliseconds (rounded up so it never wakes early, which
//! made timers up to 1 ms late), and even `ppoll`'s nanosecond timeout gets the kernel's
//! timer slack: the larger of the thread's slack (50 µs by default) and 0.1% of the timeout
//! (1 ms on a 1 s sleep), which `prctl(PR_SET_TIMERSLACK)` cannot lower. A timerfd's timer
//! has no slack, so the loop wakes within scheduling latency of the deadline, without
//! changing a process-wide setting behind the user's back. The cost is one
//! `timerfd_settime` per sleep (not per event: a busy loop never sleeps).
//!
//! # Precise timers (opt-in)
//!
//! What remains after an exact sleep is the time the system takes to run the thread again,
//! tens to hundreds of microseconds on an idle (virtual) CPU. With
//! [`Signals::set_precise_timers`], a wait sleeps until the deadline minus a margin, then spins
//! on the clock until the deadline. The margin is learned from how late the timer's wake-ups
//! were ([`precise`](crate::precise) has the estimator and the reasons), at most a chosen
//! maximum. The price is CPU time: up to the margin per timed wake-up. While it spins the wait
//! checks, between clock reads, a delivery counter the handlers bump (one load), so a signal
//! ends the spin at once, as it ends a sleep.
//!
//! The handlers never log, allocate or take locks; turning signals into events is the loop's
//! job. Counters count: three `SIGINT`s delivered separately are three, as long as each was
//! delivered before the next was sent (the kernel merges a signal that is still pending).
//!
//! # Limitations
//!
//! * Register after daemonizing: [`daemonize`](crate::daemonize::daemonize) resets every
//!   handler.
//! * After [`Signals::deregister`] (or drop) the six signals stay caught and do nothing:
//!   `signal-hook` does not restore the default disposition.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::time::clock_gettime;
use signal_hook::SigId;

use crate::error::{Error, Result};
use crate::precise::{WakeEstimator, SHORT_WAIT};

/// The signals a daemon reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// `SIGINT`: graceful stop (the third one exits at once).
    Int,
    /// `SIGTERM`: immediate stop.
    Term,
    /// `SIGHUP`: reload.
    Hup,
    /// `SIGUSR1`: write the runlog.
    Usr1,
    /// `SIGUSR2`: write the state file.
    Usr2,
    /// `SIGALRM`: only wakes the loop.
    Alrm,
}

impl Signal {
    /// All of them, in the order [`Signals::take_pending`] reports them.
    pub const ALL: [Signal; 6] = [
        Signal::Int,
        Signal::Term,
        Signal::Hup,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Alrm,
    ];

    /// The signal number.
    pub const fn number(self) -> i32 {
        match self {
            Signal::Int => libc::SIGINT,
            Signal::Term => libc::SIGTERM,
            Signal::Hup => libc::SIGHUP,
            Signal::Usr1 => libc::SIGUSR1,
            Signal::Usr2 => libc::SIGUSR2,
            Signal::Alrm => libc::SIGALRM,
        }
    }

    /// The conventional name, `"SIGINT"` and so on.
    pub const fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::Hup => "SIGHUP",
            Signal::Usr1 => "SIGUSR1",
            Signal::Usr2 => "SIGUSR2",
            Signal::Alrm => "SIGALRM",
        }
    }

    /// The signal with this number, if it is one of ours.
    pub fn from_number(number: i32) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.number() == number)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the handlers share with the loop.
#[derive(Debug)]
struct Shared {
    counts: [AtomicUsize; 6],
    /// Every delivery, of any signal, ever (wrapping); bumped between the count and the byte.
    /// A spinning wait compares it with [`Signals::seen`] instead of reading the pipe.
    deliveries: AtomicUsize,
    /// The pipe's write end, non-blocking: a full pipe already wakes the reader.
    wake: OwnedFd,
}

/// The registered handlers for the six [`Signal`]s, their counters, the wake-up pipe and the
/// deadline timer.
#[derive(Debug)]
pub struct Signals {
    shared: Arc<Shared>,
    /// The pipe's read end, non-blocking.
    wake: OwnedFd,
    /// [`Signals::wait_until`]'s deadline (see "Waking on time" in the module docs).
    timer: TimerFd,
    /// `deliveries` as the last wait read it, just before it emptied the pipe.
    seen: AtomicUsize,
    /// Precise timers, when on: the learned margin (a lock taken once or twice per sleep,
    /// never contended by the loop itself).
    precise: Option<Mutex<WakeEstimator>>,
    ids: Vec<SigId>,
}

impl Signals {
    /// Creates the pipe and the deadline timer (both close-on-exec, non-blocking) and installs
    /// the handlers.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] when the pipe or the timer cannot be created or a handler cannot be
    /// installed.
    pub fn new() -> Result<Signals> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| Error::os("create the signal pipe", e.into()))?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK,
        )
        .map_err(|e| Error::os("create the deadline timer", e.into()))?;
        let shared = Arc::new(Shared {
            counts: Default::default(),
            deliveries: AtomicUsize::new(0),
            wake: write,
        });
        let mut signals = Signals {
            shared,
            wake: read,
            timer,
            seen: AtomicUsize::new(0),
            precise: None,
            ids: Vec::with_capacity(Signal::ALL.len()),
        };
        for signal in Signal::ALL {
            let shared = Arc::clone(&signals.shared);
            let index = signal.index();
            let action = move || {
                // Count first, then wake: the loop drains the pipe before it reads the
                // counters, so a count is never left behind without a byte to announce it.
                shared.counts[index].fetch_add(1, Ordering::SeqCst);
                shared.deliveries.fetch_add(1, Ordering::SeqCst);
                // SAFETY: write(2) is async-signal-safe; the buffer is a live one-byte
                // array; the descriptor stays open as long as this action is registered
                // (the action owns an `Arc` of it). A full pipe (EAGAIN) is fine: the
                // reader is awake anyway. signal-hook saves and restores errno around us.
                unsafe {
                    libc::write(shared.wake.as_raw_fd(), [1u8].as_ptr().cast(), 1);
                }
            };
            // SAFETY: the action is async-signal-safe: two atomic increments and one write(2);
            // no allocation, no locks, no panics.
            let id = unsafe { signal_hook::low_level::register(signal.number(), action) }
                .map_err(|e| Error::os("install a signal handler", e))?;
            signals.ids.push(id);
        }
        Ok(signals)
    }

    /// Takes the signals that arrived since the last call, with how many times each came,
    /// and resets their counters. Signals without a delivery are left out. Allocation-free.
    ///
    /// Called every turn of the loop, almost always with nothing pending: each counter is
    /// loaded first and only a non-zero one is swapped (a locked read-modify-write), so the
    /// usual turn costs six plain loads. A delivery between the load and the swap is taken by
    /// the swap; one after a zero load stays in its counter, announced by its byte in the pipe.
    pub fn take_pending(&self) -> Pending {
        let mut pending = Pending {
            counts: [0; 6],
            left: 0,
        };
        for (index, counter) in self.shared.counts.iter().enumerate() {
            if counter.load(Ordering::SeqCst) != 0 {
                let n = counter.swap(0, Ordering::SeqCst);
                pending.counts[index] = n;
                // Zero when another thread's `take_pending` took it in between.
                pending.left |= u8::from(n != 0) << index;
            }
        }
        pending
    }

    /// Turns precise timers on with this maximum margin, or off with `None` (the default):
    /// see "Precise timers" in the module documentation and [`precise`](crate::precise). On,
    /// every timed wait sleeps until the deadline minus the learned margin and spins the
    /// rest, so it costs up to `max_spin` of CPU time per wake-up. Turning them on again
    /// starts the learning afresh.
    pub fn set_precise_timers(&mut self, max_spin: Option<Duration>) {
        self.precise = max_spin.map(|max| Mutex::new(WakeEstimator::new(max)));
    }

    /// With precise timers on, the margin the next timed wait will use.
    pub fn precise_margin(&self) -> Option<Duration> {
        self.precise.as_ref().map(|p| lock(p).margin())
    }

    /// Sleeps until `deadline` (for ever when `None`) or until a signal arrives, whichever is
    /// first; returns at once if a signal came since the last wait. Then empties the pipe.
    ///
    /// It never returns before the deadline (unless a signal came): the timer is armed at the
    /// deadline or a few nanoseconds after it, never before, and a wake-up that still finds
    /// the deadline ahead waits again. A deadline already past does not sleep at all. It
    /// retries after `EINTR`.
    ///
    /// With [precise timers](Signals::set_precise_timers) the timer is armed a margin before
    /// the deadline (at most half the way there), and the wait spins from the wake-up until
    /// the deadline (or a signal); a wake-up at or after the deadline returns at once, without
    /// spinning. A wait shorter than both the margin and [`SHORT_WAIT`] is spun through.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if arming the timer fails, or `poll` fails for another reason than
    /// `EINTR`.
    pub fn wait_until(&self, deadline: Option<Instant>) -> Result<()> {
        loop {
            let fds = &mut [
                PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.timer.as_fd(), PollFlags::POLLIN),
            ];
            // Precise timers: the instant the timer is armed for, before the deadline.
            let mut early = None;
            let fds = match deadline {
                // Only the pipe: a timer left armed by an earlier wait cannot wake us.
                None => &mut fds[..1],
                Some(deadline) => {
                    // std's `Instant` first, then the timer's clock: the second reading is the
                    // later one, so the deadline moved onto it can only come out late.
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let mut wake_at = deadline;
                    if let Some(precise) = &self.precise {
                        let remaining = deadline - now;
                        let margin = lock(precise).margin();
                        if remaining <= margin.min(SHORT_WAIT) {
                            self.spin_until(deadline);
                            break;
                        }
                        // At least half the way asleep, so the timer goes on measuring.
                        wake_at = deadline - margin.min(remaining / 2);
                        early = Some((precise, wake_at));
                    }
                    let mono = clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                        .map_err(|e| Error::os("read the monotonic clock", e.into()))?;
                    let at = timer_deadline(mono.into(), wake_at - now);
                    // Re-arming also clears an expiry left over from an earlier wait.
                    self.timer
                        .set(
                            Expiration::OneShot(at),
                            TimerSetTimeFlags::TFD_TIMER_ABSTIME,
                        )
                        .map_err(|e| Error::os("arm the deadline timer", e.into()))?;
                    &mut fds[..]
                }
            };
            match poll(fds, PollTimeout::NONE) {
                Ok(_) if fds[0].any().unwrap_or(true) => break,
                // The timer: the deadline has come (the check above ends the wait), or with
                // precise timers the margin before it.
                Ok(_) => {
                    if let (Some((precise, wake_at)), Some(deadline)) = (early, deadline) {
                        let now = Instant::now();
                        if now >= wake_at {
                            lock(precise).record(now - wake_at);
                            self.spin_until(deadline);
                            break;
                        }
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::os("wait for signals", e.into())),
            }
        }
        self.seen.store(
            self.shared.deliveries.load(Ordering::SeqCst),
            Ordering::Relaxed,
        );
        self.drain();
        Ok(())
    }

    /// Reads the clock until `deadline`, or until a signal comes that the last wait did not
    /// see. A signal counted before that wait emptied the pipe was counted before the
    /// caller's next [`Signals::take_pending`] too, so the spin need not end for it.
    ///
    /// The spin-loop hint (`pause` on x86) comes once every [`PAUSE_EVERY`] rounds, not every
    /// round: under KVM, a `pause` in every round (one clock read apart) trips the host's
    /// pause-loop detection, which takes the vCPU out for ~5 µs (a VM exit, meant for guests
    /// spinning on a lock) in most 500 µs spins; one `pause` in four did not.
    fn spin_until(&self, deadline: Instant) {
        let seen = self.seen.load(Ordering::Relaxed);
        let mut round = 0u32;
        while self.shared.deliveries.load(Ordering::Relaxed) == seen {
            if Instant::now() >= deadline {
                return;
            }
            round = round.wrapping_add(1);
            if round.is_multiple_of(PAUSE_EVERY) {
                std::hint::spin_loop();
            }
        }
    }

    /// Empties the pipe; the counters keep what it announced.
    fn drain(&self) {
        let mut buf = [0u8; 256];
        loop {
            match nix::unistd::read(&self.wake, &mut buf) {
                Ok(n) if n == buf.len() => {}
                Err(Errno::EINTR) => {}
                // Short read, EAGAIN (empty), or an error that a second read would repeat.
                _ => break,
            }
        }
    }

    /// Removes the handlers (the signals then stay caught and are ignored, see the module
    /// documentation). Dropping the value does the same.
    pub fn deregister(self) {}
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// The wake-up pipe's read end, for a caller that polls it together with other descriptors.
/// It becomes readable when a signal arrives; [`Signals::wait_until`] empties it.
impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

/// The largest `time_t`. (On musl targets the libc crate marks its `time_t` alias deprecated,
/// because the type is to become 64-bit there; its largest value is what is wanted either way.)
#[allow(deprecated)]
const TIME_T_MAX: libc::time_t = libc::time_t::MAX;

/// How many rounds of a spin (a signal check and a clock read each) per spin-loop hint.
const PAUSE_EVERY: u32 = 4;

/// The estimator, even if a panic poisoned its lock (it is a few numbers, always valid).
fn lock(precise: &Mutex<WakeEstimator>) -> MutexGuard<'_, WakeEstimator> {
    precise.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The absolute timer value `remaining` after the monotonic reading `now`; a value beyond what
/// a `timespec` holds becomes the largest one (in effect never: the kernel saturates it).
fn timer_deadline(now: Duration, remaining: Duration) -> TimeSpec {
    const MAX_SECS: u64 = TIME_T_MAX as u64;
    match now.checked_add(remaining) {
        Some(at) if at.as_secs() <= MAX_SECS => TimeSpec::from(at),
        _ => TimeSpec::new(TIME_T_MAX, 999_999_999),
    }
}

/// The signals taken by [`Signals::take_pending`]: `(signal, how many times)`.
#[derive(Debug, Clone)]
pub struct Pending {
    counts: [usize; 6],
    /// Bit `i` set: `counts[i]` is not reported yet (and is not zero). An empty set, the
    /// usual turn of the loop, ends the iteration at once.
    left: u8,
}

impl Pending {
    /// Whether no signal arrived.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl Iterator for Pending {
    type Item = (Signal, usize);

    fn next(&mut self) -> Option<(Signal, usize)> {
        if self.left == 0 {
            return None;
        }
        let index = self.left.trailing_zeros() as usize;
        self.left &= self.left - 1;
        Some((Signal::ALL[index], self.counts[index]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signal_hook::low_level::raise;
    use std::sync::{Mutex, MutexGuard};

    /// Tests that raise signals run one at a time: each instance would see the others'.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn raise_n(signal: Signal, n: usize) {
        for _ in 0..n {
            // raise() delivers to this thread before it returns, so nothing merges.
            raise(signal.number()).unwrap();
        }
    }

    #[test]
    fn names_and_numbers() {
        for s in Signal::ALL {
            assert_eq!(Signal::from_number(s.number()), Some(s));
            assert_eq!(s.to_string(), s.name());
            assert_eq!(Signal::ALL[s.index()], s);
        }
        assert_eq!(Signal::from_number(libc::SIGKILL), None);
        assert_eq!(Signal::Usr1.number(), libc::SIGUSR1);
    }

    #[test]
    fn timer_deadlines_are_exact_and_saturate() {
        let at = timer_deadline(Duration::new(5, 999_999_999), Duration::from_nanos(2));
        assert_eq!(at, TimeSpec::new(6, 1));
        assert_eq!(
            timer_deadline(Duration::from_secs(1), Duration::MAX),
            TimeSpec::new(TIME_T_MAX, 999_999_999)
        );
        let huge = Duration::from_secs(TIME_T_MAX as u64 + 1);
        assert_eq!(
            timer_deadline(Duration::ZERO, huge),
            TimeSpec::new(TIME_T_MAX, 999_999_999)
        );
    }

    #[test]
    fn a_wait_wakes_close_to_its_deadline() {
        let _serial = serial();
        let signals = Signals::new().unwrap();
        // A wait that a signal cut short leaves its timer armed: it must not end the next one.
        raise_n(Signal::Alrm, 1);
        signals
            .wait_until(Some(Instant::now() + Duration::from_millis(1)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let deadline = Instant::now() + Duration::from_millis(20);
        signals.wait_until(Some(deadline)).unwrap();
        let late = Instant::now() - deadline;
        // Not early; late only by scheduling (no millisecond rounding). Generous for CI.
        assert!(late < Duration::from_millis(15), "{late:?} late");
    }

    #[test]
    fn every_delivery_is_counted_and_taking_resets() {
        let _serial = serial();
        let signals = Signals::new().unwrap();
        assert!(signals.take_pending().is_empty());
        raise_n(Signal::Int, 3);
        raise_n(Signal::Usr1, 1);
        raise_n(Signal::Alrm, 2);
        let pending = signals.take_pending();
        assert!(!pending.is_empty());
        assert_eq!(
            pending.collect::<Vec<_>>(),
            [(Signal::Int, 3), (Signal::Usr1, 1), (Signal::Alrm, 2)]
        );
        assert_eq!(signals.take_pending().count(), 0);
    }

    #[test]
    fn a_signal_after_take_pending_wakes_the_next_wait_at_once() {
        let _serial = serial();
        let signals = Signals::new().unwrap();
        signals.wait_until(Some(Instant::now())).unwrap(); // start with an empty pipe
        assert!(signals.take_pending().is_empty());
        // The racy moment: the loop has looked at the counters and is about to sleep.
        raise_n(Signal::Usr2, 1);
        let deadline = Instant::now() + Duration::from_secs(600);
        signals.wait_until(Some(deadline)).unwrap();
        assert!(Instant::now() < deadline, "the wake-up was lost");
        assert_eq!(
            signals.take_pending().collect::<Vec<_>>(),
            [(Signal::Usr2, 1)]
        );
        // The same without a deadline: it would sleep for ever if the byte were lost.
        raise_n(Signal::Hup, 1);
        signals.wait_until(None).unwrap();
        assert_eq!(
            signals.take_pending().collect::<Vec<_>>(),
            [(Signal::Hup, 1)]
        );
    }

    #[test]
    fn a_signal_from_another_thread_ends_the_wait() {
        let _serial = serial();
        let signals = Signals::new().unwrap();
        let sender = std::thread::spawn(|| {
            // Process-directed: the kernel picks any thread that does not block it.
            nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::SIGALRM).unwrap();
        });
        signals.wait_until(None).unwrap();
        sender.join().unwrap();
        // The handler may run on the sender's thread; its count is in before its byte.
        assert_eq!(
            signals.take_pending().collect::<Vec<_>>(),
            [(Signal::Alrm, 1)]
        );
    }

    #[test]
    fn wait_never_returns_before_the_deadline_and_drains_the_pipe() {
        let _serial = serial();
        let signals = Signals::new().unwrap();
        raise_n(Signal::Term, 5);
        signals.wait_until(None).unwrap();
        // The five bytes are gone: this wait runs until its deadline.
        let deadline = Instant::now() + Duration::from_millis(30);
        signals.wait_until(Some(deadline)).unwrap();
        assert!(Instant::now() >= deadline);
        assert_eq!(
            signals.take_pending().collect::<Vec<_>>(),
            [(Signal::Term, 5)]
        );
        // A deadline in the past returns at once.
        signals
            .wait_until(Some(Instant::now() - Duration::from_secs(1)))
            .unwrap();
    }

    #[test]
    fn a_full_pipe_neither_blocks_nor_loses_counts() {
        let _serial = serial();
        let signals = Signals::new().unwrap();
        // More deliveries than a pipe holds (64 KiB on Linux).
        let per_signal = 12_000;
        for _ in 0..per_signal {
            for s in Signal::ALL {
                raise(s.number()).unwrap();
            }
        }
        signals.wait_until(None).unwrap();
        let got: Vec<_> = signals.take_pending().collect();
        assert_eq!(got, Signal::ALL.map(|s| (s, per_signal)));
        // Drained completely: the next wait times out.
        let deadline = Instant::now() + Duration::from_millis(5);
        signals.wait_until(Some(deadline)).unwrap();
        assert!(Instant::now() >= deadline);
    }

    #[test]
    fn precise_waits_never_return_before_the_deadline() {
        let _serial = serial();
        let mut signals = Signals::new().unwrap();
        signals.set_precise_timers(Some(Duration::from_millis(2)));
        assert_eq!(signals.precise_margin(), Some(Duration::from_millis(2)));
        // Shorter and longer than the margin, and in the past.
        let lengths = [0, 30, 300, 1_000, 2_500, 5_000, 12_000];
        for _ in 0..3 {
            for us in lengths {
                let deadline = Instant::now() + Duration::from_micros(us);
                signals.wait_until(Some(deadline)).unwrap();
                let now = Instant::now();
                assert!(now >= deadline, "{:?} early", deadline - now);
            }
        }
        signals
            .wait_until(Some(Instant::now() - Duration::from_secs(1)))
            .unwrap();
        let margin = signals.precise_margin().unwrap();
        assert!(margin <= Duration::from_millis(2), "{margin:?}");
        assert!(signals.take_pending().is_empty());
        // A maximum far beyond the waits: they still sleep half the way, so the timer's
        // wake-ups go on teaching the margin (else it would stay at the maximum for ever).
        signals.set_precise_timers(Some(Duration::from_secs(3600)));
        for _ in 0..3 {
            let deadline = Instant::now() + Duration::from_millis(10);
            signals.wait_until(Some(deadline)).unwrap();
            assert!(Instant::now() >= deadline);
        }
        let margin = signals.precise_margin().unwrap();
        assert!(margin < Duration::from_secs(3600), "nothing learned");
        signals.set_precise_timers(None);
        assert_eq!(signals.precise_margin(), None);
    }

    #[test]
    fn a_signal_ends_a_spin_at_once() {
        let _serial = serial();
        let mut signals = Signals::new().unwrap();
        signals.set_precise_timers(Some(Duration::from_secs(3600)));
        // The spin itself (a wait spins only near its deadline, too short to aim a signal at).
        let deadline = Instant::now() + Duration::from_secs(600);
        let sender = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::SIGALRM).unwrap();
        });
        signals.spin_until(deadline);
        assert!(Instant::now() < deadline, "the spin ignored the signal");
        sender.join().unwrap();
        // The wait after it ends at once: the signal came since the last wait.
        signals.wait_until(Some(deadline)).unwrap();
        assert!(Instant::now() < deadline, "the signal was lost");
        assert_eq!(
            signals.take_pending().collect::<Vec<_>>(),
            [(Signal::Alrm, 1)]
        );
        // A signal after the last wait ends the next wait (or spin) before it starts…
        raise_n(Signal::Usr1, 1);
        signals.wait_until(Some(deadline)).unwrap();
        assert!(Instant::now() < deadline, "the signal was lost");
        assert_eq!(
            signals.take_pending().collect::<Vec<_>>(),
            [(Signal::Usr1, 1)]
        );
        // …while one that the last wait already ended on does not end the next.
        raise_n(Signal::Hup, 1);
        signals.wait_until(None).unwrap();
        let short = Instant::now() + Duration::from_millis(20);
        signals.wait_until(Some(short)).unwrap();
        assert!(Instant::now() >= short);
        assert_eq!(
            signals.take_pending().collect::<Vec<_>>(),
            [(Signal::Hup, 1)]
        );
    }

    #[test]
    fn instances_are_independent_and_deregister() {
        let _serial = serial();
        let a = Signals::new().unwrap();
        let b = Signals::new().unwrap();
        raise_n(Signal::Usr1, 2);
        assert_eq!(a.take_pending().collect::<Vec<_>>(), [(Signal::Usr1, 2)]);
        assert_eq!(b.take_pending().collect::<Vec<_>>(), [(Signal::Usr1, 2)]);
        a.deregister();
        raise_n(Signal::Usr1, 1);
        assert_eq!(b.take_pending().collect::<Vec<_>>(), [(Signal::Usr1, 1)]);
    }
}
