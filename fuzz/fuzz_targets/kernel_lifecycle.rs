//! The kernel against its reference model and its documented lifecycle and order rules, on
//! operation sequences decoded from the fuzzer's bytes: host and handler-side scheduling,
//! cancels, stop / terminate / reload / dump requests (posted and direct, the third stop
//! included), inbox posts, clock moves near the `u32` wrap, steps and `run_until_idle`. The
//! model, the audit of the rules and the interpreter are the ones the property test
//! `core/tests/kernel_model.rs` uses (one file, two drivers); here the timed queue's heap
//! invariants are also checked after every operation.

#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../../core/tests/support/kernel_model.rs"]
mod kernel_model;

use kernel_model::{Action, Config, Op, Spec, TestQueue};
use zendaemon_core::Request;

/// Longer runs mostly step an ended loop; this keeps each input fast.
const MAX_OPS: usize = 200;

/// A tick amount, shaped so zero, tiny, stop-timeout-sized, horizon-edge and "almost a whole
/// wrap" values are common.
fn ticks(u: &mut Unstructured<'_>) -> Result<u32> {
    Ok(kernel_model::ticks_from(u.arbitrary()?, u.arbitrary()?))
}

fn action(u: &mut Unstructured<'_>) -> Result<Action> {
    Ok(match u.int_in_range(0..=14u8)? {
        0..=3 => Action::None,
        4..=5 => Action::Schedule,
        6 => Action::ScheduleNext,
        7..=8 => Action::ScheduleAfter(ticks(u)?),
        9 => Action::ScheduleEvery(ticks(u)?),
        10 => Action::Cancel(u.int_in_range(0..=3)?),
        11 => Action::Reschedule(
            u.int_in_range(0..=3)?,
            kernel_model::handler_reschedule_ticks(ticks(u)?),
        ),
        12 => Action::RescheduleAfter(
            u.int_in_range(0..=3)?,
            kernel_model::handler_reschedule_ticks(ticks(u)?),
        ),
        13 => Action::RequestStop,
        _ => Action::RequestCheckpoint,
    })
}

fn spec(u: &mut Unstructured<'_>) -> Result<Spec> {
    Ok(Spec {
        kind: u.int_in_range(0..=3)?,
        gate: u.ratio(1, 4)?,
        actor: u.int_in_range(0..=2)?,
        action: action(u)?,
        hops: u.int_in_range(0..=3)?,
    })
}

fn request(u: &mut Unstructured<'_>) -> Result<Request> {
    Ok(match u.int_in_range(0..=8u8)? {
        0..=1 => Request::Stop,
        2 => Request::Terminate,
        3..=4 => Request::Reload,
        5 => Request::SaveRunlog,
        6 => Request::Checkpoint,
        _ => Request::SaveState,
    })
}

/// How often a request is made in a row: mostly once, sometimes three times (the third stop).
fn times(u: &mut Unstructured<'_>) -> Result<u8> {
    Ok(match u.int_in_range(0..=7u8)? {
        0..=5 => 1,
        6 => 2,
        _ => 3,
    })
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        // Weighted choice: steps and scheduling are the bulk of a kernel's life.
        Ok(match u.int_in_range(0..=32u8)? {
            0..=3 => Op::Schedule(spec(u)?),
            4..=5 => Op::ScheduleNext(spec(u)?),
            6..=8 => Op::ScheduleAfter {
                delay: ticks(u)?,
                spec: spec(u)?,
            },
            9 => Op::ScheduleEvery {
                period: ticks(u)?,
                spec: spec(u)?,
            },
            10..=11 => Op::Cancel {
                timer: u.int_in_range(0..=5)?,
            },
            12..=13 => Op::PostEvent(spec(u)?),
            14 => Op::Post {
                request: request(u)?,
                times: times(u)?,
            },
            15 => Op::Ask {
                request: request(u)?,
                times: times(u)?,
            },
            16..=18 => Op::Advance { ticks: ticks(u)? },
            19 => Op::Sleep,
            20 => Op::Observe,
            21 => Op::Start,
            22..=23 => Op::RunUntilIdle,
            24..=25 => Op::Run {
                limit: u.int_in_range(1..=4)?,
            },
            26 => Op::SetPeriod {
                which: u.int_in_range(0..=2)?,
                period: if u.ratio(1, 3)? {
                    None
                } else {
                    Some(u.int_in_range(0..=3_000)?)
                },
            },
            _ => Op::Step,
        })
    }
}

#[derive(Debug)]
struct Input {
    config: Config,
    ops: Vec<Op>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let interval = |u: &mut Unstructured<'a>| -> Result<Option<u32>> {
            Ok(if u.ratio(1, 4)? {
                Some(u.int_in_range(1..=3_000)?)
            } else {
                None
            })
        };
        let config = Config {
            capacity: u.arbitrary()?,
            start: kernel_model::start_from(u.arbitrary()?, u.arbitrary()?),
            stop_timeout: kernel_model::stop_timeout_from(u.arbitrary()?, u.arbitrary()?),
            stats_interval: interval(u)?,
            runlog_interval: interval(u)?,
            checkpoint_interval: interval(u)?,
            max_stop_requests: kernel_model::max_stops_from(u.arbitrary()?),
            start_after: if u.ratio(3, 4)? { 0 } else { u.arbitrary()? },
            keepalive: u.ratio(3, 4)?,
        };
        Ok(Self {
            config,
            ops: u.arbitrary()?,
        })
    }
}

struct Invariants;

impl kernel_model::Check for Invariants {
    fn check<K: kernel_model::Tick, const S: usize, const T: usize>(
        &mut self,
        queue: &TestQueue<K, S, T>,
    ) {
        queue.check_invariants();
    }
}

fuzz_target!(|input: Input| {
    let ops = &input.ops[..input.ops.len().min(MAX_OPS)];
    kernel_model::run(&input.config, ops, &mut Invariants);
});
