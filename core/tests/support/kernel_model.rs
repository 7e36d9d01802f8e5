//! A reference model of [`Kernel`] and an interpreter that drives a real kernel with random
//! operations, compares it with the model after every operation, and checks the kernel's
//! promises on what it actually did.
//!
//! The setup: a `ManualClock<u32>` that starts at varied values (near `u32::MAX` often, so the
//! clock wraps), and then the same on a `ManualClock<u64>`, the tick type of the daemon's own
//! clock ([`Tick`]); small queue capacities (so `Full` comes up), a [`Requests`] and an [`Inbox`]
//! attached, and three recording components ([`Probe`]) whose routes mix append and prepend.
//! `alpha` ends the chain ([`Flow::Stop`]) for gated user events and for `reload`. Each handler
//! records what it saw and marks the event (the `trail`), so the next one can be checked to see
//! the changed event. User events carry their own instructions: which component acts on them
//! and how (schedule a follow-up event in one of four ways, cancel or move a timer, ask for a
//! stop),
//! so handler-side scheduling is as random as the host's. User kind 3 has no handler.
//!
//! Two layers of checks, so that a model mistaken the same way as the kernel is still caught:
//!
//! * **The model** ([`Model`]) predicts every step exactly: its result, what each handler saw
//!   and did, the kernel's and the queue's statistics, `is_done`, `ended`, `next_deadline` and
//!   the queue lengths. It is written from the docs of `core/src/kernel.rs` (lifecycle, step
//!   order), `core/src/queue.rs` (order and fairness) and `core/src/pending.rs` (drain order),
//!   with std collections; it shares no code with the kernel.
//! * **The audit** ([`Audit`]) checks the rules stated by the docs on the real kernel's
//!   observable behaviour only: every accepted user event (schedule returned `Ok`, or the inbox
//!   took it) is dispatched exactly once, cancelled, or still queued / in the inbox at the end
//!   (periodic timers fire any number of times and are still queued or cancelled at the end);
//!   no timed event is dispatched before its deadline (periodic ones: before the next point of
//!   their grid); a pipeline runs its route in order and a `Flow::Stop` ends it; each handler
//!   sees the event as the previous one left it; `start` is the first event; nothing is
//!   dispatched after the loop ended, and every later step reports the same reason; `stop` is
//!   dispatched at most once and only after a stop request; a stopping loop never idles, and
//!   ends `Stopped` only when no sequential work and no due timer is left; `terminate` comes at
//!   the first step no earlier than `stop_timeout` after `stop` was dispatched and ends the loop
//!   with `StopTimeout`; the `max_stop_requests`-th stop request ends it with `Forced`; a
//!   terminate request ends it with `Terminated`; `stats()` counts what was seen (dispatched
//!   per kind and in all, unhandled, stop requests).
//!
//! After the operations, a finale asks for a stop and runs the loop (sleeping until
//! `next_deadline` as a host would) until it ends, then drains what is left (timers by
//! cancelling their handles, the sequential queue by `next`, the inbox) for the accounting.
//!
//! Two users include this file: the property test `core/tests/kernel_model.rs` and the fuzz
//! target `fuzz/fuzz_targets/kernel_lifecycle.rs`. The interpreter takes a [`Config`] and a
//! plain list of [`Op`]s and depends on neither proptest nor arbitrary.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::num::NonZeroU32;
use std::time::Duration;

use zendaemon_core::embedded_time::duration::Milliseconds;
use zendaemon_core::embedded_time::Instant;
use zendaemon_core::{
    Component, Context, EndReason, Event, Flow, Idle, Inbox, Kernel, KernelStats, Kind, Mailbox,
    ManualClock, Periodic, QueueStats, Request, Requests, RouteError, Routes, Run,
    ScheduleErrorKind, Settings, StartError, Step, StepError, TickInt, TimerError, TimerHandle,
    UserEvent,
};

/// A clock under test: milliseconds in ticks of `K`.
pub type Clock<K> = ManualClock<K>;

/// The tick types the interpreter runs on, and how the operations' `u32` amounts map onto
/// each so that they mean the same distances.
pub trait Tick: TickInt + Debug {
    /// The clock's first tick value for a generated `start`.
    fn start(start: u32) -> Self;
    /// An instant `offset` ticks from the clock's tick: wrapping on a `u32` clock, where an
    /// offset beyond the horizon reads as the past; on a `u64` clock the same distance into
    /// the past (sign-extended), so both read it alike.
    fn offset(offset: u32) -> Self;
}

impl Tick for u32 {
    fn start(start: u32) -> Self {
        start
    }
    fn offset(offset: u32) -> Self {
        offset
    }
}

impl Tick for u64 {
    /// From 2³¹ to 2³² + 2³¹: ticks that cross the `u32` range, and room below for instants
    /// half a `u32` wrap in the past.
    fn start(start: u32) -> Self {
        (1 << 31) + u64::from(start)
    }
    fn offset(offset: u32) -> Self {
        offset as i32 as i64 as u64
    }
}

/// User event kinds; the last one has no handler.
pub const USER_KINDS: usize = 4;
/// The user kind nobody handles (dispatching it is `StepError::Unhandled`).
pub const UNROUTED: u8 = 3;
/// Routing table size: the lifecycle kinds and the user's.
pub const KINDS: usize = zendaemon_core::kinds::<Ev>();
/// Components in the kernel.
pub const COMPONENTS: usize = 3;
/// Handlers per kind (the longest route below has 3).
pub const HANDLERS: usize = 3;
/// Capacity of the inbox.
pub const INBOX: usize = 3;
/// The furthest ahead a deadline may lie on a `u32` clock.
pub const HORIZON: u64 = (u32::MAX / 2) as u64;
/// Where the model's and the audit's time line starts (so points never go below zero).
const BASE: u64 = 1 << 40;

/// The kernel under test, with queues of `S` sequential and `T` timed events.
pub type TestKernel<'c, K, const S: usize, const T: usize> =
    Kernel<'c, Ev, Clock<K>, COMPONENTS, KINDS, HANDLERS, S, T>;
/// Its queue.
pub type TestQueue<'q, K, const S: usize, const T: usize> =
    zendaemon_core::HostQueue<'q, Ev, Clock<K>, S, T>;

// ------------------------------------------------------------------------------------------
// Events, components and their behaviour (shared by the real components and the model)
// ------------------------------------------------------------------------------------------

/// What the component named by [`Ev::actor`] does when it handles the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// `ctx.schedule` a follow-up event.
    Schedule,
    /// `ctx.schedule_next` a follow-up event.
    ScheduleNext,
    /// `ctx.schedule_after` this many ms.
    ScheduleAfter(u32),
    /// `ctx.schedule_every` this many ms.
    ScheduleEvery(u32),
    /// `ctx.cancel` a timer, counted back from the newest handle ever returned.
    Cancel(u16),
    /// `ctx.reschedule` a timer (as `Cancel` picks it) to `ctx.now()` plus this many ticks
    /// (an offset beyond the horizon is in the past; see [`Tick::offset`]).
    Reschedule(u16, u32),
    /// `ctx.reschedule_after` a timer (as `Cancel` picks it) by this many ms.
    RescheduleAfter(u16, u32),
    /// `ctx.request_stop()`.
    RequestStop,
    /// `ctx.request_checkpoint()`.
    RequestCheckpoint,
}

/// The user's event: an id that is unique per schedule call, and instructions for handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ev {
    /// Unique per accepted schedule call (a periodic timer's firings share it).
    pub id: u32,
    /// The user kind, below [`USER_KINDS`].
    pub kind: u8,
    /// The handlers that saw this copy so far, two bits each (see [`trail_after`]).
    pub trail: u8,
    /// `alpha` ends the chain for a gated event.
    pub gate: bool,
    /// The component that acts on the event.
    pub actor: u8,
    /// What it does.
    pub action: Action,
    /// Generations of follow-up events that still act (0: the follow-up does nothing).
    pub hops: u8,
}

impl UserEvent for Ev {
    const KINDS: usize = USER_KINDS;
    fn kind(&self) -> usize {
        usize::from(self.kind)
    }
    fn kind_name(kind: usize) -> &'static str {
        ["a", "b", "c", "unrouted"]
            .get(kind)
            .copied()
            .unwrap_or("?")
    }
}

/// The random part of a new user event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub kind: u8,
    pub gate: bool,
    pub actor: u8,
    pub action: Action,
    pub hops: u8,
}

impl Spec {
    /// The event, with fields brought into range. A periodic event is always routed: the
    /// audit counts unhandled events by id, which a timer firing many times would blur.
    fn event(self, id: u32, periodic: bool) -> Ev {
        let mut kind = self.kind % USER_KINDS as u8;
        if periodic && kind == UNROUTED {
            kind = 2;
        }
        Ev {
            id,
            kind,
            trail: 0,
            gate: self.gate,
            actor: self.actor % COMPONENTS as u8,
            action: self.action,
            hops: self.hops % 4,
        }
    }
}

/// The follow-up event a handler schedules for `parent`.
pub fn child(parent: &Ev, id: u32) -> Ev {
    let periodic = matches!(parent.action, Action::ScheduleEvery(_));
    Spec {
        kind: parent.kind + 1,
        gate: !parent.gate,
        actor: parent.actor + 1,
        action: if parent.hops > 0 {
            parent.action
        } else {
            Action::None
        },
        hops: parent.hops.saturating_sub(1),
    }
    .event(id, periodic)
}

/// The component names, by index.
pub const NAMES: [&str; COMPONENTS] = ["alpha", "beta", "gamma"];

/// Each component's registrations in order: `(kind, prepend)`. Resulting pipelines:
/// start `[alpha, gamma]`, stop `[gamma, beta]`, terminate `[gamma, alpha]`,
/// reload `[gamma, alpha, beta]` (alpha ends it), save_runlog `[alpha, gamma]`,
/// save_state `[beta]`, log_statistics `[beta]`, a `[gamma, alpha, beta]`,
/// b `[beta, alpha, gamma]`, c `[gamma]`, unrouted `[]`.
///
/// Every lifecycle kind has a handler, so every dispatch but an unhandled one shows in the
/// handlers' log (the audit counts dispatches from it).
pub const ROUTES: [&[(Kind, bool)]; COMPONENTS] = [
    &[
        (Kind::START, false),
        (Kind::TERMINATE, false),
        (Kind::RELOAD, false),
        (Kind::user(0), false),
        (Kind::user(1), false),
        (Kind::SAVE_RUNLOG, false),
    ],
    &[
        (Kind::STOP, false),
        (Kind::user(0), false),
        (Kind::user(1), true),
        (Kind::SAVE_STATE, false),
        (Kind::LOG_STATISTICS, false),
        (Kind::RELOAD, false),
        (Kind::CHECKPOINT, false),
    ],
    &[
        (Kind::START, false),
        (Kind::STOP, true),
        (Kind::user(0), true),
        (Kind::user(1), false),
        (Kind::user(2), false),
        (Kind::RELOAD, true),
        (Kind::SAVE_RUNLOG, false),
        (Kind::TERMINATE, true),
        (Kind::CHECKPOINT, true),
    ],
];

/// The pipelines `ROUTES` should give, computed the obvious way.
pub fn expected_routes() -> Vec<Vec<u8>> {
    let mut routes = vec![Vec::new(); KINDS];
    for (component, list) in ROUTES.iter().enumerate() {
        for &(kind, first) in list.iter() {
            let route: &mut Vec<u8> = &mut routes[kind.index()];
            if first {
                route.insert(0, component as u8);
            } else {
                route.push(component as u8);
            }
        }
    }
    routes
}

/// How a handler marks the event for the next one.
pub fn trail_after(trail: u8, component: u8) -> u8 {
    trail.wrapping_mul(4).wrapping_add(component + 1)
}

/// What `component` returns for `event` (after marking it).
pub fn flow_of(component: u8, event: &Event<Ev>) -> Flow {
    let gated = match event {
        Event::User(ev) => ev.gate,
        Event::Reload => true,
        _ => false,
    };
    if component == 0 && gated {
        Flow::Stop
    } else {
        Flow::Continue
    }
}

/// Which handle a `Cancel(n)` names: counted back from the newest, modulo their number.
pub fn pick(n: u16, handles: usize) -> Option<usize> {
    (handles > 0).then(|| handles - 1 - usize::from(n) % handles)
}

/// The id of a user event (handles only ever name user events), as the kernel hands it back
/// (`Ev`) or as the model holds it (`Event<Ev>`).
fn user_id(event: &impl UserId) -> u32 {
    event.user_id()
}

trait UserId {
    fn user_id(&self) -> u32;
}

impl UserId for Ev {
    fn user_id(&self) -> u32 {
        self.id
    }
}

impl UserId for Event<Ev> {
    fn user_id(&self) -> u32 {
        match self {
            Event::User(ev) => ev.id,
            other => panic!("a user timer handed back {other:?}"),
        }
    }
}

/// What a handler did besides marking the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Did {
    Nothing,
    /// Scheduled the follow-up event `child`: `Ok(Some(handle index))` for a timer.
    Scheduled {
        child: u32,
        result: Result<Option<usize>, ScheduleErrorKind>,
    },
    /// Cancelled the timer of handle index `handle`: the id handed back.
    Cancelled {
        handle: usize,
        result: Result<u32, TimerError>,
    },
    /// Moved the timer of handle index `handle`.
    Rescheduled {
        handle: usize,
        result: Result<(), TimerError>,
    },
    RequestedStop,
    RequestedCheckpoint,
}

/// One handler call, as the handler saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub component: u8,
    /// The event as the handler got it (before its own mark).
    pub event: Event<Ev>,
    /// `ctx.now()`, in ticks (widened).
    pub now: u64,
    /// `ctx.is_done()`.
    pub done: bool,
    pub flow: Flow,
    pub did: Did,
}

/// State the components and the host share: the log, ids and every timer handle ever returned.
#[derive(Debug, Default)]
pub struct Shared {
    pub log: Vec<Seen>,
    next_id: u32,
    pub handles: Vec<TimerHandle>,
}

impl Shared {
    fn new_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }
}

/// A recording component; its behaviour is [`ROUTES`], [`flow_of`] and the event's action.
pub struct Probe<'s> {
    index: u8,
    shared: &'s RefCell<Shared>,
}

impl<'s> Probe<'s> {
    pub fn new(index: u8, shared: &'s RefCell<Shared>) -> Self {
        Self { index, shared }
    }
}

/// An instant's tick value, widened.
fn ticks<K: Tick>(instant: Instant<Clock<K>>) -> u64 {
    instant.duration_since_epoch().integer().widen()
}

/// Does what `ev` asks of its actor, through the handler's context.
fn act<K: Tick>(ctx: &mut Context<'_, Ev, Clock<K>>, shared: &mut Shared, ev: &Ev) -> Did {
    let scheduled = match ev.action {
        Action::None => return Did::Nothing,
        Action::RequestStop => {
            ctx.request_stop();
            return Did::RequestedStop;
        }
        Action::RequestCheckpoint => {
            ctx.request_checkpoint();
            return Did::RequestedCheckpoint;
        }
        Action::Cancel(n) => {
            return match pick(n, shared.handles.len()) {
                None => Did::Nothing,
                Some(handle) => Did::Cancelled {
                    handle,
                    result: ctx.cancel(shared.handles[handle]).map(|e| user_id(&e)),
                },
            }
        }
        Action::Reschedule(n, offset) => {
            return match pick(n, shared.handles.len()) {
                None => Did::Nothing,
                Some(handle) => {
                    let ticks = ctx.now().duration_since_epoch().integer();
                    let at = Instant::new(ticks.wrapping_add(&K::offset(offset)));
                    Did::Rescheduled {
                        handle,
                        result: ctx.reschedule(shared.handles[handle], at),
                    }
                }
            }
        }
        Action::RescheduleAfter(n, delay) => {
            return match pick(n, shared.handles.len()) {
                None => Did::Nothing,
                Some(handle) => Did::Rescheduled {
                    handle,
                    result: ctx.reschedule_after(
                        shared.handles[handle],
                        Duration::from_millis(u64::from(delay)),
                    ),
                },
            }
        }
        Action::Schedule | Action::ScheduleNext => {
            let c = child(ev, shared.new_id());
            let id = c.id;
            let r = if ev.action == Action::Schedule {
                ctx.schedule(c)
            } else {
                ctx.schedule_next(c)
            };
            (id, r.map(|()| None))
        }
        Action::ScheduleAfter(delay) => {
            let c = child(ev, shared.new_id());
            (
                c.id,
                ctx.schedule_after(Duration::from_millis(u64::from(delay)), c)
                    .map(Some),
            )
        }
        Action::ScheduleEvery(period) => {
            let c = child(ev, shared.new_id());
            (
                c.id,
                ctx.schedule_every(Duration::from_millis(u64::from(period)), c)
                    .map(Some),
            )
        }
    };
    let (child, result) = scheduled;
    let result = match result {
        Ok(Some(handle)) => {
            shared.handles.push(handle);
            Ok(Some(shared.handles.len() - 1))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            let kind = e.kind();
            let back = user_id(&e.into_event());
            assert_eq!(back, child, "a refused schedule handed back another event");
            Err(kind)
        }
    };
    Did::Scheduled { child, result }
}

impl<K: Tick> Component<Ev, Clock<K>> for Probe<'_> {
    fn name(&self) -> &'static str {
        NAMES[usize::from(self.index)]
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        for &(kind, first) in ROUTES[usize::from(self.index)] {
            if first {
                routes.prepend(kind)?;
            } else {
                routes.append(kind)?;
            }
        }
        Ok(())
    }

    fn handle(&mut self, ctx: &mut Context<'_, Ev, Clock<K>>, event: &mut Event<Ev>) -> Flow {
        let seen = event.clone();
        let mut did = Did::Nothing;
        if let Event::User(ev) = event {
            ev.trail = trail_after(ev.trail, self.index);
            if ev.actor == self.index {
                did = act(ctx, &mut self.shared.borrow_mut(), ev);
            }
        }
        let flow = flow_of(self.index, event);
        self.shared.borrow_mut().log.push(Seen {
            component: self.index,
            event: seen,
            now: ticks(ctx.now()),
            done: ctx.is_done(),
            flow,
            did,
        });
        flow
    }
}

// ------------------------------------------------------------------------------------------
// Operations and configuration
// ------------------------------------------------------------------------------------------

/// One step of a test, as the host would do it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `kernel.start(now)` (the interpreter also starts the kernel once by itself).
    Start,
    /// `kernel.queue().schedule(..)` a new event.
    Schedule(Spec),
    /// `kernel.queue().schedule_next(..)` a new event.
    ScheduleNext(Spec),
    /// `kernel.queue().schedule_after(delay ms, ..)`.
    ScheduleAfter { delay: u32, spec: Spec },
    /// `kernel.queue().schedule_every(period ms, ..)`.
    ScheduleEvery { period: u32, spec: Spec },
    /// `kernel.queue().cancel(..)` a handle, counted back from the newest ([`pick`]).
    Cancel { timer: u16 },
    /// Posts a new event into the inbox.
    PostEvent(Spec),
    /// Posts a request into the attached `Requests`, `times` times (1 to 3).
    Post { request: Request, times: u8 },
    /// Calls the kernel's own method for a request (`request_stop`, `terminate`,
    /// `request_reload`, `request_runlog`, `request_state`), `times` times in a row (1 to 3).
    Ask { request: Request, times: u8 },
    /// `kernel.set_period(which, period ms, now)` (`which` modulo 3 into `Periodic::ALL`;
    /// 0 and `None` both mean none).
    SetPeriod { which: u8, period: Option<u32> },
    /// Moves the clock forward; the kernel is not told.
    Advance { ticks: u32 },
    /// Moves the clock to `kernel.next_deadline()`, as a host that sleeps would.
    Sleep,
    /// Tells the queue the time (`kernel.queue().advance(now)`).
    Observe,
    /// `kernel.step(now)`.
    Step,
    /// `kernel.run_until_idle(now)`.
    RunUntilIdle,
    /// `kernel.run(now, limit)` (`limit` at least 1).
    Run { limit: u8 },
}

/// A run's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Index into [`CAPACITIES`] (modulo).
    pub capacity: u8,
    /// The clock's first tick value.
    pub start: u32,
    /// `Settings::stop_timeout`, ms.
    pub stop_timeout: u32,
    /// `Settings::stats_interval`, ms (0 and `None` both mean none).
    pub stats_interval: Option<u32>,
    /// `Settings::runlog_interval`, ms (0 and `None` both mean none).
    pub runlog_interval: Option<u32>,
    /// `Settings::checkpoint_interval`, ms (0 and `None` both mean none).
    pub checkpoint_interval: Option<u32>,
    /// `Settings::max_stop_requests`.
    pub max_stop_requests: u32,
    /// How many operations run before the interpreter starts the kernel.
    pub start_after: u8,
    /// Schedules an hourly timer first, so the loop does not end at the first empty queue.
    pub keepalive: bool,
}

impl Config {
    fn settings(&self) -> Settings {
        let mut settings = Settings::default()
            .with_stop_timeout(Milliseconds(self.stop_timeout))
            .with_max_stop_requests(self.max_stop_requests);
        for (which, interval) in [
            (Periodic::Statistics, self.stats_interval),
            (Periodic::Runlog, self.runlog_interval),
            (Periodic::Checkpoint, self.checkpoint_interval),
        ] {
            if let Some(ms) = interval.filter(|&ms| ms > 0) {
                settings = settings.with_period(which, Milliseconds(ms));
            }
        }
        settings
    }
}

/// Capacity pairs `(sequential, timed)` the interpreter can run with: small, so queues fill.
pub const CAPACITIES: [(usize, usize); 4] = [(1, 1), (2, 2), (3, 4), (6, 8)];

/// A handler's reschedule offset or delay, kept in the future (1 tick up to the horizon).
///
/// A handler that moves a timer to now or into the past each time it runs keeps that timer
/// due forever: `run_until_idle` (unbounded by design: it runs until nothing is due) would
/// then never return, and a test would hang instead of failing. Moving a timer to now or into
/// the past is covered by the queue model (`queue_model`, `queue_ordering`).
pub fn handler_reschedule_ticks(ticks: u32) -> u32 {
    ticks.clamp(1, HORIZON as u32)
}

/// Shapes a tick amount from two random numbers so the interesting values come up often:
/// zero and tiny, small, around common stop timeouts, the edge of the horizon, anything.
pub fn ticks_from(kind: u8, value: u32) -> u32 {
    match kind % 8 {
        0 | 1 => value % 4,
        2 | 3 => value % 300,
        4 => value % 40_000,
        5 => (HORIZON as u32 - 2).wrapping_add(value % 5),
        6 => u32::MAX - value % 300,
        _ => value,
    }
}

/// Shapes a clock start value: zero, just before the wrap, around the middle, or anything.
pub fn start_from(kind: u8, value: u32) -> u32 {
    match kind % 6 {
        0 => 0,
        1 | 2 => u32::MAX - value % 2_000,
        3 => (1u32 << 31).wrapping_sub(1_000).wrapping_add(value % 2_000),
        4 => value % 2_000,
        _ => value,
    }
}

/// Shapes a stop timeout: zero, tiny, pyzenkit's 30 s, or small.
pub fn stop_timeout_from(kind: u8, value: u32) -> u32 {
    match kind % 6 {
        0 => 0,
        1 => 1 + value % 4,
        2 => 30_000,
        _ => value % 5_000,
    }
}

/// Shapes `max_stop_requests`: mostly pyzenkit's 3.
pub fn max_stops_from(kind: u8) -> u32 {
    [3, 3, 3, 1, 2, 4][usize::from(kind % 6)]
}

/// The keep-alive timer's event: routed, does nothing.
const KEEPALIVE: Spec = Spec {
    kind: 2,
    gate: false,
    actor: 0,
    action: Action::None,
    hops: 0,
};

/// The requests, by index, for decoders.
pub const REQUESTS: [Request; 6] = Request::ALL;

// ------------------------------------------------------------------------------------------
// The model
// ------------------------------------------------------------------------------------------

const DUE_START: u8 = 1 << 0;
const DUE_STOP: u8 = 1 << 1;
const DUE_RELOAD: u8 = 1 << 2;
const DUE_SAVE_RUNLOG: u8 = 1 << 3;
const DUE_SAVE_STATE: u8 = 1 << 4;
const DUE_CHECKPOINT: u8 = 1 << 5;

/// The periodic lifecycle events by slot, in `Periodic::ALL` order.
const PERIODIC: [Event<Ev>; 3] = [Event::LogStatistics, Event::SaveRunlog, Event::Checkpoint];

/// Who holds a model timer: a handle the host or a handler got, or a kernel lifecycle slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Handle(usize),
    Lifecycle(usize),
}

#[derive(Debug, Clone)]
struct ModelTimer {
    event: Event<Ev>,
    owner: Owner,
    period: Option<u64>,
}

/// What the model's queue gives for `next`.
enum ModelNext {
    Timed { event: Event<Ev>, late: u64 },
    Sequential(Event<Ev>),
    Wait,
    Empty,
}

/// The reference model of the kernel with its queue, inbox and posted requests.
#[derive(Debug)]
pub struct Model {
    seq_capacity: usize,
    timed_capacity: usize,
    settings: Settings,
    /// The clock's tick value at point `BASE`.
    start: u64,
    /// The clock's largest tick value (its wrap period less one).
    max: u64,
    clock: u64,
    /// The last time the queue was told.
    seen: u64,
    sequential: VecDeque<Event<Ev>>,
    timers: BTreeMap<(u64, u64), ModelTimer>,
    next_seq: u64,
    burst: Option<u64>,
    /// For every handle ever returned, the key of its timer while pending.
    handles: Vec<Option<(u64, u64)>>,
    /// The kernel's periodic `log_statistics`, `save_runlog` and `checkpoint` timers.
    lifecycle: [Option<(u64, u64)>; 3],
    queue_stats: QueueStats,
    inbox: VecDeque<Ev>,
    /// Posts not yet drained, in `Request::ALL` order.
    posted: [u32; 6],
    started: bool,
    ended: Option<EndReason>,
    done: bool,
    terminate_at: Option<u64>,
    due: u8,
    stats: KernelStats<KINDS>,
    next_id: u32,
    routes: Vec<Vec<u8>>,
}

fn lateness_bucket(ticks: u64) -> usize {
    // 0, then 1..4, 4..16, ...: one bucket per factor of four, the last takes the rest.
    let mut bucket = 0;
    let mut floor = 1u64;
    while bucket < 11 && ticks >= floor {
        bucket += 1;
        floor = floor.saturating_mul(4);
    }
    bucket
}

impl Model {
    fn new<K: Tick>(seq_capacity: usize, timed_capacity: usize, config: &Config) -> Self {
        Self {
            seq_capacity,
            timed_capacity,
            settings: config.settings(),
            start: K::start(config.start).widen(),
            max: K::MAX_U64,
            clock: BASE,
            seen: BASE,
            sequential: VecDeque::new(),
            timers: BTreeMap::new(),
            next_seq: 0,
            burst: None,
            handles: Vec::new(),
            lifecycle: [None; 3],
            queue_stats: QueueStats::default(),
            inbox: VecDeque::new(),
            posted: [0; 6],
            started: false,
            ended: None,
            done: false,
            terminate_at: None,
            due: 0,
            stats: KernelStats::new(),
            next_id: 0,
            routes: expected_routes(),
        }
    }

    fn new_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn raw(&self, point: u64) -> u64 {
        self.start.wrapping_add(point.wrapping_sub(BASE)) & self.max
    }

    /// The furthest ahead a deadline may lie: just under half the clock's wrap period.
    fn horizon(&self) -> u64 {
        self.max / 2
    }

    /// The point for the instant `offset` ticks (a tick value of the clock) from `seen`: the
    /// nearest one within half a wrap period, so at most the horizon ahead or up to half a
    /// wrap behind.
    fn place(&self, offset: u64) -> u64 {
        let ahead = offset & self.max;
        if ahead <= self.horizon() {
            self.seen + ahead
        } else {
            self.seen - (self.max - ahead + 1)
        }
    }

    // --- the queue ---

    fn push_sequential(&mut self, event: Event<Ev>, front: bool) -> Result<(), ScheduleErrorKind> {
        if self.sequential.len() == self.seq_capacity {
            self.queue_stats.rejected += 1;
            return Err(ScheduleErrorKind::Full);
        }
        if front {
            self.sequential.push_front(event);
        } else {
            self.sequential.push_back(event);
        }
        let len = self.sequential.len() as u16;
        let hw = &mut self.queue_stats.sequential_high_water;
        *hw = (*hw).max(len);
        Ok(())
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    fn set_key(&mut self, owner: Owner, key: Option<(u64, u64)>) {
        match owner {
            Owner::Handle(h) => self.handles[h] = key,
            Owner::Lifecycle(slot) => self.lifecycle[slot] = key,
        }
    }

    /// A new timer; a user one gets the next handle index.
    fn add_timer(
        &mut self,
        deadline: u64,
        period: Option<u64>,
        event: Event<Ev>,
        lifecycle: Option<usize>,
    ) -> Result<Owner, ScheduleErrorKind> {
        if self.timers.len() == self.timed_capacity {
            self.queue_stats.rejected += 1;
            return Err(ScheduleErrorKind::Full);
        }
        let owner = match lifecycle {
            Some(slot) => Owner::Lifecycle(slot),
            None => {
                self.handles.push(None);
                Owner::Handle(self.handles.len() - 1)
            }
        };
        let key = (deadline, self.take_seq());
        self.timers.insert(
            key,
            ModelTimer {
                event,
                owner,
                period,
            },
        );
        self.set_key(owner, Some(key));
        let len = self.timers.len() as u16;
        let hw = &mut self.queue_stats.timed_high_water;
        *hw = (*hw).max(len);
        Ok(owner)
    }

    fn schedule_after(&mut self, delay: u32, event: Event<Ev>) -> Result<usize, ScheduleErrorKind> {
        if u64::from(delay) > self.horizon() {
            return Err(ScheduleErrorKind::BeyondHorizon);
        }
        match self.add_timer(self.seen + u64::from(delay), None, event, None)? {
            Owner::Handle(h) => Ok(h),
            Owner::Lifecycle(_) => unreachable!(),
        }
    }

    fn schedule_every(
        &mut self,
        period: u32,
        event: Event<Ev>,
        lifecycle: Option<usize>,
    ) -> Result<Owner, ScheduleErrorKind> {
        if period == 0 {
            return Err(ScheduleErrorKind::ZeroPeriod);
        }
        if u64::from(period) > self.horizon() {
            return Err(ScheduleErrorKind::BeyondHorizon);
        }
        let period = u64::from(period);
        self.add_timer(self.seen + period, Some(period), event, lifecycle)
    }

    fn cancel(&mut self, handle: usize) -> Result<Event<Ev>, TimerError> {
        let key = self.handles[handle].take().ok_or(TimerError::Stale)?;
        Ok(self
            .timers
            .remove(&key)
            .expect("a live handle names a timer")
            .event)
    }

    /// Moves a user timer to `deadline`; among equal deadlines it now counts as scheduled last.
    fn reschedule(&mut self, handle: usize, deadline: u64) -> Result<(), TimerError> {
        let key = self.handles[handle].ok_or(TimerError::Stale)?;
        let timer = self
            .timers
            .remove(&key)
            .expect("a live handle names a timer");
        let key = (deadline, self.take_seq());
        self.timers.insert(key, timer);
        self.handles[handle] = Some(key);
        Ok(())
    }

    fn cancel_lifecycle(&mut self) {
        for slot in 0..3 {
            if let Some(key) = self.lifecycle[slot].take() {
                self.timers.remove(&key);
            }
        }
    }

    /// The queue's `next(now)`: order and fairness as `core/src/queue.rs` documents them.
    fn queue_next(&mut self) -> ModelNext {
        if let Some((&(deadline, seq), _)) = self.timers.first_key_value() {
            let late_comer = self.burst.is_some_and(|barrier| seq >= barrier);
            // A late-comer yields to waiting sequential work.
            let yields = late_comer && !self.sequential.is_empty();
            if deadline <= self.seen && !yields {
                if self.burst.is_none() {
                    self.burst = Some(self.next_seq);
                }
                return self.fire();
            }
        }
        self.burst = None;
        if let Some(event) = self.sequential.pop_front() {
            return ModelNext::Sequential(event);
        }
        if self.timers.is_empty() {
            ModelNext::Empty
        } else {
            ModelNext::Wait
        }
    }

    fn fire(&mut self) -> ModelNext {
        let ((deadline, _), timer) = self.timers.pop_first().expect("a due timer");
        match timer.period {
            None => self.set_key(timer.owner, None),
            Some(period) => {
                let missed = (self.seen - deadline) / period;
                let key = (deadline + (missed + 1) * period, self.take_seq());
                self.timers.insert(key, timer.clone());
                self.set_key(timer.owner, Some(key));
                let counted = u32::try_from(missed).unwrap_or(u32::MAX);
                let m = &mut self.queue_stats.missed_periods;
                *m = m.saturating_add(counted);
            }
        }
        // Lateness is measured on the timeline, so it survives any number of wraps.
        let late = self.seen - deadline;
        ModelNext::Timed {
            event: timer.event,
            late,
        }
    }

    // --- the kernel ---

    fn start(&mut self) -> Result<(), StartError> {
        if self.started {
            return Err(StartError::AlreadyStarted);
        }
        self.seen = self.clock;
        let periodic = [
            self.settings.stats_interval,
            self.settings.runlog_interval,
            self.settings.checkpoint_interval,
        ];
        for (slot, (interval, event)) in periodic.into_iter().zip(PERIODIC).enumerate() {
            // A stop cancels them; one asked for before the start leaves them unarmed.
            if let Some(period) = interval.filter(|_| !self.done) {
                if let Err(kind) = self.schedule_every(period.0, event, Some(slot)) {
                    self.cancel_lifecycle();
                    return Err(StartError::Schedule(kind));
                }
            }
        }
        self.started = true;
        self.due |= DUE_START;
        Ok(())
    }

    fn request_stop(&mut self) {
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
            self.due |= DUE_STOP;
            self.due &= !DUE_RELOAD;
            self.cancel_lifecycle();
        }
    }

    fn ask(&mut self, request: Request) {
        match request {
            Request::Stop => self.request_stop(),
            Request::Terminate => {
                if self.ended.is_none() {
                    self.ended = Some(EndReason::Terminated);
                }
            }
            Request::Reload => {
                if !self.done {
                    self.due |= DUE_RELOAD;
                }
            }
            Request::SaveRunlog => self.due |= DUE_SAVE_RUNLOG,
            Request::SaveState => self.due |= DUE_SAVE_STATE,
            Request::Checkpoint => self.due |= DUE_CHECKPOINT,
        }
    }

    /// `set_period`: the setting changes; the slot's timer is cancelled and, while running,
    /// armed again from now.
    fn set_period(&mut self, slot: usize, period: Option<u32>) -> Result<(), ScheduleErrorKind> {
        let period = period.filter(|&ms| ms > 0).map(Milliseconds);
        match slot {
            0 => self.settings.stats_interval = period,
            1 => self.settings.runlog_interval = period,
            _ => self.settings.checkpoint_interval = period,
        }
        if let Some(key) = self.lifecycle[slot].take() {
            self.timers.remove(&key);
        }
        if !self.started || self.done || self.ended.is_some() {
            return Ok(());
        }
        self.seen = self.clock;
        match period {
            Some(p) => self
                .schedule_every(p.0, PERIODIC[slot].clone(), Some(slot))
                .map(|_| ()),
            None => Ok(()),
        }
    }

    fn post(&mut self, request: Request) {
        let i = Request::ALL.iter().position(|&r| r == request).unwrap();
        self.posted[i] += 1;
    }

    fn post_event(&mut self, ev: Ev) -> Result<(), u32> {
        if self.inbox.len() == INBOX {
            return Err(ev.id);
        }
        self.inbox.push_back(ev);
        Ok(())
    }

    /// Posted requests in `Request::ALL` order (each kind once per step, stops counted one by
    /// one), then as many inbox events as the sequential queue takes.
    fn drain(&mut self) {
        for (i, request) in Request::ALL.into_iter().enumerate() {
            let n = std::mem::take(&mut self.posted[i]);
            match request {
                Request::Stop => (0..n).for_each(|_| self.request_stop()),
                _ if n > 0 => self.ask(request),
                _ => {}
            }
        }
        while let Some(ev) = self.inbox.front() {
            let event = Event::User(ev.clone());
            if self.push_sequential(event, false).is_err() {
                self.stats.inbox_deferred += 1;
                break;
            }
            self.inbox.pop_front();
        }
    }

    fn take_due(&mut self) -> Option<Event<Ev>> {
        let bit = self.due & self.due.wrapping_neg();
        self.due &= !bit;
        Some(match bit {
            0 => return None,
            DUE_START => Event::Start,
            DUE_STOP => Event::Stop,
            DUE_RELOAD => Event::Reload,
            DUE_SAVE_RUNLOG => Event::SaveRunlog,
            DUE_SAVE_STATE => Event::SaveState,
            _ => Event::Checkpoint,
        })
    }

    fn step(&mut self, log: &mut Vec<Seen>) -> Result<Step, StepError> {
        if !self.started {
            return Err(StepError::NotStarted);
        }
        if let Some(reason) = self.ended {
            return Ok(Step::Ended(reason));
        }
        self.seen = self.clock;
        self.drain();
        if let Some(reason) = self.ended {
            return Ok(Step::Ended(reason));
        }
        let now = self.seen;
        let event = if self.terminate_at.is_some_and(|t| t <= now) {
            self.terminate_at = None;
            Event::Terminate
        } else if let Some(event) = self.take_due() {
            if event == Event::Stop {
                let timeout = u64::from(self.settings.stop_timeout.0);
                self.terminate_at = Some(now + timeout);
            }
            event
        } else {
            match self.queue_next() {
                ModelNext::Timed { event, late } => {
                    let l = &mut self.stats.lateness;
                    l.max_ticks = l.max_ticks.max(late);
                    l.sum_ticks = l.sum_ticks.saturating_add(late);
                    l.buckets[lateness_bucket(late)] += 1;
                    event
                }
                ModelNext::Sequential(event) => event,
                ModelNext::Wait if !self.done => return Ok(Step::Idle),
                ModelNext::Wait | ModelNext::Empty => {
                    let reason = if self.done {
                        EndReason::Stopped
                    } else {
                        EndReason::QueueEmpty
                    };
                    self.ended = Some(reason);
                    return Ok(Step::Ended(reason));
                }
            }
        };
        let terminating = event == Event::Terminate;
        let result = self.dispatch(event, log);
        if terminating {
            self.ended.get_or_insert(EndReason::StopTimeout);
        }
        result
    }

    fn dispatch(&mut self, mut event: Event<Ev>, log: &mut Vec<Seen>) -> Result<Step, StepError> {
        let kind = event.kind();
        self.stats.dispatched[kind.index()] += 1;
        let route = self.routes[kind.index()].clone();
        let now = self.raw(self.seen);
        let done = self.done;
        let mut stop = false;
        let mut checkpoint = false;
        let mut ran = 0u8;
        for &component in &route {
            ran += 1;
            let seen = event.clone();
            let mut did = Did::Nothing;
            if let Event::User(ev) = &mut event {
                ev.trail = trail_after(ev.trail, component);
                if ev.actor == component {
                    let ev = ev.clone();
                    did = self.act(&ev, &mut stop, &mut checkpoint);
                }
            }
            let flow = flow_of(component, &event);
            log.push(Seen {
                component,
                event: seen,
                now,
                done,
                flow,
                did,
            });
            if flow == Flow::Stop {
                break;
            }
        }
        if stop {
            self.request_stop();
        }
        if checkpoint {
            self.due |= DUE_CHECKPOINT;
        }
        if route.is_empty() && !kind.is_builtin() {
            self.stats.unhandled += 1;
            return Err(StepError::Unhandled(kind));
        }
        Ok(Step::Dispatched {
            kind,
            handlers: ran,
        })
    }

    fn act(&mut self, ev: &Ev, stop: &mut bool, checkpoint: &mut bool) -> Did {
        let handle = |owner: Owner| match owner {
            Owner::Handle(h) => Some(h),
            Owner::Lifecycle(_) => unreachable!(),
        };
        match ev.action {
            Action::None => Did::Nothing,
            Action::RequestStop => {
                *stop = true;
                Did::RequestedStop
            }
            Action::RequestCheckpoint => {
                *checkpoint = true;
                Did::RequestedCheckpoint
            }
            Action::Cancel(n) => match pick(n, self.handles.len()) {
                None => Did::Nothing,
                Some(h) => Did::Cancelled {
                    handle: h,
                    result: self.cancel(h).map(|e| user_id(&e)),
                },
            },
            Action::Reschedule(n, offset) => match pick(n, self.handles.len()) {
                None => Did::Nothing,
                Some(h) => {
                    let at = self.place(self.tick_offset(offset));
                    Did::Rescheduled {
                        handle: h,
                        result: self.reschedule(h, at),
                    }
                }
            },
            Action::RescheduleAfter(n, delay) => match pick(n, self.handles.len()) {
                None => Did::Nothing,
                Some(h) => Did::Rescheduled {
                    handle: h,
                    result: if u64::from(delay) > self.horizon() {
                        Err(TimerError::BeyondHorizon)
                    } else {
                        self.reschedule(h, self.seen + u64::from(delay))
                    },
                },
            },
            action => {
                let c = child(ev, self.new_id());
                let id = c.id;
                let event = Event::User(c);
                let result = match action {
                    Action::Schedule => self.push_sequential(event, false).map(|()| None),
                    Action::ScheduleNext => self.push_sequential(event, true).map(|()| None),
                    Action::ScheduleAfter(d) => self.schedule_after(d, event).map(Some),
                    Action::ScheduleEvery(p) => self.schedule_every(p, event, None).map(handle),
                    _ => unreachable!(),
                };
                Did::Scheduled { child: id, result }
            }
        }
    }

    fn run_until_idle(&mut self, log: &mut Vec<Seen>) -> Result<Idle, StepError> {
        for _ in 0..1_000_000 {
            match self.step(log)? {
                Step::Dispatched { .. } => {}
                Step::Idle => return Ok(Idle::Waiting),
                Step::Ended(reason) => return Ok(Idle::Ended(reason)),
            }
        }
        panic!("run_until_idle does not come to rest");
    }

    fn run(&mut self, limit: u8, log: &mut Vec<Seen>) -> Result<Run, StepError> {
        for _ in 0..limit {
            let was_done = self.done;
            match self.step(log)? {
                Step::Dispatched { kind, .. } if kind.is_builtin() => {
                    return Ok(Run::Lifecycle(kind))
                }
                Step::Dispatched { .. } if self.done && !was_done => return Ok(Run::StopRequested),
                Step::Dispatched { .. } => {}
                Step::Idle => return Ok(Run::Idle),
                Step::Ended(reason) => return Ok(Run::Ended(reason)),
            }
        }
        Ok(Run::Limit)
    }

    /// An operation's `offset` as a tick value of the clock (see [`Tick::offset`]).
    fn tick_offset(&self, offset: u32) -> u64 {
        if self.max == u64::from(u32::MAX) {
            u64::from(offset)
        } else {
            offset as i32 as i64 as u64
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        if self.ended.is_some() || self.due != 0 || !self.sequential.is_empty() {
            return Some(self.raw(self.seen));
        }
        let timer = self.timers.first_key_value().map(|(&(d, _), _)| d);
        let earliest = match (timer, self.terminate_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        earliest.map(|p| self.raw(p))
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            done: self.done,
            ended: self.ended,
            next_deadline: self.next_deadline(),
            now: self.raw(self.seen),
            sequential_len: self.sequential.len(),
            timed_len: self.timers.len(),
            inbox_len: self.inbox.len(),
            stats: self.stats.clone(),
            queue_stats: self.queue_stats,
        }
    }
}

/// Everything observable about a kernel between operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub done: bool,
    pub ended: Option<EndReason>,
    pub next_deadline: Option<u64>,
    /// The queue's last `now`.
    pub now: u64,
    pub sequential_len: usize,
    pub timed_len: usize,
    pub inbox_len: usize,
    pub stats: KernelStats<KINDS>,
    pub queue_stats: QueueStats,
}

// ------------------------------------------------------------------------------------------
// The audit: the documented rules, checked on what the real kernel did
// ------------------------------------------------------------------------------------------

/// How an accepted user event entered the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Sequential,
    Inbox,
    Timed { deadline: u64 },
    Periodic { next: u64, period: u64 },
}

#[derive(Debug)]
struct Accepted {
    origin: Origin,
    kind: u8,
    dispatched: u32,
    cancelled: bool,
}

/// What one kernel call (`step`, `run_until_idle` or `run`) returned, for the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Returned {
    Step(Result<Step, StepError>),
    Run(Result<Idle, StepError>),
    /// With the `limit` it was called with.
    Batch(Result<Run, StepError>, u8),
}

/// The documented rules, checked on the real kernel's behaviour (see the module docs).
#[derive(Debug)]
pub struct Audit {
    routes: Vec<Vec<u8>>,
    settings: Settings,
    /// The clock's tick value at point `BASE`, and its largest tick value.
    start: u64,
    max: u64,
    /// The clock on the audit's own line (same origin as the model's, computed separately).
    clock: u64,
    seen: u64,
    started: bool,
    accepted: HashMap<u32, Accepted>,
    /// Handle index → user event id.
    handle_ids: Vec<u32>,
    dispatched: [u64; KINDS],
    unhandled: u64,
    /// Stop requests made while the loop had not ended.
    stop_requests: u32,
    /// Posted requests not yet drained: stops, and whether a terminate is waiting.
    posted_stops: u32,
    posted_terminate: bool,
    stop_dispatched_at: Option<u64>,
    terminate_dispatched: bool,
    ended: Option<EndReason>,
    /// Checkpoint requests since the last `checkpoint` (which takes them all).
    checkpoints_asked: u32,
}

impl Audit {
    fn new<K: Tick>(config: &Config) -> Self {
        Self {
            routes: expected_routes(),
            settings: config.settings(),
            start: K::start(config.start).widen(),
            max: K::MAX_U64,
            clock: BASE,
            seen: BASE,
            started: false,
            accepted: HashMap::new(),
            handle_ids: Vec::new(),
            dispatched: [0; KINDS],
            unhandled: 0,
            stop_requests: 0,
            posted_stops: 0,
            posted_terminate: false,
            stop_dispatched_at: None,
            terminate_dispatched: false,
            ended: None,
            checkpoints_asked: 0,
        }
    }

    fn accept(&mut self, id: u32, kind: u8, origin: Origin) {
        let fresh = self.accepted.insert(
            id,
            Accepted {
                origin,
                kind,
                dispatched: 0,
                cancelled: false,
            },
        );
        assert!(fresh.is_none(), "event id {id} accepted twice");
    }

    fn accept_timer(&mut self, id: u32, kind: u8, origin: Origin, handle: usize) {
        assert_eq!(handle, self.handle_ids.len(), "handle indices out of step");
        self.handle_ids.push(id);
        self.accept(id, kind, origin);
    }

    fn cancelled(&mut self, handle: usize, result: Result<u32, TimerError>) {
        if let Ok(id) = result {
            assert_eq!(
                id, self.handle_ids[handle],
                "cancel handed back another event than its handle's"
            );
            let a = self
                .accepted
                .get_mut(&id)
                .expect("cancelled an unknown event");
            assert!(!a.cancelled, "event {id} cancelled twice");
            if !matches!(a.origin, Origin::Periodic { .. }) {
                assert_eq!(
                    a.dispatched, 0,
                    "cancelled event {id} after it was dispatched"
                );
            }
            a.cancelled = true;
        }
    }

    /// Before a `step`/`run_until_idle` call: the queue sees `now` if the kernel runs.
    fn before_call(&mut self, ended: Option<EndReason>) {
        if self.started && ended.is_none() {
            self.seen = self.clock;
        }
    }

    /// Checks one kernel call: `log` is what the handlers recorded during it, `ended_before`
    /// and `ended_after` the kernel's `ended()` around it, `snapshot` its state after it.
    fn call(
        &mut self,
        returned: Returned,
        log: &[Seen],
        ended_before: Option<EndReason>,
        ended_after: Option<EndReason>,
        snapshot: &Snapshot,
    ) {
        // The result as an end reason, and whether it claims that nothing is due.
        let (result, idle): (Result<Option<EndReason>, StepError>, bool) = match returned {
            Returned::Step(r) => (
                r.map(|s| match s {
                    Step::Ended(e) => Some(e),
                    _ => None,
                }),
                r == Ok(Step::Idle),
            ),
            Returned::Run(r) => (
                r.map(|s| match s {
                    Idle::Ended(e) => Some(e),
                    _ => None,
                }),
                r == Ok(Idle::Waiting),
            ),
            Returned::Batch(r, _) => (
                r.map(|s| match s {
                    Run::Ended(e) => Some(e),
                    _ => None,
                }),
                r == Ok(Run::Idle),
            ),
        };
        if !self.started {
            assert_eq!(
                result,
                Err(StepError::NotStarted),
                "a kernel not started answered"
            );
            assert!(log.is_empty(), "dispatched before start: {log:?}");
            return;
        }
        assert_ne!(
            result,
            Err(StepError::NotStarted),
            "a started kernel said NotStarted"
        );
        assert_eq!(
            ended_before, self.ended,
            "the kernel's ended() and the audit disagree"
        );
        if let Some(reason) = ended_before {
            assert!(
                log.is_empty(),
                "dispatched after the loop ended ({reason:?}): {log:?}"
            );
            assert_eq!(
                result,
                Ok(Some(reason)),
                "an ended loop must keep its reason"
            );
            return;
        }

        // Posted requests are drained first: a terminate, then the stops one by one.
        let stops = std::mem::take(&mut self.posted_stops);
        if std::mem::take(&mut self.posted_terminate) {
            self.ended = Some(EndReason::Terminated);
        } else if stops > 0 {
            let max = self.settings.max_stop_requests;
            // Counted one by one until the last allowed one ends the loop.
            self.stop_requests = (self.stop_requests + stops).min(max);
            if self.stop_requests >= max {
                self.ended = Some(EndReason::Forced);
            }
        }
        if let Some(reason) = self.ended {
            assert!(
                log.is_empty(),
                "dispatched although a post ended the loop: {log:?}"
            );
            assert_eq!(
                result,
                Ok(Some(reason)),
                "posted requests must end the loop"
            );
            assert_eq!(ended_after, self.ended);
            return;
        }

        // Split the log into dispatches: each starts at the first handler of its route.
        let mut groups: Vec<&[Seen]> = Vec::new();
        let mut begin = 0;
        for i in 1..=log.len() {
            if i == log.len() || self.position(&log[i]) == 0 {
                if i > begin {
                    groups.push(&log[begin..i]);
                }
                begin = i;
            }
        }
        // Once the stop timeout has run out, terminate goes ahead of everything.
        let timeout = u64::from(self.settings.stop_timeout.0);
        let terminate_due = !self.terminate_dispatched
            && self
                .stop_dispatched_at
                .is_some_and(|at| self.seen >= at + timeout);
        if terminate_due {
            assert_eq!(
                groups.first().map(|g| &g[0].event),
                Some(&Event::Terminate),
                "terminate is due (stop at {:?} + {timeout} ms, now {}) but did not come first",
                self.stop_dispatched_at,
                self.seen
            );
        }
        for group in &groups {
            assert!(
                self.ended.is_none(),
                "dispatch after the loop ended ({:?}): {group:?}",
                self.ended
            );
            self.dispatch(group);
        }
        if let Err(StepError::Unhandled(kind)) = result {
            assert_eq!(kind, Kind::user(usize::from(UNROUTED)), "unhandled {kind}");
            assert!(
                self.ended.is_none(),
                "an unhandled dispatch after the loop ended"
            );
            assert_eq!(self.dispatched[0], 1, "an unhandled dispatch before start");
            self.dispatched[kind.index()] += 1;
            self.unhandled += 1;
        }
        if let Returned::Step(r) = returned {
            match r {
                Ok(Step::Dispatched { kind, handlers }) => {
                    assert_eq!(groups.len(), 1, "one step, one dispatch: {log:?}");
                    assert_eq!(groups[0][0].event.kind(), kind);
                    assert_eq!(usize::from(handlers), groups[0].len());
                }
                _ => assert!(groups.is_empty(), "the step reported no dispatch: {log:?}"),
            }
        }
        if let Returned::Batch(r, limit) = returned {
            // Only the last dispatch of a batch may be a lifecycle event, and then it says so.
            let (last, earlier) = match groups.split_last() {
                Some((last, earlier)) => (Some(last[0].event.kind()), earlier),
                None => (None, &groups[..]),
            };
            for group in earlier {
                assert!(
                    !group[0].event.kind().is_builtin(),
                    "a batch went on after {group:?}"
                );
            }
            match r {
                Ok(Run::Lifecycle(kind)) => assert_eq!(last, Some(kind)),
                Ok(Run::StopRequested) => {
                    assert!(snapshot.done, "StopRequested without a stop under way");
                    assert!(
                        last.is_some_and(|k| !k.is_builtin()),
                        "StopRequested after {log:?}"
                    );
                }
                Ok(Run::Limit) => {
                    assert_eq!(
                        groups.len(),
                        usize::from(limit),
                        "a batch cut short: {log:?}"
                    );
                    assert!(
                        !last.is_some_and(Kind::is_builtin),
                        "Limit after a lifecycle event"
                    );
                }
                _ => assert!(
                    !last.is_some_and(Kind::is_builtin),
                    "a lifecycle event was not reported: {log:?}"
                ),
            }
            assert!(
                groups.len() <= usize::from(limit),
                "a batch beyond its limit"
            );
        }
        match result {
            Ok(None) if idle => {
                assert!(!snapshot.done, "a stopping loop idled instead of ending");
                self.nothing_due("idle", snapshot);
            }
            Ok(Some(reason)) if self.ended.is_none() => {
                match reason {
                    EndReason::Stopped => {
                        assert!(self.stop_dispatched_at.is_some(), "Stopped before stop ran");
                        self.nothing_due("Stopped", snapshot);
                    }
                    EndReason::QueueEmpty => {
                        assert!(!snapshot.done, "QueueEmpty while stopping");
                        assert_eq!(snapshot.sequential_len, 0, "QueueEmpty with work queued");
                        assert_eq!(snapshot.timed_len, 0, "QueueEmpty with timers pending");
                    }
                    other => panic!("the loop ended {other:?} without a cause"),
                }
                self.ended = Some(reason);
            }
            Ok(Some(reason)) => assert_eq!(Some(reason), self.ended, "wrong end reason"),
            _ => {}
        }
        assert_eq!(
            ended_after, self.ended,
            "the kernel's ended() and the audit disagree"
        );
    }

    /// A component's place in the route of the event it saw.
    fn position(&self, seen: &Seen) -> usize {
        let route = &self.routes[seen.event.kind().index()];
        route
            .iter()
            .position(|&c| c == seen.component)
            .unwrap_or_else(|| {
                panic!(
                    "{} handled {:?}, not on its route",
                    seen.component, seen.event
                )
            })
    }

    /// One dispatch, seen through its handlers.
    fn dispatch(&mut self, group: &[Seen]) {
        let first = &group[0];
        let kind = first.event.kind();
        let route = self.routes[kind.index()].clone();
        let total: u64 = self.dispatched.iter().sum();
        if total == 0 {
            assert_eq!(first.event, Event::Start, "start must be the first event");
        }
        // The pipeline: route order, each sees the previous one's mark, Stop ends it.
        let mut trail = 0;
        // Done once a stop request was counted (a dispatch means it did not end the loop).
        let done = self.stop_requests > 0;
        for (i, seen) in group.iter().enumerate() {
            assert_eq!(
                seen.component, route[i],
                "pipeline out of route order: {group:?}"
            );
            assert_eq!(
                seen.done, done,
                "ctx.is_done() is wrong for {:?}",
                seen.event
            );
            assert_eq!(
                seen.now,
                self.raw(self.clock),
                "ctx.now() is not the step's now"
            );
            let mut same = seen.event.clone();
            if let (Event::User(a), Event::User(b)) = (&mut same, &first.event) {
                assert_eq!(
                    a.trail, trail,
                    "a handler did not see the previous one's change"
                );
                a.trail = b.trail;
            }
            assert_eq!(
                same, first.event,
                "handlers of one dispatch saw different events"
            );
            if let Event::User(ev) = &seen.event {
                trail = trail_after(ev.trail, seen.component);
            }
            if i + 1 < group.len() {
                assert_eq!(
                    seen.flow,
                    Flow::Continue,
                    "the chain went on after Flow::Stop"
                );
            }
        }
        let last = group.last().unwrap();
        assert!(
            group.len() == route.len() || last.flow == Flow::Stop,
            "the chain ended early without Flow::Stop: {group:?}"
        );
        self.dispatched[kind.index()] += 1;
        let now = self.seen;
        match &first.event {
            Event::Start => assert_eq!(self.dispatched[kind.index()], 1, "start dispatched twice"),
            Event::Stop => {
                assert_eq!(self.dispatched[kind.index()], 1, "stop dispatched twice");
                assert!(self.stop_requests > 0, "stop dispatched without a request");
                self.stop_dispatched_at = Some(now);
            }
            Event::Terminate => {
                let at = self.stop_dispatched_at.expect("terminate without stop");
                let timeout = u64::from(self.settings.stop_timeout.0);
                assert!(now >= at + timeout, "terminate before the stop timeout");
                assert!(!self.terminate_dispatched, "terminate dispatched twice");
                self.terminate_dispatched = true;
                self.ended = Some(EndReason::StopTimeout);
            }
            // Ignored while stopping, and the periodic lifecycle timers are cancelled.
            Event::Reload => assert!(!done, "reload dispatched while stopping"),
            Event::LogStatistics => assert!(!done, "log_statistics dispatched while stopping"),
            Event::Checkpoint => {
                // Periodic ones are cancelled by a stop; one asked for may still come.
                assert!(
                    !done || self.checkpoints_asked > 0,
                    "a periodic checkpoint dispatched while stopping"
                );
                self.checkpoints_asked = 0;
            }
            Event::User(ev) => {
                let a = self
                    .accepted
                    .get_mut(&ev.id)
                    .unwrap_or_else(|| panic!("dispatched event {} was never accepted", ev.id));
                assert!(
                    !a.cancelled,
                    "event {} dispatched after it was cancelled",
                    ev.id
                );
                assert_eq!(a.kind, ev.kind);
                a.dispatched += 1;
                match &mut a.origin {
                    Origin::Sequential | Origin::Inbox => {
                        assert_eq!(a.dispatched, 1, "event {} dispatched twice", ev.id);
                    }
                    Origin::Timed { deadline } => {
                        assert_eq!(a.dispatched, 1, "event {} dispatched twice", ev.id);
                        assert!(
                            now >= *deadline,
                            "event {} dispatched {} ticks early",
                            ev.id,
                            *deadline - now
                        );
                    }
                    Origin::Periodic { next, period } => {
                        assert!(
                            now >= *next,
                            "periodic event {} fired {} ticks early",
                            ev.id,
                            *next - now
                        );
                        // Drift-free: the next point of the grid after now.
                        *next += ((now - *next) / *period + 1) * *period;
                    }
                }
            }
            _ => {}
        }
        // What the handlers did.
        for seen in group {
            let Event::User(parent) = &seen.event else {
                continue;
            };
            match &seen.did {
                Did::Nothing => {}
                Did::RequestedCheckpoint => self.checkpoints_asked += 1,
                Did::RequestedStop => {
                    // Takes effect after the pipeline; the last allowed one ends the loop.
                    if self.ended.is_none() {
                        self.stop_requests += 1;
                        if self.stop_requests >= self.settings.max_stop_requests {
                            self.ended = Some(EndReason::Forced);
                        }
                    }
                }
                Did::Cancelled { handle, result } => self.cancelled(*handle, *result),
                Did::Rescheduled { handle, result } => {
                    let Ok(()) = result else { continue };
                    // The new deadline, as the handler asked for it.
                    let deadline = match parent.action {
                        Action::Reschedule(_, offset) if u64::from(offset) <= HORIZON => {
                            now + u64::from(offset)
                        }
                        Action::Reschedule(_, offset) => now - ((1 << 32) - u64::from(offset)),
                        Action::RescheduleAfter(_, delay) => now + u64::from(delay),
                        other => panic!("a handler's reschedule came from {other:?}"),
                    };
                    let id = self.handle_ids[*handle];
                    let a = self.accepted.get_mut(&id).expect("moved an unknown event");
                    assert!(!a.cancelled, "event {id} moved after it was cancelled");
                    match &mut a.origin {
                        Origin::Timed { deadline: d } => {
                            assert_eq!(a.dispatched, 0, "event {id} moved after it fired");
                            *d = deadline;
                        }
                        // The grid moves with it.
                        Origin::Periodic { next, .. } => *next = deadline,
                        other => panic!("event {id} of {other:?} has no timer to move"),
                    }
                }
                Did::Scheduled { child, result } => {
                    let Ok(handle) = result else { continue };
                    let kind = self::child(parent, *child).kind;
                    match (parent.action, handle) {
                        (Action::Schedule | Action::ScheduleNext, None) => {
                            self.accept(*child, kind, Origin::Sequential)
                        }
                        (Action::ScheduleAfter(d), Some(h)) => self.accept_timer(
                            *child,
                            kind,
                            Origin::Timed {
                                deadline: now + u64::from(d),
                            },
                            *h,
                        ),
                        (Action::ScheduleEvery(p), Some(h)) => self.accept_timer(
                            *child,
                            kind,
                            Origin::Periodic {
                                next: now + u64::from(p),
                                period: u64::from(p),
                            },
                            *h,
                        ),
                        other => panic!("a handler's schedule gave {other:?}"),
                    }
                }
            }
        }
    }

    fn raw(&self, point: u64) -> u64 {
        self.start.wrapping_add(point.wrapping_sub(BASE)) & self.max
    }
}

impl Audit {
    /// A user timer the audit knows to be pending and due at the queue's `now`. (Unrouted
    /// events are left out: no handler shows which of them an `Unhandled` consumed.)
    fn due_user_timer(&self) -> Option<u32> {
        let mut due = self.accepted.iter().filter(|(_, a)| {
            !a.cancelled
                && a.kind != UNROUTED
                && match a.origin {
                    Origin::Timed { deadline } => a.dispatched == 0 && deadline <= self.seen,
                    Origin::Periodic { next, .. } => next <= self.seen,
                    _ => false,
                }
        });
        due.next().map(|(&id, _)| id)
    }

    /// Idle and Stopped promise that nothing is due: no sequential work, no due timer.
    fn nothing_due(&self, what: &str, snapshot: &Snapshot) {
        assert_eq!(
            snapshot.sequential_len, 0,
            "{what} with sequential work queued"
        );
        if let Some(id) = self.due_user_timer() {
            panic!("{what} although timed event {id} is due");
        }
    }

    /// The kernel's figures against what the audit saw.
    fn check_stats(&self, snapshot: &Snapshot) {
        let stats = &snapshot.stats;
        assert_eq!(stats.dispatched, self.dispatched, "dispatched per kind");
        assert_eq!(
            stats.total_dispatched(),
            self.dispatched.iter().sum::<u64>()
        );
        assert_eq!(stats.unhandled, self.unhandled, "unhandled count");
        assert_eq!(stats.stop_requests, self.stop_requests, "stop requests");
    }
}

// ------------------------------------------------------------------------------------------
// The interpreter
// ------------------------------------------------------------------------------------------

/// Extra checks on the real queue after every operation (the fuzz target checks the timed
/// queue's heap this way).
pub trait Check {
    /// Called after every operation.
    fn check<K: Tick, const S: usize, const T: usize>(&mut self, queue: &TestQueue<K, S, T>);
}

/// No extra checks.
#[derive(Debug, Default)]
pub struct NoCheck;

impl Check for NoCheck {
    fn check<K: Tick, const S: usize, const T: usize>(&mut self, _queue: &TestQueue<K, S, T>) {}
}

/// The kind at routing-table index `i`.
fn kind_at(i: usize) -> Kind {
    const BUILTIN: [Kind; 8] = [
        Kind::START,
        Kind::STOP,
        Kind::TERMINATE,
        Kind::RELOAD,
        Kind::SAVE_RUNLOG,
        Kind::SAVE_STATE,
        Kind::LOG_STATISTICS,
        Kind::CHECKPOINT,
    ];
    match BUILTIN.get(i) {
        Some(&kind) => kind,
        None => Kind::user(i - BUILTIN.len()),
    }
}

struct Harness<'c, 'x, K: Tick, const S: usize, const T: usize, X: Check> {
    kernel: TestKernel<'c, K, S, T>,
    clock: Clock<K>,
    shared: &'c RefCell<Shared>,
    requests: &'c Requests,
    inbox: &'c Inbox<Ev, INBOX>,
    model: Model,
    audit: Audit,
    ops: Vec<Op>,
    check: &'x mut X,
}

impl<K: Tick, const S: usize, const T: usize, X: Check> Harness<'_, '_, K, S, T, X> {
    /// Panics unless the kernel and the model agree.
    #[track_caller]
    fn same<V: PartialEq + Debug>(&self, got: V, want: V, what: &str) {
        if got != want {
            panic!(
                "{what} differs (kernel left, model right)\n  kernel: {got:?}\n  \
                 model:  {want:?}\n  {}",
                self.trace()
            );
        }
    }

    fn new_id(&mut self) -> u32 {
        let id = self.shared.borrow_mut().new_id();
        let want = self.model.new_id();
        self.same(id, want, "new event id");
        id
    }

    fn push_handle(&self, handle: TimerHandle) -> usize {
        let mut shared = self.shared.borrow_mut();
        shared.handles.push(handle);
        shared.handles.len() - 1
    }

    fn snapshot(&mut self) -> Snapshot {
        let k = &mut self.kernel;
        Snapshot {
            done: k.is_done(),
            ended: k.ended(),
            next_deadline: k.next_deadline().map(ticks),
            now: ticks(k.queue().now()),
            sequential_len: k.queue().sequential_len(),
            timed_len: k.queue().timed_len(),
            inbox_len: self.inbox.len(),
            stats: k.stats().clone(),
            queue_stats: k.queue_stats(),
        }
    }

    fn observe(&mut self) {
        self.kernel.queue().advance(self.clock.now());
        self.model.seen = self.model.clock;
        self.audit.seen = self.audit.clock;
    }

    /// Moves the clock, first telling the queue the time when the move would otherwise break
    /// the host's one duty (a reading at least once per wrap period; see `Timeline`).
    fn advance(&mut self, ticks: u32) {
        if self.model.clock - self.model.seen + u64::from(ticks) > K::MAX_U64 {
            self.observe();
        }
        self.clock.advance_ticks(K::from(ticks));
        self.model.clock += u64::from(ticks);
        self.audit.clock += u64::from(ticks);
    }

    fn apply(&mut self, op: Op) {
        self.ops.push(op);
        match op {
            Op::Start => {
                let got = self.kernel.start(self.clock.now());
                let want = self.model.start();
                self.same(got, want, "start");
                if !self.audit.started {
                    self.audit.seen = self.audit.clock;
                    self.audit.started = got.is_ok();
                }
            }
            Op::Schedule(spec) | Op::ScheduleNext(spec) => {
                let front = matches!(op, Op::ScheduleNext(_));
                let id = self.new_id();
                let ev = spec.event(id, false);
                let event = Event::User(ev.clone());
                let mut queue = self.kernel.queue();
                let got = if front {
                    queue.schedule_next(ev.clone())
                } else {
                    queue.schedule(ev.clone())
                };
                let got = got.map_err(|e| (e.kind(), user_id(&e.into_event())));
                let want = self
                    .model
                    .push_sequential(event, front)
                    .map_err(|k| (k, id));
                self.same(got, want, "schedule");
                if got.is_ok() {
                    self.audit.accept(id, ev.kind, Origin::Sequential);
                }
            }
            Op::ScheduleAfter { delay, spec } => {
                let id = self.new_id();
                let ev = spec.event(id, false);
                let event = Event::User(ev.clone());
                let got = self
                    .kernel
                    .queue()
                    .schedule_after(Duration::from_millis(u64::from(delay)), ev.clone())
                    .map(|h| self.push_handle(h))
                    .map_err(|e| (e.kind(), user_id(&e.into_event())));
                let want = self.model.schedule_after(delay, event).map_err(|k| (k, id));
                self.same(got, want, "schedule_after");
                if let Ok(h) = got {
                    let deadline = self.audit.seen + u64::from(delay);
                    self.audit
                        .accept_timer(id, ev.kind, Origin::Timed { deadline }, h);
                }
            }
            Op::ScheduleEvery { period, spec } => {
                let id = self.new_id();
                let ev = spec.event(id, true);
                let event = Event::User(ev.clone());
                let got = self
                    .kernel
                    .queue()
                    .schedule_every(Duration::from_millis(u64::from(period)), ev.clone())
                    .map(|h| self.push_handle(h))
                    .map_err(|e| (e.kind(), user_id(&e.into_event())));
                let want = self
                    .model
                    .schedule_every(period, event, None)
                    .map(|owner| match owner {
                        Owner::Handle(h) => h,
                        Owner::Lifecycle(_) => unreachable!(),
                    })
                    .map_err(|k| (k, id));
                self.same(got, want, "schedule_every");
                if let Ok(h) = got {
                    let origin = Origin::Periodic {
                        next: self.audit.seen + u64::from(period),
                        period: u64::from(period),
                    };
                    self.audit.accept_timer(id, ev.kind, origin, h);
                }
            }
            Op::Cancel { timer } => {
                let handles = self.shared.borrow().handles.clone();
                let Some(h) = pick(timer, handles.len()) else {
                    return self.after();
                };
                let got = self.kernel.queue().cancel(handles[h]).map(|e| user_id(&e));
                let want = self.model.cancel(h).map(|e| user_id(&e));
                self.same(got, want, "cancel");
                self.audit.cancelled(h, got);
            }
            Op::PostEvent(spec) => {
                let id = self.new_id();
                let ev = spec.event(id, false);
                let got = self.inbox.post(ev.clone()).map_err(|e| e.id);
                let want = self.model.post_event(ev.clone());
                self.same(got, want, "inbox post");
                if got.is_ok() {
                    self.audit.accept(id, ev.kind, Origin::Inbox);
                }
            }
            Op::Post { request, times } => {
                for _ in 0..times.clamp(1, 3) {
                    self.requests.post(request);
                    self.model.post(request);
                    match request {
                        Request::Stop => self.audit.posted_stops += 1,
                        Request::Terminate => self.audit.posted_terminate = true,
                        Request::Checkpoint => self.audit.checkpoints_asked += 1,
                        _ => {}
                    }
                }
            }
            Op::Ask { request, times } => {
                for _ in 0..times.clamp(1, 3) {
                    match request {
                        Request::Stop => self.kernel.request_stop(),
                        Request::Terminate => self.kernel.terminate(),
                        Request::Reload => self.kernel.request_reload(),
                        Request::SaveRunlog => self.kernel.request_runlog(),
                        Request::SaveState => self.kernel.request_state(),
                        Request::Checkpoint => self.kernel.request_checkpoint(),
                    }
                    self.model.ask(request);
                    let audit = &mut self.audit;
                    if audit.ended.is_none() {
                        match request {
                            Request::Stop => {
                                audit.stop_requests += 1;
                                if audit.stop_requests >= audit.settings.max_stop_requests {
                                    audit.ended = Some(EndReason::Forced);
                                }
                            }
                            Request::Terminate => audit.ended = Some(EndReason::Terminated),
                            Request::Checkpoint => audit.checkpoints_asked += 1,
                            _ => {}
                        }
                    }
                    assert_eq!(
                        self.kernel.ended(),
                        self.audit.ended,
                        "{request:?} asked of the kernel: ended() is wrong"
                    );
                }
            }
            Op::SetPeriod { which, period } => {
                let slot = usize::from(which % 3);
                let ms = period.filter(|&ms| ms > 0).map(Milliseconds);
                let running = self.model.started && !self.model.done && self.model.ended.is_none();
                let got = self
                    .kernel
                    .set_period(Periodic::ALL[slot], ms, self.clock.now());
                let want = self.model.set_period(slot, period);
                self.same(got, want, "set_period");
                self.same(self.kernel.period(Periodic::ALL[slot]), ms, "period");
                if running {
                    // The kernel told the queue the time.
                    self.audit.seen = self.audit.clock;
                }
            }
            Op::Advance { ticks } => self.advance(ticks),
            Op::Sleep => {
                if let Some(at) = self.kernel.next_deadline() {
                    let ahead = ticks(at).wrapping_sub(self.clock.ticks().widen()) & K::MAX_U64;
                    if ahead <= HORIZON {
                        self.advance(ahead as u32);
                    }
                }
            }
            Op::Observe => self.observe(),
            Op::Step | Op::RunUntilIdle | Op::Run { .. } => {
                let ended_before = self.kernel.ended();
                self.audit.before_call(ended_before);
                let now = self.clock.now();
                let mut want_log = Vec::new();
                let (got, want) = match op {
                    Op::Step => {
                        let got = Returned::Step(self.kernel.step(now));
                        (got, Returned::Step(self.model.step(&mut want_log)))
                    }
                    Op::Run { limit } => {
                        let got = Returned::Batch(
                            self.kernel
                                .run(now, NonZeroU32::new(u32::from(limit)).unwrap()),
                            limit,
                        );
                        let want = self.model.run(limit, &mut want_log);
                        (got, Returned::Batch(want, limit))
                    }
                    _ => {
                        let got = Returned::Run(self.kernel.run_until_idle(now));
                        (got, Returned::Run(self.model.run_until_idle(&mut want_log)))
                    }
                };
                let log = std::mem::take(&mut self.shared.borrow_mut().log);
                self.same(&log, &want_log, "what the handlers saw");
                self.same(got, want, "the result");
                let snapshot = self.snapshot();
                let ended_after = snapshot.ended;
                self.audit
                    .call(got, &log, ended_before, ended_after, &snapshot);
            }
        }
        self.after();
    }

    /// After every operation: the kernel's state against the model, stats against the audit.
    fn after(&mut self) {
        let snapshot = self.snapshot();
        self.same(&snapshot, &self.model.snapshot(), "the kernel's state");
        self.audit.check_stats(&snapshot);
        self.check.check(&self.kernel.queue());
    }

    /// Asks for a stop and runs the loop until it ends, as a host would: calling
    /// `run_until_idle` again after an error. While stopping, the loop never idles: each call
    /// ends it or stops at an unhandled event, so this comes to an end without moving the clock.
    fn finale(&mut self) {
        if !self.audit.started {
            self.apply(Op::Start);
            if !self.audit.started {
                return; // The timed queue is too full for the lifecycle timers.
            }
        }
        if self.kernel.ended().is_none() {
            self.apply(Op::Ask {
                request: Request::Stop,
                times: 1,
            });
        }
        for _ in 0..100_000 {
            if self.kernel.ended().is_some() {
                return;
            }
            self.apply(Op::RunUntilIdle);
        }
        panic!(
            "the loop did not end after a stop request; {}",
            self.trace()
        );
    }

    /// The operations so far, for failure messages (the first few hundred).
    fn trace(&self) -> String {
        const SHOWN: usize = 300;
        let more = self.ops.len().saturating_sub(SHOWN);
        let shown = &self.ops[..self.ops.len().min(SHOWN)];
        format!(
            "{} ops: {shown:?}{}",
            self.ops.len(),
            if more > 0 { " …" } else { "" }
        )
    }

    /// Drains what is left and checks that every accepted event is accounted for exactly once.
    fn account(&mut self) {
        // Timers still pending: cancel them through their handles.
        let mut left = Vec::new();
        let handles = self.shared.borrow().handles.clone();
        for (i, &handle) in handles.iter().enumerate() {
            let got = self.kernel.queue().cancel(handle).map(|e| user_id(&e));
            let want = self.model.cancel(i).map(|e| user_id(&e));
            self.same(got, want, "cancel at the end");
            if let Ok(id) = got {
                assert_eq!(id, self.audit.handle_ids[i]);
                left.push(id);
            }
        }
        let lifecycle = self.model.lifecycle.iter().flatten().count();
        let timed = self.kernel.queue().timed_len();
        self.same(timed, lifecycle, "timers left");
        // The sequential queue, in order.
        let mut sequential = Vec::new();
        let mut queue = self.kernel.queue();
        while let Some(ev) = queue.take_sequential() {
            sequential.push(ev.id);
        }
        let want: Vec<u32> = self.model.sequential.iter().map(user_id).collect();
        self.same(&sequential, &want, "sequential events left");
        left.extend(sequential);
        // The inbox, in order.
        let mut inboxed = Vec::new();
        let mut take = |ev: Ev| {
            inboxed.push(ev.id);
            Ok(())
        };
        while self.inbox.take_one(&mut take) == zendaemon_core::pending::Take::Taken {}
        let want: Vec<u32> = self.model.inbox.iter().map(|ev| ev.id).collect();
        self.same(&inboxed, &want, "inbox left");
        left.extend(inboxed);

        let left_set: HashSet<u32> = left.iter().copied().collect();
        assert_eq!(
            left_set.len(),
            left.len(),
            "an event is left twice: {left:?}"
        );
        let mut consumed_unhandled = 0;
        for (&id, a) in &self.audit.accepted {
            let is_left = left_set.contains(&id);
            if let Origin::Periodic { .. } = a.origin {
                assert!(
                    a.cancelled != is_left,
                    "periodic event {id}: cancelled {}, still queued {is_left}",
                    a.cancelled
                );
                continue;
            }
            let fates = a.dispatched + u32::from(a.cancelled) + u32::from(is_left);
            if a.kind == UNROUTED && fates == 0 {
                consumed_unhandled += 1;
                continue;
            }
            assert_eq!(
                fates,
                1,
                "event {id} ({a:?}) must be dispatched, cancelled or left exactly once \
                 (left: {is_left}); {}",
                self.trace()
            );
        }
        assert_eq!(consumed_unhandled, self.audit.unhandled, "unhandled events");
        for id in &left_set {
            assert!(
                self.audit.accepted.contains_key(id),
                "event {id} left but never accepted"
            );
        }
    }
}

/// Runs `ops` on a kernel with capacities `CAPACITIES[config.capacity % 4]`, beside the model
/// and under the audit, then the finale and the final accounting; panics at the first
/// difference or broken rule.
///
/// It runs twice: on a `u32` clock, then on a `u64` clock.
pub fn run(config: &Config, ops: &[Op], check: &mut impl Check) {
    run_on::<u32>(config, ops, check);
    run_on::<u64>(config, ops, check);
}

/// [`run`] on a clock of tick type `K` only.
pub fn run_on<K: Tick>(config: &Config, ops: &[Op], check: &mut impl Check) {
    match CAPACITIES[usize::from(config.capacity) % CAPACITIES.len()] {
        (1, 1) => run_with::<K, 1, 1>(config, ops, check),
        (2, 2) => run_with::<K, 2, 2>(config, ops, check),
        (3, 4) => run_with::<K, 3, 4>(config, ops, check),
        (6, 8) => run_with::<K, 6, 8>(config, ops, check),
        _ => unreachable!("CAPACITIES and run disagree"),
    }
}

/// [`run`] with the tick type and the capacities as generics.
pub fn run_with<K: Tick, const S: usize, const T: usize>(
    config: &Config,
    ops: &[Op],
    check: &mut impl Check,
) {
    let shared = RefCell::new(Shared::default());
    let requests = Requests::new();
    let inbox = Inbox::<Ev, INBOX>::new();
    let mut probes = [0, 1, 2].map(|i| Probe::new(i, &shared));
    let mut kernel = TestKernel::<K, S, T>::new(config.settings());
    for probe in probes.iter_mut() {
        kernel.add(probe).expect("the routes fit");
    }
    for (i, route) in expected_routes().iter().enumerate() {
        let names: Vec<&str> = kernel.route(kind_at(i)).collect();
        let want: Vec<&str> = route.iter().map(|&c| NAMES[usize::from(c)]).collect();
        assert_eq!(names, want, "route of {}", kind_at(i).name::<Ev>());
    }
    kernel.attach_requests(&requests);
    kernel.attach_inbox(&inbox);
    let clock = Clock::starting_at(K::start(config.start));
    // The host's duty before scheduling relative to now (see `EventQueue::new`).
    kernel.queue().advance(clock.now());
    let mut h = Harness {
        kernel,
        clock,
        shared: &shared,
        requests: &requests,
        inbox: &inbox,
        model: Model::new::<K>(S, T, config),
        audit: Audit::new::<K>(config),
        ops: Vec::new(),
        check,
    };
    if config.keepalive {
        h.apply(Op::ScheduleEvery {
            period: 3_600_000,
            spec: KEEPALIVE,
        });
    }
    let start_after = usize::from(config.start_after % 4);
    for (i, &op) in ops.iter().enumerate() {
        if i == start_after {
            h.apply(Op::Start);
        }
        h.apply(op);
    }
    if ops.len() <= start_after {
        h.apply(Op::Start);
    }
    h.finale();
    h.account();
}
