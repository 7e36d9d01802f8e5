//! Runlog, statistics and state snapshots that serialize with serde (feature `serde`).
//!
//! The snapshots borrow the kernel and serialize straight from it: nothing is copied and
//! nothing allocated, so a firmware can write them with [`to_json`] into a buffer of its own,
//! and the std shell can hand the same values to `serde_json`.
//!
//! Key names follow pyzenkit's runlog where they mean the same thing: per counter `cnt`,
//! `inc`, `spd` and `pct`; components keyed by name (not by type, so two components of one
//! type no longer overwrite each other).
//!
//! Shapes:
//!
//! * [`Kernel::runlog`]: `{"events", "dispatched": {kind: n}, "unhandled", "rejected",
//!   "stop_requests", "inbox_deferred", "missed_periods", "high_water": {"sequential",
//!   "timed"}, "lateness": {"max_ticks", "histogram": [{"from_ticks", "count"}]}, "end",
//!   "components": {name: {key: count}}}`
//! * [`Kernel::statistics`]: `{name: {key: {"cnt", "inc", "spd", "pct"}}}`
//! * [`Kernel::state`]: `{"routes": {kind: [component names]}, "components": {name: {field:
//!   value}}, "runlog": …}`

use core::fmt;
use core::marker::PhantomData;

use embedded_time::{Clock, Instant};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::component::{Component, StateValue, StateVisitor};
use crate::event::{Kind, UserEvent, BUILTIN_KINDS};
use crate::kernel::{EndReason, Kernel};
use crate::queue::QueueStats;
use crate::stats::{CounterSet, Lateness, Rate, LATENESS_BUCKETS};
use crate::time::TickInt;

/// A snapshot did not fit into the caller's buffer. Nothing usable was written: a truncated
/// document is never returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall;

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("buffer too small for the JSON document")
    }
}

impl core::error::Error for BufferTooSmall {}

/// Writes `value` as JSON into `buf` and returns the length written.
///
/// # Errors
///
/// [`BufferTooSmall`] when the document does not fit; `buf` then holds no valid document.
pub fn to_json<T: Serialize + ?Sized>(value: &T, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
    serde_json_core::to_slice(value, buf).map_err(|_| BufferTooSmall)
}

/// What the views need to read from a kernel, without its capacities and component type in
/// their signatures: one implementation for `Kernel`, and every view is generic over the
/// event type and the clock only.
trait Inspect<U, C: Clock> {
    fn stats(&self) -> (&[u64], u64, u32, u64, &Lateness);
    fn queue_stats(&self) -> QueueStats;
    fn ended(&self) -> Option<EndReason>;
    fn component_count(&self) -> usize;
    fn component_name(&self, i: usize) -> &'static str;
    fn component_counters(&self, i: usize) -> Option<&dyn CounterSet>;
    fn component_state(&self, i: usize, out: &mut dyn StateVisitor);
    fn for_each_route(&self, kind: Kind, f: &mut dyn FnMut(&'static str));
    fn for_each_rate(&self, now: Instant<C>, f: &mut dyn FnMut(&'static str, &'static str, Rate));
}

impl<
        U,
        C,
        const M: usize,
        const K: usize,
        const H: usize,
        const S: usize,
        const T: usize,
        D: ?Sized + Component<U, C>,
    > Inspect<U, C> for Kernel<'_, U, C, M, K, H, S, T, D>
where
    U: UserEvent + Clone,
    C: Clock,
    C::T: TickInt,
{
    fn stats(&self) -> (&[u64], u64, u32, u64, &Lateness) {
        let s = Kernel::stats(self);
        (
            &s.dispatched,
            s.unhandled,
            s.stop_requests,
            s.inbox_deferred,
            &s.lateness,
        )
    }
    fn queue_stats(&self) -> QueueStats {
        Kernel::queue_stats(self)
    }
    fn ended(&self) -> Option<EndReason> {
        Kernel::ended(self)
    }
    fn component_count(&self) -> usize {
        self.components().count()
    }
    fn component_name(&self, i: usize) -> &'static str {
        self.components().nth(i).map_or("", |c| c.name())
    }
    fn component_counters(&self, i: usize) -> Option<&dyn CounterSet> {
        self.components().nth(i).and_then(|c| c.counters())
    }
    fn component_state(&self, i: usize, out: &mut dyn StateVisitor) {
        if let Some(c) = self.components().nth(i) {
            c.state(out);
        }
    }
    fn for_each_route(&self, kind: Kind, f: &mut dyn FnMut(&'static str)) {
        self.route(kind).for_each(f);
    }
    fn for_each_rate(&self, now: Instant<C>, f: &mut dyn FnMut(&'static str, &'static str, Rate)) {
        Kernel::for_each_rate(self, now, f);
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
        D: ?Sized + Component<U, C>,
    > Kernel<'c, U, C, M, K, H, S, T, D>
where
    U: UserEvent + Clone,
    C: Clock,
    C::T: TickInt,
{
    /// The kernel's figures and each component's raw counters (the runlog's `statistics`).
    pub fn runlog(&self) -> impl Serialize + '_ {
        RunlogView::<U, C>(self)
    }

    /// Each component's counters with rates since the previous
    /// [`rotate_statistics`](Kernel::rotate_statistics), at `now`.
    pub fn statistics(&self, now: Instant<C>) -> impl Serialize + '_ {
        StatisticsView::<U, C> { kernel: self, now }
    }

    /// Routes, each component's state, and the runlog (pyzenkit's state dump).
    pub fn state(&self) -> impl Serialize + '_ {
        StateView::<U, C>(self)
    }
}

/// Kinds that exist for the user's event type (the table may have spare room beyond them).
fn kinds<U: UserEvent>() -> impl Iterator<Item = Kind> {
    (0..BUILTIN_KINDS + U::KINDS).map(|i| {
        if i < BUILTIN_KINDS {
            [
                Kind::START,
                Kind::STOP,
                Kind::TERMINATE,
                Kind::RELOAD,
                Kind::SAVE_RUNLOG,
                Kind::SAVE_STATE,
                Kind::LOG_STATISTICS,
                Kind::CHECKPOINT,
            ][i]
        } else {
            Kind::user(i - BUILTIN_KINDS)
        }
    })
}

/// Keeps the first error of a serializer call made from a callback that cannot return one.
fn first_error<E>(slot: &mut Result<(), E>, result: Result<(), E>) {
    if slot.is_ok() {
        *slot = result;
    }
}

struct RunlogView<'k, U, C: Clock>(&'k dyn Inspect<U, C>);

impl<U: UserEvent, C: Clock> Serialize for RunlogView<'_, U, C> {
    fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
        let k = self.0;
        let (dispatched, unhandled, stop_requests, inbox_deferred, lateness) = k.stats();
        let queue = k.queue_stats();
        let total: u64 = dispatched.iter().sum();
        let mut map = ser.serialize_map(None)?;
        map.serialize_entry("events", &total)?;
        map.serialize_entry("dispatched", &Dispatched::<U>(dispatched, PhantomData))?;
        map.serialize_entry("unhandled", &unhandled)?;
        map.serialize_entry("rejected", &queue.rejected)?;
        map.serialize_entry("stop_requests", &stop_requests)?;
        map.serialize_entry("inbox_deferred", &inbox_deferred)?;
        map.serialize_entry("missed_periods", &queue.missed_periods)?;
        map.serialize_entry(
            "high_water",
            &HighWater {
                sequential: queue.sequential_high_water,
                timed: queue.timed_high_water,
            },
        )?;
        map.serialize_entry("lateness", &LatenessView(lateness))?;
        map.serialize_entry("end", &k.ended())?;
        map.serialize_entry("components", &ComponentCounts(k))?;
        map.end()
    }
}

struct Dispatched<'a, U>(&'a [u64], PhantomData<U>);

impl<U: UserEvent> Serialize for Dispatched<'_, U> {
    fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
        let mut map = ser.serialize_map(None)?;
        for kind in kinds::<U>() {
            map.serialize_entry(kind.name::<U>(), &self.0[kind.index()])?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct HighWater {
    sequential: u16,
    timed: u16,
}

struct LatenessView<'a>(&'a Lateness);

impl Serialize for LatenessView<'_> {
    fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
        #[derive(Serialize)]
        struct Bucket {
            from_ticks: u64,
            count: u32,
        }
        struct Histogram<'a>(&'a [u32; LATENESS_BUCKETS]);
        impl Serialize for Histogram<'_> {
            fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
                let mut seq = ser.serialize_seq(Some(LATENESS_BUCKETS))?;
                for (b, &count) in self.0.iter().enumerate() {
                    seq.serialize_element(&Bucket {
                        from_ticks: Lateness::bucket_floor(b),
                        count,
                    })?;
                }
                seq.end()
            }
        }
        let mut map = ser.serialize_map(Some(2))?;
        map.serialize_entry("max_ticks", &self.0.max_ticks)?;
        map.serialize_entry("histogram", &Histogram(&self.0.buckets))?;
        map.end()
    }
}

struct ComponentCounts<'k, U, C: Clock>(&'k dyn Inspect<U, C>);

impl<U, C: Clock> Serialize for ComponentCounts<'_, U, C> {
    fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
        struct Counts<'a>(&'a dyn CounterSet);
        impl Serialize for Counts<'_> {
            fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
                let mut map = ser.serialize_map(Some(self.0.len()))?;
                for i in 0..self.0.len() {
                    let (key, cnt, _) = self.0.entry(i);
                    map.serialize_entry(key, &cnt)?;
                }
                map.end()
            }
        }
        let mut map = ser.serialize_map(None)?;
        for i in 0..self.0.component_count() {
            if let Some(counters) = self.0.component_counters(i) {
                map.serialize_entry(self.0.component_name(i), &Counts(counters))?;
            }
        }
        map.end()
    }
}

struct StatisticsView<'k, U, C: Clock> {
    kernel: &'k dyn Inspect<U, C>,
    now: Instant<C>,
}

impl<U, C: Clock> Serialize for StatisticsView<'_, U, C> {
    fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
        struct RateView(Rate);
        impl Serialize for RateView {
            fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
                let mut map = ser.serialize_map(Some(4))?;
                map.serialize_entry("cnt", &self.0.cnt)?;
                map.serialize_entry("inc", &self.0.inc)?;
                map.serialize_entry("spd", &self.0.spd())?;
                map.serialize_entry("pct", &self.0.pct())?;
                map.end()
            }
        }
        struct Rates<'a, 'k, U, C: Clock> {
            view: &'a StatisticsView<'k, U, C>,
            component: &'static str,
        }
        impl<U, C: Clock> Serialize for Rates<'_, '_, U, C> {
            fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
                let mut map = ser.serialize_map(None)?;
                let mut result = Ok(());
                self.view
                    .kernel
                    .for_each_rate(self.view.now, &mut |component, key, rate| {
                        if component == self.component {
                            first_error(&mut result, map.serialize_entry(key, &RateView(rate)));
                        }
                    });
                result?;
                map.end()
            }
        }
        let mut map = ser.serialize_map(None)?;
        for i in 0..self.kernel.component_count() {
            if self.kernel.component_counters(i).is_some() {
                let component = self.kernel.component_name(i);
                map.serialize_entry(
                    component,
                    &Rates {
                        view: self,
                        component,
                    },
                )?;
            }
        }
        map.end()
    }
}

struct StateView<'k, U, C: Clock>(&'k dyn Inspect<U, C>);

impl<U: UserEvent, C: Clock> Serialize for StateView<'_, U, C> {
    fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
        let mut map = ser.serialize_map(Some(3))?;
        map.serialize_entry("routes", &RoutesView(self.0))?;
        map.serialize_entry("components", &ComponentStates(self.0))?;
        map.serialize_entry("runlog", &RunlogView(self.0))?;
        map.end()
    }
}

struct RoutesView<'k, U, C: Clock>(&'k dyn Inspect<U, C>);

impl<U: UserEvent, C: Clock> Serialize for RoutesView<'_, U, C> {
    fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
        struct Names<'k, U, C: Clock>(&'k dyn Inspect<U, C>, Kind);
        impl<U, C: Clock> Serialize for Names<'_, U, C> {
            fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
                let mut seq = ser.serialize_seq(None)?;
                let mut result = Ok(());
                self.0.for_each_route(self.1, &mut |name| {
                    first_error(&mut result, seq.serialize_element(name));
                });
                result?;
                seq.end()
            }
        }
        let mut map = ser.serialize_map(None)?;
        for kind in kinds::<U>() {
            map.serialize_entry(kind.name::<U>(), &Names(self.0, kind))?;
        }
        map.end()
    }
}

struct ComponentStates<'k, U, C: Clock>(&'k dyn Inspect<U, C>);

impl<U, C: Clock> Serialize for ComponentStates<'_, U, C> {
    fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
        /// Forwards each field the component reports into the serializer's map.
        struct Fields<M: SerializeMap> {
            map: M,
            error: Result<(), M::Error>,
        }
        impl<M: SerializeMap> StateVisitor for Fields<M> {
            fn field(&mut self, key: &str, value: StateValue<'_>) {
                let result = match value {
                    StateValue::U64(v) => self.map.serialize_entry(key, &v),
                    StateValue::I64(v) => self.map.serialize_entry(key, &v),
                    StateValue::Bool(v) => self.map.serialize_entry(key, &v),
                    StateValue::Str(v) => self.map.serialize_entry(key, v),
                };
                first_error(&mut self.error, result);
            }
        }
        struct OneState<'k, U, C: Clock>(&'k dyn Inspect<U, C>, usize);
        impl<U, C: Clock> Serialize for OneState<'_, U, C> {
            fn serialize<Z: Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
                let mut fields = Fields {
                    map: ser.serialize_map(None)?,
                    error: Ok(()),
                };
                self.0.component_state(self.1, &mut fields);
                fields.error?;
                fields.map.end()
            }
        }
        let mut map = ser.serialize_map(None)?;
        for i in 0..self.0.component_count() {
            map.serialize_entry(self.0.component_name(i), &OneState(self.0, i))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{Context, Flow, RouteError, Routes};
    use crate::event::Event;
    use crate::kernel::Settings;
    use crate::stats::{CounterSet, Counters};
    use crate::time::ManualClock;
    use embedded_time::duration::Milliseconds;
    use serde_json::{json, Value};

    #[derive(Debug, Clone)]
    struct Tick;
    impl UserEvent for Tick {
        const KINDS: usize = 1;
        fn kind(&self) -> usize {
            0
        }
        fn kind_name(_: usize) -> &'static str {
            "tick"
        }
    }

    struct Counter {
        counters: Counters<2>,
    }

    impl Component<Tick, ManualClock> for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
        fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
            routes.append(Kind::user(0))?;
            routes.append(Kind::STOP)
        }
        fn handle(&mut self, _: &mut Context<'_, Tick, ManualClock>, _: &mut Event<Tick>) -> Flow {
            self.counters.inc("ticks", 1).unwrap();
            Flow::Continue
        }
        fn counters(&self) -> Option<&dyn CounterSet> {
            Some(&self.counters)
        }
        fn state(&self, out: &mut dyn StateVisitor) {
            out.field("ticks", StateValue::U64(self.counters.get("ticks")));
            out.field("label", StateValue::Str("a \"quoted\" label"));
            out.field("delta", StateValue::I64(-3));
            out.field("ok", StateValue::Bool(true));
        }
    }

    fn json_of(value: &impl Serialize) -> Value {
        let mut buf = [0u8; 4096];
        let n = to_json(value, &mut buf).unwrap();
        serde_json::from_slice(&buf[..n]).unwrap()
    }

    #[test]
    fn runlog_statistics_and_state_parse_back() {
        let clock = ManualClock::new();
        let mut counter = Counter {
            counters: Counters::new(),
        };
        let mut k = Kernel::<'_, Tick, ManualClock, 2, { crate::kinds::<Tick>() }, 2, 8, 4>::new(
            Settings::default(),
        );
        k.add(&mut counter).unwrap();
        k.start(clock.now()).unwrap();
        for _ in 0..3 {
            k.queue().schedule(Tick).unwrap();
        }
        k.queue().schedule_after(Milliseconds(5u32), Tick).unwrap();
        // A far timer keeps the loop from ending on an empty queue.
        k.queue()
            .schedule_after(Milliseconds(60_000u32), Tick)
            .unwrap();
        k.run_until_idle(clock.now()).unwrap();
        clock.advance(Milliseconds(2_000u32));
        k.run_until_idle(clock.now()).unwrap();

        let runlog = json_of(&k.runlog());
        assert_eq!(runlog["events"], 5);
        assert_eq!(runlog["dispatched"]["start"], 1);
        assert_eq!(runlog["dispatched"]["tick"], 4);
        assert_eq!(runlog["high_water"], json!({"sequential": 3, "timed": 2}));
        assert_eq!(runlog["lateness"]["max_ticks"], 1_995);
        assert_eq!(
            runlog["lateness"]["histogram"].as_array().unwrap().len(),
            LATENESS_BUCKETS
        );
        assert_eq!(runlog["components"], json!({"counter": {"ticks": 4}}));
        assert_eq!(runlog["end"], Value::Null);

        // 4 ticks in the 2 s since start.
        let stats = json_of(&k.statistics(clock.now()));
        assert_eq!(
            stats,
            json!({"counter": {"ticks": {"cnt": 4, "inc": 4, "spd": 2.0, "pct": 100.0}}})
        );

        let state = json_of(&k.state());
        assert_eq!(state["routes"]["tick"], json!(["counter"]));
        assert_eq!(state["routes"]["stop"], json!(["counter"]));
        assert_eq!(state["routes"]["start"], json!([]));
        assert_eq!(
            state["components"]["counter"],
            json!({"ticks": 4, "label": "a \"quoted\" label", "delta": -3, "ok": true})
        );
        assert_eq!(state["runlog"]["events"], 5);

        k.request_stop();
        k.run_until_idle(clock.now()).unwrap();
        assert_eq!(json_of(&k.runlog())["end"], "stopped");
    }

    #[test]
    fn a_small_buffer_is_an_error_not_a_truncated_document() {
        let mut counter = Counter {
            counters: Counters::new(),
        };
        let mut k = Kernel::<'_, Tick, ManualClock, 2, { crate::kinds::<Tick>() }, 2, 8, 4>::new(
            Settings::default(),
        );
        k.add(&mut counter).unwrap();
        let mut buf = [0u8; 4096];
        let full = to_json(&k.state(), &mut buf).unwrap();
        for len in [0, 1, full / 2, full - 1] {
            let mut small = [0u8; 4096];
            assert_eq!(to_json(&k.state(), &mut small[..len]), Err(BufferTooSmall));
        }
        assert_eq!(to_json(&k.state(), &mut buf[..full]), Ok(full));
    }
}

/// Tests that close gaps a mutation run found (issue 16; see TESTING.md): snapshots of
/// several components, some without counters or state, and a clock whose ticks per second
/// are a fraction.
#[cfg(test)]
mod strength {
    use super::*;
    use crate::component::{Context, Flow, RouteError, Routes};
    use crate::event::{kinds, Event};
    use crate::kernel::Settings;
    use crate::stats::Counters;
    use crate::time::ManualClock;
    use embedded_time::duration::Milliseconds;
    use embedded_time::fraction::Fraction;
    use serde_json::{json, Value};

    #[derive(Debug, Clone)]
    enum Ev {
        Work,
        Idle,
    }

    impl UserEvent for Ev {
        const KINDS: usize = 2;
        fn kind(&self) -> usize {
            match self {
                Ev::Work => 0,
                Ev::Idle => 1,
            }
        }
        fn kind_name(kind: usize) -> &'static str {
            ["work", "idle"][kind]
        }
    }

    /// Ticks of 4 ms (250 per second): a clock whose scaling factor is not 1/n.
    #[derive(Debug)]
    struct FourMs;

    impl Clock for FourMs {
        type T = u64;
        const SCALING_FACTOR: Fraction = Fraction::new(4, 1_000);
        fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
            Ok(Instant::new(0))
        }
    }

    /// A component with counters, a state and a name; `prepend` puts it first.
    struct Part {
        name: &'static str,
        counters: Option<Counters<2>>,
        prepend: bool,
        state: bool,
    }

    impl<C: Clock> Component<Ev, C> for Part {
        fn name(&self) -> &'static str {
            self.name
        }
        fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
            if self.prepend {
                routes.prepend(Kind::user(0))
            } else {
                routes.append(Kind::user(0))?;
                routes.append(Kind::RELOAD)
            }
        }
        fn handle(&mut self, _: &mut Context<'_, Ev, C>, _: &mut Event<Ev>) -> Flow {
            if let Some(c) = &mut self.counters {
                c.inc("work", 1).unwrap();
                c.inc(self.name, 2).unwrap();
            }
            Flow::Continue
        }
        fn counters(&self) -> Option<&dyn CounterSet> {
            self.counters.as_ref().map(|c| c as &dyn CounterSet)
        }
        fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> {
            self.counters.as_mut().map(|c| c as &mut dyn CounterSet)
        }
        fn state(&self, out: &mut dyn StateVisitor) {
            if self.state {
                out.field("name", StateValue::Str(self.name));
                out.field(
                    "work",
                    StateValue::U64(self.counters.as_ref().map_or(0, |c| c.get("work"))),
                );
            }
        }
    }

    fn parts() -> [Part; 3] {
        [
            Part {
                name: "first",
                counters: Some(Counters::new()),
                prepend: false,
                state: true,
            },
            Part {
                name: "quiet",
                counters: None,
                prepend: false,
                state: false,
            },
            Part {
                name: "front",
                counters: Some(Counters::new()),
                prepend: true,
                state: true,
            },
        ]
    }

    fn json_of(value: &impl Serialize) -> Value {
        let mut buf = [0u8; 8192];
        let n = to_json(value, &mut buf).unwrap();
        serde_json::from_slice(&buf[..n]).unwrap()
    }

    #[test]
    fn snapshots_of_several_components_keep_each_apart() {
        let clock = ManualClock::<u32>::starting_at(500);
        let [mut a, mut b, mut c] = parts();
        let mut k = Kernel::<'_, Ev, ManualClock<u32>, 3, { kinds::<Ev>() }, 3, 8, 4>::new(
            Settings::default(),
        );
        k.add(&mut a).unwrap();
        k.add(&mut b).unwrap();
        k.add(&mut c).unwrap();
        k.start(clock.now()).unwrap();
        for _ in 0..4 {
            k.queue().schedule(Ev::Work).unwrap();
        }
        // Keeps the loop from ending on an empty queue.
        k.queue()
            .schedule_after(Milliseconds(60_000u32), Ev::Idle)
            .unwrap();
        k.run_until_idle(clock.now()).unwrap();

        let runlog = json_of(&k.runlog());
        assert_eq!(runlog["events"], 5);
        assert_eq!(runlog["dispatched"]["work"], 4);
        assert_eq!(runlog["dispatched"]["idle"], 0);
        assert_eq!(runlog["dispatched"]["log_statistics"], 0);
        assert_eq!(
            runlog["dispatched"].as_object().unwrap().len(),
            BUILTIN_KINDS + 2
        );
        assert_eq!(
            runlog["components"],
            json!({"first": {"work": 4, "first": 8}, "front": {"work": 4, "front": 8}})
        );
        assert_eq!(runlog["high_water"], json!({"sequential": 4, "timed": 1}));
        assert_eq!(runlog["unhandled"], 0);

        clock.advance(Milliseconds(2_000u32));
        k.rotate_statistics(clock.now());
        k.queue().schedule(Ev::Work).unwrap();
        k.run_until_idle(clock.now()).unwrap();
        clock.advance(Milliseconds(500u32));
        let stats = json_of(&k.statistics(clock.now()));
        assert_eq!(
            stats,
            json!({
                "first": {
                    "work": {"cnt": 5, "inc": 1, "spd": 2.0, "pct": 20.0},
                    "first": {"cnt": 10, "inc": 2, "spd": 4.0, "pct": 20.0}
                },
                "front": {
                    "work": {"cnt": 5, "inc": 1, "spd": 2.0, "pct": 20.0},
                    "front": {"cnt": 10, "inc": 2, "spd": 4.0, "pct": 20.0}
                }
            })
        );

        let state = json_of(&k.state());
        assert_eq!(state["routes"]["work"], json!(["front", "first", "quiet"]));
        assert_eq!(state["routes"]["reload"], json!(["first", "quiet"]));
        assert_eq!(state["routes"]["idle"], json!([]));
        assert_eq!(
            state["routes"].as_object().unwrap().len(),
            BUILTIN_KINDS + 2
        );
        assert_eq!(
            state["components"],
            json!({
                "first": {"name": "first", "work": 5},
                "quiet": {},
                "front": {"name": "front", "work": 5}
            })
        );
        assert_eq!(state["runlog"], json_of(&k.runlog()));

        k.terminate();
        assert_eq!(json_of(&k.runlog())["end"], "terminated");
    }

    #[test]
    fn rates_on_a_clock_with_fractional_ticks_per_second() {
        let [mut a, _, _] = parts();
        let mut k =
            Kernel::<'_, Ev, FourMs, 1, { kinds::<Ev>() }, 1, 4, 2>::new(Settings::default());
        k.add(&mut a).unwrap();
        k.start(Instant::new(1_000)).unwrap();
        k.queue().schedule(Ev::Work).unwrap();
        k.queue().schedule(Ev::Work).unwrap();
        k.run_until_idle(Instant::new(1_000)).unwrap();
        // 2 in 500 ticks of 4 ms (2 s): one per second.
        let stats = json_of(&k.statistics(Instant::new(1_500)));
        assert_eq!(
            stats["first"]["work"],
            json!({"cnt": 2, "inc": 2, "spd": 1.0, "pct": 100.0})
        );
        let mut seen = std::vec::Vec::new();
        k.for_each_rate(Instant::new(1_250), |component, key, rate| {
            seen.push((component, key, rate.spd_milli));
        });
        // The same 2 in 1 s; the other counter went up by 4.
        assert_eq!(seen, [("first", "work", 2_000), ("first", "first", 4_000)]);
    }

    #[test]
    fn lateness_histogram_and_queue_figures_in_the_runlog() {
        let clock = ManualClock::<u32>::new();
        let [mut a, _, _] = parts();
        let mut k = Kernel::<'_, Ev, ManualClock<u32>, 1, { kinds::<Ev>() }, 1, 4, 4>::new(
            Settings::default(),
        );
        k.add(&mut a).unwrap();
        k.start(clock.now()).unwrap();
        k.queue()
            .schedule_after(Milliseconds(10u32), Ev::Work)
            .unwrap();
        k.queue()
            .schedule_every(Milliseconds(5u32), Ev::Work)
            .unwrap();
        k.queue().schedule(Ev::Idle).unwrap();
        for _ in 0..3 {
            k.queue().schedule(Ev::Work).unwrap();
        }
        assert!(k.queue().schedule(Ev::Work).is_err());
        clock.advance(Milliseconds(27u32));
        let _ = k.run_until_idle(clock.now());
        let _ = k.run_until_idle(clock.now());
        let runlog = json_of(&k.runlog());
        assert_eq!(runlog["rejected"], 1);
        assert_eq!(runlog["unhandled"], 1);
        // The periodic timer was 22 late and skipped 4 periods; the one-shot 17 late.
        assert_eq!(runlog["missed_periods"], 4);
        assert_eq!(runlog["lateness"]["max_ticks"], 22);
        let histogram = runlog["lateness"]["histogram"].as_array().unwrap();
        assert_eq!(histogram[0], json!({"from_ticks": 0, "count": 0}));
        assert_eq!(histogram[3], json!({"from_ticks": 16, "count": 2}));
        assert_eq!(histogram[11]["from_ticks"], 1u64 << 20);
        let total: u64 = histogram.iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(total, 2);
        assert_eq!(runlog["stop_requests"], 0);
        k.request_stop();
        assert_eq!(json_of(&k.runlog())["stop_requests"], 1);
    }

    #[test]
    fn buffer_too_small_says_so() {
        assert_eq!(
            std::format!("{BufferTooSmall}"),
            "buffer too small for the JSON document"
        );
    }
}
