//! The event queue against its reference model: random operation sequences, run on both, must
//! give the same results step by step (see `support/model.rs`; the fuzz target
//! `fuzz/fuzz_targets/queue_ordering.rs` runs the same comparison for longer).

mod support;

use proptest::prelude::*;

use support::model::{self, Op};

/// A tick amount, shaped so zero, tiny, horizon-edge and "just in the past" values are common.
fn ticks() -> impl Strategy<Value = u32> {
    (any::<u8>(), any::<u32>()).prop_map(|(kind, value)| model::ticks_from(kind, value))
}

fn op() -> impl Strategy<Value = Op> {
    let timer = 0..8u16;
    prop_oneof![
        4 => Just(Op::Schedule),
        2 => Just(Op::ScheduleNext),
        2 => ticks().prop_map(|offset| Op::ScheduleAt { offset }),
        3 => ticks().prop_map(|delay| Op::ScheduleAfter { delay }),
        1 => ticks().prop_map(|period| Op::ScheduleEvery { period }),
        2 => timer.clone().prop_map(|timer| Op::Cancel { timer }),
        1 => (timer.clone(), ticks()).prop_map(|(timer, offset)| Op::Reschedule { timer, offset }),
        1 => (timer, ticks()).prop_map(|(timer, delay)| Op::RescheduleAfter { timer, delay }),
        3 => ticks().prop_map(|ticks| Op::AdvanceClock { ticks }),
        1 => Just(Op::Observe),
        8 => Just(Op::Next),
    ]
}

fn start() -> impl Strategy<Value = u32> {
    (any::<u8>(), any::<u32>()).prop_map(|(kind, value)| model::start_from(kind, value))
}

/// With the `invariants` feature, also checks the timed queue's heap after every step.
struct Invariants;

impl model::Check for Invariants {
    fn check<K: model::Tick, const S: usize, const T: usize>(
        &mut self,
        _queue: &model::Queue<K, S, T>,
    ) {
        #[cfg(feature = "invariants")]
        _queue.check_invariants();
    }
}

proptest! {
    #[test]
    fn queue_matches_model(
        capacity in any::<u8>(),
        start in start(),
        ops in proptest::collection::vec(op(), 0..150),
    ) {
        model::run(capacity, start, &ops, &mut Invariants);
    }
}
