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
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use signal_hook::SigId;

use crate::error::{Error, Result};

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
    /// The pipe's write end, non-blocking: a full pipe already wakes the reader.
    wake: OwnedFd,
}

/// The registered handlers for the six [`Signal`]s, their counters and the wake-up pipe.
#[derive(Debug)]
pub struct Signals {
    shared: Arc<Shared>,
    /// The pipe's read end, non-blocking.
    wake: OwnedFd,
    ids: Vec<SigId>,
}

impl Signals {
    /// Creates the pipe (close-on-exec, non-blocking) and installs the handlers.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] when the pipe cannot be created or a handler cannot be installed.
    pub fn new() -> Result<Signals> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| Error::os("create the signal pipe", e.into()))?;
        let shared = Arc::new(Shared {
            counts: Default::default(),
            wake: write,
        });
        let mut signals = Signals {
            shared,
            wake: read,
            ids: Vec::with_capacity(Signal::ALL.len()),
        };
        for signal in Signal::ALL {
            let shared = Arc::clone(&signals.shared);
            let index = signal.index();
            let action = move || {
                // Count first, then wake: the loop drains the pipe before it reads the
                // counters, so a count is never left behind without a byte to announce it.
                shared.counts[index].fetch_add(1, Ordering::SeqCst);
                // SAFETY: write(2) is async-signal-safe; the buffer is a live one-byte
                // array; the descriptor stays open as long as this action is registered
                // (the action owns an `Arc` of it). A full pipe (EAGAIN) is fine: the
                // reader is awake anyway. signal-hook saves and restores errno around us.
                unsafe {
                    libc::write(shared.wake.as_raw_fd(), [1u8].as_ptr().cast(), 1);
                }
            };
            // SAFETY: the action is async-signal-safe: an atomic increment and one write(2);
            // no allocation, no locks, no panics.
            let id = unsafe { signal_hook::low_level::register(signal.number(), action) }
                .map_err(|e| Error::os("install a signal handler", e))?;
            signals.ids.push(id);
        }
        Ok(signals)
    }

    /// Takes the signals that arrived since the last call, with how many times each came,
    /// and resets their counters. Signals without a delivery are left out. Allocation-free.
    pub fn take_pending(&self) -> Pending {
        let mut counts = [0; 6];
        for (count, counter) in counts.iter_mut().zip(&self.shared.counts) {
            *count = counter.swap(0, Ordering::SeqCst);
        }
        Pending { counts, next: 0 }
    }

    /// Sleeps until `deadline` (for ever when `None`) or until a signal arrives, whichever is
    /// first; returns at once if a signal came since the last wait. Then empties the pipe.
    ///
    /// The timeout is rounded up to whole milliseconds, so it never returns before the
    /// deadline (unless a signal came); it retries after `EINTR`.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if `poll` fails for another reason than `EINTR`.
    pub fn wait_until(&self, deadline: Option<Instant>) -> Result<()> {
        loop {
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(deadline) => poll_timeout(deadline.saturating_duration_since(Instant::now())),
            };
            let mut fds = [PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => {
                    // A timeout. Longer waits than poll can express come back here early.
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                }
                Ok(_) => break,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::os("wait for signals", e.into())),
            }
        }
        self.drain();
        Ok(())
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

/// `remaining`, rounded up to whole milliseconds and clamped to what `poll` takes.
fn poll_timeout(remaining: Duration) -> PollTimeout {
    let millis = remaining.as_nanos().div_ceil(1_000_000);
    PollTimeout::try_from(millis.min(i32::MAX as u128)).unwrap_or(PollTimeout::MAX)
}

/// The signals taken by [`Signals::take_pending`]: `(signal, how many times)`.
#[derive(Debug, Clone)]
pub struct Pending {
    counts: [usize; 6],
    next: usize,
}

impl Pending {
    /// Whether no signal arrived.
    pub fn is_empty(&self) -> bool {
        self.counts[self.next..].iter().all(|&c| c == 0)
    }
}

impl Iterator for Pending {
    type Item = (Signal, usize);

    fn next(&mut self) -> Option<(Signal, usize)> {
        while self.next < self.counts.len() {
            let index = self.next;
            self.next += 1;
            if self.counts[index] > 0 {
                return Some((Signal::ALL[index], self.counts[index]));
            }
        }
        None
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
    fn poll_timeout_rounds_up() {
        let ms = |d| poll_timeout(d).as_millis().unwrap();
        assert_eq!(ms(Duration::ZERO), 0);
        assert_eq!(ms(Duration::from_nanos(1)), 1);
        assert_eq!(ms(Duration::from_micros(1000)), 1);
        assert_eq!(ms(Duration::from_micros(1001)), 2);
        assert_eq!(ms(Duration::from_secs(10 * 365 * 86400)), i32::MAX as u32);
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
