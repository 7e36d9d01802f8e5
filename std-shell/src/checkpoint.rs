//! Checkpoints of the persistent state: written durably, off the event loop.
//!
//! A checkpoint is the persistent state file ([`pstate`](crate::pstate)) written with
//! [`write_atomic_mode`] (0600 for a new file): a new file, fsynced, renamed over the old
//! one, and the directory fsynced,
//! so after a crash or a power loss the file holds one whole checkpoint, the last one whose
//! write finished. The fsyncs are what make it durable, and they are slow: 6–28 ms each on the
//! machine of `BENCHMARKS.md`, against a loop that hands out batches of 20 µs. So the loop
//! only collects and serializes the state (one `persist()` per service, a few µs to a few
//! hundred µs, see `BENCHMARKS.md`), and a [`Writer`] thread does the write and the fsyncs.
//!
//! The writer has a single slot, latest wins: a checkpoint handed over while the previous
//! one is still being written replaces any that waits, so a slow disk never queues up work
//! or memory, and the file never goes back in time (each write carries a newer state than
//! the one before it). [`Writer::flush`] waits until the slot is empty and no write is under
//! way; the shell calls it before the final write at the end of a run, which it does itself,
//! synchronously.
//!
//! A failed write is logged by the writer thread and counted; the runner collects the
//! messages ([`Writer::take_errors`]) into the run's errors. The old file is then untouched.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::atomic::{write_atomic_mode, PRIVATE_MODE};

/// What the loop and the writer thread share.
#[derive(Debug, Default)]
struct Slot {
    /// The newest checkpoint not yet taken by the writer.
    pending: Option<(PathBuf, Vec<u8>)>,
    /// The writer is writing one.
    busy: bool,
    /// The runner is done: the writer ends once the slot is empty.
    closing: bool,
    /// The thread runs (its start-up allocations are behind it).
    running: bool,
    /// Messages of failed writes, not yet taken.
    errors: Vec<String>,
    /// Checkpoints written, and replaced before they could be written.
    written: u64,
    superseded: u64,
}

#[derive(Debug, Default)]
struct Shared {
    slot: Mutex<Slot>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer thread of checkpoints (see the module docs). Start it in the process that runs
/// the loop (after daemonizing: a fork keeps no threads).
#[derive(Debug)]
pub struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread.
    ///
    /// # Errors
    ///
    /// The thread could not be spawned.
    pub fn start() -> std::io::Result<Writer> {
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || write_loop(&theirs))?;
        // Wait for the thread to run, so its start-up (which allocates) is not in the
        // middle of the loop's steady state.
        let mut slot = shared.lock();
        while !slot.running {
            slot = shared
                .changed
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(slot);
        Ok(Writer {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands a checkpoint over: `bytes` go to `path`. Returns at once; a checkpoint that was
    /// waiting is replaced.
    pub fn submit(&self, path: PathBuf, bytes: Vec<u8>) {
        let mut slot = self.shared.lock();
        if slot.pending.replace((path, bytes)).is_some() {
            slot.superseded += 1;
        }
        drop(slot);
        self.shared.changed.notify_all();
    }

    /// Waits until every checkpoint handed over is written (or failed).
    pub fn flush(&self) {
        let mut slot = self.shared.lock();
        while slot.pending.is_some() || slot.busy {
            slot = self
                .shared
                .changed
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The messages of writes that failed since the last call.
    pub fn take_errors(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.lock().errors)
    }

    /// Checkpoints written so far, and those replaced by a newer one before their write.
    pub fn counts(&self) -> (u64, u64) {
        let slot = self.shared.lock();
        (slot.written, slot.superseded)
    }
}

impl Drop for Writer {
    /// Writes what waits, then ends the thread.
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(shared: &Shared) {
    let mut slot = shared.lock();
    slot.running = true;
    shared.changed.notify_all();
    loop {
        if let Some((path, bytes)) = slot.pending.take() {
            slot.busy = true;
            drop(slot);
            let result = write_atomic_mode(&path, &bytes, PRIVATE_MODE);
            slot = shared.lock();
            slot.busy = false;
            match result {
                Ok(()) => slot.written += 1,
                Err(e) => {
                    log::error!("checkpoint: {e}");
                    slot.errors.push(e.to_string());
                }
            }
            shared.changed.notify_all();
            continue;
        }
        if slot.closing {
            return;
        }
        slot = shared
            .changed
            .wait(slot)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn writes_the_latest_and_flush_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pstate");
        let w = Writer::start().unwrap();
        for i in 0..50 {
            w.submit(path.clone(), format!("{i}\n").into_bytes());
        }
        w.flush();
        assert_eq!(fs::read_to_string(&path).unwrap(), "49\n");
        let (written, superseded) = w.counts();
        assert_eq!(written + superseded, 50);
        assert!(written >= 1);
        assert!(w.take_errors().is_empty());
    }

    #[test]
    fn a_failed_write_is_reported_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::start().unwrap();
        let bad = dir.path().join("missing-dir").join("d.pstate");
        w.submit(bad, b"x".to_vec());
        w.flush();
        let errors = w.take_errors();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("missing-dir"), "{errors:?}");
        let good = dir.path().join("d.pstate");
        w.submit(good.clone(), b"y".to_vec());
        w.flush();
        assert_eq!(fs::read(&good).unwrap(), b"y");
    }

    #[test]
    fn drop_writes_what_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pstate");
        let w = Writer::start().unwrap();
        w.submit(path.clone(), b"last".to_vec());
        drop(w);
        assert_eq!(fs::read(&path).unwrap(), b"last");
    }
}
