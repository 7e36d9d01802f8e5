//! What a dispatch through the kernel costs, side by side with the raw queue loop, in one run.
//!
//! `cargo bench -p zendaemon-core --bench kernel`; BENCHMARKS.md holds the results. Every
//! iteration schedules one user event and dispatches one (`Kernel::step`), so the reported time
//! is the steady-state cost per event:
//!
//! * `kernel schedule+step/1 handler` and `/3 handlers`: the whole kernel path (posting check,
//!   lifecycle flags, queue, routing table, pipeline with `dyn` calls, statistics).
//! * `heapless Deque push_back+pop_front + 1 call`: the floor: the same event moved through a
//!   bare deque and handed to one (non-inlined) handler.
//! * `pipeline floor`: what any pipeline dispatcher pays before it keeps a rule: the deque,
//!   a routing-table lookup by kind and one `dyn` call per handler; no timers, lifecycle,
//!   statistics or errors. The kernel's rules cost the difference between it and the kernel.
//! * `batch of 16`: the same three, with 16 events scheduled and then taken out together
//!   (`Kernel::run(now, 16)`, as a host that reads its clock once per batch does); the time is
//!   per batch, so divide by 16 for the time per event.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use embedded_time::duration::Milliseconds;
use heapless::Deque;
use zendaemon_core::{
    Component, Context, Event, Flow, Kernel, Kind, ManualClock, RouteError, Routes, Settings, Step,
    UserEvent,
};

#[derive(Debug, Clone, Copy)]
struct Ev(u32);

impl UserEvent for Ev {
    const KINDS: usize = 1;
    fn kind(&self) -> usize {
        0
    }
    fn kind_name(_: usize) -> &'static str {
        "ev"
    }
}

/// A handler that does the least work the optimizer cannot remove.
struct Sum(u64);

impl Component<Ev, ManualClock> for Sum {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::user(0))
    }
    fn handle(&mut self, _: &mut Context<'_, Ev, ManualClock>, event: &mut Event<Ev>) -> Flow {
        if let Event::User(Ev(n)) = event {
            self.0 = self.0.wrapping_add(u64::from(*n));
        }
        Flow::Continue
    }
}

/// The pipeline floor's handler trait: the event only, no context.
trait Handler {
    fn handle(&mut self, event: &mut Ev) -> Flow;
}

impl Handler for Sum {
    fn handle(&mut self, event: &mut Ev) -> Flow {
        self.0 = self.0.wrapping_add(u64::from(event.0));
        Flow::Continue
    }
}

/// A deque, a routing table and `dyn` handlers, nothing else.
struct Floor<'h> {
    queue: Deque<Ev, 64>,
    routes: [heapless::Vec<u8, 3>; 8],
    handlers: heapless::Vec<&'h mut dyn Handler, 3>,
}

impl Floor<'_> {
    #[inline(never)]
    fn step(&mut self) -> Option<u8> {
        let mut event = self.queue.pop_front()?;
        // Every event here is of kind 0 (the comparison keeps the index a runtime value).
        let kind = usize::from(event.0 == u32::MAX);
        let route = self.routes.get(kind)?;
        let mut ran = 0;
        for &index in route {
            ran += 1;
            if self.handlers[usize::from(index)].handle(&mut event) == Flow::Stop {
                break;
            }
        }
        Some(ran)
    }
}

#[inline(never)]
fn handle_raw(sum: &mut Sum, n: u32) {
    sum.0 = sum.0.wrapping_add(u64::from(n));
}

type BenchKernel<'c> = Kernel<'c, Ev, ManualClock, 3, { zendaemon_core::kinds::<Ev>() }, 3, 64, 4>;

/// Events per batch in the `batch of 16` benchmarks.
const BATCH: u32 = 16;

fn kernel_loop(group: &mut BenchmarkGroup<'_, WallTime>, handlers: usize, batched: bool) {
    let clock = ManualClock::new();
    let mut sums = [Sum(0), Sum(0), Sum(0)];
    let mut kernel = BenchKernel::new(Settings::default());
    for sum in sums.iter_mut().take(handlers) {
        kernel.add(sum).unwrap();
    }
    kernel.start(clock.now()).unwrap();
    // A far timer keeps the loop from ending between iterations; a small backlog keeps the
    // sequential queue from running empty.
    kernel
        .queue()
        .schedule_after(Milliseconds(3_600_000u32), Ev(0))
        .unwrap();
    for i in 0..8 {
        kernel.queue().schedule(Ev(i)).unwrap();
    }
    let now = clock.now();
    assert!(matches!(
        kernel.step(now),
        Ok(Step::Dispatched {
            kind: Kind::START,
            ..
        })
    ));
    let plural = if handlers == 1 { "" } else { "s" };
    let mut i = 0u32;
    if batched {
        let batch = NonZeroU32::new(BATCH).unwrap();
        let name = format!("batch of 16/kernel schedule+run/{handlers} handler{plural}");
        group.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    i = i.wrapping_add(1);
                    let _ = kernel.queue().schedule(Ev(black_box(i)));
                }
                black_box(kernel.run(black_box(now), batch))
            })
        });
    } else {
        let name = format!("kernel schedule+step/{handlers} handler{plural}");
        group.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let _ = kernel.queue().schedule(Ev(black_box(i)));
                black_box(kernel.step(black_box(now)))
            })
        });
    }
    drop(kernel);
    black_box(sums[0].0);
}

fn dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch");
    group.bench_function("heapless Deque push_back+pop_front + 1 call", |b| {
        let mut q = Deque::<Ev, 64>::new();
        for i in 0..8 {
            q.push_back(Ev(i)).unwrap();
        }
        let mut sum = Sum(0);
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            let _ = q.push_back(Ev(black_box(i)));
            if let Some(Ev(n)) = q.pop_front() {
                handle_raw(&mut sum, n);
            }
        });
        black_box(sum.0);
    });
    group.bench_function("pipeline floor: Deque + routing table + 1 dyn call", |b| {
        let mut sum = Sum(0);
        let mut floor = Floor {
            queue: Deque::new(),
            routes: Default::default(),
            handlers: heapless::Vec::new(),
        };
        floor.routes[0].push(0).unwrap();
        let _ = floor.handlers.push(&mut sum);
        for i in 0..8 {
            floor.queue.push_back(Ev(i)).unwrap();
        }
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            let _ = floor.queue.push_back(Ev(black_box(i)));
            black_box(floor.step())
        });
    });
    kernel_loop(&mut group, 1, false);
    kernel_loop(&mut group, 3, false);
    group.bench_function(
        "batch of 16/heapless Deque push_back+pop_front + 1 call",
        |b| {
            let mut q = Deque::<Ev, 64>::new();
            for i in 0..8 {
                q.push_back(Ev(i)).unwrap();
            }
            let mut sum = Sum(0);
            let mut i = 0u32;
            b.iter(|| {
                for _ in 0..BATCH {
                    i = i.wrapping_add(1);
                    let _ = q.push_back(Ev(black_box(i)));
                }
                for _ in 0..BATCH {
                    if let Some(Ev(n)) = q.pop_front() {
                        handle_raw(&mut sum, n);
                    }
                }
            });
            black_box(sum.0);
        },
    );
    kernel_loop(&mut group, 1, true);
    kernel_loop(&mut group, 3, true);
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = dispatch
}
criterion_main!(benches);
