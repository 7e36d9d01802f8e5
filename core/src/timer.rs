//! The timed queue: an indexed 4-ary min-heap of deadlines with cancellable handles.
//!
//! Events live in a fixed slot table and never move; the heap holds small `(deadline, seq,
//! slot)` entries and a position table remembers where each slot's entry sits in the heap.
//! That makes `cancel` and `reschedule` O(log n) and frees the slot at once (no tombstones
//! taking capacity), and it keeps the heap's sift loops moving 24-byte entries whatever the
//! size of the event.
//!
//! Why 4-ary: each node has four children, so the heap is half as deep as a binary heap.
//! Popping the earliest timer moves half as many entries and updates half as many positions;
//! the earliest of four children takes three comparisons, but two of them run side by side and
//! none waits for a load, and the four children sit in one or two cache lines. On the
//! benchmarks (see `BENCHMARKS.md`) that brings insert + pop close to std's `BinaryHeap`,
//! which has no positions to keep.
//!
//! On 32-bit targets (firmware) size weighs more: there the children are scanned instead of
//! compared in a branch-free tournament, and the sift routines stay out of line, one copy
//! each (measured in `BENCHMARKS.md`, "Firmware"). The sifts are free functions over slices,
//! so one copy serves every capacity and event type.
//!
//! A [`TimerHandle`] names its queue, a slot and the slot's generation. Freeing a slot bumps
//! its generation, so a handle kept after its timer fired or was cancelled is *stale*: every
//! use of it returns [`TimerError::Stale`] and never touches the timer that reuses the slot.
//!
//! # What a handle guarantees, exactly
//!
//! * **Across reuses of a slot:** a slot whose generation reaches its maximum is retired
//!   (never reused; the queue holds one timer less). So no generation is ever handed out
//!   twice: a stale handle can never name a later timer, where a wrapping `u32` generation
//!   let it after 2^32 reuses. Generations are `u64` on 64-bit targets: retiring a slot takes
//!   2^64 − 1 reuses of it, 584,000 years at a million cancel-and-schedule cycles a second.
//!   On 32-bit targets (firmware) they are `u32`, which saves 500 bytes of flash: a slot
//!   retires after 2^32 − 1 reuses (71 minutes at that extreme rate, 50 days at a thousand a
//!   second; `reschedule` and periodic timers do not reuse slots). A firmware that cancels
//!   and reschedules one-shot timers faster than that for months should `reschedule` instead.
//! * **Across queues:** each queue takes an identity when it schedules its first timer (a
//!   process-wide counter: an atomic add, or a critical section on targets without atomic
//!   read-modify-write such as ARMv6-M), and its handles carry it. A handle used on another
//!   queue is stale. Identities are 16 bits: distinct for the first 65,535 queues of a
//!   program (queues that scheduled a timer); a program that makes more may see two share one.
//!
//! Deadlines here are points on the `u64` [`Timeline`](crate::time::Timeline), so ordering is a
//! plain comparison. Equal deadlines leave in the order they were scheduled (`seq`).

use core::fmt;

use heapless::Vec;

/// Names one scheduled timer of one queue. Cheap to copy; stale once the timer is gone, and
/// on any other queue (see the module docs for the exact guarantee).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TimerHandle {
    generation: Generation,
    slot: u16,
    queue: u16,
}

/// A slot's generation: `u64` on 64-bit targets (hosts, daemons), `u32` on smaller ones,
/// where the wider one cost the tiny firmware 500 bytes of flash (16-byte handles and their
/// copies). Either way a slot is retired at the last value, so the guarantee is exact; only
/// how soon a slot can retire differs (see the module docs).
#[cfg(target_pointer_width = "64")]
type Generation = u64;
#[cfg(not(target_pointer_width = "64"))]
type Generation = u32;

/// A new queue identity, never 0 (the mark of a queue that has none yet).
fn next_queue_id() -> u16 {
    #[cfg(target_has_atomic = "16")]
    {
        use core::sync::atomic::{AtomicU16, Ordering};
        // The count of identities handed out, starting at 0 so that it lives in `.bss`, not
        // `.data` (firmware startup copies `.data` from flash).
        static TAKEN: AtomicU16 = AtomicU16::new(0);
        loop {
            let id = TAKEN.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id != 0 {
                return id;
            }
        }
    }
    #[cfg(not(target_has_atomic = "16"))]
    {
        use core::cell::Cell;
        // As above: starting at 0 keeps it in `.bss`.
        static TAKEN: critical_section::Mutex<Cell<u16>> =
            critical_section::Mutex::new(Cell::new(0));
        critical_section::with(|cs| {
            let taken = TAKEN.borrow(cs);
            let id = taken.get().checked_add(1).unwrap_or(1);
            taken.set(id);
            id
        })
    }
}

/// What went wrong with a handle-based timer operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TimerError {
    /// The timer already fired (one-shot), was cancelled, or the handle is from another queue.
    Stale,
    /// The new deadline lies half the clock's wrap period ahead or further (see
    /// [`ScheduleError::BeyondHorizon`](crate::ScheduleError::BeyondHorizon)).
    BeyondHorizon,
}

impl fmt::Display for TimerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stale => f.write_str("stale timer handle: the timer fired or was cancelled"),
            Self::BeyondHorizon => {
                f.write_str("deadline at or beyond the clock's horizon of half its wrap period")
            }
        }
    }
}

impl core::error::Error for TimerError {}

/// Marks a slot that is not in the heap.
const NOT_QUEUED: u16 = u16::MAX;
/// Ends the free list.
const NO_SLOT: u16 = u16::MAX;

/// How a periodic timer re-arms itself: the period and how to copy the event for each firing.
///
/// Storing `E::clone` as a function pointer keeps the `Clone` bound on `insert_periodic` alone.
pub(crate) struct Periodic<E> {
    period: u64,
    copy: fn(&E) -> E,
}

impl<E: Clone> Periodic<E> {
    /// Every `period` ticks, each firing a clone of the event.
    pub(crate) fn every(period: u64) -> Self {
        Self {
            period,
            copy: E::clone,
        }
    }
}

impl<E> Clone for Periodic<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for Periodic<E> {}

struct Slot<E> {
    /// Bumped when the slot is freed; `Generation::MAX` retires it (see the module docs).
    generation: Generation,
    /// Next free slot while this one is on the free list.
    next_free: u16,
    periodic: Option<Periodic<E>>,
    event: Option<E>,
}

impl<E> Slot<E> {
    const VACANT: Self = Self {
        generation: 0,
        next_free: NO_SLOT,
        periodic: None,
        event: None,
    };
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    deadline: u64,
    seq: u64,
    /// A `usize` rather than the handle's `u16`: on 64-bit hosts the entry then has no padding
    /// and the sift loops move it with two plain copies.
    slot: usize,
}

impl Entry {
    #[inline]
    fn before(&self, other: &Self) -> bool {
        // One 128-bit comparison (a subtract-with-borrow chain on 32-bit targets, no
        // branches) rather than the tuple's compare-then-compare.
        self.key() < other.key()
    }

    /// `(deadline, seq)` as one number.
    #[inline]
    fn key(&self) -> u128 {
        (u128::from(self.deadline) << 64) | u128::from(self.seq)
    }
}

/// A timer that left the queue because its deadline came.
#[derive(Debug, PartialEq, Eq)]
pub struct Fired<E> {
    /// The event (a copy of it, for a periodic timer).
    pub event: E,
    /// The timer's handle. Still valid for a periodic timer, stale for a one-shot one.
    pub handle: TimerHandle,
    /// The deadline it was due at.
    pub deadline: u64,
    /// Whole periods a periodic timer skipped because it fired this late (see
    /// [`TimerQueue::pop_due`]). Always 0 for a one-shot timer.
    pub missed: u64,
    /// How far past its deadline the timer was taken, in ticks (`now - deadline`).
    pub late: u64,
}

/// Fixed-capacity timed queue of `N` timers.
pub struct TimerQueue<E, const N: usize> {
    heap: Vec<Entry, N>,
    /// Each slot's index into the heap, or `NOT_QUEUED` when the slot is free. Kept apart
    /// from the slots so the sift loops, which update it on every move, touch a small array.
    positions: [u16; N],
    slots: [Slot<E>; N],
    free_head: u16,
    /// Slots never used yet start after the free list (lazy initialisation keeps `new` const).
    fresh: u16,
    next_seq: u64,
    /// This queue's identity in its handles; 0 until the first timer is scheduled (so `new`
    /// stays `const`).
    id: u16,
}

impl<E, const N: usize> Default for TimerQueue<E, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E, const N: usize> fmt::Debug for TimerQueue<E, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerQueue")
            .field("len", &self.heap.len())
            .field("capacity", &N)
            .field("next_deadline", &self.peek_deadline())
            .finish()
    }
}

impl<E, const N: usize> TimerQueue<E, N> {
    /// An empty queue.
    pub const fn new() -> Self {
        const {
            assert!(N > 0, "a timer queue needs a capacity of at least 1");
            assert!(
                N < NOT_QUEUED as usize,
                "a timer queue holds at most 65534 timers"
            );
        }
        Self {
            heap: Vec::new(),
            positions: [NOT_QUEUED; N],
            slots: [const { Slot::VACANT }; N],
            free_head: NO_SLOT,
            fresh: 0,
            next_seq: 0,
            id: 0,
        }
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// True when every slot is taken (a queue with retired slots, see the module docs, is
    /// full one timer earlier).
    pub fn is_full(&self) -> bool {
        self.free_head == NO_SLOT && usize::from(self.fresh) == N
    }

    /// The capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The sequence number the next scheduled (or rescheduled, or re-armed) timer will get.
    /// Sequence numbers order equal deadlines, and the combined queue uses them for fairness.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The earliest deadline.
    pub fn peek_deadline(&self) -> Option<u64> {
        self.heap.first().map(|e| e.deadline)
    }

    /// The earliest `(deadline, seq)`.
    pub fn peek(&self) -> Option<(u64, u64)> {
        self.heap.first().map(|e| (e.deadline, e.seq))
    }

    /// Schedules a one-shot timer. A full queue hands the event back.
    pub fn insert(&mut self, deadline: u64, event: E) -> Result<TimerHandle, E> {
        self.insert_with(deadline, None, event)
    }

    /// Schedules a periodic timer: each firing yields a copy, and the timer re-arms itself
    /// at `deadline + period` (drift-free). `period` must not be zero (checked by the caller).
    pub fn insert_periodic(
        &mut self,
        deadline: u64,
        period: u64,
        event: E,
    ) -> Result<TimerHandle, E>
    where
        E: Clone,
    {
        debug_assert!(period > 0);
        self.insert_with(deadline, Some(Periodic::every(period)), event)
    }

    /// [`insert`](Self::insert) or [`insert_periodic`](Self::insert_periodic), by whether
    /// `periodic` is given: the one copy of the insertion code.
    pub(crate) fn insert_with(
        &mut self,
        deadline: u64,
        periodic: Option<Periodic<E>>,
        event: E,
    ) -> Result<TimerHandle, E> {
        let Some(slot) = self.alloc_slot() else {
            return Err(event);
        };
        let pos = self.heap.len();
        let entry = Entry {
            deadline,
            seq: self.take_seq(),
            slot: usize::from(slot),
        };
        // Cannot fail: a free slot means the heap has room.
        let _ = self.heap.push(entry);
        let s = &mut self.slots[usize::from(slot)];
        s.event = Some(event);
        s.periodic = periodic;
        let generation = s.generation;
        sift_up(&mut self.heap, &mut self.positions, pos, 0, entry);
        if self.id == 0 {
            self.id = next_queue_id();
        }
        Ok(TimerHandle {
            generation,
            slot,
            queue: self.id,
        })
    }

    /// The event of a pending timer.
    pub fn get(&self, handle: TimerHandle) -> Result<&E, TimerError> {
        let slot = self.live_slot(handle)?;
        self.slots[slot].event.as_ref().ok_or(TimerError::Stale)
    }

    /// The deadline of a pending timer.
    pub fn deadline(&self, handle: TimerHandle) -> Result<u64, TimerError> {
        let slot = self.live_slot(handle)?;
        Ok(self.heap[usize::from(self.positions[slot])].deadline)
    }

    /// Removes a pending timer (periodic or not) and hands its event back. O(log n).
    pub fn cancel(&mut self, handle: TimerHandle) -> Result<E, TimerError> {
        let slot = self.live_slot(handle)?;
        let pos = usize::from(self.positions[slot]);
        self.remove_at(pos);
        Ok(self.free_slot(slot))
    }

    /// Moves a pending timer to a new deadline. O(log n). Among equal deadlines it now counts as
    /// scheduled last.
    pub fn reschedule(&mut self, handle: TimerHandle, deadline: u64) -> Result<(), TimerError> {
        let slot = self.live_slot(handle)?;
        let pos = usize::from(self.positions[slot]);
        let seq = self.take_seq();
        let Some(&old) = self.heap.get(pos) else {
            return Err(TimerError::Stale);
        };
        let moved = Entry {
            deadline,
            seq,
            ..old
        };
        self.resift(pos, moved);
        Ok(())
    }

    /// Takes the earliest timer if its deadline is at or before `now`.
    ///
    /// # Missed periods
    ///
    /// A periodic timer re-arms at `deadline + period`. If that is still not after `now` (the
    /// host was busy or asleep for more than a period), the missed firings are **skipped, not
    /// replayed**: the timer moves to the first point of its original grid
    /// (`deadline + k·period`) that lies after `now`, and [`Fired::missed`] says how many
    /// were skipped. A burst of catch-up events after a stall would only make the stall worse.
    pub fn pop_due(&mut self, now: u64) -> Option<Fired<E>> {
        let top = *self.heap.first()?;
        if top.deadline > now {
            return None;
        }
        Some(self.pop_top(top, now))
    }

    fn pop_top(&mut self, top: Entry, now: u64) -> Fired<E> {
        let slot = top.slot;
        let handle = TimerHandle {
            generation: self.slots[slot].generation,
            slot: slot as u16,
            queue: self.id,
        };
        match self.slots[slot].periodic {
            Some(Periodic { period, copy }) => {
                let late = now.saturating_sub(top.deadline);
                let missed = periods_in(late, period);
                let next = top.deadline + (missed + 1) * period;
                let seq = self.take_seq();
                let moved = Entry {
                    deadline: next,
                    seq,
                    ..top
                };
                sift_down(&mut self.heap, &mut self.positions, 0, moved);
                let event = match &self.slots[slot].event {
                    Some(e) => copy(e),
                    None => unreachable!("a queued slot holds its event"),
                };
                Fired {
                    event,
                    handle,
                    deadline: top.deadline,
                    missed,
                    late,
                }
            }
            None => {
                self.remove_at(0);
                Fired {
                    event: self.free_slot(slot),
                    handle,
                    deadline: top.deadline,
                    missed: 0,
                    late: now.saturating_sub(top.deadline),
                }
            }
        }
    }

    /// Removes every timer.
    pub fn clear(&mut self) {
        while let Some(top) = self.heap.first().copied() {
            self.remove_at(0);
            let _ = self.free_slot(top.slot);
        }
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn live_slot(&self, handle: TimerHandle) -> Result<usize, TimerError> {
        let slot = usize::from(handle.slot);
        match self.slots.get(slot) {
            Some(s)
                if s.generation == handle.generation
                    && handle.queue == self.id
                    && self.positions[slot] != NOT_QUEUED =>
            {
                Ok(slot)
            }
            _ => Err(TimerError::Stale),
        }
    }

    fn alloc_slot(&mut self) -> Option<u16> {
        if self.free_head != NO_SLOT {
            let slot = self.free_head;
            self.free_head = self.slots[usize::from(slot)].next_free;
            Some(slot)
        } else if usize::from(self.fresh) < N {
            let slot = self.fresh;
            self.fresh += 1;
            Some(slot)
        } else {
            None
        }
    }

    fn free_slot(&mut self, slot: usize) -> E {
        let s = &mut self.slots[slot];
        s.generation += 1;
        s.periodic = None;
        // A slot at the last generation is retired: off the free list for good, so no
        // generation is handed out twice.
        if s.generation != Generation::MAX {
            s.next_free = self.free_head;
            self.free_head = slot as u16;
        }
        self.positions[slot] = NOT_QUEUED;
        match s.event.take() {
            Some(e) => e,
            None => unreachable!("a queued slot holds its event"),
        }
    }

    /// Removes the heap entry at `pos` (the slot itself is freed by the caller).
    fn remove_at(&mut self, pos: usize) {
        let Some(last) = self.heap.pop() else {
            return;
        };
        if pos >= self.heap.len() {
            return; // it was the last entry
        }
        if pos == 0 {
            // The last entry is usually among the latest: it sinks (see `sift_down`).
            sift_down(&mut self.heap, &mut self.positions, 0, last);
        } else {
            self.resift(pos, last);
        }
    }

    /// Puts `entry` at `pos`, then moves it up or down to its place: its key may be earlier
    /// or later than the one that was there.
    fn resift(&mut self, pos: usize, entry: Entry) {
        if sift_up(&mut self.heap, &mut self.positions, pos, 0, entry) == pos {
            sift_down(&mut self.heap, &mut self.positions, pos, entry);
        }
    }

    /// Checks the heap property and the slot back-links (tests and fuzzing).
    #[cfg(any(test, feature = "invariants"))]
    pub fn check_invariants(&self) {
        for (i, e) in self.heap.iter().enumerate() {
            if i > 0 {
                let parent = &self.heap[parent_of(i)];
                assert!(!e.before(parent), "heap order broken at {i}");
            }
            assert_eq!(usize::from(self.positions[e.slot]), i);
            assert!(self.slots[e.slot].event.is_some());
        }
        let queued = self.positions.iter().filter(|&&p| p != NOT_QUEUED).count();
        assert_eq!(queued, self.heap.len(), "slots and heap disagree");
    }
}

/// Children per node. A 4-ary heap is half as deep as a binary one: half the moves (and
/// `positions` updates) per sift, and the four children share one or two cache lines.
const ARITY: usize = 4;

/// The parent of `pos` (which is not the root).
#[inline]
fn parent_of(pos: usize) -> usize {
    (pos - 1) / ARITY
}

/// The earliest of the children that start at `first` (its index and a copy), if there are
/// any.
///
/// Per target, measured: on 64-bit hosts a full family of four goes through a branch-free
/// tournament (faster, see the module docs); on 32-bit targets a 24-byte entry fills six
/// registers and the tournament took 300 B of flash per inlined copy, so there every family
/// goes through the scan, and the sift routines are kept out of line: one copy each
/// (`examples/cortex-m-tiny`: 7,892 → 6,756 B of `.text`).
#[inline]
fn earliest_child(heap: &[Entry], first: usize) -> Option<(usize, Entry)> {
    #[cfg(target_pointer_width = "64")]
    if let Some(found) = earliest_of_four(heap, first) {
        return Some(found);
    }
    let child = earliest_scan(heap, first)?;
    Some((child, *heap.get(child)?))
}

/// [`earliest_child`] when all four children exist: a small tournament that selects values
/// rather than indices, so no load waits on a comparison.
#[cfg(any(test, target_pointer_width = "64"))]
#[inline(always)]
fn earliest_of_four(heap: &[Entry], first: usize) -> Option<(usize, Entry)> {
    let &[k0, k1, k2, k3] = heap.get(first..first + ARITY)? else {
        return None;
    };
    let a1 = k1.before(&k0);
    let ka = if a1 { k1 } else { k0 };
    let b3 = k3.before(&k2);
    let kb = if b3 { k3 } else { k2 };
    let m_b = kb.before(&ka);
    let km = if m_b { kb } else { ka };
    let at = if m_b {
        2 + usize::from(b3)
    } else {
        usize::from(a1)
    };
    Some((first + at, km))
}

/// The index of [`earliest_child`] by a scan of the (up to four) children. Out of line on
/// 32-bit targets, and it returns the index alone (in a register): one small copy.
#[cfg_attr(target_pointer_width = "64", inline(always))]
#[cfg_attr(not(target_pointer_width = "64"), inline(never))]
fn earliest_scan(heap: &[Entry], first: usize) -> Option<usize> {
    let kids = heap.get(first..)?;
    let kids = kids.get(..ARITY).unwrap_or(kids);
    let mut best = kids.first()?;
    let mut at = 0;
    for (i, kid) in kids.iter().enumerate().skip(1) {
        if kid.before(best) {
            best = kid;
            at = i;
        }
    }
    Some(first + at)
}

/// Whole `period`s in `late` (`late / period`, `period > 0`), by shift and subtract.
///
/// On a 32-bit target a 64-bit `/` links the compiler's general division routine (about
/// 900 B on a Cortex-M); this runs only for a periodic timer that fired a whole period late,
/// so a few dozen cycles per bit do not matter, and on time it costs one comparison.
fn periods_in(late: u64, period: u64) -> u64 {
    if late < period {
        return 0;
    }
    let mut quotient = 0;
    let mut rest: u64 = 0;
    for bit in (0..u64::BITS).rev() {
        let carry = rest >> 63;
        rest = (rest << 1) | ((late >> bit) & 1);
        if carry != 0 || rest >= period {
            rest = rest.wrapping_sub(period);
            quotient |= 1 << bit;
        }
    }
    quotient
}

/// Puts `moving` at `pos` and moves it up, but not above `top`, until its parent is earlier;
/// keeps `positions` in step and returns where the entry ended. The entry at `pos` is
/// overwritten.
///
/// With [`sift_down`] the heap's only two sift routines. They take the moving entry by value,
/// and are not generic: one copy of each serves every capacity and event type.
#[cfg_attr(target_pointer_width = "64", inline)]
#[cfg_attr(not(target_pointer_width = "64"), inline(never))]
fn sift_up(
    heap: &mut [Entry],
    positions: &mut [u16],
    mut pos: usize,
    top: usize,
    moving: Entry,
) -> usize {
    while pos > top {
        let parent = parent_of(pos);
        let Some(&p) = heap.get(parent) else { break };
        if !moving.before(&p) {
            break;
        }
        place(heap, positions, pos, p);
        pos = parent;
    }
    place(heap, positions, pos, moving);
    pos
}

/// Puts `moving` at `pos` and moves it down to its place; keeps `positions` in step. The
/// entry at `pos` is overwritten.
///
/// Floyd's way, as std's `BinaryHeap::pop` does: the hole sinks along the earliest children
/// to a leaf without comparing them with `moving`, then `moving` climbs back (not above
/// `pos`). An entry that sinks goes usually near the bottom (the last entry after a removal,
/// a periodic timer re-armed a period later), so this takes fewer comparisons than comparing
/// at every level, and the sinking reuses `sift_up` for the climb: one routine less.
#[cfg_attr(target_pointer_width = "64", inline)]
#[cfg_attr(not(target_pointer_width = "64"), inline(never))]
fn sift_down(heap: &mut [Entry], positions: &mut [u16], pos: usize, moving: Entry) {
    let mut hole = pos;
    while let Some((child, c)) = earliest_child(heap, ARITY * hole + 1) {
        place(heap, positions, hole, c);
        hole = child;
    }
    sift_up(heap, positions, hole, pos, moving);
}

/// Writes `entry` at `pos` and records where its slot now sits.
#[inline(always)]
fn place(heap: &mut [Entry], positions: &mut [u16], pos: usize, entry: Entry) {
    if let Some(e) = heap.get_mut(pos) {
        *e = entry;
    }
    if let Some(p) = positions.get_mut(entry.slot) {
        *p = pos as u16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut TimerQueue<u32, 16>, now: u64) -> std::vec::Vec<u32> {
        let mut out = std::vec::Vec::new();
        while let Some(f) = q.pop_due(now) {
            out.push(f.event);
            q.check_invariants();
            assert!(out.len() <= 16, "pop_due returned more timers than fit");
        }
        out
    }

    #[test]
    fn earliest_first_and_ties_in_scheduling_order() {
        let mut q = TimerQueue::<u32, 16>::new();
        for (deadline, ev) in [(30, 1), (10, 2), (20, 3), (10, 4), (10, 5)] {
            q.insert(deadline, ev).unwrap();
        }
        q.check_invariants();
        assert_eq!(q.pop_due(9), None);
        assert_eq!(drain(&mut q, 100), [2, 4, 5, 3, 1]);
    }

    #[test]
    fn full_queue_hands_the_event_back() {
        let mut q = TimerQueue::<u32, 2>::new();
        q.insert(1, 1).unwrap();
        q.insert(2, 2).unwrap();
        assert_eq!(q.insert(3, 3), Err(3));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn cancel_frees_the_slot_and_leaves_others_alone() {
        let mut q = TimerQueue::<u32, 2>::new();
        let a = q.insert(10, 1).unwrap();
        let b = q.insert(20, 2).unwrap();
        assert_eq!(q.cancel(a), Ok(1));
        q.check_invariants();
        // The slot is free again: a third timer fits.
        let c = q.insert(5, 3).unwrap();
        // The old handle names the reused slot but an older generation.
        assert_eq!(q.cancel(a), Err(TimerError::Stale));
        assert_eq!(q.reschedule(a, 1), Err(TimerError::Stale));
        assert_eq!(q.get(c), Ok(&3));
        assert_eq!(q.get(b), Ok(&2));
        assert_eq!(drain_n(&mut q), [3, 2]);
    }

    fn drain_n<const N: usize>(q: &mut TimerQueue<u32, N>) -> std::vec::Vec<u32> {
        let out: std::vec::Vec<u32> = core::iter::from_fn(|| q.pop_due(u64::MAX).map(|f| f.event))
            .take(N + 1)
            .collect();
        assert!(out.len() <= N, "pop_due returned more timers than fit");
        out
    }

    #[test]
    fn fired_one_shot_handle_is_stale() {
        let mut q = TimerQueue::<u32, 4>::new();
        let a = q.insert(1, 7).unwrap();
        let fired = q.pop_due(1).unwrap();
        assert_eq!(fired.handle, a);
        assert_eq!(q.cancel(a), Err(TimerError::Stale));
    }

    #[test]
    fn a_handle_from_another_queue_with_the_same_slot_and_generation_is_stale() {
        // Both queues' first timer: slot 0, generation 0. Only the queue tells them apart.
        let mut q = TimerQueue::<u32, 4>::new();
        let mut other = TimerQueue::<u32, 4>::new();
        let mine = q.insert(10, 1).unwrap();
        let foreign = other.insert(20, 2).unwrap();
        assert_eq!(q.get(foreign), Err(TimerError::Stale));
        assert_eq!(q.deadline(foreign), Err(TimerError::Stale));
        assert_eq!(q.reschedule(foreign, 99), Err(TimerError::Stale));
        assert_eq!(q.cancel(foreign), Err(TimerError::Stale));
        assert_eq!(q.cancel(mine), Ok(1));
        assert_eq!(other.cancel(foreign), Ok(2));
    }

    #[test]
    fn a_slot_is_retired_at_its_last_generation_and_never_names_a_later_timer() {
        let mut q = TimerQueue::<u32, 2>::new();
        let first = q.insert(1, 1).unwrap();
        assert_eq!(q.cancel(first), Ok(1));
        // Slot 0 after its last-but-one reuse: one more free retires it.
        q.slots[0].generation = Generation::MAX - 1;
        let last = q.insert(1, 2).unwrap();
        assert_eq!((last.slot, last.generation), (0, Generation::MAX - 1));
        assert_eq!(q.cancel(last), Ok(2));
        // The retired slot is not reused: the next timers take slot 1, then the queue is full.
        let next = q.insert(1, 3).unwrap();
        assert_eq!(next.slot, 1);
        assert_eq!(q.insert(1, 4), Err(4));
        assert_eq!(q.cancel(last), Err(TimerError::Stale));
        assert_eq!(q.cancel(first), Err(TimerError::Stale));
        assert_eq!(q.cancel(next), Ok(3));
        q.check_invariants();
    }

    #[test]
    fn foreign_handle_is_stale() {
        let mut q = TimerQueue::<u32, 4>::new();
        let mut other = TimerQueue::<u32, 64>::new();
        for i in 0..40 {
            other.insert(i, 0).unwrap();
        }
        let foreign = other.insert(100, 0).unwrap();
        q.insert(1, 1).unwrap();
        assert_eq!(q.cancel(foreign), Err(TimerError::Stale));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn reschedule_moves_both_ways() {
        let mut q = TimerQueue::<u32, 16>::new();
        let handles: std::vec::Vec<_> = (0..10)
            .map(|i| q.insert(i * 10, i as u32).unwrap())
            .collect();
        q.reschedule(handles[9], 0).unwrap(); // earlier; ties with 0 but scheduled later
        q.reschedule(handles[0], 55).unwrap(); // later
        q.check_invariants();
        assert_eq!(q.deadline(handles[0]), Ok(55));
        assert_eq!(drain(&mut q, 1000), [9, 1, 2, 3, 4, 5, 0, 6, 7, 8]);
    }

    #[test]
    fn periodic_is_drift_free_and_skips_missed_periods() {
        let mut q = TimerQueue::<u32, 4>::new();
        let h = q.insert_periodic(100, 100, 9).unwrap();
        // Fired 30 late: the next deadline stays on the grid (200), not 130 + 100.
        let f = q.pop_due(130).unwrap();
        assert_eq!((f.event, f.deadline, f.missed, f.handle), (9, 100, 0, h));
        assert_eq!(q.deadline(h), Ok(200));
        // Fired 250 late: 300 and 400 are skipped, next is 500.
        let f = q.pop_due(450).unwrap();
        assert_eq!((f.deadline, f.missed), (200, 2));
        assert_eq!(q.deadline(h), Ok(500));
        assert_eq!(q.cancel(h), Ok(9));
        assert!(q.is_empty());
    }

    #[test]
    fn the_scan_and_the_tournament_agree() {
        // The 32-bit targets use the scan for every family; the host tests run the tournament.
        let mut x: u64 = 7;
        let mut rnd = move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            x >> 40
        };
        for _ in 0..2_000 {
            let heap: std::vec::Vec<Entry> = (0..9)
                .map(|i| Entry {
                    deadline: rnd() % 4,
                    seq: rnd() % 4,
                    slot: i,
                })
                .collect();
            for first in 0..heap.len() {
                if let Some(four) = earliest_of_four(&heap, first) {
                    let scan = earliest_scan(&heap, first).unwrap();
                    assert_eq!(four.0, scan);
                }
            }
        }
    }

    #[test]
    fn periods_in_divides() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let edges = [
            1,
            2,
            3,
            7,
            u64::from(u32::MAX),
            u64::MAX / 2,
            u64::MAX - 1,
            u64::MAX,
        ];
        for &d in &edges {
            for &n in &edges {
                assert_eq!(periods_in(n, d), n / d, "{n} / {d}");
            }
        }
        for _ in 0..10_000 {
            let (n, d) = (rnd(), rnd() >> (rnd() % 64));
            let d = d.max(1);
            assert_eq!(periods_in(n, d), n / d, "{n} / {d}");
            let m = n >> (rnd() % 64);
            assert_eq!(periods_in(m, d), m / d, "{m} / {d}");
        }
    }

    #[test]
    fn clear_frees_everything() {
        let mut q = TimerQueue::<u32, 3>::new();
        let a = q.insert(1, 1).unwrap();
        q.insert(2, 2).unwrap();
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.get(a), Err(TimerError::Stale));
        for i in 0..3 {
            q.insert(i, 0).unwrap();
        }
        q.check_invariants();
    }

    #[test]
    fn random_operations_keep_the_heap_valid() {
        // A small deterministic LCG so the test needs no dependency.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let mut q = TimerQueue::<u32, 64>::new();
        let mut live = std::vec::Vec::new();
        for _ in 0..5000 {
            match rnd() % 4 {
                0 | 1 => {
                    if let Ok(h) = q.insert(rnd() % 1000, 0) {
                        live.push(h);
                    }
                }
                2 if !live.is_empty() => {
                    let h = live.swap_remove(rnd() as usize % live.len());
                    q.cancel(h).unwrap();
                }
                _ if !live.is_empty() => {
                    let h = live[rnd() as usize % live.len()];
                    q.reschedule(h, rnd() % 1000).unwrap();
                }
                _ => {}
            }
            q.check_invariants();
        }
    }
}

/// Tests that close gaps a mutation run found (issue 16; see TESTING.md): the small
/// predicates asserted both ways, the heap checker itself, and heap shapes deep enough for
/// every branch of the sift loops. Every loop is bounded, so a broken heap fails with a
/// message instead of hanging.
#[cfg(test)]
mod strength {
    use super::*;
    use std::vec::Vec as StdVec;

    /// Pops everything due at `now`, checking the heap after each pop; panics if the queue
    /// hands out more timers than it can hold.
    fn drain_bounded<const N: usize>(q: &mut TimerQueue<u32, N>, now: u64) -> StdVec<u32> {
        let mut out = StdVec::new();
        while let Some(f) = q.pop_due(now) {
            out.push(f.event);
            q.check_invariants();
            assert!(
                out.len() <= N,
                "pop_due returned more than {N} timers: {out:?}"
            );
        }
        out
    }

    #[test]
    fn predicates_hold_both_ways() {
        let mut q = TimerQueue::<u32, 2>::new();
        assert_eq!(q.capacity(), 2);
        assert!(q.is_empty() && !q.is_full());
        assert_eq!(q.len(), 0);
        let a = q.insert(5, 1).unwrap();
        assert!(!q.is_empty() && !q.is_full());
        assert_eq!(q.len(), 1);
        q.insert(6, 2).unwrap();
        assert!(!q.is_empty() && q.is_full());
        assert_eq!(q.len(), 2);
        q.cancel(a).unwrap();
        assert!(!q.is_full());
        assert_eq!(TimerQueue::<u8, 7>::default().capacity(), 7);
        assert_eq!(
            std::format!("{q:?}"),
            "TimerQueue { len: 1, capacity: 2, next_deadline: Some(6) }"
        );
    }

    #[test]
    fn peek_get_and_next_seq_report_the_earliest_timer() {
        let mut q = TimerQueue::<u32, 4>::new();
        assert_eq!((q.peek(), q.peek_deadline(), q.next_seq()), (None, None, 0));
        let a = q.insert(30, 1).unwrap();
        let b = q.insert(10, 2).unwrap();
        assert_eq!(q.peek(), Some((10, 1)));
        assert_eq!(q.peek_deadline(), Some(10));
        assert_eq!(q.next_seq(), 2);
        q.reschedule(a, 10).unwrap();
        assert_eq!(q.next_seq(), 3);
        assert_eq!(q.peek(), Some((10, 1)));
        assert_eq!((q.get(a), q.get(b)), (Ok(&1), Ok(&2)));
        assert_eq!(q.deadline(a), Ok(10));
        q.cancel(b).unwrap();
        assert_eq!(q.peek(), Some((10, 2)));
        assert_eq!(q.get(b), Err(TimerError::Stale));
        assert_eq!(q.deadline(b), Err(TimerError::Stale));
    }

    #[test]
    fn late_is_how_far_past_the_deadline_a_timer_was_taken() {
        let mut q = TimerQueue::<u32, 4>::new();
        q.insert(10, 1).unwrap();
        q.insert_periodic(20, 7, 2).unwrap();
        let f = q.pop_due(15).unwrap();
        assert_eq!((f.event, f.deadline, f.late, f.missed), (1, 10, 5, 0));
        assert_eq!(q.pop_due(15), None);
        let f = q.pop_due(36).unwrap();
        // 16 late: two periods of 7 missed, next at 20 + 3·7 = 41.
        assert_eq!((f.event, f.deadline, f.late, f.missed), (2, 20, 16, 2));
        assert_eq!(q.peek_deadline(), Some(41));
        // Exactly at the deadline: not late at all.
        let f = q.pop_due(41).unwrap();
        assert_eq!((f.late, f.missed), (0, 0));
        assert_eq!(q.peek_deadline(), Some(48));
    }

    #[test]
    fn the_heap_checker_notices_a_broken_heap() {
        let mut q = TimerQueue::<u32, 8>::new();
        for d in [10, 20, 30, 40, 50] {
            q.insert(d, 0).unwrap();
        }
        q.check_invariants();
        let broken = |q: TimerQueue<u32, 8>| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| q.check_invariants())).is_err()
        };
        // A child earlier than its parent.
        let mut order = TimerQueue::<u32, 8>::new();
        for d in [10, 20, 30] {
            order.insert(d, 0).unwrap();
        }
        order.heap[2].deadline = 5;
        assert!(broken(order), "heap order");
        // A position that points elsewhere.
        let mut link = TimerQueue::<u32, 8>::new();
        for d in [10, 20] {
            link.insert(d, 0).unwrap();
        }
        link.positions[1] = 0;
        assert!(broken(link), "back-link");
        // A queued slot without its event.
        let mut empty = TimerQueue::<u32, 8>::new();
        empty.insert(10, 0).unwrap();
        empty.slots[0].event = None;
        assert!(broken(empty), "event");
        // A slot marked queued that the heap does not hold.
        let mut stray = TimerQueue::<u32, 8>::new();
        stray.insert(10, 0).unwrap();
        stray.positions[3] = 0;
        assert!(broken(stray), "stray slot");
    }

    #[test]
    fn a_deep_heap_pops_in_order_whatever_the_insert_order() {
        // 40 timers: three levels of a 4-ary heap, with full and partial sibling groups.
        // Deadlines in a scrambled order (17 is coprime to 40), some equal.
        let mut q = TimerQueue::<u32, 40>::new();
        let mut handles = StdVec::new();
        for i in 0..40u32 {
            let deadline = u64::from((i * 17) % 40 / 2);
            handles.push(q.insert(deadline, i).unwrap());
            q.check_invariants();
        }
        assert!(q.is_full());
        // Move a few from the bottom to the top and back.
        q.reschedule(handles[39], 0).unwrap();
        q.reschedule(handles[0], 100).unwrap();
        q.reschedule(handles[20], 7).unwrap();
        q.check_invariants();
        // Cancel from the middle of the heap.
        for &i in &[5usize, 13, 27] {
            q.cancel(handles[i]).unwrap();
            q.check_invariants();
        }
        let mut got = StdVec::new();
        while let Some(f) = q.pop_due(u64::MAX) {
            got.push((f.deadline, f.event));
            q.check_invariants();
            assert!(got.len() <= 40, "more timers out than in");
        }
        let mut want: StdVec<(u64, u32)> = (0..40u32)
            .filter(|i| ![5, 13, 27].contains(i))
            .map(|i| {
                let d = match i {
                    39 => 0,
                    0 => 100,
                    20 => 7,
                    _ => u64::from((i * 17) % 40 / 2),
                };
                (d, i)
            })
            .collect();
        // Equal deadlines leave in scheduling order: rescheduled ones count as scheduled last.
        want.sort_by_key(|&(d, i)| (d, [39, 0, 20].contains(&i), i));
        let mut sorted = got.clone();
        sorted.sort_by_key(|&(d, _)| d);
        assert_eq!(got, sorted, "not in deadline order");
        assert_eq!(got.len(), want.len());
        // Same order as scheduling among equal deadlines: compare with the (deadline,
        // scheduling order) ranking.
        assert_eq!(got, want);
    }

    #[test]
    fn timer_errors_name_what_went_wrong() {
        assert_eq!(
            std::format!("{}", TimerError::Stale),
            "stale timer handle: the timer fired or was cancelled"
        );
        assert_eq!(
            std::format!("{}", TimerError::BeyondHorizon),
            "deadline at or beyond the clock's horizon of half its wrap period"
        );
    }

    #[test]
    fn drain_is_bounded_and_empties_the_queue() {
        let mut q = TimerQueue::<u32, 16>::new();
        for i in 0..16 {
            q.insert(u64::from(i % 5), i).unwrap();
        }
        let out = drain_bounded(&mut q, 2);
        assert_eq!(out.len(), 10); // deadlines 0, 1 and 2: i % 5 < 3
        assert_eq!(drain_bounded(&mut q, 10).len(), 6);
        assert!(q.is_empty());
    }

    #[test]
    fn clear_empties_a_deep_heap_and_every_slot_is_reusable() {
        let mut q = TimerQueue::<u32, 24>::new();
        let first: StdVec<_> = (0..24)
            .map(|i| q.insert(100 - i, i as u32).unwrap())
            .collect();
        q.clear();
        assert!(q.is_empty());
        q.check_invariants();
        for h in first {
            assert_eq!(q.deadline(h), Err(TimerError::Stale));
        }
        for i in 0..24 {
            q.insert(i, 0).unwrap();
        }
        assert!(q.is_full());
        assert_eq!(drain_bounded(&mut q, u64::MAX).len(), 24);
    }
}
