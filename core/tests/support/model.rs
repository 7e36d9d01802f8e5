//! A reference model of [`EventQueue`], and an interpreter that runs one list of operations on
//! the model and on the real queue side by side and asserts that they agree after every step.
//!
//! The model is written from the specification in the docs of `core/src/queue.rs` (order of
//! `next`, fairness, horizon, handles) and `core/src/timer.rs` (missed periods), with std
//! collections and no cleverness: a `VecDeque` for the sequential queue and a `BTreeMap` of
//! timers keyed by `(deadline, seq)`. Time is a plain `u64` that never wraps; the clock's
//! ticks are derived from it. It shares no code with the queue.
//!
//! Every run goes twice, on two clocks ([`Tick`]): a `u32` one, which wraps (a 1 kHz counter
//! every 49.7 days), and a `u64` one, the tick type of the daemon's own clock (`StdClock`).
//! The same operations mean the same distances on both, so the two runs differ only where the
//! clocks do (the horizon, the wrap).
//!
//! Two users include this file: the property test `core/tests/queue_model.rs` (proptest
//! generates the operations) and the fuzz target `fuzz/fuzz_targets/queue_ordering.rs`
//! (libFuzzer bytes decoded with `arbitrary`). The interpreter takes a plain list of [`Op`]s
//! and depends on neither.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;

use zendaemon_core::embedded_time::Instant;
use zendaemon_core::{
    EventQueue, ManualClock, Next, QueueStats, ScheduleError, ScheduleErrorKind, TickInt,
    TimerError, TimerHandle,
};

/// A clock under test: milliseconds in ticks of `K`.
pub type Clock<K> = ManualClock<K>;
/// The queue under test on a clock of tick type `K`, with events named by a `u32` id.
pub type Queue<K, const S: usize, const T: usize> = EventQueue<u32, Clock<K>, S, T>;

/// The furthest ahead a deadline may lie on a `u32` clock: just under half the wrap period.
pub const HORIZON: u64 = (u32::MAX / 2) as u64;

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

/// One step of a test. Tick amounts are clock ticks (the clock counts milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `schedule` a new event (sequential, to the back).
    Schedule,
    /// `schedule_next` a new event (sequential, to the front).
    ScheduleNext,
    /// `schedule_at` the clock's current tick plus `offset`, wrapping (so `u32::MAX` is one tick
    /// in the past).
    ScheduleAt { offset: u32 },
    /// `schedule_after` a delay of `delay` ms.
    ScheduleAfter { delay: u32 },
    /// `schedule_every` `period` ms.
    ScheduleEvery { period: u32 },
    /// `cancel` a timer (see [`Op::timer`] for how the index is read).
    Cancel { timer: u16 },
    /// `reschedule` a timer to the clock's current tick plus `offset`, wrapping.
    Reschedule { timer: u16, offset: u32 },
    /// `reschedule_after` a timer by `delay` ms.
    RescheduleAfter { timer: u16, delay: u32 },
    /// Moves the clock forward; the queue is not told.
    AdvanceClock { ticks: u32 },
    /// Tells the queue the time (`advance(clock.now())`).
    Observe,
    /// `next(clock.now())`.
    Next,
}

impl Op {
    /// Which handle a `timer` field names: counted back from the newest of all handles ever
    /// returned (0 is the newest), modulo their number, so small values mostly hit live timers
    /// and larger ones reach old, often stale, handles.
    pub fn timer(index: u16, handles: usize) -> Option<usize> {
        (handles > 0).then(|| handles - 1 - usize::from(index) % handles)
    }
}

/// Shapes a tick amount from two random numbers so that the interesting values come up often:
/// zero and tiny amounts, small ones, the edge of the horizon, "just in the past" (wrapping),
/// and anything at all.
pub fn ticks_from(kind: u8, value: u32) -> u32 {
    match kind % 8 {
        0 | 1 => value % 4,
        2 | 3 => value % 300,
        4 => value % 5_000,
        5 => (HORIZON as u32 - 2).wrapping_add(value % 5),
        6 => u32::MAX - value % 300,
        _ => value,
    }
}

/// Shapes a clock start value: zero, near the wrap point, near the middle, small, or anything.
pub fn start_from(kind: u8, value: u32) -> u32 {
    match kind % 6 {
        0 => 0,
        1 | 2 => u32::MAX - value % 2_000,
        3 => (1u32 << 31).wrapping_sub(1_000).wrapping_add(value % 2_000),
        4 => value % 2_000,
        _ => value,
    }
}

/// Capacity pairs `(sequential, timed)` the interpreter can run with.
pub const CAPACITIES: [(usize, usize); 4] = [(1, 1), (2, 3), (4, 6), (16, 24)];

/// A schedule call refused, with the event it handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub kind: ScheduleErrorKind,
    pub event: u32,
}

impl Refused {
    fn from_error(err: ScheduleError<u32>) -> Self {
        Self {
            kind: err.kind(),
            event: err.into_event(),
        }
    }
}

/// What `next` returned, with the timer handle replaced by its index among all handles ever
/// returned, and instants by their raw tick values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextOut {
    Timed {
        event: u32,
        timer: usize,
        /// The clock's tick value at the deadline, widened.
        deadline: u64,
        missed: u64,
    },
    Sequential(u32),
    /// The clock's tick value at the deadline, widened.
    Wait(u64),
    Empty,
}

/// The result of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sequential(Result<(), Refused>),
    /// A new timer: its index among all handles ever returned.
    Timer(Result<usize, Refused>),
    Cancelled(Result<u32, TimerError>),
    Moved(Result<(), TimerError>),
    Clock,
    Next(NextOut),
}

/// Everything observable about a queue between operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub count: usize,
    pub sequential_len: usize,
    pub timed_len: usize,
    pub is_empty: bool,
    /// The last `now` the queue saw, as a tick value (widened, as are the others).
    pub now: u64,
    pub when: Option<u64>,
    pub wait_ticks: Option<u64>,
    pub stats: QueueStats,
    /// `deadline(handle)` of every handle ever returned, as tick values.
    pub deadlines: Vec<Result<u64, TimerError>>,
}

/// An operation with its random parts resolved: event ids assigned, timer indices turned into
/// handle indices, offsets into tick values of the clock (widened).
#[derive(Debug, Clone, Copy)]
enum Step {
    Schedule(u32),
    ScheduleNext(u32),
    ScheduleAt(u32, u64),
    ScheduleAfter(u32, u32),
    ScheduleEvery(u32, u32),
    Cancel(usize),
    Reschedule(usize, u64),
    RescheduleAfter(usize, u32),
    AdvanceClock(u32),
    Observe,
    Next,
}

// ------------------------------------------------------------------------------------------
// The model
// ------------------------------------------------------------------------------------------

/// Where the model's time line starts: far from zero, so that points half a wrap period
/// before the start are still plain `u64` values.
const BASE: u64 = 1 << 40;

#[derive(Debug, Clone, Copy)]
struct ModelTimer {
    event: u32,
    handle: usize,
    period: Option<u64>,
}

/// The reference model of the event queue.
#[derive(Debug)]
pub struct Model {
    seq_capacity: usize,
    timed_capacity: usize,
    /// The clock's tick value at point `BASE`.
    start: u64,
    /// The clock's largest tick value (its wrap period less one).
    max: u64,
    /// Where the clock is.
    clock: u64,
    /// The last time the queue was told.
    seen: u64,
    sequential: VecDeque<u32>,
    /// Pending timers by `(deadline, seq)`: the first entry is the earliest.
    timers: BTreeMap<(u64, u64), ModelTimer>,
    /// For every handle ever returned, the key of its timer while it is pending.
    handles: Vec<Option<(u64, u64)>>,
    next_seq: u64,
    /// The fairness barrier of the current burst of timed events, if one is going on.
    burst: Option<u64>,
    stats: QueueStats,
}

impl Model {
    /// An empty model whose clock of tick type `K` shows `start`, already told to the queue.
    pub fn new<K: Tick>(seq_capacity: usize, timed_capacity: usize, start: K) -> Self {
        Self {
            seq_capacity,
            timed_capacity,
            start: start.widen(),
            max: K::MAX_U64,
            clock: BASE,
            seen: BASE,
            sequential: VecDeque::new(),
            timers: BTreeMap::new(),
            handles: Vec::new(),
            next_seq: 0,
            burst: None,
            stats: QueueStats::default(),
        }
    }

    /// The clock's tick value at point `p`.
    fn raw(&self, p: u64) -> u64 {
        self.start.wrapping_add(p.wrapping_sub(BASE)) & self.max
    }

    /// The furthest ahead a deadline may lie: just under half the clock's wrap period.
    fn horizon(&self) -> u64 {
        self.max / 2
    }

    /// Ticks the clock moved since the queue was last told.
    fn unobserved(&self) -> u64 {
        self.clock - self.seen
    }

    /// The point for a clock tick value: the nearest one to `seen` within half a wrap period,
    /// so at most the horizon ahead or up to half a wrap behind.
    fn place(&self, raw: u64) -> u64 {
        let ahead = raw.wrapping_sub(self.raw(self.seen)) & self.max;
        if ahead <= self.horizon() {
            self.seen + ahead
        } else {
            self.seen - (self.max - ahead + 1)
        }
    }

    /// The clock's tick value `offset` (a tick value of the clock) after its current one.
    fn offset(&self, offset: u64) -> u64 {
        self.raw(self.clock).wrapping_add(offset) & self.max
    }

    fn refuse(&mut self, kind: ScheduleErrorKind, event: u32) -> Refused {
        if kind == ScheduleErrorKind::Full {
            self.stats.rejected = self.stats.rejected.saturating_add(1);
        }
        Refused { kind, event }
    }

    fn push_sequential(&mut self, event: u32, front: bool) -> Result<(), Refused> {
        if self.sequential.len() == self.seq_capacity {
            return Err(self.refuse(ScheduleErrorKind::Full, event));
        }
        if front {
            self.sequential.push_front(event);
        } else {
            self.sequential.push_back(event);
        }
        let len = self.sequential.len() as u16;
        self.stats.sequential_high_water = self.stats.sequential_high_water.max(len);
        Ok(())
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    fn add_timer(
        &mut self,
        deadline: u64,
        period: Option<u64>,
        event: u32,
    ) -> Result<usize, Refused> {
        if self.timers.len() == self.timed_capacity {
            return Err(self.refuse(ScheduleErrorKind::Full, event));
        }
        let key = (deadline, self.take_seq());
        let handle = self.handles.len();
        self.handles.push(Some(key));
        self.timers.insert(
            key,
            ModelTimer {
                event,
                handle,
                period,
            },
        );
        let len = self.timers.len() as u16;
        self.stats.timed_high_water = self.stats.timed_high_water.max(len);
        Ok(handle)
    }

    fn move_timer(&mut self, handle: usize, deadline: u64) -> Result<(), TimerError> {
        let old = self.handles[handle].ok_or(TimerError::Stale)?;
        let timer = self
            .timers
            .remove(&old)
            .expect("a live handle names a pending timer");
        let key = (deadline, self.take_seq());
        self.timers.insert(key, timer);
        self.handles[handle] = Some(key);
        Ok(())
    }

    fn next(&mut self) -> NextOut {
        self.seen = self.clock;
        if let Some((&(deadline, seq), _)) = self.timers.first_key_value() {
            let due = deadline <= self.seen;
            // Scheduled (or rescheduled, or re-armed) after the current burst began?
            let late_comer = self.burst.is_some_and(|barrier| seq >= barrier);
            // A late-comer yields to waiting sequential work.
            let yields = late_comer && !self.sequential.is_empty();
            if due && !yields {
                if self.burst.is_none() {
                    self.burst = Some(self.next_seq);
                }
                return self.fire();
            }
        }
        self.burst = None;
        if let Some(event) = self.sequential.pop_front() {
            return NextOut::Sequential(event);
        }
        match self.timers.first_key_value() {
            Some((&(deadline, _), _)) => NextOut::Wait(self.raw(deadline)),
            None => NextOut::Empty,
        }
    }

    fn fire(&mut self) -> NextOut {
        let (key, timer) = self.timers.pop_first().expect("fire needs a timer");
        let deadline = key.0;
        let mut missed = 0;
        match timer.period {
            None => self.handles[timer.handle] = None,
            Some(period) => {
                // The next point of the grid `deadline + k·period` after now; the ones
                // skipped on the way are missed.
                missed = (self.seen - deadline) / period;
                let next = deadline + (missed + 1) * period;
                let key = (next, self.take_seq());
                self.timers.insert(key, timer);
                self.handles[timer.handle] = Some(key);
                let counted = u32::try_from(missed).unwrap_or(u32::MAX);
                self.stats.missed_periods = self.stats.missed_periods.saturating_add(counted);
            }
        }
        NextOut::Timed {
            event: timer.event,
            timer: timer.handle,
            deadline: self.raw(deadline),
            missed,
        }
    }

    fn apply(&mut self, step: Step) -> Outcome {
        match step {
            Step::Schedule(e) => Outcome::Sequential(self.push_sequential(e, false)),
            Step::ScheduleNext(e) => Outcome::Sequential(self.push_sequential(e, true)),
            Step::ScheduleAt(e, offset) => {
                let at = self.place(self.offset(offset));
                Outcome::Timer(self.add_timer(at, None, e))
            }
            Step::ScheduleAfter(e, delay) => Outcome::Timer(if u64::from(delay) > self.horizon() {
                Err(self.refuse(ScheduleErrorKind::BeyondHorizon, e))
            } else {
                self.add_timer(self.seen + u64::from(delay), None, e)
            }),
            Step::ScheduleEvery(e, period) => Outcome::Timer(if period == 0 {
                Err(self.refuse(ScheduleErrorKind::ZeroPeriod, e))
            } else if u64::from(period) > self.horizon() {
                Err(self.refuse(ScheduleErrorKind::BeyondHorizon, e))
            } else {
                let period = u64::from(period);
                self.add_timer(self.seen + period, Some(period), e)
            }),
            Step::Cancel(h) => Outcome::Cancelled(match self.handles[h].take() {
                Some(key) => Ok(self.timers.remove(&key).expect("pending").event),
                None => Err(TimerError::Stale),
            }),
            Step::Reschedule(h, offset) => {
                let at = self.place(self.offset(offset));
                Outcome::Moved(self.move_timer(h, at))
            }
            Step::RescheduleAfter(h, delay) => {
                Outcome::Moved(if u64::from(delay) > self.horizon() {
                    Err(TimerError::BeyondHorizon)
                } else {
                    self.move_timer(h, self.seen + u64::from(delay))
                })
            }
            Step::AdvanceClock(ticks) => {
                self.clock += u64::from(ticks);
                Outcome::Clock
            }
            Step::Observe => {
                self.seen = self.clock;
                Outcome::Clock
            }
            Step::Next => Outcome::Next(self.next()),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let earliest = self.timers.first_key_value().map(|(&(d, _), _)| d);
        Snapshot {
            count: self.sequential.len() + self.timers.len(),
            sequential_len: self.sequential.len(),
            timed_len: self.timers.len(),
            is_empty: self.sequential.is_empty() && self.timers.is_empty(),
            now: self.raw(self.seen),
            when: earliest.map(|d| self.raw(d)),
            wait_ticks: earliest.map(|d| d.saturating_sub(self.seen)),
            stats: self.stats,
            deadlines: self
                .handles
                .iter()
                .map(|key| key.map(|(d, _)| self.raw(d)).ok_or(TimerError::Stale))
                .collect(),
        }
    }
}

// ------------------------------------------------------------------------------------------
// The real queue, seen the same way
// ------------------------------------------------------------------------------------------

struct Real<K: Tick, const S: usize, const T: usize> {
    clock: Clock<K>,
    queue: Queue<K, S, T>,
    handles: Vec<TimerHandle>,
    index: HashMap<TimerHandle, usize>,
}

/// An instant's tick value, widened.
fn ticks<K: Tick>(instant: Instant<Clock<K>>) -> u64 {
    instant.duration_since_epoch().integer().widen()
}

impl<K: Tick, const S: usize, const T: usize> Real<K, S, T> {
    fn new(start: K) -> Self {
        let clock = Clock::starting_at(start);
        let mut queue = Queue::<K, S, T>::new();
        queue.advance(clock.now());
        Self {
            clock,
            queue,
            handles: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn instant(&self, offset: u64) -> Instant<Clock<K>> {
        Instant::new(self.clock.ticks().wrapping_add(&K::truncate(offset)))
    }

    fn timer(&mut self, result: Result<TimerHandle, ScheduleError<u32>>) -> Outcome {
        Outcome::Timer(match result {
            Ok(handle) => {
                let i = self.handles.len();
                assert!(
                    self.index.insert(handle, i).is_none(),
                    "the queue returned handle {handle:?} twice"
                );
                self.handles.push(handle);
                Ok(i)
            }
            Err(e) => Err(Refused::from_error(e)),
        })
    }

    fn apply(&mut self, step: Step) -> Outcome {
        match step {
            Step::Schedule(e) => {
                Outcome::Sequential(self.queue.schedule(e).map_err(Refused::from_error))
            }
            Step::ScheduleNext(e) => {
                Outcome::Sequential(self.queue.schedule_next(e).map_err(Refused::from_error))
            }
            Step::ScheduleAt(e, offset) => {
                let r = self.queue.schedule_at(self.instant(offset), e);
                self.timer(r)
            }
            Step::ScheduleAfter(e, delay) => {
                let r = self
                    .queue
                    .schedule_after(std::time::Duration::from_millis(u64::from(delay)), e);
                self.timer(r)
            }
            Step::ScheduleEvery(e, period) => {
                let r = self
                    .queue
                    .schedule_every(std::time::Duration::from_millis(u64::from(period)), e);
                self.timer(r)
            }
            Step::Cancel(h) => Outcome::Cancelled(self.queue.cancel(self.handles[h])),
            Step::Reschedule(h, offset) => {
                Outcome::Moved(self.queue.reschedule(self.handles[h], self.instant(offset)))
            }
            Step::RescheduleAfter(h, delay) => Outcome::Moved(self.queue.reschedule_after(
                self.handles[h],
                std::time::Duration::from_millis(u64::from(delay)),
            )),
            Step::AdvanceClock(t) => {
                self.clock.advance_ticks(K::from(t));
                Outcome::Clock
            }
            Step::Observe => {
                self.queue.advance(self.clock.now());
                Outcome::Clock
            }
            Step::Next => Outcome::Next(match self.queue.next(self.clock.now()) {
                Next::Timed(fired) => NextOut::Timed {
                    event: fired.event,
                    timer: *self
                        .index
                        .get(&fired.handle)
                        .unwrap_or_else(|| panic!("fired unknown handle {:?}", fired.handle)),
                    deadline: fired.deadline,
                    missed: fired.missed,
                },
                Next::Sequential(e) => NextOut::Sequential(e),
                Next::Wait(at) => NextOut::Wait(ticks(at)),
                Next::Empty => NextOut::Empty,
            }),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let q = &self.queue;
        let wait = q.wait().map(|d| d.integer().widen());
        assert_eq!(wait, q.wait_ticks(), "wait() and wait_ticks() disagree");
        Snapshot {
            count: q.count(),
            sequential_len: q.sequential_len(),
            timed_len: q.timed_len(),
            is_empty: q.is_empty(),
            now: ticks(q.now()),
            when: q.when().map(ticks),
            wait_ticks: q.wait_ticks(),
            stats: q.stats(),
            deadlines: self
                .handles
                .iter()
                .map(|&h| q.deadline(h).map(ticks))
                .collect(),
        }
    }
}

// ------------------------------------------------------------------------------------------
// The interpreter
// ------------------------------------------------------------------------------------------

/// Extra checks on the real queue after every step (the fuzz target checks the heap's
/// invariants this way).
pub trait Check {
    /// Called after every step.
    fn check<K: Tick, const S: usize, const T: usize>(&mut self, queue: &Queue<K, S, T>);
}

/// No extra checks.
#[derive(Debug, Default)]
pub struct NoCheck;

impl Check for NoCheck {
    fn check<K: Tick, const S: usize, const T: usize>(&mut self, _queue: &Queue<K, S, T>) {}
}

/// Runs `ops` on a real queue with capacities `CAPACITIES[capacity % 4]` and on the model,
/// both with a clock that starts at `start`, and panics at the first difference: once on a
/// `u32` clock and once on a `u64` clock.
pub fn run(capacity: u8, start: u32, ops: &[Op], check: &mut impl Check) {
    run_on::<u32>(capacity, start, ops, check);
    run_on::<u64>(capacity, start, ops, check);
}

/// [`run`] on a clock of tick type `K` only.
pub fn run_on<K: Tick>(capacity: u8, start: u32, ops: &[Op], check: &mut impl Check) {
    let start = K::start(start);
    match CAPACITIES[usize::from(capacity) % CAPACITIES.len()] {
        (1, 1) => run_with::<K, 1, 1>(start, ops, check),
        (2, 3) => run_with::<K, 2, 3>(start, ops, check),
        (4, 6) => run_with::<K, 4, 6>(start, ops, check),
        (16, 24) => run_with::<K, 16, 24>(start, ops, check),
        _ => unreachable!("CAPACITIES and run disagree"),
    }
}

/// [`run`] with the tick type and the capacities as generics, from the clock tick `start`.
pub fn run_with<K: Tick, const S: usize, const T: usize>(
    start: K,
    ops: &[Op],
    check: &mut impl Check,
) {
    let mut real = Real::<K, S, T>::new(start);
    let mut model = Model::new(S, T, start);
    let mut next_event = 0u32;
    let mut event = || {
        next_event += 1;
        next_event
    };
    let mut done = Vec::new();
    for op in ops {
        let handles = model.handles.len();
        let mut steps = Vec::with_capacity(2);
        let step = match *op {
            Op::Schedule => Step::Schedule(event()),
            Op::ScheduleNext => Step::ScheduleNext(event()),
            Op::ScheduleAt { offset } => Step::ScheduleAt(event(), K::offset(offset).widen()),
            Op::ScheduleAfter { delay } => Step::ScheduleAfter(event(), delay),
            Op::ScheduleEvery { period } => Step::ScheduleEvery(event(), period),
            Op::Cancel { timer } => match Op::timer(timer, handles) {
                Some(h) => Step::Cancel(h),
                None => continue,
            },
            Op::Reschedule { timer, offset } => match Op::timer(timer, handles) {
                Some(h) => Step::Reschedule(h, K::offset(offset).widen()),
                None => continue,
            },
            Op::RescheduleAfter { timer, delay } => match Op::timer(timer, handles) {
                Some(h) => Step::RescheduleAfter(h, delay),
                None => continue,
            },
            Op::AdvanceClock { ticks } => {
                // The host's one duty (see `Timeline`): tell the queue the time at least once
                // per wrap period. Do it here when this step would break the rule.
                if model.unobserved() + u64::from(ticks) > K::MAX_U64 {
                    steps.push(Step::Observe);
                }
                Step::AdvanceClock(ticks)
            }
            Op::Observe => Step::Observe,
            Op::Next => Step::Next,
        };
        steps.push(step);
        for step in steps {
            let got = real.apply(step);
            let want = model.apply(step);
            done.push(step);
            check.check(&real.queue);
            assert_eq!(
                got,
                want,
                "outcome differs at step {} (queue left, model right); steps: {done:?}",
                done.len() - 1
            );
            let got = real.snapshot();
            let want = model.snapshot();
            assert_eq!(
                got,
                want,
                "state differs after step {} (queue left, model right); steps: {done:?}",
                done.len() - 1
            );
        }
    }
}
