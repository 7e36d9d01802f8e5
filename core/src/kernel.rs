//! The kernel: routing table, pipelines, lifecycle and statistics around the event queue.
//!
//! # Lifecycle (pyzenkit's semantics, with its gaps closed)
//!
//! * [`start`](Kernel::start) makes `start` the first event and arms the periodic
//!   `log_statistics`, `save_runlog` and `checkpoint` events, if configured. The kernel owns
//!   these timers; [`set_period`](Kernel::set_period) changes a period at run time (a reload).
//! * A checkpoint asked for ([`Context::request_checkpoint`],
//!   [`Kernel::request_checkpoint`] or a posted [`Request::Checkpoint`]) runs `checkpoint`
//!   through its pipeline as the next event; several requests before it give one.
//! * A stop request ([`request_stop`](Kernel::request_stop), [`Context::request_stop`], or a
//!   posted [`Request::Stop`]) sets the *done* flag, runs `stop` through its pipeline next and
//!   arms `terminate` after the stop timeout. Periodic lifecycle events are cancelled.
//!   The `max_stop_requests`-th request (the third by default) ends the loop at once.
//! * While done, the loop ends as soon as only future timed events remain (it does not wait for
//!   them), or the queue is empty. Sequential work that keeps coming is cut off by `terminate`,
//!   whose pipeline runs before the loop ends.
//! * An empty queue ends the loop even when no stop was asked for.
//! * Every end carries an [`EndReason`].
//!
//! Lifecycle events are not stored in the user's queues: a stop, a reload or a dump request is
//! a flag the kernel turns into an event at the start of the next step, ahead of all queued
//! work. So they never fail for lack of capacity, and a request posted twice before the step
//! runs is delivered once (stop requests are still counted one by one).
//!
//! # Stepping
//!
//! The kernel never reads a clock. The host calls [`step`](Kernel::step) with `now`; each call
//! dispatches at most one event and says what happened. [`next_deadline`](Kernel::next_deadline)
//! tells the host until when it may sleep. [`run`](Kernel::run) dispatches a batch of events at
//! one `now` and stops early after a lifecycle event, for hosts whose clock is dear to read;
//! [`run_until_idle`](Kernel::run_until_idle) steps until nothing is due.

use core::fmt;
use core::num::NonZeroU32;

use embedded_time::duration::Milliseconds;
use embedded_time::{Clock, Instant};
use heapless::Vec;

use crate::activity::Activity;
use crate::component::{Asked, Component, Context, Flow, Position, RouteError, RouteTable, Routes};
use crate::event::{kinds, Event, Kind, UserEvent};
use crate::host::HostQueue;
use crate::pending::{Mailbox, Request, RequestReader, Requests, Take};
use crate::queue::{EventQueue, Next, QueueStats};
use crate::stats::{KernelStats, Rate};
use crate::time::{duration_to_ticks, to_millis, Delay, TickInt};
use crate::timer::TimerHandle;

/// Lifecycle settings. Build them from [`Settings::default`] with the `with_*` methods, which
/// take any [`Delay`]; the fields grow, so they are read-only outside this crate:
///
/// ```compile_fail
/// use zendaemon_core::Settings;
///
/// let settings = Settings { max_stop_requests: 2, ..Settings::default() };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// How long a graceful stop may take before `terminate` (pyzenkit: 30 s).
    pub stop_timeout: Milliseconds<u32>,
    /// Period of `log_statistics`, or none.
    pub stats_interval: Option<Milliseconds<u32>>,
    /// Period of `save_runlog`, or none.
    pub runlog_interval: Option<Milliseconds<u32>>,
    /// Period of `checkpoint`, or none.
    pub checkpoint_interval: Option<Milliseconds<u32>>,
    /// The stop request that ends the loop at once (pyzenkit: 3).
    pub max_stop_requests: u32,
}

impl Settings {
    /// These settings with `stop_timeout` set from any [`Delay`]: a
    /// [`core::time::Duration`] or an embedded-time duration (rounded up to whole
    /// milliseconds, at most 49.7 days).
    #[must_use]
    pub fn with_stop_timeout(mut self, timeout: impl Delay) -> Self {
        self.stop_timeout = to_millis(timeout);
        self
    }

    /// These settings with one of the periodic lifecycle events armed every `period`
    /// (rounded up to whole milliseconds, at most 49.7 days).
    ///
    /// ```
    /// use core::time::Duration;
    /// use zendaemon_core::embedded_time::duration::{Milliseconds, Seconds};
    /// use zendaemon_core::{Periodic, Settings};
    ///
    /// let settings = Settings::default()
    ///     .with_stop_timeout(Duration::from_secs(5))
    ///     .with_period(Periodic::Statistics, Seconds(60))
    ///     .with_period(Periodic::Runlog, Milliseconds(500));
    /// assert_eq!(settings.stop_timeout, Milliseconds(5_000u32));
    /// assert_eq!(settings.stats_interval, Some(Milliseconds(60_000u32)));
    /// assert_eq!(settings.runlog_interval, Some(Milliseconds(500u32)));
    /// ```
    #[must_use]
    pub fn with_period(mut self, which: Periodic, period: impl Delay) -> Self {
        *which.interval(&mut self) = Some(to_millis(period));
        self
    }

    /// These settings with the stop request that ends the loop at once.
    #[must_use]
    pub fn with_max_stop_requests(mut self, n: u32) -> Self {
        self.max_stop_requests = n;
        self
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            stop_timeout: Milliseconds(30_000),
            stats_interval: None,
            runlog_interval: None,
            checkpoint_interval: None,
            max_stop_requests: 3,
        }
    }
}

/// One of the kernel's periodic lifecycle events, for [`Kernel::set_period`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Periodic {
    /// `log_statistics` ([`Settings::stats_interval`]).
    Statistics,
    /// `save_runlog` ([`Settings::runlog_interval`]).
    Runlog,
    /// `checkpoint` ([`Settings::checkpoint_interval`]).
    Checkpoint,
}

impl Periodic {
    /// All of them, in the order [`Kernel::start`] arms them.
    pub const ALL: [Periodic; 3] = [Periodic::Statistics, Periodic::Runlog, Periodic::Checkpoint];

    fn slot(self) -> usize {
        self as usize
    }

    fn event<U>(self) -> Event<U> {
        match self {
            Periodic::Statistics => Event::LogStatistics,
            Periodic::Runlog => Event::SaveRunlog,
            Periodic::Checkpoint => Event::Checkpoint,
        }
    }

    fn interval(self, settings: &mut Settings) -> &mut Option<Milliseconds<u32>> {
        match self {
            Periodic::Statistics => &mut settings.stats_interval,
            Periodic::Runlog => &mut settings.runlog_interval,
            Periodic::Checkpoint => &mut settings.checkpoint_interval,
        }
    }
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum EndReason {
    /// A graceful stop finished: nothing but future timed events was left.
    Stopped,
    /// A graceful stop ran out of time; `terminate` was dispatched.
    StopTimeout,
    /// The last allowed stop request came (the third SIGINT).
    Forced,
    /// An immediate stop was requested (SIGTERM).
    Terminated,
    /// Nothing was left to do and no stop was asked for.
    QueueEmpty,
}

impl EndReason {
    /// A sentence for logs, as pyzenkit printed them.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Stopped => "graceful stop completed, not waiting for timed events",
            Self::StopTimeout => "graceful stop timed out, terminated",
            Self::Forced => "terminated by repeated stop requests",
            Self::Terminated => "terminated on request",
            Self::QueueEmpty => "event queue is empty",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// What one [`Kernel::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Step {
    /// An event of this kind went through its pipeline. The host acts on the lifecycle kinds
    /// that need it (write a runlog on [`Kind::SAVE_RUNLOG`], …) after the components did.
    Dispatched {
        /// The event's kind.
        kind: Kind,
        /// Handlers that ran (fewer than registered if one returned [`Flow::Stop`]).
        handlers: u8,
    },
    /// Nothing is due now; [`Kernel::next_deadline`] tells until when the host may sleep.
    Idle,
    /// The loop is over.
    Ended(EndReason),
}

/// What [`Kernel::run_until_idle`] stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Idle {
    /// Nothing is due now; [`Kernel::next_deadline`] tells until when.
    Waiting,
    /// The loop is over.
    Ended(EndReason),
}

/// What [`Kernel::run`] stopped at. More reasons to return early may come, so matches keep a
/// catch-all arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Run {
    /// It dispatched `limit` events; more may be due.
    Limit,
    /// A lifecycle event of this kind went through its pipeline (the last event of the
    /// call): the host does its part for it, as after [`Step::Dispatched`].
    Lifecycle(Kind),
    /// A handler of the last event asked for a stop ([`Context::request_stop`]): `stop` goes
    /// next, so a host that guards stops (a watchdog, a systemd notice) does so before it
    /// calls again.
    StopRequested,
    /// Nothing is due now; [`Kernel::next_deadline`] tells until when the host may sleep.
    Idle,
    /// The loop is over.
    Ended(EndReason),
}

/// A step that went wrong. The kernel stays usable: the host decides whether to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StepError {
    /// [`Kernel::start`] was not called.
    NotStarted,
    /// A user event had no handler (it is consumed and counted).
    Unhandled(Kind),
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotStarted => f.write_str("the kernel was not started"),
            Self::Unhandled(k) => write!(f, "no handler for the event of {k}"),
        }
    }
}

impl core::error::Error for StepError {}

/// Why [`Kernel::start`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StartError {
    /// Already started.
    AlreadyStarted,
    /// A periodic lifecycle event could not be armed (timed queue full, zero or too long a
    /// period).
    Schedule(crate::queue::ScheduleErrorKind),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyStarted => f.write_str("the kernel was already started"),
            Self::Schedule(k) => write!(f, "cannot arm a periodic lifecycle event: {k}"),
        }
    }
}

impl core::error::Error for StartError {}

/// Lifecycle events waiting to be dispatched ahead of the queues: one bit each, lowest bit
/// first, so the common case (none) is a single test.
#[derive(Debug, Default, Clone, Copy)]
struct Due(u8);

impl Due {
    const START: u8 = 1 << 0;
    const STOP: u8 = 1 << 1;
    const RELOAD: u8 = 1 << 2;
    const SAVE_RUNLOG: u8 = 1 << 3;
    const SAVE_STATE: u8 = 1 << 4;
    const CHECKPOINT: u8 = 1 << 5;

    fn set(&mut self, bit: u8) {
        self.0 |= bit;
    }

    fn clear(&mut self, bit: u8) {
        self.0 &= !bit;
    }

    fn any(self) -> bool {
        self.0 != 0
    }

    /// The first waiting lifecycle event, taken.
    fn take<U>(&mut self) -> Option<Event<U>> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0 & self.0.wrapping_neg();
        self.0 &= !bit;
        Some(match bit {
            Self::START => Event::Start,
            Self::STOP => Event::Stop,
            Self::RELOAD => Event::Reload,
            Self::SAVE_RUNLOG => Event::SaveRunlog,
            Self::SAVE_STATE => Event::SaveState,
            _ => Event::Checkpoint,
        })
    }
}

/// Why [`Kernel::step`] and [`Kernel::run`] find no event to dispatch.
enum NoEvent {
    Idle,
    Ended(EndReason),
    NotStarted,
}

type Pick<U> = Result<Event<U>, NoEvent>;

/// The routing table: for each of `K` kinds, up to `H` component indices in pipeline order.
struct Table<const K: usize, const H: usize> {
    routes: [Vec<u8, H>; K],
}

impl<const K: usize, const H: usize> RouteTable for Table<K, H> {
    fn add(&mut self, kind: Kind, component: u8, position: Position) -> Result<(), RouteError> {
        let route = self
            .routes
            .get_mut(kind.index())
            .ok_or(RouteError::UnknownKind(kind))?;
        route
            .push(component)
            .map_err(|_| RouteError::TooManyHandlers(kind))?;
        if position == Position::First {
            // Swapped down to the front rather than `Vec::insert`, whose `ptr::copy` links
            // a general `memmove` (1.5 KiB on a Cortex-M) for a few bytes moved once.
            let route = route.as_mut_slice();
            for i in (1..route.len()).rev() {
                route.swap(i, i - 1);
            }
        }
        Ok(())
    }
}

/// The event kernel.
///
/// * `U`: the user's event type; `C`: the clock.
/// * `M` components, `K` event kinds (at least [`kinds::<U>()`](crate::kinds): the lifecycle
///   kinds plus `U::KINDS`, checked at compile time), `H` handlers per kind, `S` sequential and `T` timed events.
///
/// Components are borrowed for `'c`, so they can live on the stack or in `static`s.
///
/// `D` is how components are held: `dyn Component<U, C>` by default. A host that needs more
/// from its components than the kernel does names its own trait object here (a subtrait of
/// `Component`), and reaches them between steps through
/// [`components_mut`](Self::components_mut) with that trait's methods — no second borrow.
pub struct Kernel<
    'c,
    U,
    C: Clock,
    const M: usize,
    const K: usize,
    const H: usize,
    const S: usize,
    const T: usize,
    D: ?Sized + Component<U, C> + 'c = dyn Component<U, C> + 'c,
> {
    queue: EventQueue<Event<U>, C, S, T>,
    components: Vec<&'c mut D, M>,
    table: Table<K, H>,
    settings: Settings,
    requests: Option<&'c Requests>,
    request_reader: RequestReader,
    inbox: Option<&'c dyn Mailbox<U>>,
    /// Told what is dispatched, for a watchdog ([`attach_activity`](Self::attach_activity)).
    activity: Option<&'c Activity>,
    /// A `Requests` or an inbox is attached: steps drain them. Redundant with the two
    /// `Option`s, but one byte test in front of them saves 4–5 instructions per event when
    /// nothing is attached (callgrind).
    posts_attached: bool,
    due: Due,
    started: bool,
    /// Timeline tick of `start`: the baseline of the first statistics interval.
    started_at: u64,
    done: bool,
    terminate_at: Option<u64>,
    periodic: [Option<TimerHandle>; 3],
    ended: Option<EndReason>,
    stats: KernelStats<K>,
}

impl<
        U,
        C: Clock,
        const M: usize,
        const K: usize,
        const H: usize,
        const S: usize,
        const T: usize,
        D: ?Sized + Component<U, C>,
    > fmt::Debug for Kernel<'_, U, C, M, K, H, S, T, D>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernel")
            .field("components", &self.components.len())
            .field("queue", &self.queue)
            .field("done", &self.done)
            .field("ended", &self.ended)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<
        'c,
        U,
        C,
        const M: usize,
        const K: usize,
        const H: usize,
        const S: usize,
        const T: usize,
        D,
    > Kernel<'c, U, C, M, K, H, S, T, D>
where
    U: UserEvent + Clone,
    C: Clock,
    C::T: TickInt,
    D: ?Sized + Component<U, C> + 'c,
{
    /// A kernel with no components yet.
    pub fn new(settings: Settings) -> Self {
        const {
            assert!(
                K >= kinds::<U>(),
                "K must cover the lifecycle kinds plus the user's kinds: use kinds::<U>()"
            );
            assert!(M > 0 && M <= 255, "between 1 and 255 components");
            assert!(H > 0, "at least one handler per kind");
        };
        Self {
            queue: EventQueue::new(),
            components: Vec::new(),
            table: Table {
                routes: [const { Vec::new() }; K],
            },
            settings,
            requests: None,
            request_reader: RequestReader::new(),
            inbox: None,
            activity: None,
            posts_attached: false,
            due: Due::default(),
            started: false,
            started_at: 0,
            done: false,
            terminate_at: None,
            periodic: [None; 3],
            ended: None,
            stats: KernelStats::new(),
        }
    }

    /// Adds a component and registers its routes (its `setup`). Registration order is
    /// pipeline order, except for kinds the component prepends.
    ///
    /// # Errors
    ///
    /// A [`RouteError`] when a capacity is too small; the component is not added, and routes
    /// it registered before the error are taken back.
    pub fn add(&mut self, component: &'c mut D) -> Result<(), RouteError> {
        if self.components.is_full() {
            return Err(RouteError::TooManyComponents);
        }
        let index = self.components.len() as u8;
        let result = component.setup(&mut Routes::new(&mut self.table, index));
        if let Err(e) = result {
            for route in &mut self.table.routes {
                route.retain(|&c| c != index);
            }
            return Err(e);
        }
        // Cannot fail: checked above.
        let _ = self.components.push(component);
        Ok(())
    }

    /// Lets interrupt or signal handlers post lifecycle requests (drained every step).
    pub fn attach_requests(&mut self, requests: &'c Requests) {
        self.request_reader = RequestReader::new();
        // Requests posted before attaching are not lost: start counting from zero.
        self.requests = Some(requests);
        self.posts_attached = true;
    }

    /// Lets interrupt handlers and threads post user events (drained every step).
    pub fn attach_inbox(&mut self, inbox: &'c dyn Mailbox<U>) {
        self.inbox = Some(inbox);
        self.posts_attached = true;
    }

    /// Keeps `activity` told which component handles which event kind, around every handler
    /// call (see [`activity`](crate::activity)), so a watchdog can name a handler that hangs.
    pub fn attach_activity(&mut self, activity: &'c Activity) {
        self.activity = Some(activity);
    }

    /// Starts the run at `now`: `start` goes first, periodic lifecycle events are armed
    /// (unless a stop was already asked for).
    ///
    /// # Errors
    ///
    /// [`StartError`] if already started or a periodic event cannot be armed.
    pub fn start(&mut self, now: Instant<C>) -> Result<(), StartError> {
        if self.started {
            return Err(StartError::AlreadyStarted);
        }
        self.queue.advance(now);
        // A stop asked for before the start: they stay cancelled, as a stop leaves them.
        if !self.done {
            for which in Periodic::ALL {
                if let Err(e) = self.arm(which) {
                    // Leave no half-started kernel behind: disarm what was armed.
                    self.disarm_periodic();
                    return Err(StartError::Schedule(e));
                }
            }
        }
        self.started = true;
        self.started_at = self.now_ticks();
        self.due.set(Due::START);
        Ok(())
    }

    /// Asks for a graceful stop (see the module docs).
    pub fn request_stop(&mut self) {
        if self.ended.is_some() {
            return;
        }
        self.stats.stop_requests = self.stats.stop_requests.saturating_add(1);
        if self.stats.stop_requests >= self.settings.max_stop_requests {
            self.ended = Some(EndReason::Forced);
            return;
        }
        if !self.done {
            self.done = true;
            self.due.set(Due::STOP);
            self.due.clear(Due::RELOAD);
            self.disarm_periodic();
        }
    }

    /// Arms the periodic event `which` with its configured period from the queue's last
    /// `now`, if it has one (its slot must be empty).
    fn arm(&mut self, which: Periodic) -> Result<(), crate::queue::ScheduleErrorKind> {
        if let Some(period) = *which.interval(&mut self.settings) {
            let handle = self
                .queue
                .schedule_every(period, which.event())
                .map_err(|e| e.kind())?;
            self.periodic[which.slot()] = Some(handle);
        }
        Ok(())
    }

    fn disarm_periodic(&mut self) {
        for handle in self.periodic.iter_mut().filter_map(Option::take) {
            let _ = self.queue.cancel(handle);
        }
    }

    /// Changes the period of one of the kernel's periodic lifecycle events (a reloaded
    /// configuration): the old timer is cancelled and, with `Some(period)`, the event is
    /// armed again, first one period after `now`. Before [`start`](Self::start) it only
    /// changes the setting `start` arms with; while stopping (the periodic events are
    /// cancelled then) it only changes the setting.
    ///
    /// # Errors
    ///
    /// The period could not be armed (timed queue full, zero or too long a period): the new
    /// period is kept as the setting but no timer runs for it.
    pub fn set_period(
        &mut self,
        which: Periodic,
        period: Option<Milliseconds<u32>>,
        now: Instant<C>,
    ) -> Result<(), crate::queue::ScheduleErrorKind> {
        *which.interval(&mut self.settings) = period;
        if let Some(handle) = self.periodic[which.slot()].take() {
            let _ = self.queue.cancel(handle);
        }
        if !self.started || self.done || self.ended.is_some() {
            return Ok(());
        }
        self.queue.advance(now);
        self.arm(which)
    }

    /// The period of one of the periodic lifecycle events, as set.
    pub fn period(&self, which: Periodic) -> Option<Milliseconds<u32>> {
        let mut settings = self.settings;
        *which.interval(&mut settings)
    }

    /// Ends the loop at once, as SIGTERM does.
    pub fn terminate(&mut self) {
        if self.ended.is_none() {
            self.ended = Some(EndReason::Terminated);
        }
    }

    /// Asks for a `reload` event (ignored while stopping).
    pub fn request_reload(&mut self) {
        if !self.done {
            self.due.set(Due::RELOAD);
        }
    }

    /// Asks for a `save_runlog` event.
    pub fn request_runlog(&mut self) {
        self.due.set(Due::SAVE_RUNLOG);
    }

    /// Asks for a `save_state` event.
    pub fn request_state(&mut self) {
        self.due.set(Due::SAVE_STATE);
    }

    /// Asks for a `checkpoint` event (see [`Context::request_checkpoint`]); it goes ahead of
    /// queued work, and several requests before it is dispatched give one.
    pub fn request_checkpoint(&mut self) {
        if self.ended.is_none() {
            self.due.set(Due::CHECKPOINT);
        }
    }

    /// Changes the stop timeout (a reloaded configuration). A stop already under way keeps
    /// the deadline it was given; the new timeout applies to a stop that has not yet begun.
    pub fn set_stop_timeout(&mut self, timeout: impl Delay) {
        self.settings.stop_timeout = to_millis(timeout);
    }

    /// True once a stop began.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Why the loop ended, once it did.
    pub fn ended(&self) -> Option<EndReason> {
        self.ended
    }

    /// Dispatches at most one event at `now`. See the module docs for the order.
    ///
    /// # Errors
    ///
    /// [`StepError::Unhandled`] for a user event without handlers (consumed and counted);
    /// [`StepError::NotStarted`] before [`start`](Self::start).
    pub fn step(&mut self, now: Instant<C>) -> Result<Step, StepError> {
        match self.take_next(now) {
            Ok(event) => self.dispatch_and_check(event, now),
            Err(NoEvent::Idle) => Ok(Step::Idle),
            Err(NoEvent::Ended(reason)) => Ok(Step::Ended(reason)),
            Err(NoEvent::NotStarted) => Err(StepError::NotStarted),
        }
    }

    /// [`dispatch`](Self::dispatch), then the end of the loop if the event was `terminate`.
    #[inline(always)]
    fn dispatch_and_check(&mut self, event: Event<U>, now: Instant<C>) -> Result<Step, StepError> {
        let terminating = matches!(event, Event::Terminate);
        let step = self.dispatch(event, now);
        if terminating {
            // Unless the pipeline made the last allowed stop request: that end is `Forced`.
            self.ended.get_or_insert(EndReason::StopTimeout);
        }
        step
    }

    /// The next event to dispatch at `now`, or why there is none. Inlined into both of its
    /// callers, `step` and `run`, as `dispatch` is: a call each would cost a tenth of a step.
    #[inline(always)]
    fn take_next(&mut self, now: Instant<C>) -> Pick<U> {
        if !self.started || self.ended.is_some() {
            return self.not_running();
        }
        self.queue.advance(now);
        // The usual step has nothing posted, no lifecycle event waiting and no stop under
        // way: one test, and the queue decides.
        if self.due.any() || self.done || self.posts_waiting() {
            if let Some(taken) = self.take_lifecycle() {
                return taken;
            }
        }
        match self.queue.next_at_last_now() {
            Next::Timed(fired) => {
                self.stats.lateness.record(fired.late);
                Ok(fired.event)
            }
            Next::Sequential(event) => Ok(event),
            Next::Wait(_) if !self.done => Err(NoEvent::Idle),
            Next::Wait(_) | Next::Empty => {
                let reason = if self.done {
                    EndReason::Stopped
                } else {
                    EndReason::QueueEmpty
                };
                self.ended = Some(reason);
                Err(NoEvent::Ended(reason))
            }
        }
    }

    /// Drains posts, then the stop timeout and the lifecycle flags: the event they give, if
    /// any, or the end of the loop. Kept out of line so the usual step stays small.
    #[inline(never)]
    fn take_lifecycle(&mut self) -> Option<Pick<U>> {
        if self.posts_attached {
            self.drain_posts();
            if self.ended.is_some() {
                return Some(self.not_running());
            }
        }
        let now_ticks = self.now_ticks();
        if self.terminate_at.is_some_and(|t| t <= now_ticks) {
            self.terminate_at = None;
            return Some(Ok(Event::Terminate));
        }
        let lifecycle = self.due.take()?;
        if matches!(lifecycle, Event::Stop) {
            // The stop timeout runs from the moment `stop` is dispatched.
            let timeout = duration_to_ticks::<C, _>(self.settings.stop_timeout).unwrap_or(u64::MAX);
            self.terminate_at = Some(now_ticks.saturating_add(timeout));
        }
        Some(Ok(lifecycle))
    }

    /// Steps until nothing is due at `now` or the loop ends. Stops at the first error, which
    /// it returns (call again to go on).
    ///
    /// # Errors
    ///
    /// The first [`StepError`].
    pub fn run_until_idle(&mut self, now: Instant<C>) -> Result<Idle, StepError> {
        loop {
            match self.run(now, NonZeroU32::MAX)? {
                Run::Limit | Run::Lifecycle(_) | Run::StopRequested => {}
                Run::Idle => return Ok(Idle::Waiting),
                Run::Ended(reason) => return Ok(Idle::Ended(reason)),
            }
        }
    }

    /// Dispatches up to `limit` events at `now`, as that many [`step`](Self::step)s would,
    /// but returns as soon as a lifecycle event went through its pipeline, so the host can do
    /// its part for it (see [`Step::Dispatched`]).
    ///
    /// It also returns right after a handler asked for a stop ([`Run::StopRequested`]), before
    /// `stop` runs.
    ///
    /// For hosts whose clock is dear to read: they read it once per call instead of once per
    /// event, and the per-step bookkeeping is not repeated. Every handler of the call sees
    /// `now` as the time ([`Context::now`]), and a timer that falls due during the call waits
    /// for the next one: `limit` bounds both lags (`limit` events' handling time).
    ///
    /// # Errors
    ///
    /// As [`step`](Self::step): the first [`StepError`] ends the call (events dispatched
    /// before it stay dispatched).
    pub fn run(&mut self, now: Instant<C>, limit: NonZeroU32) -> Result<Run, StepError> {
        for _ in 0..limit.get() {
            let event = match self.take_next(now) {
                Ok(event) => event,
                Err(NoEvent::Idle) => return Ok(Run::Idle),
                Err(NoEvent::Ended(reason)) => return Ok(Run::Ended(reason)),
                Err(NoEvent::NotStarted) => return Err(StepError::NotStarted),
            };
            let kind = event.kind();
            let was_done = self.done;
            self.dispatch_and_check(event, now)?;
            if kind.is_builtin() {
                return Ok(Run::Lifecycle(kind));
            }
            if self.done && !was_done {
                return Ok(Run::StopRequested);
            }
        }
        Ok(Run::Limit)
    }

    /// Until when the host may sleep: `Some(instant)` of the earliest deadline (the `terminate`
    /// timeout included), `Some(now)` when work is due at once, `None` when only a post or a
    /// signal can bring work.
    pub fn next_deadline(&self) -> Option<Instant<C>> {
        if self.has_due_work() {
            return Some(self.queue.now());
        }
        let timer = self.queue.next_deadline_ticks();
        let earliest = match (timer, self.terminate_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        earliest.map(|point| self.queue.instant_at(point))
    }

    fn has_due_work(&self) -> bool {
        self.ended.is_some() || self.due.any() || self.queue.sequential_len() > 0
    }

    /// The kernel's figures.
    pub fn stats(&self) -> &KernelStats<K> {
        &self.stats
    }

    /// The queue's figures (rejections, high-water marks, missed periods).
    pub fn queue_stats(&self) -> QueueStats {
        self.queue.stats()
    }

    /// The queue, for the host to schedule the user's events into (before or between steps).
    /// The view takes user events only: the lifecycle moves through the named requests.
    pub fn queue(&mut self) -> HostQueue<'_, U, C, S, T> {
        HostQueue::new(&mut self.queue)
    }

    /// The components, in the order they were added.
    pub fn components(&self) -> impl Iterator<Item = &D> + use<'_, 'c, U, C, M, K, H, S, T, D> {
        self.components.iter().map(|c| &**c)
    }

    /// The components, in the order they were added, for the host to work with between steps
    /// (for example to hand them a reloaded configuration).
    pub fn components_mut(
        &mut self,
    ) -> impl Iterator<Item = &mut D> + use<'_, 'c, U, C, M, K, H, S, T, D> {
        self.components.iter_mut().map(|c| &mut **c)
    }

    /// The names of the components handling `kind`, in pipeline order.
    pub fn route(
        &self,
        kind: Kind,
    ) -> impl Iterator<Item = &'static str> + Clone + use<'_, 'c, U, C, M, K, H, S, T, D> {
        self.table
            .routes
            .get(kind.index())
            .into_iter()
            .flatten()
            .map(|&i| self.components[usize::from(i)].name())
    }

    /// Calls `f(component, key, rate)` for every counter of every component, with rates since
    /// the previous [`rotate_statistics`](Self::rotate_statistics) (or since start).
    pub fn for_each_rate(
        &self,
        now: Instant<C>,
        mut f: impl FnMut(&'static str, &'static str, Rate),
    ) {
        let now = self.queue.place(now);
        let tps = ticks_per_second::<C>();
        for component in &self.components {
            let Some(counters) = component.counters() else {
                continue;
            };
            let since = counters.previous_at().unwrap_or(self.started_at);
            for i in 0..counters.len() {
                let (key, cur, prev) = counters.entry(i);
                f(
                    component.name(),
                    key,
                    Rate::compute(cur, prev, now - since.min(now), tps),
                );
            }
        }
    }

    /// Starts a new statistics interval for every component at `now`.
    pub fn rotate_statistics(&mut self, now: Instant<C>) {
        let now = self.queue.place(now);
        for component in &mut self.components {
            if let Some(counters) = component.counters_mut() {
                counters.rotate(now);
            }
        }
    }

    fn now_ticks(&self) -> u64 {
        self.queue.now_ticks()
    }

    /// What a step finds before `start` or after the end (kept out of the hot path).
    #[cold]
    fn not_running(&self) -> Pick<U> {
        match self.ended {
            Some(reason) if self.started => Err(NoEvent::Ended(reason)),
            _ => Err(NoEvent::NotStarted),
        }
    }

    /// True when something may have been posted: an atomic load per attached mechanism.
    #[inline(always)]
    fn posts_waiting(&self) -> bool {
        self.posts_attached
            && (self
                .requests
                .is_some_and(|r| self.request_reader.has_new(r))
                || self.inbox.is_some_and(|i| i.may_have_events()))
    }

    /// Turns posted requests into lifecycle flags and inbox events into queued events.
    fn drain_posts(&mut self) {
        if let Some(requests) = self.requests.filter(|r| self.request_reader.has_new(r)) {
            self.request_reader.catch_up(requests);
            for request in Request::ALL {
                let n = self.request_reader.take(requests, request);
                if n == 0 {
                    continue;
                }
                match request {
                    Request::Terminate => self.terminate(),
                    Request::Stop => (0..n).for_each(|_| self.request_stop()),
                    Request::Reload => self.request_reload(),
                    Request::SaveRunlog => self.request_runlog(),
                    Request::SaveState => self.request_state(),
                    Request::Checkpoint => self.request_checkpoint(),
                }
            }
        }
        if let Some(inbox) = self.inbox.filter(|i| i.may_have_events()) {
            let queue = &mut self.queue;
            // Straight into the queue, not through the user-event view: the error then carries
            // the inbox's event back with one unwrapping, not a mapping and an unwrapping
            // (the tiny firmware: 52 bytes less).
            let mut accept = |u| {
                queue
                    .schedule(Event::User(u))
                    .map_err(|e| crate::host::user(e.into_event()))
            };
            loop {
                match inbox.take_one(&mut accept) {
                    Take::Taken => {}
                    Take::Empty => break,
                    Take::Refused => {
                        self.stats.inbox_deferred = self.stats.inbox_deferred.saturating_add(1);
                        break;
                    }
                }
            }
        }
    }

    /// Acts on the requests handlers made through their [`Context`] ([`Asked`] bits).
    fn take_asked(&mut self, asked: u8) {
        if asked & Asked::STOP != 0 {
            self.request_stop();
        }
        if asked & Asked::CHECKPOINT != 0 {
            self.request_checkpoint();
        }
        if asked & Asked::RELOAD != 0 {
            self.request_reload();
        }
        if asked & Asked::RUNLOG != 0 {
            self.request_runlog();
        }
        if asked & Asked::STATE != 0 {
            self.request_state();
        }
    }

    #[inline(always)]
    fn dispatch(&mut self, mut event: Event<U>, now: Instant<C>) -> Result<Step, StepError> {
        let kind = event.kind();
        if let Some(n) = self.stats.dispatched.get_mut(kind.index()) {
            // Wrapping, not saturating (one instruction less per event): at a billion events
            // a second, a u64 wraps after 584 years.
            *n = n.wrapping_add(1);
        }
        let Self {
            queue,
            components,
            table,
            done,
            activity,
            ..
        } = self;
        let route: &[u8] = table.routes.get(kind.index()).map_or(&[], |r| r.as_slice());
        let mut ctx = Context::new(queue, now, *done);
        let mut ran = 0u8;
        // Two copies of the loop, so a kernel without an `Activity` pays one test per event
        // for it, not one per handler.
        match *activity {
            None => {
                for &index in route {
                    ran += 1;
                    if components[usize::from(index)].handle(&mut ctx, &mut event) == Flow::Stop {
                        break;
                    }
                }
            }
            Some(activity) => {
                activity.begin(kind);
                for &index in route {
                    ran += 1;
                    activity.enter(index);
                    if components[usize::from(index)].handle(&mut ctx, &mut event) == Flow::Stop {
                        break;
                    }
                }
                activity.end();
            }
        }
        let asked = ctx.asked();
        let unhandled = route.is_empty() && !kind.is_builtin();
        if asked != 0 {
            self.take_asked(asked);
        }
        if unhandled {
            self.stats.unhandled = self.stats.unhandled.saturating_add(1);
            return Err(StepError::Unhandled(kind));
        }
        Ok(Step::Dispatched {
            kind,
            handlers: ran,
        })
    }
}

/// Clock ticks per second as a fraction `(num, den)`: the inverse of the scaling factor.
fn ticks_per_second<C: Clock>() -> (u64, u64) {
    let f = C::SCALING_FACTOR;
    (u64::from(*f.denominator()), u64::from(*f.numerator()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pending::Inbox;
    use crate::stats::{CounterSet, Counters};
    use crate::time::ManualClock;
    use crate::timer::TimerError;
    use core::cell::RefCell;
    use embedded_time::duration::Milliseconds;
    use std::vec::Vec as StdVec;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Work(u32),
        Ping,
    }

    impl UserEvent for Ev {
        const KINDS: usize = 2;
        fn kind(&self) -> usize {
            match self {
                Ev::Work(_) => 0,
                Ev::Ping => 1,
            }
        }
        fn kind_name(kind: usize) -> &'static str {
            ["work", "ping"][kind]
        }
    }

    const WORK: Kind = Kind::user(0);
    const PING: Kind = Kind::user(1);

    type Log = RefCell<StdVec<(&'static str, Event<Ev>)>>;
    type Ctx<'a> = Context<'a, Ev, ManualClock>;
    type TestKernel<'c> = Kernel<'c, Ev, ManualClock, 4, { kinds::<Ev>() }, 3, 8, 8>;

    /// A component that records what it sees and does what its fields say.
    struct Probe<'l> {
        name: &'static str,
        log: &'l Log,
        append: &'static [Kind],
        prepend: &'static [Kind],
        flow: Flow,
        action: fn(&mut Ctx<'_>, &mut Event<Ev>),
        counters: Counters<2>,
    }

    impl<'l> Probe<'l> {
        fn new(name: &'static str, log: &'l Log, append: &'static [Kind]) -> Self {
            Self {
                name,
                log,
                append,
                prepend: &[],
                flow: Flow::Continue,
                action: |_, _| {},
                counters: Counters::new(),
            }
        }
    }

    impl Component<Ev, ManualClock> for Probe<'_> {
        fn name(&self) -> &'static str {
            self.name
        }
        fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
            for &k in self.append {
                routes.append(k)?;
            }
            for &k in self.prepend {
                routes.prepend(k)?;
            }
            Ok(())
        }
        fn handle(&mut self, ctx: &mut Ctx<'_>, event: &mut Event<Ev>) -> Flow {
            self.log.borrow_mut().push((self.name, event.clone()));
            self.counters.inc("seen", 1).unwrap();
            (self.action)(ctx, event);
            self.flow
        }
        fn counters(&self) -> Option<&dyn CounterSet> {
            Some(&self.counters)
        }
        fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> {
            Some(&mut self.counters)
        }
    }

    fn ms(n: u32) -> Milliseconds<u32> {
        Milliseconds(n)
    }

    fn names(log: &Log) -> StdVec<&'static str> {
        log.borrow().iter().map(|(n, _)| *n).collect()
    }

    fn events(log: &Log) -> StdVec<Event<Ev>> {
        log.borrow().iter().map(|(_, e)| e.clone()).collect()
    }

    fn dispatched(kind: Kind, handlers: u8) -> Result<Step, StepError> {
        Ok(Step::Dispatched { kind, handlers })
    }

    #[test]
    fn start_goes_first_then_queued_work() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[Kind::START, WORK]);
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        k.queue().schedule(Ev::Work(1)).unwrap();
        assert_eq!(k.step(clock.now()), Err(StepError::NotStarted));
        k.start(clock.now()).unwrap();
        assert_eq!(k.start(clock.now()), Err(StartError::AlreadyStarted));
        assert_eq!(k.step(clock.now()), dispatched(Kind::START, 1));
        assert_eq!(k.step(clock.now()), dispatched(WORK, 1));
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::QueueEmpty)));
        assert_eq!(events(&log), [Event::Start, Event::User(Ev::Work(1))]);
        // Once ended, it stays ended.
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::QueueEmpty)));
    }

    #[test]
    fn handlers_move_the_lifecycle_only_through_named_requests() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut asker = Probe::new(
            "asker",
            &log,
            &[
                WORK,
                PING,
                Kind::RELOAD,
                Kind::SAVE_RUNLOG,
                Kind::SAVE_STATE,
            ],
        );
        asker.action = |ctx, e| {
            if let Event::User(Ev::Work(_)) = e {
                ctx.request_reload();
                ctx.request_runlog();
                ctx.request_state();
                // The user event goes in as itself, not as `Event::User`.
                ctx.schedule(Ev::Ping).unwrap();
            }
        };
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut asker).unwrap();
        k.start(clock.now()).unwrap();
        k.queue().schedule(Ev::Work(0)).unwrap();
        k.run_until_idle(clock.now()).unwrap();
        assert_eq!(
            events(&log),
            [
                Event::User(Ev::Work(0)),
                Event::Reload,
                Event::SaveRunlog,
                Event::SaveState,
                Event::User(Ev::Ping),
            ]
        );
    }

    #[test]
    fn the_last_stop_request_made_by_terminate_handlers_ends_forced() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut stubborn = Probe::new("stubborn", &log, &[Kind::TERMINATE]);
        stubborn.action = |ctx, _| ctx.request_stop();
        let settings = Settings::default()
            .with_stop_timeout(ms(10))
            .with_max_stop_requests(2);
        let mut k = TestKernel::new(settings);
        k.add(&mut stubborn).unwrap();
        k.start(clock.now()).unwrap();
        k.step(clock.now()).unwrap();
        // Work left waiting keeps the stop from completing before its timeout.
        k.queue().schedule(Ev::Work(0)).unwrap();
        k.request_stop();
        assert_eq!(
            k.step(clock.now()),
            Ok(Step::Dispatched {
                kind: Kind::STOP,
                handlers: 0
            })
        );
        clock.advance(ms(10));
        assert_eq!(
            k.step(clock.now()),
            Ok(Step::Dispatched {
                kind: Kind::TERMINATE,
                handlers: 1
            })
        );
        assert_eq!(k.ended(), Some(EndReason::Forced));
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::Forced)));
    }

    #[test]
    fn a_host_cannot_reach_the_kernels_own_timers() {
        let clock = ManualClock::new();
        let settings = Settings {
            stats_interval: Some(ms(10)),
            ..Settings::default()
        };
        let mut k = TestKernel::new(settings);
        k.start(clock.now()).unwrap();
        // A handle naming the same slot and generation as the kernel's `log_statistics`
        // timer, from another queue.
        let mut other = EventQueue::<Event<Ev>, ManualClock, 1, 1>::new();
        let handle = other.schedule_after(ms(10), Event::User(Ev::Ping)).unwrap();
        assert_eq!(k.queue().cancel(handle), Err(TimerError::Stale));
        assert_eq!(
            k.queue().reschedule_after(handle, ms(1)),
            Err(TimerError::Stale)
        );
        assert_eq!(k.queue().timed_len(), 1);
        clock.advance(ms(10));
        k.step(clock.now()).unwrap();
        assert_eq!(
            k.step(clock.now()),
            Ok(Step::Dispatched {
                kind: Kind::LOG_STATISTICS,
                handlers: 0
            })
        );
    }

    #[test]
    fn pipeline_runs_in_registration_order_with_prepend_first() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[WORK]);
        let mut b = Probe::new("b", &log, &[WORK]);
        let mut c = Probe::new("c", &log, &[]);
        c.prepend = &[WORK];
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        k.add(&mut b).unwrap();
        k.add(&mut c).unwrap();
        assert_eq!(k.route(WORK).collect::<StdVec<_>>(), ["c", "a", "b"]);
        k.start(clock.now()).unwrap();
        k.queue().schedule(Ev::Work(0)).unwrap();
        assert_eq!(k.step(clock.now()), dispatched(Kind::START, 0));
        assert_eq!(k.step(clock.now()), dispatched(WORK, 3));
        assert_eq!(names(&log), ["c", "a", "b"]);
    }

    #[test]
    fn stop_ends_the_chain_and_later_handlers_see_changes() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut bump = Probe::new("bump", &log, &[WORK]);
        bump.action = |_, e| {
            if let Event::User(Ev::Work(n)) = e {
                *n += 10;
            }
        };
        let mut gate = Probe::new("gate", &log, &[WORK]);
        gate.flow = Flow::Stop;
        let mut never = Probe::new("never", &log, &[WORK]);
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut bump).unwrap();
        k.add(&mut gate).unwrap();
        k.add(&mut never).unwrap();
        k.start(clock.now()).unwrap();
        k.queue().schedule(Ev::Work(1)).unwrap();
        k.step(clock.now()).unwrap();
        assert_eq!(k.step(clock.now()), dispatched(WORK, 2));
        assert_eq!(
            *log.borrow(),
            [
                ("bump", Event::User(Ev::Work(1))),
                ("gate", Event::User(Ev::Work(11)))
            ]
        );
    }

    #[test]
    fn unhandled_user_event_is_an_error_and_counted() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[WORK]);
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        k.start(clock.now()).unwrap();
        k.queue().schedule(Ev::Ping).unwrap();
        k.queue().schedule(Ev::Work(2)).unwrap();
        // Lifecycle events without handlers are fine.
        assert_eq!(k.step(clock.now()), dispatched(Kind::START, 0));
        assert_eq!(k.step(clock.now()), Err(StepError::Unhandled(PING)));
        assert_eq!(k.stats().unhandled, 1);
        // The kernel goes on.
        assert_eq!(k.step(clock.now()), dispatched(WORK, 1));
        assert_eq!(k.stats().dispatched[PING.index()], 1);
        assert_eq!(k.stats().total_dispatched(), 3);
    }

    #[test]
    fn capacities_are_errors_not_panics() {
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[WORK]);
        let mut b = Probe::new("b", &log, &[WORK]);
        let mut c = Probe::new("c", &log, &[WORK]);
        let mut d = Probe::new("d", &log, &[Kind::STOP, WORK]);
        let mut e = Probe::new("e", &log, &[]);
        const BEYOND: &[Kind] = &[Kind::user(5)];
        let mut beyond = Probe::new("beyond", &log, BEYOND);
        let mut f = Probe::new("f", &log, &[]);
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        k.add(&mut b).unwrap();
        k.add(&mut c).unwrap();
        // H = 3 handlers per kind: d's WORK route does not fit, and its STOP route is undone.
        assert_eq!(k.add(&mut d), Err(RouteError::TooManyHandlers(WORK)));
        assert_eq!(k.route(Kind::STOP).count(), 0);
        assert_eq!(
            k.add(&mut beyond),
            Err(RouteError::UnknownKind(Kind::user(5)))
        );
        k.add(&mut e).unwrap();
        assert_eq!(k.add(&mut f), Err(RouteError::TooManyComponents));
    }

    /// A component that floods the sequential queue and ignores `is_done`.
    fn flooding(log: &Log) -> Probe<'_> {
        let mut p = Probe::new("flood", log, &[WORK, Kind::STOP, Kind::TERMINATE]);
        p.action = |ctx, e| {
            if let Event::User(Ev::Work(n)) = e {
                ctx.schedule(Ev::Work(*n + 1)).unwrap();
            }
        };
        p
    }

    #[test]
    fn stop_runs_stop_then_terminate_after_the_timeout() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut flood = flooding(&log);
        let settings = Settings {
            stop_timeout: ms(30_000),
            ..Settings::default()
        };
        let mut k = TestKernel::new(settings);
        k.add(&mut flood).unwrap();
        k.start(clock.now()).unwrap();
        k.queue().schedule(Ev::Work(0)).unwrap();
        k.step(clock.now()).unwrap();
        k.step(clock.now()).unwrap();
        clock.advance(ms(1_000));
        k.request_stop();
        assert!(k.is_done());
        // Stop goes ahead of the queued work.
        assert_eq!(k.step(clock.now()), dispatched(Kind::STOP, 1));
        assert_eq!(
            k.next_deadline(),
            Some(clock.now()),
            "work is queued, no sleeping"
        );
        // The flood goes on until the timeout, not a tick longer.
        clock.advance(ms(29_999));
        assert_eq!(k.step(clock.now()), dispatched(WORK, 1));
        clock.advance(ms(1));
        assert_eq!(k.step(clock.now()), dispatched(Kind::TERMINATE, 1));
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::StopTimeout)));
        assert_eq!(k.ended(), Some(EndReason::StopTimeout));
    }

    #[test]
    fn a_changed_stop_timeout_applies_to_the_next_stop() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut flood = flooding(&log);
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut flood).unwrap();
        k.start(clock.now()).unwrap();
        k.queue().schedule(Ev::Work(0)).unwrap();
        k.step(clock.now()).unwrap();
        k.set_stop_timeout(ms(2_000));
        k.request_stop();
        assert_eq!(k.step(clock.now()), dispatched(Kind::STOP, 1));
        // Changing it during the stop does not move the deadline.
        k.set_stop_timeout(ms(60_000));
        clock.advance(ms(1_999));
        assert_eq!(k.step(clock.now()), dispatched(WORK, 1));
        clock.advance(ms(1));
        assert_eq!(k.step(clock.now()), dispatched(Kind::TERMINATE, 1));
    }

    #[test]
    fn third_stop_request_ends_at_once() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut flood = flooding(&log);
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut flood).unwrap();
        k.start(clock.now()).unwrap();
        k.queue().schedule(Ev::Work(0)).unwrap();
        k.step(clock.now()).unwrap();
        k.request_stop();
        assert_eq!(k.step(clock.now()), dispatched(Kind::STOP, 1));
        k.request_stop();
        assert_eq!(
            k.step(clock.now()),
            dispatched(WORK, 1),
            "second: still graceful"
        );
        k.request_stop();
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::Forced)));
        assert_eq!(k.stats().stop_requests, 3);
        // Stop ran once, not once per request.
        let stops = events(&log).iter().filter(|e| **e == Event::Stop).count();
        assert_eq!(stops, 1);
    }

    #[test]
    fn done_with_only_timed_events_left_ends_without_waiting() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[Kind::START]);
        a.action = |ctx, _| {
            ctx.schedule_after(ms(10_000), Ev::Ping).unwrap();
            ctx.schedule(Ev::Work(1)).unwrap();
        };
        let mut w = Probe::new("w", &log, &[WORK, PING]);
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        k.add(&mut w).unwrap();
        k.start(clock.now()).unwrap();
        k.step(clock.now()).unwrap();
        k.request_stop();
        assert_eq!(k.step(clock.now()), dispatched(Kind::STOP, 0));
        // Sequential work queued before the stop still runs.
        assert_eq!(k.step(clock.now()), dispatched(WORK, 1));
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::Stopped)));
        assert!(!events(&log).contains(&Event::User(Ev::Ping)));
    }

    #[test]
    fn not_done_waits_for_timers_and_reports_the_deadline() {
        let clock = ManualClock::<u32>::starting_at(u32::MAX - 500);
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[Kind::START, PING]);
        a.action = |ctx, e| {
            if *e == Event::Start {
                ctx.schedule_after(ms(1_000), Ev::Ping).unwrap();
            }
        };
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        k.start(clock.now()).unwrap();
        k.step(clock.now()).unwrap();
        assert_eq!(k.step(clock.now()), Ok(Step::Idle));
        let deadline = k.next_deadline().unwrap();
        assert_eq!(deadline, Instant::new(499)); // across the wrap
        clock.advance(ms(999));
        assert_eq!(k.run_until_idle(clock.now()), Ok(Idle::Waiting));
        clock.advance(ms(1));
        assert_eq!(k.step(clock.now()), dispatched(PING, 1));
        assert_eq!(k.stats().lateness.max_ticks, 0);
        assert_eq!(
            k.run_until_idle(clock.now()),
            Ok(Idle::Ended(EndReason::QueueEmpty))
        );
    }

    #[test]
    fn run_stops_at_its_limit_after_lifecycle_events_and_when_idle() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[Kind::START, WORK, Kind::SAVE_RUNLOG]);
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        let two = NonZeroU32::new(2).unwrap();
        assert_eq!(k.run(clock.now(), two), Err(StepError::NotStarted));
        for n in 0..5 {
            k.queue().schedule(Ev::Work(n)).unwrap();
        }
        let timer = k.queue().schedule_after(ms(10), Ev::Ping);
        k.start(clock.now()).unwrap();
        // `start` is a lifecycle event: the host hears of it before any work runs.
        assert_eq!(k.run(clock.now(), two), Ok(Run::Lifecycle(Kind::START)));
        assert_eq!(k.run(clock.now(), two), Ok(Run::Limit));
        // A request posted between calls goes first, and ends the call.
        k.request_runlog();
        assert_eq!(
            k.run(clock.now(), two),
            Ok(Run::Lifecycle(Kind::SAVE_RUNLOG))
        );
        assert_eq!(k.run(clock.now(), NonZeroU32::MAX), Ok(Run::Idle));
        assert_eq!(
            events(&log),
            [
                Event::Start,
                Event::User(Ev::Work(0)),
                Event::User(Ev::Work(1)),
                Event::SaveRunlog,
                Event::User(Ev::Work(2)),
                Event::User(Ev::Work(3)),
                Event::User(Ev::Work(4)),
            ]
        );
        // The timer has no handler: the call that dispatches it reports it.
        assert!(timer.is_ok());
        clock.advance(ms(10));
        assert_eq!(k.run(clock.now(), two), Err(StepError::Unhandled(PING)));
        assert_eq!(
            k.run(clock.now(), two),
            Ok(Run::Ended(EndReason::QueueEmpty))
        );
    }

    #[test]
    fn run_returns_when_a_handler_asks_for_a_stop_before_stop_runs() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[WORK, Kind::STOP]);
        a.action = |ctx, e| {
            if *e == Event::User(Ev::Work(2)) {
                ctx.request_stop();
            }
        };
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        for n in 1..=4 {
            k.queue().schedule(Ev::Work(n)).unwrap();
        }
        k.start(clock.now()).unwrap();
        let many = NonZeroU32::new(10).unwrap();
        assert_eq!(k.run(clock.now(), many), Ok(Run::Lifecycle(Kind::START)));
        assert_eq!(k.run(clock.now(), many), Ok(Run::StopRequested));
        assert!(k.is_done());
        assert_eq!(k.run(clock.now(), many), Ok(Run::Lifecycle(Kind::STOP)));
        assert_eq!(
            events(&log),
            [
                Event::User(Ev::Work(1)),
                Event::User(Ev::Work(2)),
                Event::Stop
            ]
        );
    }

    /// Records what the attached [`Activity`] says while it handles an event.
    struct Witness<'a> {
        name: &'static str,
        activity: &'a Activity,
        seen: StdVec<Option<crate::activity::Dispatching>>,
    }

    impl Component<Ev, ManualClock> for Witness<'_> {
        fn name(&self) -> &'static str {
            self.name
        }
        fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
            routes.append(WORK)?;
            routes.append(Kind::STOP)
        }
        fn handle(&mut self, _: &mut Ctx<'_>, _: &mut Event<Ev>) -> Flow {
            self.seen.push(self.activity.current());
            Flow::Continue
        }
    }

    #[test]
    fn an_attached_activity_names_the_handler_in_flight_and_clears_after_the_event() {
        use crate::activity::Dispatching;
        let activity = Activity::new();
        let clock = ManualClock::new();
        let (mut a, mut b) = (
            Witness {
                name: "a",
                activity: &activity,
                seen: StdVec::new(),
            },
            Witness {
                name: "b",
                activity: &activity,
                seen: StdVec::new(),
            },
        );
        {
            let mut k = TestKernel::new(Settings::default());
            k.add(&mut a).unwrap();
            k.add(&mut b).unwrap();
            k.attach_activity(&activity);
            k.start(clock.now()).unwrap();
            k.queue().schedule(Ev::Work(1)).unwrap();
            assert_eq!(k.step(clock.now()), dispatched(Kind::START, 0));
            assert_eq!(activity.current(), None);
            assert_eq!(k.step(clock.now()), dispatched(WORK, 2));
            assert_eq!(activity.current(), None, "cleared after the pipeline");
            k.request_stop();
            assert_eq!(k.step(clock.now()), dispatched(Kind::STOP, 2));
            assert_eq!(activity.current(), None);
        }
        let at = |component, kind| Some(Dispatching { component, kind });
        assert_eq!(a.seen, [at(0, WORK), at(0, Kind::STOP)]);
        assert_eq!(b.seen, [at(1, WORK), at(1, Kind::STOP)]);
    }

    #[test]
    fn lateness_is_recorded() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[PING]);
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        k.start(clock.now()).unwrap();
        k.queue().schedule_after(ms(10), Ev::Ping).unwrap();
        k.step(clock.now()).unwrap();
        clock.advance(ms(17));
        assert_eq!(k.step(clock.now()), dispatched(PING, 1));
        let lateness = k.stats().lateness;
        assert_eq!(lateness.max_ticks, 7);
        assert_eq!(lateness.buckets[crate::stats::Lateness::bucket(7)], 1);
    }

    #[test]
    fn handler_can_request_stop_and_sees_is_done() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[Kind::START, Kind::STOP]);
        a.action = |ctx, e| match e {
            Event::Start => {
                assert!(!ctx.is_done());
                ctx.request_stop();
            }
            Event::Stop => assert!(ctx.is_done()),
            _ => {}
        };
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        k.start(clock.now()).unwrap();
        k.step(clock.now()).unwrap();
        assert!(k.is_done());
        assert_eq!(k.step(clock.now()), dispatched(Kind::STOP, 1));
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::Stopped)));
    }

    #[test]
    fn periodic_lifecycle_events_until_stop() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[Kind::LOG_STATISTICS, Kind::SAVE_RUNLOG, WORK]);
        let settings = Settings {
            stats_interval: Some(ms(1_000)),
            runlog_interval: Some(ms(1_500)),
            ..Settings::default()
        };
        let mut k = TestKernel::new(settings);
        k.add(&mut a).unwrap();
        k.start(clock.now()).unwrap();
        assert_eq!(k.step(clock.now()), dispatched(Kind::START, 0));
        assert_eq!(k.step(clock.now()), Ok(Step::Idle));
        assert_eq!(k.next_deadline(), Some(Instant::new(1_000)));
        clock.advance(ms(1_000));
        assert_eq!(k.step(clock.now()), dispatched(Kind::LOG_STATISTICS, 1));
        clock.advance(ms(500));
        assert_eq!(k.step(clock.now()), dispatched(Kind::SAVE_RUNLOG, 1));
        clock.advance(ms(500));
        assert_eq!(k.step(clock.now()), dispatched(Kind::LOG_STATISTICS, 1));
        k.request_stop();
        assert_eq!(k.step(clock.now()), dispatched(Kind::STOP, 0));
        // The periodic timers were cancelled: nothing is left, the loop ends.
        assert_eq!(k.queue().timed_len(), 0);
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::Stopped)));
    }

    #[test]
    fn a_checkpoint_asked_for_by_handlers_goes_next_and_coalesces() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[WORK, Kind::CHECKPOINT]);
        // Every work item asks for a checkpoint, twice.
        a.action = |ctx, e| {
            if let Event::User(Ev::Work(_)) = e {
                ctx.request_checkpoint();
                ctx.request_checkpoint();
            }
        };
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        for n in 0..3 {
            k.queue().schedule(Ev::Work(n)).unwrap();
        }
        k.start(clock.now()).unwrap();
        let many = NonZeroU32::new(10).unwrap();
        assert_eq!(k.run(clock.now(), many), Ok(Run::Lifecycle(Kind::START)));
        // The checkpoint goes ahead of the queued work, and `run` returns after it.
        assert_eq!(
            k.run(clock.now(), many),
            Ok(Run::Lifecycle(Kind::CHECKPOINT))
        );
        // The handler and the host ask, before the next dispatch: still one.
        assert_eq!(k.step(clock.now()), dispatched(WORK, 1));
        k.request_checkpoint();
        assert_eq!(k.step(clock.now()), dispatched(Kind::CHECKPOINT, 1));
        assert_eq!(k.step(clock.now()), dispatched(WORK, 1));
        assert_eq!(k.step(clock.now()), dispatched(Kind::CHECKPOINT, 1));
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::QueueEmpty)));
        assert_eq!(
            events(&log),
            [
                Event::User(Ev::Work(0)),
                Event::Checkpoint,
                Event::User(Ev::Work(1)),
                Event::Checkpoint,
                Event::User(Ev::Work(2)),
                Event::Checkpoint,
            ]
        );
        assert_eq!(k.stats().dispatched[Kind::CHECKPOINT.index()], 3);
    }

    #[test]
    fn posted_checkpoint_requests_give_one_checkpoint() {
        static REQUESTS: Requests = Requests::new();
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[Kind::CHECKPOINT]);
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        k.attach_requests(&REQUESTS);
        k.start(clock.now()).unwrap();
        k.queue().schedule(Ev::Ping).unwrap();
        assert_eq!(k.step(clock.now()), dispatched(Kind::START, 0));
        REQUESTS.post(Request::Checkpoint);
        REQUESTS.post(Request::Checkpoint);
        assert_eq!(k.step(clock.now()), dispatched(Kind::CHECKPOINT, 1));
        assert_eq!(k.step(clock.now()), Err(StepError::Unhandled(PING)));
        assert_eq!(events(&log), [Event::Checkpoint]);
    }

    #[test]
    fn periodic_checkpoints_and_set_period_rearms_from_now() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[Kind::CHECKPOINT, Kind::LOG_STATISTICS]);
        let settings = Settings {
            checkpoint_interval: Some(ms(1_000)),
            ..Settings::default()
        };
        let mut k = TestKernel::new(settings);
        k.add(&mut a).unwrap();
        // Before start, only the setting changes; start arms with it.
        k.set_period(Periodic::Checkpoint, Some(ms(400)), clock.now())
            .unwrap();
        assert_eq!(k.queue().timed_len(), 0);
        k.start(clock.now()).unwrap();
        assert_eq!(k.step(clock.now()), dispatched(Kind::START, 0));
        assert_eq!(k.next_deadline(), Some(Instant::new(400)));
        clock.advance(ms(400));
        assert_eq!(k.step(clock.now()), dispatched(Kind::CHECKPOINT, 1));
        // Re-armed from now (700), not on the old grid (800).
        clock.advance(ms(300));
        k.set_period(Periodic::Checkpoint, Some(ms(1_000)), clock.now())
            .unwrap();
        assert_eq!(k.period(Periodic::Checkpoint), Some(ms(1_000)));
        assert_eq!(k.queue().timed_len(), 1);
        assert_eq!(k.next_deadline(), Some(Instant::new(1_700)));
        // Another periodic event, armed at run time.
        k.set_period(Periodic::Statistics, Some(ms(500)), clock.now())
            .unwrap();
        assert_eq!(k.next_deadline(), Some(Instant::new(1_200)));
        // Switched off: its timer is gone.
        k.set_period(Periodic::Statistics, None, clock.now())
            .unwrap();
        assert_eq!(k.queue().timed_len(), 1);
        // A period the queue refuses: the error, and no timer.
        assert_eq!(
            k.set_period(Periodic::Runlog, Some(ms(0)), clock.now()),
            Err(crate::queue::ScheduleErrorKind::ZeroPeriod)
        );
        assert_eq!(k.queue().timed_len(), 1);
        clock.advance(ms(1_000));
        assert_eq!(k.step(clock.now()), dispatched(Kind::CHECKPOINT, 1));
        // A stop cancels it; setting a period while stopping arms nothing.
        k.request_stop();
        assert_eq!(k.queue().timed_len(), 0);
        k.set_period(Periodic::Checkpoint, Some(ms(10)), clock.now())
            .unwrap();
        assert_eq!(k.queue().timed_len(), 0);
        assert_eq!(k.step(clock.now()), dispatched(Kind::STOP, 0));
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::Stopped)));
    }

    #[test]
    fn statistics_rates_against_hand_computed_values() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut b = Probe::new("b", &log, &[WORK]);
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut b).unwrap();
        k.start(clock.now()).unwrap();
        let work = |k: &mut TestKernel<'_>, n: u32| {
            for i in 0..n {
                k.queue().schedule(Ev::Work(i)).unwrap();
            }
            // Keep the loop from ending on an empty queue.
            k.queue().schedule_after(ms(60_000), Ev::Work(99)).unwrap();
            assert_eq!(k.run_until_idle(clock.now()), Ok(Idle::Waiting));
        };
        // 4 events, rates taken 2 s after start: 2/s, all new (100 %).
        work(&mut k, 4);
        clock.advance(ms(2_000));
        let mut rates = StdVec::new();
        k.for_each_rate(clock.now(), |c, key, r| rates.push((c, key, r)));
        let expected = Rate {
            cnt: 4,
            inc: 4,
            spd_milli: 2_000,
            pct_milli: 100_000,
        };
        assert_eq!(rates, [("b", "seen", expected)]);
        k.rotate_statistics(clock.now());
        // 2 more in the next 4 s: 0.5/s, 2 of 6 new (33.333 %).
        work(&mut k, 2);
        clock.advance(ms(4_000));
        let mut rates = StdVec::new();
        k.for_each_rate(clock.now(), |_, _, r| rates.push(r));
        let expected = Rate {
            cnt: 6,
            inc: 2,
            spd_milli: 500,
            pct_milli: 33_333,
        };
        assert_eq!(rates, [expected]);
    }

    #[test]
    fn a_stop_before_start_arms_no_periodic_events() {
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[Kind::LOG_STATISTICS, WORK]);
        let settings = Settings {
            stats_interval: Some(ms(10)),
            ..Settings::default()
        };
        let mut k = TestKernel::new(settings);
        k.add(&mut a).unwrap();
        k.request_stop();
        k.start(clock.now()).unwrap();
        // Stopping already: the periodic lifecycle events stay cancelled.
        assert_eq!(k.queue().timed_len(), 0);
        k.queue().schedule(Ev::Work(0)).unwrap();
        assert_eq!(k.step(clock.now()), dispatched(Kind::START, 0));
        clock.advance(ms(20));
        assert_eq!(k.step(clock.now()), dispatched(Kind::STOP, 0));
        assert_eq!(k.step(clock.now()), dispatched(WORK, 1));
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::Stopped)));
        assert!(!events(&log).contains(&Event::LogStatistics));
    }

    #[test]
    fn a_failed_start_leaves_nothing_armed() {
        let clock = ManualClock::new();
        // One timer slot: the statistics timer fits, the runlog timer does not.
        let settings = Settings {
            stats_interval: Some(ms(1_000)),
            runlog_interval: Some(ms(1_000)),
            ..Settings::default()
        };
        let mut k = Kernel::<'_, Ev, ManualClock, 1, { kinds::<Ev>() }, 1, 4, 1>::new(settings);
        assert_eq!(
            k.start(clock.now()),
            Err(StartError::Schedule(crate::queue::ScheduleErrorKind::Full))
        );
        assert_eq!(k.queue().timed_len(), 0);
        assert_eq!(k.step(clock.now()), Err(StepError::NotStarted));
    }

    #[test]
    fn posted_requests_become_lifecycle_events() {
        static REQUESTS: Requests = Requests::new();
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new(
            "a",
            &log,
            &[Kind::RELOAD, Kind::SAVE_RUNLOG, Kind::SAVE_STATE, PING],
        );
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut a).unwrap();
        k.attach_requests(&REQUESTS);
        k.start(clock.now()).unwrap();
        k.queue().schedule(Ev::Ping).unwrap();
        k.step(clock.now()).unwrap();
        REQUESTS.post(Request::SaveState);
        REQUESTS.post(Request::SaveRunlog);
        REQUESTS.post(Request::Reload);
        // Ahead of the queued Ping, in the kernel's fixed order.
        assert_eq!(k.step(clock.now()), dispatched(Kind::RELOAD, 1));
        assert_eq!(k.step(clock.now()), dispatched(Kind::SAVE_RUNLOG, 1));
        assert_eq!(k.step(clock.now()), dispatched(Kind::SAVE_STATE, 1));
        assert_eq!(k.step(clock.now()), dispatched(PING, 1));
        // A reload while stopping is ignored.
        REQUESTS.post(Request::Stop);
        REQUESTS.post(Request::Reload);
        assert_eq!(k.step(clock.now()), dispatched(Kind::STOP, 0));
        REQUESTS.post(Request::Terminate);
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::Terminated)));
        assert!(!events(&log)[4..].contains(&Event::Reload));
    }

    #[test]
    fn three_posted_stops_in_one_step_force_the_end() {
        static REQUESTS: Requests = Requests::new();
        let clock = ManualClock::new();
        let mut k = TestKernel::new(Settings::default());
        k.attach_requests(&REQUESTS);
        k.start(clock.now()).unwrap();
        k.queue().schedule(Ev::Work(0)).unwrap();
        for _ in 0..3 {
            REQUESTS.post(Request::Stop);
        }
        assert_eq!(k.step(clock.now()), Ok(Step::Ended(EndReason::Forced)));
    }

    #[test]
    fn inbox_events_from_another_thread_are_all_dispatched_in_order() {
        static INBOX: Inbox<Ev, 64> = Inbox::new();
        let clock = ManualClock::new();
        let log = Log::default();
        let mut a = Probe::new("a", &log, &[WORK]);
        let mut k =
            Kernel::<'_, Ev, ManualClock, 1, { kinds::<Ev>() }, 1, 4, 4>::new(Settings::default());
        k.add(&mut a).unwrap();
        k.attach_inbox(&INBOX);
        k.start(clock.now()).unwrap();
        k.queue().schedule(Ev::Work(u32::MAX)).unwrap();
        // A far timer keeps the loop alive while the inbox is empty.
        k.queue().schedule_after(ms(3_600_000), Ev::Ping).unwrap();
        let poster = std::thread::spawn(|| {
            for i in 0..1000 {
                while INBOX.post(Ev::Work(i)).is_err() {
                    std::thread::yield_now();
                }
            }
        });
        assert_eq!(k.step(clock.now()), dispatched(Kind::START, 0));
        let mut seen = StdVec::new();
        // Steps in a row that idle although events wait in the inbox (a post may land just
        // after a step drained it, but not thousands of times in a row): a kernel that never
        // drains the inbox fails here instead of hanging with the poster.
        let mut idle_with_posts = 0;
        while seen.len() < 1000 {
            let waiting = !INBOX.is_empty();
            match k.step(clock.now()) {
                Ok(Step::Dispatched { kind: WORK, .. }) => {
                    idle_with_posts = 0;
                    if let Some((_, Event::User(Ev::Work(n)))) = log.borrow().last() {
                        if *n != u32::MAX {
                            seen.push(*n);
                        }
                    }
                }
                Ok(Step::Idle) => {
                    if waiting {
                        idle_with_posts += 1;
                        assert!(
                            idle_with_posts < 10_000,
                            "posted events are not taken: {} of 1000 seen",
                            seen.len()
                        );
                    }
                    std::thread::yield_now();
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => panic!("{e}"),
            }
        }
        poster.join().unwrap();
        assert_eq!(seen, (0..1000).collect::<StdVec<_>>());
        // A sequential queue of 4 had to defer inbox events at times; none was lost.
        assert!(k.queue_stats().rejected > 0 || k.stats().inbox_deferred == 0);
    }
}

/// Tests that close gaps a mutation run found (issue 16; see TESTING.md).
#[cfg(test)]
mod strength {
    use super::*;
    use crate::event::{kinds, BUILTIN_KINDS};
    use crate::queue::ScheduleErrorKind;
    use crate::time::ManualClock;
    use core::cell::RefCell;
    use std::vec::Vec as StdVec;

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
    type Log = RefCell<StdVec<Event<Job>>>;

    /// Handles every kind and records what it sees.
    struct Recorder<'l> {
        log: &'l Log,
    }

    impl Component<Job, Clock> for Recorder<'_> {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
            for kind in [
                Kind::START,
                Kind::STOP,
                Kind::TERMINATE,
                Kind::RELOAD,
                Kind::SAVE_RUNLOG,
                Kind::SAVE_STATE,
                Kind::LOG_STATISTICS,
                Kind::CHECKPOINT,
                Kind::user(0),
            ] {
                routes.append(kind)?;
            }
            assert_eq!(BUILTIN_KINDS, 8, "a new lifecycle kind: route it above");
            Ok(())
        }
        fn handle(&mut self, _: &mut Context<'_, Job, Clock>, event: &mut Event<Job>) -> Flow {
            self.log.borrow_mut().push(event.clone());
            Flow::Continue
        }
    }

    type TestKernel<'c> = Kernel<'c, Job, Clock, 2, { kinds::<Job>() }, 2, 4, 4>;

    /// Steps until the loop ends (bounded) and returns what the recorder saw.
    fn run_to_end(k: &mut TestKernel<'_>, clock: &Clock, log: &Log) -> StdVec<Event<Job>> {
        for _ in 0..100 {
            match k.step(clock.now()) {
                Ok(Step::Ended(_)) => return log.take(),
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the loop did not end: {:?}", log.borrow());
    }

    #[test]
    fn a_reload_asked_for_before_a_stop_is_dropped_by_the_stop() {
        let clock = Clock::new();
        let log = Log::default();
        let mut r = Recorder { log: &log };
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut r).unwrap();
        k.start(clock.now()).unwrap();
        k.request_reload();
        k.request_stop();
        assert_eq!(
            run_to_end(&mut k, &clock, &log),
            [Event::Start, Event::Stop]
        );
        assert_eq!(k.ended(), Some(EndReason::Stopped));
    }

    #[test]
    fn lifecycle_requests_come_once_each_in_their_order() {
        let clock = Clock::new();
        let log = Log::default();
        let mut r = Recorder { log: &log };
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut r).unwrap();
        k.start(clock.now()).unwrap();
        k.queue().schedule(Job(1)).unwrap();
        k.request_state();
        k.request_runlog();
        k.request_reload();
        k.request_reload();
        assert_eq!(
            run_to_end(&mut k, &clock, &log),
            [
                Event::Start,
                Event::Reload,
                Event::SaveRunlog,
                Event::SaveState,
                Event::User(Job(1))
            ]
        );
        assert_eq!(k.ended(), Some(EndReason::QueueEmpty));
    }

    #[test]
    fn debug_output_shows_the_kernel_at_a_glance() {
        let clock = Clock::new();
        let log = Log::default();
        let mut r = Recorder { log: &log };
        let mut k = TestKernel::new(Settings::default());
        k.add(&mut r).unwrap();
        k.start(clock.now()).unwrap();
        let text = std::format!("{k:?}");
        assert!(
            text.starts_with("Kernel { components: 1, queue: EventQueue { sequential: 0"),
            "{text}"
        );
        assert!(
            text.contains("done: false, ended: None, stats: KernelStats"),
            "{text}"
        );
        k.terminate();
        assert!(std::format!("{k:?}").contains("ended: Some(Terminated)"));
    }

    #[test]
    fn end_reasons_and_errors_name_what_happened() {
        let reasons = [
            (
                EndReason::Stopped,
                "graceful stop completed, not waiting for timed events",
            ),
            (
                EndReason::StopTimeout,
                "graceful stop timed out, terminated",
            ),
            (EndReason::Forced, "terminated by repeated stop requests"),
            (EndReason::Terminated, "terminated on request"),
            (EndReason::QueueEmpty, "event queue is empty"),
        ];
        for (reason, text) in reasons {
            assert_eq!(reason.describe(), text);
            assert_eq!(std::format!("{reason}"), text);
        }
        assert_eq!(
            std::format!("{}", StepError::NotStarted),
            "the kernel was not started"
        );
        assert_eq!(
            std::format!("{}", StepError::Unhandled(Kind::user(1))),
            "no handler for the event of kind 9"
        );
        assert_eq!(
            std::format!("{}", StartError::AlreadyStarted),
            "the kernel was already started"
        );
        assert_eq!(
            std::format!("{}", StartError::Schedule(ScheduleErrorKind::Full)),
            "cannot arm a periodic lifecycle event: event queue full"
        );
    }
}
