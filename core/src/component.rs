//! Components: the user's structs that handle events, and what they see while handling one.
//!
//! A component declares in [`Component::setup`] which event kinds it handles, each appended to
//! the kind's pipeline or put first ([`Routes::prepend`]). The kernel builds its routing table
//! from these declarations once, so a dispatch touches only the handlers of that event's kind.
//!
//! Components are held as `&mut dyn Component`: structs of different types side by side
//! without allocation. A handler gets a [`Context`] to schedule events and ask whether the
//! daemon is stopping, and the event by `&mut`: it may change it for the handlers after it,
//! as pyzenkit's callbacks passed `args` down the chain. It returns [`Flow::Stop`] to end the
//! chain there.

use core::fmt;

use embedded_time::{Clock, Instant};

use crate::event::{Event, Kind};
use crate::queue::ScheduleError;
use crate::stats::CounterSet;
use crate::time::{duration_to_ticks, Delay, TickInt};
use crate::timer::{TimerError, TimerHandle};

/// What a handler tells the pipeline (calloop's `PostAction`, pyzenkit's `FLAG_CONTINUE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Flow {
    /// Pass the event on to the next handler.
    Continue,
    /// End the chain: later handlers do not see this event.
    Stop,
}

/// Why a component's routes could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RouteError {
    /// The kind is beyond the kernel's `KINDS` capacity.
    UnknownKind(Kind),
    /// The kind already has `HANDLERS` handlers.
    TooManyHandlers(Kind),
    /// The kernel already holds `COMPONENTS` components.
    TooManyComponents,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKind(k) => write!(f, "{k} is beyond the kernel's event kinds capacity"),
            Self::TooManyHandlers(k) => write!(f, "{k} has no room for another handler"),
            Self::TooManyComponents => f.write_str("the kernel has no room for another component"),
        }
    }
}

impl core::error::Error for RouteError {}

/// Where a component's handler goes in a kind's pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    Last,
    First,
}

/// The routing table as a component's `setup` sees it.
pub(crate) trait RouteTable {
    fn add(&mut self, kind: Kind, component: u8, position: Position) -> Result<(), RouteError>;
}

/// Registration of a component's handlers, passed to [`Component::setup`].
pub struct Routes<'a> {
    table: &'a mut dyn RouteTable,
    component: u8,
}

impl fmt::Debug for Routes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("component", &self.component)
            .finish()
    }
}

impl<'a> Routes<'a> {
    pub(crate) fn new(table: &'a mut dyn RouteTable, component: u8) -> Self {
        Self { table, component }
    }

    /// Handle `kind`, after the handlers registered so far.
    pub fn append(&mut self, kind: Kind) -> Result<(), RouteError> {
        self.table.add(kind, self.component, Position::Last)
    }

    /// Handle `kind`, before the handlers registered so far (pyzenkit's `prepend=True`).
    pub fn prepend(&mut self, kind: Kind) -> Result<(), RouteError> {
        self.table.add(kind, self.component, Position::First)
    }
}

/// A value in a component's state dump.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StateValue<'a> {
    /// An unsigned integer.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// A flag.
    Bool(bool),
    /// Text.
    Str(&'a str),
}

/// Receives a component's state, field by field (object-safe, so state dumps need neither
/// allocation nor a serializer type in the component's signature).
pub trait StateVisitor {
    /// One field.
    fn field(&mut self, key: &str, value: StateValue<'_>);
}

/// The user's unit of behaviour. Implement it on your own struct.
pub trait Component<U, C: Clock> {
    /// A short name, unique within the kernel: it keys statistics and state dumps.
    fn name(&self) -> &'static str;

    /// Declares the kinds this component handles. Called once, when the component is added.
    ///
    /// # Errors
    ///
    /// Pass on the [`RouteError`] of `routes`: the kernel's capacities are too small.
    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError>;

    /// Handles one event of a kind it declared.
    fn handle(&mut self, ctx: &mut Context<'_, U, C>, event: &mut Event<U>) -> Flow;

    /// Its counters, for statistics and runlogs.
    fn counters(&self) -> Option<&dyn CounterSet> {
        None
    }

    /// Its counters, to start a new statistics interval.
    fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> {
        None
    }

    /// Writes its state for a state dump (pyzenkit's `get_state`).
    fn state(&self, out: &mut dyn StateVisitor) {
        let _ = out;
    }
}

/// The queue operations a handler or a host may use, whatever the queue's capacities
/// (object-safe). They take and hand back the user's events only: the kernel's lifecycle
/// events never go through them, so neither a handler nor a host can forge one. Durations are
/// in clock ticks here; [`Context`] and [`HostQueue`](crate::HostQueue) convert.
pub(crate) trait Scheduler<U, C: Clock> {
    fn schedule(&mut self, event: U) -> Result<(), ScheduleError<U>>;
    fn schedule_next(&mut self, event: U) -> Result<(), ScheduleError<U>>;
    fn schedule_at(&mut self, at: Instant<C>, event: U) -> Result<TimerHandle, ScheduleError<U>>;
    fn schedule_after_ticks(
        &mut self,
        ticks: Option<u64>,
        event: U,
    ) -> Result<TimerHandle, ScheduleError<U>>;
    fn schedule_every_ticks(
        &mut self,
        period: Option<u64>,
        event: U,
    ) -> Result<TimerHandle, ScheduleError<U>>;
    fn cancel(&mut self, handle: TimerHandle) -> Result<U, TimerError>;
    fn reschedule(&mut self, handle: TimerHandle, at: Instant<C>) -> Result<(), TimerError>;
    fn reschedule_after_ticks(
        &mut self,
        handle: TimerHandle,
        ticks: Option<u64>,
    ) -> Result<(), TimerError>;
}

/// What a handler sees of the kernel while it handles an event.
///
/// It schedules the user's events only. The lifecycle moves through named requests
/// ([`request_stop`](Self::request_stop), [`request_reload`](Self::request_reload), …), so a
/// handler cannot forge a lifecycle event:
///
/// ```compile_fail
/// use zendaemon_core::{Context, Event, ManualClock};
///
/// fn forge(ctx: &mut Context<'_, u32, ManualClock>) {
///     // `start` again, in the middle of a run: does not compile.
///     let _ = ctx.schedule(Event::Start);
/// }
/// ```
///
/// The same call with a user event compiles:
///
/// ```
/// use zendaemon_core::{Context, ManualClock};
///
/// fn work(ctx: &mut Context<'_, u32, ManualClock>) {
///     let _ = ctx.schedule(7u32);
/// }
/// ```
pub struct Context<'a, U, C: Clock> {
    queue: &'a mut dyn Scheduler<U, C>,
    now: Instant<C>,
    done: bool,
    /// The requests a handler made ([`Asked`] bits): one byte, so the kernel tests them all
    /// with one comparison per event.
    asked: u8,
}

/// The bits of [`Context`]'s requests.
pub(crate) struct Asked;

impl Asked {
    pub(crate) const STOP: u8 = 1 << 0;
    pub(crate) const CHECKPOINT: u8 = 1 << 1;
    pub(crate) const RELOAD: u8 = 1 << 2;
    pub(crate) const RUNLOG: u8 = 1 << 3;
    pub(crate) const STATE: u8 = 1 << 4;
}

impl<U, C: Clock> fmt::Debug for Context<'_, U, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("done", &self.done)
            .field("asked", &self.asked)
            .finish()
    }
}

impl<'a, U, C> Context<'a, U, C>
where
    C: Clock,
    C::T: TickInt,
{
    pub(crate) fn new(queue: &'a mut dyn Scheduler<U, C>, now: Instant<C>, done: bool) -> Self {
        Self {
            queue,
            now,
            done,
            asked: 0,
        }
    }

    /// The [`Asked`] bits of the requests handlers made.
    #[inline(always)]
    pub(crate) fn asked(&self) -> u8 {
        self.asked
    }

    /// The instant of this step.
    pub fn now(&self) -> Instant<C> {
        self.now
    }

    /// True once a stop began: components should not schedule new work (pyzenkit's
    /// `is_done()`).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Asks for a graceful stop, as SIGINT would. Takes effect after this event's pipeline.
    pub fn request_stop(&mut self) {
        self.asked |= Asked::STOP;
    }

    /// Asks for a checkpoint of the persistent state at once, for example after committing
    /// something that must not be done again after a crash. [`Event::Checkpoint`] goes
    /// through its pipeline as the next event (after this event's pipeline), and the host
    /// then saves the state. Several requests before it is dispatched give one checkpoint.
    pub fn request_checkpoint(&mut self) {
        self.asked |= Asked::CHECKPOINT;
    }

    /// Asks for a `reload` event, as SIGHUP would (ignored while stopping). Takes effect after
    /// this event's pipeline.
    pub fn request_reload(&mut self) {
        self.asked |= Asked::RELOAD;
    }

    /// Asks for a `save_runlog` event, as SIGUSR1 would. Takes effect after this event's
    /// pipeline.
    pub fn request_runlog(&mut self) {
        self.asked |= Asked::RUNLOG;
    }

    /// Asks for a `save_state` event, as SIGUSR2 would. Takes effect after this event's
    /// pipeline.
    pub fn request_state(&mut self) {
        self.asked |= Asked::STATE;
    }

    /// Appends an event to the sequential queue.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::Full`] hands the event back when the queue is at capacity.
    pub fn schedule(&mut self, event: impl Into<U>) -> Result<(), ScheduleError<U>> {
        self.queue.schedule(event.into())
    }

    /// Puts an event at the front of the sequential queue.
    ///
    /// # Errors
    ///
    /// As [`schedule`](Self::schedule).
    pub fn schedule_next(&mut self, event: impl Into<U>) -> Result<(), ScheduleError<U>> {
        self.queue.schedule_next(event.into())
    }

    /// Schedules an event at an instant.
    ///
    /// # Errors
    ///
    /// [`ScheduleError`] with the event when the timed queue is full.
    pub fn schedule_at(
        &mut self,
        at: Instant<C>,
        event: impl Into<U>,
    ) -> Result<TimerHandle, ScheduleError<U>> {
        self.queue.schedule_at(at, event.into())
    }

    /// Schedules an event after a delay from this step's instant.
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
        self.queue
            .schedule_after_ticks(duration_to_ticks::<C, _>(delay), event.into())
    }

    /// Schedules a periodic event, first one period from now (drift-free; see
    /// [`EventQueue::schedule_every`](crate::EventQueue::schedule_every)).
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
        self.queue
            .schedule_every_ticks(duration_to_ticks::<C, _>(period), event.into())
    }

    /// Cancels a timed event and hands it back.
    ///
    /// # Errors
    ///
    /// [`TimerError::Stale`] when the timer fired, was cancelled, or is not one of the user's.
    pub fn cancel(&mut self, handle: TimerHandle) -> Result<U, TimerError> {
        self.queue.cancel(handle)
    }

    /// Moves a timed event to a new instant.
    ///
    /// # Errors
    ///
    /// As [`cancel`](Self::cancel).
    pub fn reschedule(&mut self, handle: TimerHandle, at: Instant<C>) -> Result<(), TimerError> {
        self.queue.reschedule(handle, at)
    }

    /// Moves a timed event to a delay from this step's instant.
    ///
    /// # Errors
    ///
    /// As [`cancel`](Self::cancel), and [`TimerError::BeyondHorizon`].
    pub fn reschedule_after<D>(&mut self, handle: TimerHandle, delay: D) -> Result<(), TimerError>
    where
        D: Delay,
    {
        self.queue
            .reschedule_after_ticks(handle, duration_to_ticks::<C, _>(delay))
    }
}
