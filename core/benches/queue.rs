//! What the queues cost, side by side with the obvious alternatives, in one run.
//!
//! `cargo bench -p zendaemon-core --bench queue`; BENCHMARKS.md holds the results. Every
//! benchmark iteration is one *operation pair* (64 for the sequential ones) that leaves the
//! queue as large as it found it, so the reported time is the steady-state cost per pair:
//!
//! * `sequential`: append one event and take one out (64 such pairs per iteration; the report
//!   shows the time per iteration and the pairs per second). `EventQueue::schedule` + `next(now)`
//!   against a bare `heapless::Deque`, a `std::collections::VecDeque`, and a std
//!   `BinaryHeap` + `VecDeque` event queue with the same `next` rule.
//! * `timed insert+pop/<n>`: with `n` timers pending, insert one with a pseudo-random deadline
//!   and pop the earliest (the classic "hold" model: simulated time jumps to each popped
//!   deadline). `TimerQueue` and `EventQueue` against `std::collections::BinaryHeap` of
//!   `Reverse<(deadline, seq, event)>` and against the std `BinaryHeap` + `VecDeque` queue.
//! * `cancel+insert/<n>`: with `n` timers pending, cancel a random live one and insert a
//!   replacement (random keys: on average the heap barely moves), and the worst case, where the
//!   cancelled timer is always the earliest and its replacement earlier still, so both sifts
//!   run the heap's full depth. std's `BinaryHeap` cannot remove a given element except by
//!   `retain` (O(n)), so the baselines are `BTreeMap<(deadline, seq), event>` remove + insert
//!   (O(log n)) and `BinaryHeap::retain` + `push` (O(n)).
//!
//! Pseudo-random numbers come from a fixed-seed xorshift, so every run sees the same inputs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use embedded_time::Instant;
use heapless::Deque;
use zendaemon_core::{EventQueue, ManualClock, Next, TimerHandle, TimerQueue};

/// Pending-timer counts for the timed and cancel benchmarks.
const SIZES: [usize; 3] = [16, 1024, 4096];
/// Deadlines are drawn from `now + 1 ..= now + SPREAD` ticks.
const SPREAD: u64 = 1 << 20;
/// Events the sequential queues hold while the benchmark runs (so none of them runs empty).
const SEQ_BACKLOG: u32 = 8;
/// Schedule + next pairs per iteration of the sequential benchmarks.
const SEQ_BATCH: u64 = 64;

type Clock = ManualClock<u32>;

/// xorshift64*: fast, deterministic, good enough to scatter deadlines.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        Self(0x9E37_79B9_7F4A_7C15)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn delay(&mut self) -> u64 {
        1 + self.next() % SPREAD
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The combined queue written with std collections: the baseline for `EventQueue`.
/// Same rule as `EventQueue::next`: a due timer first, then the sequential front.
#[derive(Default)]
struct StdEventQueue {
    sequential: VecDeque<u32>,
    timers: BinaryHeap<Reverse<(u64, u64, u32)>>,
    next_seq: u64,
}

enum StdNext {
    Timed(u32),
    Sequential(u32),
    Wait(u64),
    Empty,
}

impl StdEventQueue {
    fn schedule(&mut self, event: u32) {
        self.sequential.push_back(event);
    }

    fn schedule_at(&mut self, deadline: u64, event: u32) {
        self.timers.push(Reverse((deadline, self.next_seq, event)));
        self.next_seq += 1;
    }

    fn next(&mut self, now: u64) -> StdNext {
        if let Some(Reverse((deadline, _, _))) = self.timers.peek() {
            if *deadline <= now {
                let Reverse((_, _, event)) = self.timers.pop().unwrap();
                return StdNext::Timed(event);
            }
        }
        if let Some(event) = self.sequential.pop_front() {
            return StdNext::Sequential(event);
        }
        match self.timers.peek() {
            Some(Reverse((deadline, _, _))) => StdNext::Wait(*deadline),
            None => StdNext::Empty,
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((d, _, _))| *d)
    }
}

fn instant(ticks: u64) -> Instant<Clock> {
    Instant::new(ticks as u32)
}

fn sequential(c: &mut Criterion) {
    let mut group = c.benchmark_group("sequential");
    // Single pairs take a few nanoseconds, where the harness's own loop and the placement of
    // the queue's fields decide too much; a batch of pairs per iteration evens that out.
    // `black_box(&mut q)` lets each queue escape, so that, as in a real program, its fields
    // live in memory rather than in registers across the batch.
    group.throughput(Throughput::Elements(SEQ_BATCH));

    group.bench_function("EventQueue schedule+next", |b| {
        let mut q = EventQueue::<u32, Clock, 64, 1>::new();
        for i in 0..SEQ_BACKLOG {
            q.schedule(i).unwrap();
        }
        black_box(&mut q);
        let now = instant(0);
        let mut i = 0u32;
        b.iter(|| {
            for _ in 0..SEQ_BATCH {
                i = i.wrapping_add(1);
                let _ = q.schedule(black_box(i));
                match q.next(black_box(now)) {
                    Next::Sequential(e) => black_box(e),
                    _ => unreachable!(),
                };
            }
        });
    });

    group.bench_function("heapless Deque push_back+pop_front", |b| {
        let mut q = Deque::<u32, 64>::new();
        for i in 0..SEQ_BACKLOG {
            q.push_back(i).unwrap();
        }
        black_box(&mut q);
        let mut i = 0u32;
        b.iter(|| {
            for _ in 0..SEQ_BATCH {
                i = i.wrapping_add(1);
                let _ = q.push_back(black_box(i));
                black_box(q.pop_front());
            }
        });
    });

    group.bench_function("std VecDeque push_back+pop_front", |b| {
        let mut q = VecDeque::<u32>::with_capacity(64);
        for i in 0..SEQ_BACKLOG {
            q.push_back(i);
        }
        black_box(&mut q);
        let mut i = 0u32;
        b.iter(|| {
            for _ in 0..SEQ_BATCH {
                i = i.wrapping_add(1);
                q.push_back(black_box(i));
                black_box(q.pop_front());
            }
        });
    });

    group.bench_function("std BinaryHeap+VecDeque schedule+next", |b| {
        let mut q = StdEventQueue::default();
        q.sequential.reserve(64);
        for i in 0..SEQ_BACKLOG {
            q.schedule(i);
        }
        black_box(&mut q);
        let mut i = 0u32;
        b.iter(|| {
            for _ in 0..SEQ_BATCH {
                i = i.wrapping_add(1);
                q.schedule(black_box(i));
                match q.next(black_box(0)) {
                    StdNext::Sequential(e) => black_box(e),
                    StdNext::Wait(at) => unreachable!("nothing due before {at}"),
                    _ => unreachable!(),
                };
            }
        });
    });

    group.finish();
}

/// `TimerQueue`, hold model at `n` pending; `CAP` is `n + 1` (room for the insert).
fn hold_timer_queue<const CAP: usize>(c: &mut criterion::BenchmarkGroup<'_, WallTime>, n: usize) {
    assert_eq!(CAP, n + 1);
    c.bench_with_input(
        BenchmarkId::new("TimerQueue insert+pop_due", n),
        &n,
        |b, &n| {
            let mut rng = Rng::new();
            let mut q = TimerQueue::<u32, CAP>::new();
            for i in 0..n {
                q.insert(rng.delay(), i as u32).unwrap();
            }
            let mut now = 0u64;
            b.iter(|| {
                let _ = q.insert(black_box(now + rng.delay()), 7);
                let fired = q.pop_due(u64::MAX).unwrap();
                now = fired.deadline;
                black_box(fired.event)
            });
        },
    );
}

/// `EventQueue` (timers only), hold model at `n` pending, through `schedule_at` + `next`.
fn hold_event_queue<const CAP: usize>(c: &mut criterion::BenchmarkGroup<'_, WallTime>, n: usize) {
    assert_eq!(CAP, n + 1);
    c.bench_with_input(
        BenchmarkId::new("EventQueue schedule_at+next", n),
        &n,
        |b, &n| {
            let mut rng = Rng::new();
            let mut q = EventQueue::<u32, Clock, 1, CAP>::new();
            for i in 0..n {
                q.schedule_at(instant(rng.delay()), i as u32).unwrap();
            }
            let mut now = 0u64;
            b.iter(|| {
                // A u32 tick clock: `now` wraps, and the queue's timeline follows it.
                let _ = q.schedule_at(black_box(instant(now + rng.delay())), 7);
                let due = q.when().unwrap();
                now = u64::from(due.duration_since_epoch().integer());
                match q.next(due) {
                    Next::Timed(fired) => black_box(fired.event),
                    _ => unreachable!(),
                }
            });
        },
    );
}

type WallTime = criterion::measurement::WallTime;

fn timed(c: &mut Criterion) {
    let mut group = c.benchmark_group("timed insert+pop");
    for &n in &SIZES {
        match n {
            16 => {
                hold_timer_queue::<17>(&mut group, n);
                hold_event_queue::<17>(&mut group, n);
            }
            1024 => {
                hold_timer_queue::<1025>(&mut group, n);
                hold_event_queue::<1025>(&mut group, n);
            }
            4096 => {
                hold_timer_queue::<4097>(&mut group, n);
                hold_event_queue::<4097>(&mut group, n);
            }
            _ => unreachable!("add a capacity for {n}"),
        }

        group.bench_with_input(
            BenchmarkId::new("std BinaryHeap push+pop", n),
            &n,
            |b, &n| {
                let mut rng = Rng::new();
                let mut heap = BinaryHeap::<Reverse<(u64, u64, u32)>>::with_capacity(n + 1);
                let mut seq = 0u64;
                for i in 0..n {
                    heap.push(Reverse((rng.delay(), seq, i as u32)));
                    seq += 1;
                }
                let mut now = 0u64;
                b.iter(|| {
                    heap.push(Reverse((black_box(now + rng.delay()), seq, 7)));
                    seq += 1;
                    let Reverse((deadline, _, event)) = heap.pop().unwrap();
                    now = deadline;
                    black_box(event)
                });
            },
        );

        group.bench_with_input(
            BenchmarkId::new("std BinaryHeap+VecDeque schedule_at+next", n),
            &n,
            |b, &n| {
                let mut rng = Rng::new();
                let mut q = StdEventQueue::default();
                q.timers.reserve(n + 1);
                for i in 0..n {
                    q.schedule_at(rng.delay(), i as u32);
                }
                let mut now = 0u64;
                b.iter(|| {
                    q.schedule_at(black_box(now + rng.delay()), 7);
                    now = q.next_deadline().unwrap();
                    match q.next(now) {
                        StdNext::Timed(e) => black_box(e),
                        _ => unreachable!(),
                    }
                });
            },
        );
    }
    group.finish();
}

/// `TimerQueue`: cancel a random live timer, insert a replacement; `CAP` is `n`.
fn cancel_timer_queue<const CAP: usize>(c: &mut criterion::BenchmarkGroup<'_, WallTime>, n: usize) {
    assert_eq!(CAP, n);
    c.bench_with_input(
        BenchmarkId::new("TimerQueue cancel+insert", n),
        &n,
        |b, &n| {
            let mut rng = Rng::new();
            let mut q = TimerQueue::<u32, CAP>::new();
            let mut handles: Vec<TimerHandle> = (0..n)
                .map(|i| q.insert(rng.delay(), i as u32).unwrap())
                .collect();
            b.iter(|| {
                let i = rng.below(n);
                let event = q.cancel(black_box(handles[i])).unwrap();
                handles[i] = q.insert(black_box(rng.delay()), event).unwrap();
            });
        },
    );
}

/// `TimerQueue`, worst case: the cancelled timer is always the earliest (the heap's root, so
/// the hole it leaves sinks the full depth) and its replacement is earlier than every other
/// (so it climbs the full depth back). `CAP` is `n`.
fn cancel_root_timer_queue<const CAP: usize>(
    c: &mut criterion::BenchmarkGroup<'_, WallTime>,
    n: usize,
) {
    assert_eq!(CAP, n);
    c.bench_with_input(
        BenchmarkId::new("TimerQueue cancel earliest+insert earlier (worst case)", n),
        &n,
        |b, &n| {
            let mut rng = Rng::new();
            let mut q = TimerQueue::<u32, CAP>::new();
            let base = 1u64 << 40;
            for i in 0..n - 1 {
                q.insert(base + rng.delay(), i as u32).unwrap();
            }
            let mut earliest = base;
            let mut root = q.insert(earliest, 0).unwrap();
            b.iter(|| {
                let event = q.cancel(black_box(root)).unwrap();
                earliest -= 1;
                root = q.insert(black_box(earliest), event).unwrap();
            });
        },
    );
}

fn cancel(c: &mut Criterion) {
    let mut group = c.benchmark_group("cancel+insert");
    for &n in &SIZES {
        match n {
            16 => {
                cancel_timer_queue::<16>(&mut group, n);
                cancel_root_timer_queue::<16>(&mut group, n);
            }
            1024 => {
                cancel_timer_queue::<1024>(&mut group, n);
                cancel_root_timer_queue::<1024>(&mut group, n);
            }
            4096 => {
                cancel_timer_queue::<4096>(&mut group, n);
                cancel_root_timer_queue::<4096>(&mut group, n);
            }
            _ => unreachable!("add a capacity for {n}"),
        }

        group.bench_with_input(
            BenchmarkId::new("std BTreeMap remove+insert", n),
            &n,
            |b, &n| {
                let mut rng = Rng::new();
                let mut map = BTreeMap::<(u64, u64), u32>::new();
                let mut seq = 0u64;
                let mut keys: Vec<(u64, u64)> = (0..n)
                    .map(|i| {
                        let key = (rng.delay(), seq);
                        seq += 1;
                        map.insert(key, i as u32);
                        key
                    })
                    .collect();
                b.iter(|| {
                    let i = rng.below(n);
                    let event = map.remove(black_box(&keys[i])).unwrap();
                    let key = (black_box(rng.delay()), seq);
                    seq += 1;
                    map.insert(key, event);
                    keys[i] = key;
                });
            },
        );

        group.bench_with_input(
            BenchmarkId::new("std BinaryHeap retain+push", n),
            &n,
            |b, &n| {
                let mut rng = Rng::new();
                let mut heap = BinaryHeap::<Reverse<(u64, u64, u32)>>::with_capacity(n);
                let mut seq = 0u64;
                let mut keys: Vec<(u64, u64)> = (0..n)
                    .map(|i| {
                        let key = (rng.delay(), seq);
                        seq += 1;
                        heap.push(Reverse((key.0, key.1, i as u32)));
                        key
                    })
                    .collect();
                b.iter(|| {
                    let i = rng.below(n);
                    let gone = black_box(keys[i]);
                    let mut event = 0;
                    heap.retain(|Reverse((d, s, e))| {
                        let keep = (*d, *s) != gone;
                        if !keep {
                            event = *e;
                        }
                        keep
                    });
                    let key = (black_box(rng.delay()), seq);
                    seq += 1;
                    heap.push(Reverse((key.0, key.1, event)));
                    keys[i] = key;
                });
            },
        );
    }
    group.finish();
}

fn config() -> Criterion {
    // 28 benchmarks at ~1 s warm-up + 3 s measurement (+ analysis) keep the suite near two
    // minutes on a 2-core machine. Command-line flags still override these.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = sequential, timed, cancel
}
criterion_main!(benches);
