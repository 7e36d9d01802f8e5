//! The stop watchdog: enforces the stop timeout from outside the event loop, counted from the
//! signal's arrival.
//!
//! A graceful stop lets components finish their work, but a handler that never returns (an
//! endless loop, a `read(2)` that never completes, a sleep) keeps the loop from ever looking at
//! the signals, let alone dispatching `stop`. So the [`StopWatchdog`] does not wait for the
//! loop: it runs on its own thread from the daemon's start to its end, with signal handlers of
//! its own for `SIGINT` and `SIGTERM` (beside [`Signals`](crate::signals::Signals)' ones:
//! `signal-hook` runs every action registered for a signal). Each handler bumps a counter and
//! writes a byte into the watchdog's pipe; the thread wakes, reads the counters and sets its
//! deadline, the earliest of:
//!
//! | what happened | deadline |
//! |---|---|
//! | the first `SIGINT` arrived, or the loop began a stop ([`StopWatchdog::stop_began`]) | then + stop timeout + margin |
//! | `SIGTERM` arrived | then + margin (under `sigterm: stop`, `SIGTERM` counts as `SIGINT`) |
//! | the `max_stops`-th `SIGINT` arrived (the third, as the kernel counts) | then + margin |
//!
//! The margin (`watchdog_margin`, 1 s by default) lets the loop do it itself whenever it still
//! turns: the kernel's `terminate` after the stop timeout, the end of the loop after `SIGTERM`,
//! and the shell's end of the run (persistent state, final runlog, pidfile). If the deadline
//! passes first, the watchdog calls the caller's *last words* (log what was running, remove the
//! pidfile) and ends the process with the caller's exit code
//! ([`exit::WATCHDOG`](crate::error::exit::WATCHDOG) in the daemon). The last words run on a
//! helper thread and get [`LAST_WORDS_GRACE`]: if they block too (say, on a lock the stuck
//! handler holds), the process ends anyway, with `_exit`.
//!
//! Cancel the watchdog once the run is over ([`StopWatchdog::cancel`], or drop it).
//!
//! Not to be confused with systemd's watchdog (`WatchdogSec=`), which
//! [`notify`](crate::notify) serves.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use signal_hook::SigId;

use crate::error::{Error, Result};

/// How long the last words may take before the process ends without them.
pub const LAST_WORDS_GRACE: Duration = Duration::from_secs(2);

/// What the watchdog enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a graceful stop may take, from the first `SIGINT` (or the loop's own stop).
    pub stop_timeout: Duration,
    /// How long beyond that, and after `SIGTERM` or the last `SIGINT`, the loop gets to end
    /// the run itself.
    pub margin: Duration,
    /// The `SIGINT` that ends the run at once (the kernel's `max_stop_requests`, 3).
    pub max_stops: usize,
    /// `SIGTERM` asks for a graceful stop, as `SIGINT` does (the `sigterm: stop` policy),
    /// rather than the end of the run within the margin.
    pub term_is_stop: bool,
}

/// Why the watchdog fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// A graceful stop outlasted the stop timeout plus the margin.
    StopTimeout,
    /// The run did not end within the margin after `SIGTERM`.
    Terminate,
    /// The run did not end within the margin after the last allowed `SIGINT`.
    RepeatedStops,
}

impl Fired {
    /// What happened, for the log: "the stop timeout of 30 s (plus 1 s) ran out"…
    pub fn describe(self, limits: &Limits) -> String {
        let margin = limits.margin.as_secs_f64();
        match self {
            Fired::StopTimeout => format!(
                "the stop timeout of {} s (plus {margin} s) ran out",
                limits.stop_timeout.as_secs_f64()
            ),
            Fired::Terminate => format!("the run did not end within {margin} s of SIGTERM"),
            Fired::RepeatedStops => format!(
                "the run did not end within {margin} s of SIGINT number {}",
                limits.max_stops
            ),
        }
    }
}

/// What the signal handlers share with the thread. Handlers only touch the atomics and write
/// to the pipe; the rest is behind the mutex, for threads only.
#[derive(Debug)]
struct Shared {
    ints: AtomicUsize,
    terms: AtomicUsize,
    /// The pipe's write end, non-blocking: a full pipe already wakes the thread.
    wake: OwnedFd,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limits: Limits,
    cancelled: bool,
    /// When the stop began: the first `SIGINT` as the thread saw it, or the loop's call.
    stop_since: Option<Instant>,
    ints_seen: usize,
    terms_seen: usize,
    deadline: Option<(Instant, Fired)>,
}

impl State {
    /// Moves the deadline to `at` if that is earlier.
    fn tighten(&mut self, at: Option<Instant>, why: Fired) {
        let Some(at) = at else { return };
        if self.deadline.is_none_or(|(d, _)| at < d) {
            self.deadline = Some((at, why));
        }
    }

    /// Records the beginning of a stop (the earliest wins); returns it.
    fn begin_stop(&mut self, now: Instant) -> Instant {
        let since = *self.stop_since.get_or_insert(now);
        let limits = self.limits;
        let at = since
            .checked_add(limits.stop_timeout)
            .and_then(|t| t.checked_add(limits.margin));
        self.tighten(at, Fired::StopTimeout);
        since
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the thread (from a thread or a signal handler).
    fn wake(&self) {
        // SAFETY: write(2) is async-signal-safe; the buffer is a live one-byte array; the
        // descriptor is open as long as `self` lives. A full pipe (EAGAIN) is fine: the thread
        // is awake anyway.
        unsafe {
            libc::write(self.wake.as_raw_fd(), [1u8].as_ptr().cast(), 1);
        }
    }
}

/// The running stop watchdog (see the [module documentation](self)).
#[derive(Debug)]
pub struct StopWatchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    ids: Vec<SigId>,
}

impl StopWatchdog {
    /// Installs the `SIGINT` and `SIGTERM` handlers and starts the thread. When a deadline
    /// passes (see the module docs), it calls `last_words` with the reason (and the limits in
    /// force, which [`set_stop_timeout`](Self::set_stop_timeout) may have changed) and then ends the
    /// process with `exit_code` (`std::process::exit`, or `_exit` if the last words have not
    /// returned within [`LAST_WORDS_GRACE`]).
    ///
    /// `last_words` runs on another thread while the event loop may still be running, stuck.
    /// It should only do what is safe then: remove the pidfile, write a log line.
    ///
    /// Start it after the last `fork` (it starts a thread) and before the process's PID is
    /// published, so no `SIGINT` or `SIGTERM` can come unwatched.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the pipe, a handler or the thread cannot be created.
    pub fn start<F>(limits: Limits, exit_code: i32, last_words: F) -> Result<StopWatchdog>
    where
        F: FnOnce(Fired, Limits) + Send + 'static,
    {
        Self::start_with_grace(limits, LAST_WORDS_GRACE, exit_code, last_words)
    }

    fn start_with_grace<F>(
        limits: Limits,
        grace: Duration,
        exit_code: i32,
        last_words: F,
    ) -> Result<StopWatchdog>
    where
        F: FnOnce(Fired, Limits) + Send + 'static,
    {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| Error::os("create the stop watchdog's pipe", e.into()))?;
        let shared = Arc::new(Shared {
            ints: AtomicUsize::new(0),
            terms: AtomicUsize::new(0),
            wake: write,
            state: Mutex::new(State {
                limits,
                cancelled: false,
                stop_since: None,
                ints_seen: 0,
                terms_seen: 0,
                deadline: None,
            }),
        });
        let mut watchdog = StopWatchdog {
            shared: Arc::clone(&shared),
            thread: None,
            ids: Vec::with_capacity(2),
        };
        for signal in [libc::SIGINT, libc::SIGTERM] {
            let shared = Arc::clone(&shared);
            let action = move || {
                let counter = if signal == libc::SIGINT {
                    &shared.ints
                } else {
                    &shared.terms
                };
                counter.fetch_add(1, Ordering::SeqCst);
                shared.wake();
            };
            // SAFETY: the action is async-signal-safe: one atomic increment and one write(2);
            // no allocation, no locks, no panics. signal-hook saves and restores errno.
            let id = unsafe { signal_hook::low_level::register(signal, action) }
                .map_err(|e| Error::os("install the stop watchdog's signal handlers", e))?;
            watchdog.ids.push(id);
        }
        let (running, started) = mpsc::sync_channel(0);
        let thread = thread::Builder::new()
            .name("stop-watchdog".into())
            .spawn(move || {
                let _ = running.send(());
                if let Some((why, limits)) = watch(&shared, &read) {
                    fire(grace, exit_code, move || last_words(why, limits));
                }
            })
            .map_err(|e| Error::os("start the stop watchdog thread", e))?;
        // The thread's own start-up (which allocates) is over before the loop runs: the
        // steady state allocates nothing, on any thread.
        let _ = started.recv();
        watchdog.thread = Some(thread);
        Ok(watchdog)
    }

    /// The loop begins a graceful stop (a `SIGINT` it took, or a component's request): the
    /// stop timeout runs from now, unless a `SIGINT` started it earlier. Returns when the stop
    /// began, so the kernel's own stop timeout can count from the same instant.
    pub fn stop_began(&self) -> Instant {
        let since = self.shared.lock().begin_stop(Instant::now());
        self.shared.wake();
        since
    }

    /// A new stop timeout, for a stop that has not begun yet (a reload).
    pub fn set_stop_timeout(&self, stop_timeout: Duration) {
        self.shared.lock().limits.stop_timeout = stop_timeout;
    }

    /// A new `SIGTERM` policy (a reload): see [`Limits::term_is_stop`].
    pub fn set_term_is_stop(&self, term_is_stop: bool) {
        self.shared.lock().limits.term_is_stop = term_is_stop;
    }

    /// Stops the watchdog before it fires and waits for its thread to end. The signal
    /// handlers are removed.
    pub fn cancel(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.lock().cancelled = true;
        self.shared.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

impl Drop for StopWatchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The thread: sleeps until a signal, a call or the deadline; returns why it must fire (and
/// the limits then in force), or `None` once cancelled.
fn watch(shared: &Shared, read: &OwnedFd) -> Option<(Fired, Limits)> {
    loop {
        let timeout = {
            let state = shared.lock();
            if state.cancelled {
                return None;
            }
            match state.deadline {
                None => PollTimeout::NONE,
                Some((at, _)) => {
                    // Whole milliseconds, rounded up: never early (the check below decides).
                    let ms = at.saturating_duration_since(Instant::now()).as_nanos();
                    PollTimeout::try_from(ms.div_ceil(1_000_000)).unwrap_or(PollTimeout::MAX)
                }
            }
        };
        let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            // Not expected; do not spin on it.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
        drain(read);
        let now = Instant::now();
        let mut state = shared.lock();
        if state.cancelled {
            return None;
        }
        let mut ints = shared.ints.load(Ordering::SeqCst);
        let terms = shared.terms.load(Ordering::SeqCst);
        if state.limits.term_is_stop {
            // Under `sigterm: stop` the loop counts each SIGTERM as a stop request.
            ints += terms;
        } else if terms > state.terms_seen {
            state.terms_seen = terms;
            let at = now.checked_add(state.limits.margin);
            state.tighten(at, Fired::Terminate);
        }
        if ints > state.ints_seen {
            state.ints_seen = ints;
            state.begin_stop(now);
            if ints >= state.limits.max_stops {
                let at = now.checked_add(state.limits.margin);
                state.tighten(at, Fired::RepeatedStops);
            }
        }
        if let Some((at, why)) = state.deadline {
            if now >= at {
                return Some((why, state.limits));
            }
        }
    }
}

/// Empties the (non-blocking) pipe.
fn drain(read: &OwnedFd) {
    let mut buf = [0u8; 64];
    while let Ok(n) = nix::unistd::read(read, &mut buf) {
        if n < buf.len() {
            break;
        }
    }
}

/// Runs the last words on a helper thread for at most `grace`, then ends the process.
fn fire<F: FnOnce() + Send + 'static>(grace: Duration, exit_code: i32, last_words: F) -> ! {
    let (done, finished) = mpsc::channel();
    let helper = thread::Builder::new()
        .name("last-words".into())
        .spawn(move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(last_words));
            let _ = done.send(());
        });
    let in_time = helper.is_ok() && finished.recv_timeout(grace).is_ok();
    if in_time {
        std::process::exit(exit_code);
    }
    // SAFETY: _exit ends the process at once; no Rust state is touched afterwards. It skips
    // the exit handlers on purpose: one of them could block like the last words did.
    unsafe { nix::libc::_exit(exit_code) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Set in the child process that the firing tests start; its value is the marker file.
    const CHILD_ENV: &str = "ZENDAEMON_WATCHDOG_CHILD";

    fn limits(stop_timeout_ms: u64, margin_ms: u64) -> Limits {
        Limits {
            stop_timeout: Duration::from_millis(stop_timeout_ms),
            margin: Duration::from_millis(margin_ms),
            max_stops: 3,
            term_is_stop: false,
        }
    }

    /// Limits for watchdogs started in the test process itself: other tests there raise
    /// `SIGINT` and `SIGTERM`, which these watchdogs see too, so they must never fire.
    const NEVER: (u64, u64) = (3_600_000, 3_600_000);

    #[test]
    fn cancel_before_anything_happened_runs_nothing() {
        let watchdog = StopWatchdog::start(limits(NEVER.0, NEVER.1), 99, |_, _| panic!("fired"))
            .expect("started");
        thread::sleep(Duration::from_millis(20));
        watchdog.cancel();
    }

    #[test]
    fn a_stop_the_loop_begins_counts_from_the_first_call() {
        let watchdog = StopWatchdog::start(limits(NEVER.0, NEVER.1), 99, |_, _| panic!("fired"))
            .expect("started");
        let first = watchdog.stop_began();
        thread::sleep(Duration::from_millis(2));
        assert_eq!(watchdog.stop_began(), first, "a later call moved the start");
        watchdog.cancel();
    }

    #[test]
    fn deadlines_only_move_earlier() {
        let mut state = State {
            limits: limits(30_000, 1000),
            cancelled: false,
            stop_since: None,
            ints_seen: 0,
            terms_seen: 0,
            deadline: None,
        };
        let t0 = Instant::now();
        assert_eq!(state.begin_stop(t0), t0);
        assert_eq!(
            state.deadline,
            Some((t0 + Duration::from_secs(31), Fired::StopTimeout))
        );
        state.tighten(Some(t0 + Duration::from_secs(40)), Fired::Terminate);
        assert_eq!(state.deadline.unwrap().1, Fired::StopTimeout);
        state.tighten(Some(t0 + Duration::from_secs(2)), Fired::Terminate);
        assert_eq!(
            state.deadline,
            Some((t0 + Duration::from_secs(2), Fired::Terminate))
        );
        // An endless stop timeout never overflows.
        state.limits.stop_timeout = Duration::MAX;
        state.stop_since = None;
        state.begin_stop(t0);
        assert_eq!(state.deadline.unwrap().1, Fired::Terminate);
    }

    #[test]
    fn reasons_read_well() {
        let l = limits(30_000, 1000);
        assert_eq!(
            Fired::StopTimeout.describe(&l),
            "the stop timeout of 30 s (plus 1 s) ran out"
        );
        assert_eq!(
            Fired::Terminate.describe(&l),
            "the run did not end within 1 s of SIGTERM"
        );
        assert_eq!(
            Fired::RepeatedStops.describe(&l),
            "the run did not end within 1 s of SIGINT number 3"
        );
    }

    /// Runs the test `name` of this test binary in a child process.
    fn run_child(name: &str, marker: &std::path::Path) -> (std::process::Output, Duration) {
        let start = Instant::now();
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, marker)
            .output()
            .unwrap();
        (output, start.elapsed())
    }

    #[test]
    fn fires_with_last_words_when_the_loop_hangs_in_its_stop() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("last-words");
        let (output, elapsed) = run_child("watchdog::tests::child_hangs_in_a_handler", &marker);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(42), "{stderr}");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "StopTimeout");
        assert!(elapsed >= Duration::from_millis(80));
    }

    #[test]
    fn sigterm_fires_within_the_margin_whatever_the_stop_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("last-words");
        let (output, _) = run_child("watchdog::tests::child_gets_sigterm", &marker);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(44), "{stderr}");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "Terminate");
    }

    #[test]
    fn fires_even_when_the_last_words_hang() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("last-words");
        let (output, _) = run_child("watchdog::tests::child_hangs_in_its_last_words", &marker);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(43), "{stderr}");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "started");
    }

    /// Child side of `fires_with_last_words_when_the_loop_hangs_in_its_stop`; passes at once
    /// otherwise.
    #[test]
    fn child_hangs_in_a_handler() {
        let Some(marker) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let watchdog = StopWatchdog::start(limits(50, 30), 42, move |why, _| {
            std::fs::write(marker, format!("{why:?}")).unwrap();
        })
        .unwrap();
        watchdog.stop_began();
        loop {
            thread::park(); // a handler that never returns
        }
    }

    /// Child side of `sigterm_fires_within_the_margin_whatever_the_stop_timeout`.
    #[test]
    fn child_gets_sigterm() {
        let Some(marker) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let _watchdog = StopWatchdog::start(limits(3_600_000, 30), 44, move |why, _| {
            std::fs::write(marker, format!("{why:?}")).unwrap();
        })
        .unwrap();
        // Caught by the watchdog's handler: no default action.
        signal_hook::low_level::raise(libc::SIGTERM).unwrap();
        loop {
            thread::park();
        }
    }

    /// Child side of `fires_even_when_the_last_words_hang`; passes at once otherwise.
    #[test]
    fn child_hangs_in_its_last_words() {
        let Some(marker) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let watchdog =
            StopWatchdog::start_with_grace(limits(10, 0), Duration::from_millis(50), 43, {
                move |_, _| {
                    std::fs::write(marker, "started").unwrap();
                    loop {
                        thread::park();
                    }
                }
            })
            .unwrap();
        watchdog.stop_began();
        loop {
            thread::park();
        }
    }
}
