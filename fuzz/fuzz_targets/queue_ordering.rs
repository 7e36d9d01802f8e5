//! The event queue against its reference model, on operation sequences decoded from the
//! fuzzer's bytes. The model and the interpreter are the ones the property test
//! `core/tests/queue_model.rs` uses (one model, two drivers); here the timed queue's heap
//! invariants are also checked after every step.

#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../../core/tests/support/model.rs"]
mod model;

use model::{Op, Queue};

/// Longer runs add little but cost quadratic time (every step compares all handles).
const MAX_OPS: usize = 256;

/// A tick amount, shaped so zero, tiny, horizon-edge and "just in the past" values are common.
fn ticks(u: &mut Unstructured<'_>) -> Result<u32> {
    Ok(model::ticks_from(u.arbitrary()?, u.arbitrary()?))
}

fn timer(u: &mut Unstructured<'_>) -> Result<u16> {
    // Mostly recent handles (live timers), sometimes old ones (often stale).
    Ok(if u.ratio(3, 4)? {
        u.int_in_range(0..=3)?
    } else {
        u.arbitrary()?
    })
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        // Weighted choice: `next` and scheduling are the bulk of a real queue's life.
        Ok(match u.int_in_range(0..=27u8)? {
            0..=3 => Op::Schedule,
            4..=5 => Op::ScheduleNext,
            6..=7 => Op::ScheduleAt { offset: ticks(u)? },
            8..=10 => Op::ScheduleAfter { delay: ticks(u)? },
            11 => Op::ScheduleEvery { period: ticks(u)? },
            12..=13 => Op::Cancel { timer: timer(u)? },
            14 => Op::Reschedule {
                timer: timer(u)?,
                offset: ticks(u)?,
            },
            15 => Op::RescheduleAfter {
                timer: timer(u)?,
                delay: ticks(u)?,
            },
            16..=18 => Op::AdvanceClock { ticks: ticks(u)? },
            19 => Op::Observe,
            _ => Op::Next,
        })
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    capacity: u8,
    start_kind: u8,
    start: u32,
    ops: Vec<Op>,
}

struct Invariants;

impl model::Check for Invariants {
    fn check<K: model::Tick, const S: usize, const T: usize>(&mut self, queue: &Queue<K, S, T>) {
        queue.check_invariants();
    }
}

fuzz_target!(|input: Input| {
    let start = model::start_from(input.start_kind, input.start);
    let ops = &input.ops[..input.ops.len().min(MAX_OPS)];
    model::run(input.capacity, start, ops, &mut Invariants);
});
