//! The event queue at work, driven by a hand-advanced clock.
//!
//! Run with `cargo run -p zendaemon-core --example queues`. It schedules sequential, timed and
//! periodic events, cancels one timer, and then plays the host's loop: ask `next(now)`, handle
//! what comes out, and when the answer is "wait until T", move the clock to T (a real host
//! would sleep until then).

use embedded_time::duration::Milliseconds;
use zendaemon_core::{EventQueue, ManualClock, Next};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Hello,
    Urgent,
    World,
    Reminder(&'static str),
    Tick,
}

/// 8 sequential and 8 timed events at most; the clock counts milliseconds in a `u32`.
type Queue = EventQueue<Event, ManualClock<u32>, 8, 8>;

fn main() {
    let clock = ManualClock::<u32>::new();
    let mut queue = Queue::new();
    queue.advance(clock.now());

    // Sequential events: `schedule` appends, `schedule_next` jumps the line.
    queue.schedule(Event::Hello).unwrap();
    queue.schedule(Event::World).unwrap();
    queue.schedule_next(Event::Urgent).unwrap();

    // Timed events. Equal deadlines leave in the order they were scheduled.
    queue
        .schedule_after(Milliseconds(250u32), Event::Reminder("tea"))
        .unwrap();
    queue
        .schedule_after(Milliseconds(250u32), Event::Reminder("biscuits"))
        .unwrap();
    let cancelled = queue
        .schedule_after(Milliseconds(300u32), Event::Reminder("never shown"))
        .unwrap();
    let at = clock.now() + Milliseconds(420u32);
    queue.schedule_at(at, Event::Reminder("at 420 ms")).unwrap();

    // A periodic event, drift-free: deadlines at 100, 200, 300, ... ms.
    let tick = queue
        .schedule_every(Milliseconds(100u32), Event::Tick)
        .unwrap();

    // Timers can be cancelled by handle; the event comes back.
    let event = queue.cancel(cancelled).unwrap();
    println!(
        "cancelled {event:?}; a second cancel says: {:?}",
        queue.cancel(cancelled).unwrap_err()
    );
    println!(
        "pending: {} sequential, {} timed; next deadline at {} ms",
        queue.sequential_len(),
        queue.timed_len(),
        ms(queue.when().unwrap()),
    );
    println!();

    // The host loop.
    let mut ticks = 0;
    loop {
        let now = clock.now();
        match queue.next(now) {
            Next::Sequential(event) => println!("{:>4} ms  sequential  {event:?}", ms(now)),
            Next::Timed(fired) => {
                println!(
                    "{:>4} ms  timed       {:?} (deadline {} ms)",
                    ms(now),
                    fired.event,
                    fired.deadline
                );
                if fired.event == Event::Tick {
                    ticks += 1;
                    if ticks == 5 {
                        queue.cancel(tick).unwrap();
                        println!("          (cancelled the periodic tick after 5 firings)");
                    }
                }
            }
            Next::Wait(until) => {
                println!("{:>4} ms  wait until  {} ms", ms(now), ms(until));
                clock.advance_ticks(ms(until) - ms(now));
            }
            Next::Empty => {
                println!("{:>4} ms  empty", ms(now));
                break;
            }
        }
    }

    let stats = queue.stats();
    println!();
    println!(
        "high-water marks: {} sequential, {} timed; rejected: {}",
        stats.sequential_high_water, stats.timed_high_water, stats.rejected
    );
}

/// Milliseconds since the clock's epoch.
fn ms(instant: embedded_time::Instant<ManualClock<u32>>) -> u32 {
    let since: Milliseconds<u32> = instant.duration_since_epoch().try_into().unwrap();
    since.0
}
