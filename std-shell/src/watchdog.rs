//! The stop watchdog: enforces the stop timeout from outside the event loop.
//!
//! A graceful stop lets components finish their work, but a handler that never returns would
//! keep the daemon alive for ever. When a stop is requested, the shell starts a
//! [`StopWatchdog`] on its own thread. If the loop ends in time it cancels the watchdog;
//! otherwise, at the timeout, the watchdog calls the caller's *last words* (remove the
//! pidfile, log a line) and ends the process with the given exit code.
//!
//! The last words run on a helper thread and get [`LAST_WORDS_GRACE`]: if they block too
//! (say, on a lock the stuck handler holds), the process ends anyway, with `_exit`.
//!
//! Not to be confused with systemd's watchdog (`WatchdogSec=`), which
//! [`notify`](crate::notify) serves.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long the last words may take before the process ends without them.
pub const LAST_WORDS_GRACE: Duration = Duration::from_secs(2);

/// The cancellation flag and the condition variable the watchdog thread sleeps on.
type Cancel = Arc<(Mutex<bool>, Condvar)>;

/// A running stop watchdog. Cancel it (or drop it) when the loop has ended in time.
#[derive(Debug)]
pub struct StopWatchdog {
    cancel: Cancel,
    thread: Option<JoinHandle<()>>,
}

impl StopWatchdog {
    /// Starts the watchdog: unless cancelled within `timeout`, it calls `last_words` and then
    /// ends the process with `exit_code` (`std::process::exit`, or `_exit` if the last words
    /// have not returned within [`LAST_WORDS_GRACE`]).
    ///
    /// `last_words` runs on another thread while the event loop may still be running, stuck.
    /// It should only do what is safe then: remove the pidfile, write a log line.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the thread cannot be started.
    pub fn start<F>(timeout: Duration, exit_code: i32, last_words: F) -> Result<StopWatchdog>
    where
        F: FnOnce() + Send + 'static,
    {
        Self::start_with_grace(timeout, LAST_WORDS_GRACE, exit_code, last_words)
    }

    fn start_with_grace<F>(
        timeout: Duration,
        grace: Duration,
        exit_code: i32,
        last_words: F,
    ) -> Result<StopWatchdog>
    where
        F: FnOnce() + Send + 'static,
    {
        let deadline = Instant::now().checked_add(timeout);
        let cancel: Cancel = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&cancel);
        let thread = thread::Builder::new()
            .name("stop-watchdog".into())
            .spawn(move || {
                if wait_for_cancel(&flag, deadline) {
                    return;
                }
                fire(grace, exit_code, last_words);
            })
            .map_err(|e| Error::os("start the stop watchdog thread", e))?;
        Ok(StopWatchdog {
            cancel,
            thread: Some(thread),
        })
    }

    /// Stops the watchdog before it fires and waits for its thread to end.
    pub fn cancel(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let (lock, condvar) = &*self.cancel;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        condvar.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for StopWatchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sleeps until cancelled (`true`) or until `deadline` (`false`); `None` is never.
fn wait_for_cancel(cancel: &Cancel, deadline: Option<Instant>) -> bool {
    let (lock, condvar) = &**cancel;
    let mut cancelled = lock.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if *cancelled {
            return true;
        }
        match deadline {
            None => {
                cancelled = condvar
                    .wait(cancelled)
                    .unwrap_or_else(PoisonError::into_inner)
            }
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return false;
                }
                cancelled = condvar
                    .wait_timeout(cancelled, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
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
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Set in the child process that the firing tests start; its value is the marker file.
    const CHILD_ENV: &str = "ZENDAEMON_WATCHDOG_CHILD";

    #[test]
    fn cancel_before_the_timeout_runs_nothing() {
        let fired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&fired);
        let watchdog = StopWatchdog::start(Duration::from_secs(3600), 99, move || {
            flag.store(true, Ordering::SeqCst)
        })
        .unwrap();
        watchdog.cancel();
        assert!(!fired.load(Ordering::SeqCst));
    }

    #[test]
    fn dropping_cancels_too_even_with_an_endless_timeout() {
        let fired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&fired);
        let watchdog = StopWatchdog::start(Duration::MAX, 99, move || {
            flag.store(true, Ordering::SeqCst)
        })
        .unwrap();
        drop(watchdog);
        assert!(!fired.load(Ordering::SeqCst));
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
    fn fires_with_last_words_when_the_loop_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("last-words");
        let (output, elapsed) = run_child("watchdog::tests::child_hangs_in_a_handler", &marker);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(42), "{stderr}");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "pidfile removed");
        assert!(elapsed >= Duration::from_millis(50));
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

    /// Child side of `fires_with_last_words_when_the_loop_hangs`; passes at once otherwise.
    #[test]
    fn child_hangs_in_a_handler() {
        let Some(marker) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let _watchdog = StopWatchdog::start(Duration::from_millis(50), 42, move || {
            std::fs::write(marker, "pidfile removed").unwrap();
        })
        .unwrap();
        loop {
            thread::park(); // a handler that never returns
        }
    }

    /// Child side of `fires_even_when_the_last_words_hang`; passes at once otherwise.
    #[test]
    fn child_hangs_in_its_last_words() {
        let Some(marker) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let _watchdog = StopWatchdog::start_with_grace(
            Duration::from_millis(10),
            Duration::from_millis(50),
            43,
            move || {
                std::fs::write(marker, "started").unwrap();
                loop {
                    thread::park();
                }
            },
        )
        .unwrap();
        loop {
            thread::park();
        }
    }
}
