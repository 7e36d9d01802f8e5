//! The event queue: a sequential queue and a timed queue behind one `next(now)`.
//!
//! This is pyzenkit's `EventQueueManager`, with fixed capacities and a few promises it did
//! not make:
//!
//! * **Nothing is dropped silently.** Every schedule call returns a `Result`; a full queue hands
//!   the event back in [`ScheduleError::Full`] and counts the rejection.
//! * **Timers never fire early**, and equal deadlines leave in the order they were scheduled.
//! * **Wrap-safe.** Deadlines live on a `u64` [`Timeline`], so `u32` tick clocks wrap freely;
//!   a deadline more than half the clock's wrap period ahead is refused
//!   ([`ScheduleError::BeyondHorizon`]) rather than misordered.
//! * **Cancellable.** Timed events return a [`TimerHandle`] for `cancel` and `reschedule`.
//!
//! # Order of `next(now)`
//!
//! 1. A *due* timed event (deadline ≤ now) goes first, earliest deadline first, equal deadlines
//!    in scheduling order — subject to the fairness rule below.
//! 2. Otherwise the front of the sequential queue (`schedule` appends, `schedule_next`
//!    prepends).
//! 3. Otherwise, if timers are pending, [`Next::Wait`] with the instant of the next deadline, so
//!    the host can sleep exactly until then.
//! 4. Otherwise [`Next::Empty`].
//!
//! # Fairness
//!
//! A run of consecutive timed events returned by `next` is a *burst*. When a burst starts, the
//! queue notes the sequence number the next scheduled timer will get. While the burst lasts, if
//! the earliest due timer was scheduled (or rescheduled, or re-armed) *after* that point and the
//! sequential queue is not empty, the front of the sequential queue is served first, which ends
//! the burst. Any return other than a timed event ends the burst.
//!
//! So a timer that re-arms itself with zero delay from its own dispatch, or a periodic timer
//! whose period is shorter than its handler, alternates with sequential work instead of
//! starving it, while timers that were already due when the burst began still all go first.

use core::fmt;
use core::marker::PhantomData;

use embedded_time::fixed_point::FixedPoint;
use embedded_time::{Clock, Instant};
use heapless::Deque;

use crate::time::{duration_to_ticks, instant_ticks, TickInt, Timeline};
use crate::timer::{Fired, TimerError, TimerHandle, TimerQueue};

/// Why an event could not be scheduled. The event is always handed back.
#[derive(PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ScheduleError<E> {
    /// The queue is at capacity.
    Full(E),
    /// The deadline lies further ahead than half the clock's wrap period.
    BeyondHorizon(E),
    /// A periodic event needs a period of at least one tick.
    ZeroPeriod(E),
}

impl<E> ScheduleError<E> {
    /// The event that was not scheduled.
    pub fn into_event(self) -> E {
        match self {
            Self::Full(e) | Self::BeyondHorizon(e) | Self::ZeroPeriod(e) => e,
        }
    }

    /// The error without the event, for reporting.
    pub fn kind(&self) -> ScheduleErrorKind {
        match self {
            Self::Full(_) => ScheduleErrorKind::Full,
            Self::BeyondHorizon(_) => ScheduleErrorKind::BeyondHorizon,
            Self::ZeroPeriod(_) => ScheduleErrorKind::ZeroPeriod,
        }
    }
}

/// [`ScheduleError`] without its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ScheduleErrorKind {
    /// See [`ScheduleError::Full`].
    Full,
    /// See [`ScheduleError::BeyondHorizon`].
    BeyondHorizon,
    /// See [`ScheduleError::ZeroPeriod`].
    ZeroPeriod,
}

impl fmt::Display for ScheduleErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "event queue full",
            Self::BeyondHorizon => "deadline beyond the clock's horizon (half its wrap period)",
            Self::ZeroPeriod => "a periodic event needs a period of at least one tick",
        })
    }
}

impl<E> fmt::Debug for ScheduleError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScheduleError::{:?}(..)", self.kind())
    }
}

impl<E> fmt::Display for ScheduleError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind(), f)
    }
}

impl<E> core::error::Error for ScheduleError<E> {}

/// What [`EventQueue::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<E, C: Clock> {
    /// A timed event whose deadline has come.
    Timed(Fired<E>),
    /// The front of the sequential queue.
    Sequential(E),
    /// Nothing to do before this instant (the earliest deadline).
    Wait(Instant<C>),
    /// Both queues are empty.
    Empty,
}

/// Counters the queue keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct QueueStats {
    /// Schedule calls refused because a queue was full.
    pub rejected: u32,
    /// Most events the sequential queue ever held at once.
    pub sequential_high_water: u16,
    /// Most timers the timed queue ever held at once.
    pub timed_high_water: u16,
    /// Periods skipped by periodic timers that fired late.
    pub missed_periods: u32,
}

/// Sequential and timed events, with fixed capacities `SEQ` and `TIMED`, on clock `C`.
///
/// Time only moves when the host passes `now` ([`next`](Self::next) or
/// [`advance`](Self::advance)); `schedule_after` measures from the last `now` seen.
pub struct EventQueue<E, C: Clock, const SEQ: usize, const TIMED: usize> {
    sequential: Deque<E, SEQ>,
    timers: TimerQueue<E, TIMED>,
    timeline: Timeline,
    /// The fairness barrier of the current burst (see the module docs).
    burst: Option<u64>,
    stats: QueueStats,
    clock: PhantomData<fn() -> C>,
}

impl<E, C: Clock, const SEQ: usize, const TIMED: usize> fmt::Debug
    for EventQueue<E, C, SEQ, TIMED>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventQueue")
            .field("sequential", &self.sequential.len())
            .field("timed", &self.timers.len())
            .field("now", &self.timeline.now())
            .field("stats", &self.stats)
            .finish()
    }
}

impl<E, C, const SEQ: usize, const TIMED: usize> Default for EventQueue<E, C, SEQ, TIMED>
where
    C: Clock,
    C::T: TickInt,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<E, C, const SEQ: usize, const TIMED: usize> EventQueue<E, C, SEQ, TIMED>
where
    C: Clock,
    C::T: TickInt,
{
    /// An empty queue at clock tick 0. Pass the real `now` to [`advance`](Self::advance) before
    /// scheduling relative to it.
    pub const fn new() -> Self {
        const {
            assert!(
                SEQ > 0,
                "the sequential queue needs a capacity of at least 1"
            )
        };
        Self {
            sequential: Deque::new(),
            timers: TimerQueue::new(),
            timeline: Timeline::new(C::T::MAX_U64, 0),
            burst: None,
            stats: QueueStats {
                rejected: 0,
                sequential_high_water: 0,
                timed_high_water: 0,
                missed_periods: 0,
            },
            clock: PhantomData,
        }
    }

    /// Tells the queue what time it is. Time never goes back; see [`Timeline`] for the one rule
    /// (at least one reading per wrap period).
    pub fn advance(&mut self, now: Instant<C>) {
        self.timeline.observe(instant_ticks(now));
    }

    /// The last `now` the queue saw.
    pub fn now(&self) -> Instant<C> {
        self.instant_at(self.timeline.now())
    }

    /// Appends an event to the sequential queue.
    pub fn schedule(&mut self, event: E) -> Result<(), ScheduleError<E>> {
        let pushed = self.sequential.push_back(event);
        self.after_sequential_push(pushed)
    }

    /// Puts an event at the front of the sequential queue (LIFO among `schedule_next` calls).
    pub fn schedule_next(&mut self, event: E) -> Result<(), ScheduleError<E>> {
        let pushed = self.sequential.push_front(event);
        self.after_sequential_push(pushed)
    }

    fn after_sequential_push(&mut self, pushed: Result<(), E>) -> Result<(), ScheduleError<E>> {
        match pushed {
            Ok(()) => {
                let len = self.sequential.len() as u16;
                self.stats.sequential_high_water = self.stats.sequential_high_water.max(len);
                Ok(())
            }
            Err(e) => {
                self.stats.rejected = self.stats.rejected.saturating_add(1);
                Err(ScheduleError::Full(e))
            }
        }
    }

    /// Schedules an event at an instant. The instant is read as the nearest point within half
    /// the clock's wrap period of `now` (as embedded-time's `Ord` does); one in the past is due
    /// at once.
    pub fn schedule_at(
        &mut self,
        at: Instant<C>,
        event: E,
    ) -> Result<TimerHandle, ScheduleError<E>> {
        let deadline = self.timeline.place(instant_ticks(at));
        self.insert_timer(deadline, event)
    }

    /// Schedules an event `delay` after the last `now`. Fractions of a tick round up, so the
    /// event never fires early.
    pub fn schedule_after<D>(&mut self, delay: D, event: E) -> Result<TimerHandle, ScheduleError<E>>
    where
        D: FixedPoint,
        D::T: TickInt,
    {
        match self.deadline_after(delay) {
            Some(deadline) => self.insert_timer(deadline, event),
            None => Err(self.reject(ScheduleError::BeyondHorizon(event))),
        }
    }

    /// Schedules a periodic event: first one `period` after the last `now`, then every
    /// `period`, drift-free (each deadline is the previous deadline plus the period). Missed
    /// periods are skipped, not replayed (see [`TimerQueue::pop_due`]); each firing yields a
    /// clone of `event`. Cancel it with its handle.
    pub fn schedule_every<D>(
        &mut self,
        period: D,
        event: E,
    ) -> Result<TimerHandle, ScheduleError<E>>
    where
        E: Clone,
        D: FixedPoint,
        D::T: TickInt,
    {
        let period = match self.ticks_within_horizon(period) {
            Some(0) => return Err(self.reject(ScheduleError::ZeroPeriod(event))),
            Some(ticks) => ticks,
            None => return Err(self.reject(ScheduleError::BeyondHorizon(event))),
        };
        let deadline = self.timeline.now() + period;
        match self.timers.insert_periodic(deadline, period, event) {
            Ok(handle) => Ok(self.after_timer_insert(handle)),
            Err(e) => Err(self.reject(ScheduleError::Full(e))),
        }
    }

    /// Removes a pending timed event and hands it back.
    pub fn cancel(&mut self, handle: TimerHandle) -> Result<E, TimerError> {
        self.timers.cancel(handle)
    }

    /// Moves a pending timed event to a new instant (read as in [`schedule_at`](Self::schedule_at)).
    pub fn reschedule(&mut self, handle: TimerHandle, at: Instant<C>) -> Result<(), TimerError> {
        let deadline = self.timeline.place(instant_ticks(at));
        self.timers.reschedule(handle, deadline)
    }

    /// Moves a pending timed event to `delay` after the last `now`.
    pub fn reschedule_after<D>(&mut self, handle: TimerHandle, delay: D) -> Result<(), TimerError>
    where
        D: FixedPoint,
        D::T: TickInt,
    {
        let deadline = self
            .deadline_after(delay)
            .ok_or(TimerError::BeyondHorizon)?;
        self.timers.reschedule(handle, deadline)
    }

    /// The next event to handle at `now`, or how long to wait. See the module docs for the
    /// order and the fairness rule.
    pub fn next(&mut self, now: Instant<C>) -> Next<E, C> {
        let now = self.timeline.observe(instant_ticks(now));
        if let Some((deadline, seq)) = self.timers.peek() {
            if deadline <= now {
                let in_burst = self.burst.is_some_and(|barrier| seq < barrier);
                if in_burst || self.sequential.is_empty() || self.burst.is_none() {
                    if !in_burst {
                        self.burst = Some(self.timers.next_seq());
                    }
                    if let Some(fired) = self.timers.pop_due(now) {
                        self.stats.missed_periods = self
                            .stats
                            .missed_periods
                            .saturating_add(fired.missed.min(u64::from(u32::MAX)) as u32);
                        return Next::Timed(fired);
                    }
                }
            }
        }
        self.burst = None;
        if let Some(event) = self.sequential.pop_front() {
            return Next::Sequential(event);
        }
        match self.timers.peek_deadline() {
            Some(deadline) => Next::Wait(self.instant_at(deadline)),
            None => Next::Empty,
        }
    }

    /// Events waiting in both queues (pyzenkit's `count()`).
    pub fn count(&self) -> usize {
        self.sequential.len() + self.timers.len()
    }

    /// Events waiting in the sequential queue.
    pub fn sequential_len(&self) -> usize {
        self.sequential.len()
    }

    /// Timed events pending.
    pub fn timed_len(&self) -> usize {
        self.timers.len()
    }

    /// True when both queues are empty.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// The instant of the earliest deadline (pyzenkit's `when()`), for tick-less sleep.
    pub fn when(&self) -> Option<Instant<C>> {
        self.timers.peek_deadline().map(|d| self.instant_at(d))
    }

    /// Ticks from the last `now` until the earliest deadline, zero when it is due
    /// (pyzenkit's `wait()`); `None` without timers.
    pub fn wait_ticks(&self) -> Option<u64> {
        self.timers
            .peek_deadline()
            .map(|d| d.saturating_sub(self.timeline.now()))
    }

    /// [`wait_ticks`](Self::wait_ticks) as a duration of the clock.
    pub fn wait(&self) -> Option<embedded_time::duration::Generic<C::T>> {
        self.wait_ticks().map(crate::time::ticks_duration::<C>)
    }

    /// The deadline of a pending timer.
    pub fn deadline(&self, handle: TimerHandle) -> Result<Instant<C>, TimerError> {
        self.timers.deadline(handle).map(|d| self.instant_at(d))
    }

    /// The queue's own counters.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Drops every queued event (used when the loop ends).
    pub fn clear(&mut self) {
        self.sequential.clear();
        self.timers.clear();
        self.burst = None;
    }

    /// Deadlines are stored on the timeline; this is the clock instant for one of them.
    fn instant_at(&self, point: u64) -> Instant<C> {
        Instant::new(C::T::truncate(self.timeline.raw_at(point)))
    }

    fn ticks_within_horizon<D>(&self, span: D) -> Option<u64>
    where
        D: FixedPoint,
        D::T: TickInt,
    {
        duration_to_ticks::<C, D>(span).filter(|&t| t <= self.timeline.horizon())
    }

    fn deadline_after<D>(&self, delay: D) -> Option<u64>
    where
        D: FixedPoint,
        D::T: TickInt,
    {
        self.ticks_within_horizon(delay)
            .map(|t| self.timeline.now() + t)
    }

    fn insert_timer(&mut self, deadline: u64, event: E) -> Result<TimerHandle, ScheduleError<E>> {
        match self.timers.insert(deadline, event) {
            Ok(handle) => Ok(self.after_timer_insert(handle)),
            Err(e) => Err(self.reject(ScheduleError::Full(e))),
        }
    }

    fn after_timer_insert(&mut self, handle: TimerHandle) -> TimerHandle {
        let len = self.timers.len() as u16;
        self.stats.timed_high_water = self.stats.timed_high_water.max(len);
        handle
    }

    fn reject(&mut self, err: ScheduleError<E>) -> ScheduleError<E> {
        self.stats.rejected = self.stats.rejected.saturating_add(1);
        err
    }
}
