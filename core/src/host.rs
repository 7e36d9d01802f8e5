//! The kernel's queue as a host and a handler see it: the user's events only.
//!
//! The kernel keeps its periodic lifecycle events (`log_statistics`, `save_runlog`,
//! `checkpoint`) in the same timed queue as the user's timers, so the queue holds [`Event<U>`].
//! Handing that queue out would let a host schedule `start`, `stop` or `terminate` behind the
//! kernel's back and break the lifecycle rules. [`HostQueue`] is the narrow view
//! [`Kernel::queue`](crate::Kernel::queue) gives instead: it schedules, cancels and moves the
//! user's events (`U`), and reads the queue's figures. The lifecycle moves only through named requests
//! ([`Kernel::request_stop`](crate::Kernel::request_stop), [`Requests`](crate::Requests),
//! [`Context::request_stop`](crate::Context::request_stop), …).
//!
//! ```compile_fail
//! use zendaemon_core::{Event, Kernel, ManualClock, Settings};
//!
//! let mut kernel: Kernel<'_, (), ManualClock, 1, { zendaemon_core::kinds::<()>() }, 1, 4, 4> =
//!     Kernel::new(Settings::default());
//! // A host forging `terminate`: does not compile.
//! let _ = kernel.queue().schedule(Event::Terminate);
//! ```

use core::fmt;

use embedded_time::{Clock, Instant};

use crate::component::Scheduler;
use crate::event::Event;
use crate::queue::{EventQueue, QueueStats, ScheduleError};
use crate::time::{duration_to_ticks, Delay, TickInt};
use crate::timer::{TimerError, TimerHandle};

/// The user event inside an event the caller built as `Event::User`. Out of line, one copy
/// per event type: it runs only on the error paths, and inlined into each of the eight
/// scheduling methods it cost firmware 40-60 bytes apiece.
#[inline(never)]
pub(crate) fn user<U>(event: Event<U>) -> U {
    match event {
        Event::User(u) => u,
        _ => not_user(),
    }
}

#[cold]
#[inline(never)]
fn not_user() -> ! {
    unreachable!("a user-event view only ever puts user events in")
}

impl<U, C, const S: usize, const T: usize> Scheduler<U, C> for EventQueue<Event<U>, C, S, T>
where
    U: Clone,
    C: Clock,
    C::T: TickInt,
{
    #[inline]
    fn schedule(&mut self, event: U) -> Result<(), ScheduleError<U>> {
        EventQueue::schedule(self, Event::User(event)).map_err(|e| e.map(user))
    }
    #[inline]
    fn schedule_next(&mut self, event: U) -> Result<(), ScheduleError<U>> {
        EventQueue::schedule_next(self, Event::User(event)).map_err(|e| e.map(user))
    }
    fn schedule_at(&mut self, at: Instant<C>, event: U) -> Result<TimerHandle, ScheduleError<U>> {
        EventQueue::schedule_at(self, at, Event::User(event)).map_err(|e| e.map(user))
    }
    fn schedule_after_ticks(
        &mut self,
        ticks: Option<u64>,
        event: U,
    ) -> Result<TimerHandle, ScheduleError<U>> {
        EventQueue::schedule_after_ticks(self, ticks.unwrap_or(u64::MAX), Event::User(event))
            .map_err(|e| e.map(user))
    }
    fn schedule_every_ticks(
        &mut self,
        period: Option<u64>,
        event: U,
    ) -> Result<TimerHandle, ScheduleError<U>> {
        EventQueue::schedule_every_ticks(self, period.unwrap_or(u64::MAX), Event::User(event))
            .map_err(|e| e.map(user))
    }
    fn cancel(&mut self, handle: TimerHandle) -> Result<U, TimerError> {
        user_timer(self, handle)?;
        EventQueue::cancel(self, handle).map(user)
    }
    fn reschedule(&mut self, handle: TimerHandle, at: Instant<C>) -> Result<(), TimerError> {
        user_timer(self, handle)?;
        EventQueue::reschedule(self, handle, at)
    }
    fn reschedule_after_ticks(
        &mut self,
        handle: TimerHandle,
        ticks: Option<u64>,
    ) -> Result<(), TimerError> {
        user_timer(self, handle)?;
        EventQueue::reschedule_after_ticks(self, handle, ticks.unwrap_or(u64::MAX))
    }
}

/// `Err(Stale)` when `handle` names a pending timer of one of the kernel's own events: they
/// are out of a user's reach, as if their handles were stale. Otherwise the queue's own
/// operation decides (and reports a stale handle or a deadline beyond the horizon in its own
/// order).
#[inline(never)]
fn user_timer<U, C, const S: usize, const T: usize>(
    queue: &EventQueue<Event<U>, C, S, T>,
    handle: TimerHandle,
) -> Result<(), TimerError>
where
    C: Clock,
    C::T: TickInt,
{
    match queue.get(handle) {
        Ok(Event::User(_)) | Err(_) => Ok(()),
        Ok(_) => Err(TimerError::Stale),
    }
}

/// The kernel's queue as a host sees it, from [`Kernel::queue`](crate::Kernel::queue): it
/// schedules the user's events `U` only (see the module docs for why).
pub struct HostQueue<'a, U, C: Clock, const S: usize, const T: usize> {
    queue: &'a mut EventQueue<Event<U>, C, S, T>,
}

impl<U, C: Clock, const S: usize, const T: usize> fmt::Debug for HostQueue<'_, U, C, S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.queue, f)
    }
}

impl<'a, U, C, const S: usize, const T: usize> HostQueue<'a, U, C, S, T>
where
    U: Clone,
    C: Clock,
    C::T: TickInt,
{
    pub(crate) fn new(queue: &'a mut EventQueue<Event<U>, C, S, T>) -> Self {
        Self { queue }
    }

    /// Tells the queue what time it is (see [`EventQueue::advance`]), so that
    /// [`schedule_after`](Self::schedule_after) measures from `now` before the first step.
    pub fn advance(&mut self, now: Instant<C>) {
        self.queue.advance(now);
    }

    /// The last `now` the queue saw.
    pub fn now(&self) -> Instant<C> {
        self.queue.now()
    }

    /// Appends an event to the sequential queue.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::Full`] hands the event back when the queue is at capacity.
    #[inline]
    pub fn schedule(&mut self, event: impl Into<U>) -> Result<(), ScheduleError<U>> {
        Scheduler::schedule(self.queue, event.into())
    }

    /// Puts an event at the front of the sequential queue.
    ///
    /// # Errors
    ///
    /// As [`schedule`](Self::schedule).
    #[inline]
    pub fn schedule_next(&mut self, event: impl Into<U>) -> Result<(), ScheduleError<U>> {
        Scheduler::schedule_next(self.queue, event.into())
    }

    /// Schedules an event at an instant (see [`EventQueue::schedule_at`]).
    ///
    /// # Errors
    ///
    /// [`ScheduleError`] with the event when the timed queue is full.
    pub fn schedule_at(
        &mut self,
        at: Instant<C>,
        event: impl Into<U>,
    ) -> Result<TimerHandle, ScheduleError<U>> {
        Scheduler::schedule_at(self.queue, at, event.into())
    }

    /// Schedules an event `delay` after the last `now`; never early.
    ///
    /// # Errors
    ///
    /// [`ScheduleError`] with the event when the timed queue is full or the delay lies beyond
    /// the clock's horizon.
    pub fn schedule_after<D>(
        &mut self,
        delay: D,
        event: impl Into<U>,
    ) -> Result<TimerHandle, ScheduleError<U>>
    where
        D: Delay,
    {
        let ticks = duration_to_ticks::<C, _>(delay);
        Scheduler::schedule_after_ticks(self.queue, ticks, event.into())
    }

    /// Schedules a periodic event, drift-free (see [`EventQueue::schedule_every`]).
    ///
    /// # Errors
    ///
    /// As [`schedule_after`](Self::schedule_after), and [`ScheduleError::ZeroPeriod`].
    pub fn schedule_every<D>(
        &mut self,
        period: D,
        event: impl Into<U>,
    ) -> Result<TimerHandle, ScheduleError<U>>
    where
        D: Delay,
    {
        let ticks = duration_to_ticks::<C, _>(period);
        Scheduler::schedule_every_ticks(self.queue, ticks, event.into())
    }

    /// Cancels a timed user event and hands it back.
    ///
    /// # Errors
    ///
    /// [`TimerError::Stale`] when the timer fired, was cancelled, or is not one of the user's.
    pub fn cancel(&mut self, handle: TimerHandle) -> Result<U, TimerError> {
        Scheduler::cancel(self.queue, handle)
    }

    /// Moves a timed user event to a new instant.
    ///
    /// # Errors
    ///
    /// As [`cancel`](Self::cancel).
    pub fn reschedule(&mut self, handle: TimerHandle, at: Instant<C>) -> Result<(), TimerError> {
        Scheduler::reschedule(self.queue, handle, at)
    }

    /// Moves a timed user event to `delay` after the last `now`.
    ///
    /// # Errors
    ///
    /// As [`cancel`](Self::cancel), and [`TimerError::BeyondHorizon`].
    pub fn reschedule_after<D>(&mut self, handle: TimerHandle, delay: D) -> Result<(), TimerError>
    where
        D: Delay,
    {
        let ticks = duration_to_ticks::<C, _>(delay);
        Scheduler::reschedule_after_ticks(self.queue, handle, ticks)
    }

    /// Takes the front of the sequential queue out without dispatching it: for a host that
    /// ends a run and keeps the work that was left. Lifecycle events are never in the
    /// sequential queue, so this is always a user event.
    pub fn take_sequential(&mut self) -> Option<U> {
        self.queue.pop_sequential().map(user)
    }

    /// The deadline of a pending timer.
    ///
    /// # Errors
    ///
    /// [`TimerError::Stale`] when the timer is gone.
    pub fn deadline(&self, handle: TimerHandle) -> Result<Instant<C>, TimerError> {
        self.queue.deadline(handle)
    }

    /// Events waiting in both queues, the kernel's periodic timers included.
    pub fn count(&self) -> usize {
        self.queue.count()
    }

    /// Events waiting in the sequential queue.
    pub fn sequential_len(&self) -> usize {
        self.queue.sequential_len()
    }

    /// Timed events pending, the kernel's periodic timers included.
    pub fn timed_len(&self) -> usize {
        self.queue.timed_len()
    }

    /// The instant of the earliest deadline.
    pub fn when(&self) -> Option<Instant<C>> {
        self.queue.when()
    }

    /// The queue's own counters.
    pub fn stats(&self) -> QueueStats {
        self.queue.stats()
    }

    /// Checks the timed queue's heap and slot links (tests and fuzzing).
    #[cfg(any(test, feature = "invariants"))]
    pub fn check_invariants(&self) {
        self.queue.check_invariants();
    }
}
