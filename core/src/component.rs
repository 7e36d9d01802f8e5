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

/// Tests that close gaps a mutation run found (issue 16; see TESTING.md): what a handler's
/// [`Context`] does to the queue, moving timers included (effect and `Stale` error), and the
/// messages and `Debug` output.
#[cfg(test)]
mod strength {
    use super::*;
    use crate::event::UserEvent;
    use crate::queue::{EventQueue, Next, ScheduleErrorKind};
    use crate::time::ManualClock;
    use embedded_time::duration::{Microseconds, Milliseconds, Seconds};

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Job(u32);

    impl UserEvent for Job {
        const KINDS: usize = 1;
        fn kind(&self) -> usize {
            0
        }
        fn kind_name(_: usize) -> &'static str {
            "job"
        }
    }

    type Clock = ManualClock<u32>;
    type Queue = EventQueue<Event<Job>, Clock, 4, 4>;

    fn at(ticks: u32) -> Instant<Clock> {
        Instant::new(ticks)
    }

    fn deadline(q: &Queue, h: TimerHandle) -> Result<u32, TimerError> {
        q.deadline(h).map(|i| i.duration_since_epoch().integer())
    }

    #[test]
    fn a_context_schedules_into_the_queue_and_moves_timers() {
        let clock = Clock::starting_at(1_000);
        let mut q = Queue::new();
        q.advance(clock.now());
        let (a, b, c) = {
            let mut ctx = Context::new(&mut q, clock.now(), false);
            assert_eq!(ctx.now(), at(1_000));
            ctx.schedule(Job(1)).unwrap();
            ctx.schedule_next(Job(2)).unwrap();
            let a = ctx.schedule_at(at(1_050), Job(3)).unwrap();
            // 1.5 ms rounds up to 2 ticks.
            let b = ctx.schedule_after(Microseconds(1_500u32), Job(4)).unwrap();
            let c = ctx.schedule_every(Milliseconds(30u32), Job(5)).unwrap();
            (a, b, c)
        };
        assert_eq!(deadline(&q, a), Ok(1_050));
        assert_eq!(deadline(&q, b), Ok(1_002));
        assert_eq!(deadline(&q, c), Ok(1_030));
        assert_eq!(q.sequential_len(), 2);
        {
            let mut ctx = Context::new(&mut q, clock.now(), false);
            // Moved: one to an instant, one to a delay (rounded up).
            assert_eq!(ctx.reschedule(a, at(1_007)), Ok(()));
            assert_eq!(ctx.reschedule_after(b, Microseconds(20_001u32)), Ok(()));
            assert_eq!(ctx.cancel(c), Ok(Job(5)));
            // A cancelled timer's handle is stale for every operation.
            assert_eq!(ctx.cancel(c), Err(TimerError::Stale));
            assert_eq!(ctx.reschedule(c, at(1_001)), Err(TimerError::Stale));
            assert_eq!(
                ctx.reschedule_after(c, Milliseconds(1u32)),
                Err(TimerError::Stale)
            );
            // Too far: refused, and the timer stays where it was.
            assert_eq!(
                ctx.reschedule_after(a, Seconds(u32::MAX)),
                Err(TimerError::BeyondHorizon)
            );
        }
        assert_eq!(deadline(&q, a), Ok(1_007));
        assert_eq!(deadline(&q, b), Ok(1_021));
        assert_eq!(deadline(&q, c), Err(TimerError::Stale));
        // The order they come out in shows the moves: at 1010 the timer moved to 1007, at 1020
        // nothing timed (the other moved to 1021), at 1030 that one before the sequential rest.
        let mut out = std::vec::Vec::new();
        for _ in 0..8 {
            clock.advance_ticks(10);
            match q.next(clock.now()) {
                Next::Timed(f) => out.push(f.event),
                Next::Sequential(e) => out.push(e),
                Next::Wait(_) | Next::Empty => {}
            }
        }
        assert_eq!(
            out,
            [
                Event::User(Job(3)),
                Event::User(Job(2)),
                Event::User(Job(4)),
                Event::User(Job(1))
            ]
        );
    }

    #[test]
    fn a_context_hands_refused_events_back() {
        let clock = Clock::new();
        let mut q = EventQueue::<Event<Job>, Clock, 1, 1>::new();
        q.advance(clock.now());
        let mut ctx = Context::new(&mut q, clock.now(), true);
        ctx.schedule(Job(1)).unwrap();
        let err = ctx.schedule(Job(2)).unwrap_err();
        assert_eq!(
            (err.kind(), err.into_event()),
            (ScheduleErrorKind::Full, Job(2))
        );
        let err = ctx.schedule_next(Job(3)).unwrap_err();
        assert_eq!(
            (err.kind(), err.into_event()),
            (ScheduleErrorKind::Full, Job(3))
        );
        let err = ctx.schedule_after(Seconds(u32::MAX), Job(4)).unwrap_err();
        assert_eq!(err.kind(), ScheduleErrorKind::BeyondHorizon);
        let err = ctx.schedule_every(Milliseconds(0u32), Job(5)).unwrap_err();
        assert_eq!(err.kind(), ScheduleErrorKind::ZeroPeriod);
        let err = ctx.schedule_every(Seconds(u32::MAX), Job(5)).unwrap_err();
        assert_eq!(err.kind(), ScheduleErrorKind::BeyondHorizon);
        ctx.schedule_at(at(3), Job(6)).unwrap();
        let err = ctx.schedule_at(at(4), Job(7)).unwrap_err();
        assert_eq!(
            (err.kind(), err.into_event()),
            (ScheduleErrorKind::Full, Job(7))
        );
    }

    #[test]
    fn a_context_reports_done_and_stop_requests() {
        let clock = Clock::starting_at(7);
        let mut q = Queue::new();
        let mut ctx = Context::new(&mut q, clock.now(), true);
        assert!(ctx.is_done());
        assert_eq!(ctx.asked(), 0);
        assert_eq!(std::format!("{ctx:?}"), "Context { done: true, asked: 0 }");
        ctx.request_stop();
        assert_eq!(ctx.asked(), Asked::STOP);
        ctx.request_checkpoint();
        ctx.request_stop();
        assert_eq!(ctx.asked(), Asked::STOP | Asked::CHECKPOINT);
        assert_eq!(std::format!("{ctx:?}"), "Context { done: true, asked: 3 }");
        let mut ctx = Context::new(&mut q, clock.now(), true);
        ctx.request_checkpoint();
        assert_eq!(ctx.asked(), Asked::CHECKPOINT);
        let ctx = Context::new(&mut q, clock.now(), false);
        assert!(!ctx.is_done());
        assert_eq!(ctx.now(), at(7));
    }

    /// A routing table that records what it was asked.
    #[derive(Default)]
    struct Recorder(std::vec::Vec<(Kind, u8, Position)>);

    impl RouteTable for Recorder {
        fn add(&mut self, kind: Kind, component: u8, position: Position) -> Result<(), RouteError> {
            if kind == Kind::user(9) {
                return Err(RouteError::UnknownKind(kind));
            }
            self.0.push((kind, component, position));
            Ok(())
        }
    }

    #[test]
    fn routes_pass_registrations_on_and_errors_back() {
        let mut table = Recorder::default();
        let mut routes = Routes::new(&mut table, 3);
        assert_eq!(std::format!("{routes:?}"), "Routes { component: 3 }");
        routes.append(Kind::START).unwrap();
        routes.prepend(Kind::user(0)).unwrap();
        assert_eq!(
            routes.append(Kind::user(9)),
            Err(RouteError::UnknownKind(Kind::user(9)))
        );
        assert_eq!(
            routes.prepend(Kind::user(9)),
            Err(RouteError::UnknownKind(Kind::user(9)))
        );
        assert_eq!(
            table.0,
            [
                (Kind::START, 3, Position::Last),
                (Kind::user(0), 3, Position::First)
            ]
        );
    }

    #[test]
    fn route_errors_name_what_went_wrong() {
        assert_eq!(
            std::format!("{}", RouteError::UnknownKind(Kind::user(2))),
            "kind 10 is beyond the kernel's event kinds capacity"
        );
        assert_eq!(
            std::format!("{}", RouteError::TooManyHandlers(Kind::STOP)),
            "kind 1 has no room for another handler"
        );
        assert_eq!(
            std::format!("{}", RouteError::TooManyComponents),
            "the kernel has no room for another component"
        );
    }
}
