//! Components that use the shell: their configuration, persistent state and start-up.
//!
//! A [`Service`] is a kernel [`Component`] on the [`StdClock`] with a few more (optional)
//! methods that the [`Daemon`](crate::daemon::Daemon) calls at fixed points of its life:
//!
//! | when | method |
//! |---|---|
//! | before loading the configuration | [`config_key`](Service::config_key): its top-level section, so the key is known (unknown keys are refused) |
//! | start, before forking; every reload | [`configure`](Service::configure) |
//! | start, before forking | [`restore`](Service::restore) with its entry of the persistent state file |
//! | after daemonizing, before the kernel starts | [`activate`](Service::activate): open what belongs to the daemon process |
//! | at the end of the run | [`persist`](Service::persist): its new entry of the persistent state file |
//!
//! Everything else a component does, it does in its event handlers, as with the bare kernel.
//!
//! # Reload
//!
//! On `SIGHUP` the shell reads the configuration again. If the files are broken, nothing
//! changes. Otherwise every service's `configure` runs with the new configuration, in the
//! order the services were added. `configure` MUST be all or nothing for its own component:
//! check everything first (deserialize the section, validate values), then assign. When one
//! service refuses, the services before it are configured again with the previous
//! configuration, which they accepted before, so every component ends up on the old one; the
//! shell keeps it too. Only when all accepted does the shell apply its own settings and deliver
//! [`Event::Reload`] through the kernel, so a component's
//! `Reload` handler already sees its new settings.
//!
//! # How the shell reaches components the kernel holds
//!
//! The kernel borrows its components (`&mut dyn Component`) for its whole life, yet a reload
//! must call `configure` in the middle of it. The shell therefore hands the kernel a small
//! forwarding slot per service and keeps a second pointer to the service itself. The two are
//! never used at the same time: slots are only entered from inside a kernel method, and the
//! shell only uses its pointers while it holds the kernel exclusively (`&mut`), that is, while
//! no kernel method runs and no reference obtained through the kernel is alive. This is the
//! one place with `unsafe` in the runner; each block states why it is sound, and Miri checks
//! the pattern under both aliasing models (`cargo +nightly miri test -p zendaemon --lib
//! service::`, with and without `MIRIFLAGS=-Zmiri-tree-borrows`).

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use serde_json::Value;
use zendaemon_core::{
    Component, Context, CounterSet, Event, Flow, RouteError, Routes, StateVisitor,
};

use crate::clock::StdClock;
use crate::config::Config;
use crate::error::Result;

/// A component that uses the shell's configuration, persistent state and start-up hooks.
///
/// Every method has a default that does nothing, so `impl Service<MyEvent> for MyComponent {}`
/// is enough for a component that needs none of them.
pub trait Service<U>: Component<U, StdClock> {
    /// The top-level configuration key of this component's section (for example `"tail"`),
    /// or `None` when it has no settings. Declared keys are allowed in configuration files;
    /// any other unknown key is an error.
    fn config_key(&self) -> Option<&'static str> {
        None
    }

    /// Takes its settings from the effective configuration, typically with
    /// [`Config::component`] or [`Config::component_or_default`] on its key. Called before
    /// forking (an error then ends the start with the error's exit code, 78 for
    /// [`Error::Config`](crate::Error::Config)) and at every reload.
    ///
    /// # Errors
    ///
    /// Any error refuses the configuration. The component MUST then be unchanged (see the
    /// [module documentation](self) on reload).
    fn configure(&mut self, config: &Config) -> Result<()> {
        let _ = config;
        Ok(())
    }

    /// Takes back what [`persist`](Service::persist) saved at the end of the previous run:
    /// its entry of the persistent state file (keyed by [`Component::name`]), `None` when
    /// there is none. Called once, after [`configure`](Service::configure), before forking.
    ///
    /// # Errors
    ///
    /// An error ends the start with its exit code.
    fn restore(&mut self, pstate: Option<&Value>) -> Result<()> {
        let _ = pstate;
        Ok(())
    }

    /// Opens what must belong to the daemon process itself: threads, sockets, files that are
    /// only reachable after the chroot or the privilege drop. Called once in the daemon (after
    /// the last fork, the pidfile written, signals installed), before the kernel starts.
    ///
    /// # Errors
    ///
    /// An error ends the start: in daemon mode the launching process prints it and exits
    /// with its exit code. For a failure of the component's own, return
    /// [`Error::Daemon`](crate::Error::Daemon) with the message: the launcher prints
    /// `daemon failed to start: <message>` and exits 1.
    fn activate(&mut self) -> Result<()> {
        Ok(())
    }

    /// What to save in the persistent state file at the end of the run, under its name;
    /// `None` leaves its entry as it was.
    fn persist(&self) -> Option<Value> {
        None
    }
}

/// The services of a daemon, reachable by the shell while the kernel holds their slots.
pub(crate) struct Services<'c, U> {
    ptrs: Vec<NonNull<dyn Service<U> + 'c>>,
    _borrow: PhantomData<&'c mut (dyn Service<U> + 'c)>,
}

impl<U> fmt::Debug for Services<'_, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services")
            .field("len", &self.ptrs.len())
            .finish()
    }
}

impl<'c, U> Services<'c, U> {
    pub(crate) fn new() -> Self {
        Self {
            ptrs: Vec::new(),
            _borrow: PhantomData,
        }
    }

    /// Takes over the caller's exclusive borrow of `service` for `'c`.
    pub(crate) fn push(&mut self, service: &'c mut (dyn Service<U> + 'c)) {
        self.ptrs.push(NonNull::from(service));
    }

    pub(crate) fn len(&self) -> usize {
        self.ptrs.len()
    }

    /// One forwarding slot per service, for the kernel.
    pub(crate) fn slots(&self) -> Vec<Slot<'c, U>> {
        self.ptrs
            .iter()
            .map(|&ptr| Slot {
                ptr,
                _borrow: PhantomData,
            })
            .collect()
    }

    /// The services, exclusively. `_kernel` is the kernel that holds their slots (or any
    /// other value when no kernel does yet), borrowed exclusively: proof that no kernel method
    /// runs and no reference obtained through the kernel is alive.
    pub(crate) fn each_mut<P: ?Sized>(
        &mut self,
        _kernel: &mut P,
    ) -> impl Iterator<Item = &mut (dyn Service<U> + 'c)> + '_ {
        self.ptrs.iter_mut().map(|ptr| {
            // SAFETY: the pointer comes from a `&'c mut` that `push` took over, so it is valid
            // and nothing outside this value and its slots uses the service during `'c`.
            // Slots are only entered from kernel methods; the caller holds the kernel
            // exclusively, so none runs, and no reference out of a slot is alive. Each
            // pointer is yielded once per call, so the `&mut`s do not overlap.
            unsafe { ptr.as_mut() }
        })
    }

    /// The services, shared. Same proof as [`each_mut`](Self::each_mut).
    pub(crate) fn each<P: ?Sized>(
        &self,
        _kernel: &mut P,
    ) -> impl Iterator<Item = &(dyn Service<U> + 'c)> + '_ {
        self.ptrs.iter().map(|ptr| {
            // SAFETY: as in `each_mut`; shared references only.
            unsafe { ptr.as_ref() }
        })
    }
}

/// What the kernel holds for a service: forwards every [`Component`] method to it.
pub(crate) struct Slot<'c, U> {
    ptr: NonNull<dyn Service<U> + 'c>,
    _borrow: PhantomData<&'c mut (dyn Service<U> + 'c)>,
}

impl<U> fmt::Debug for Slot<'_, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").field("name", &self.name()).finish()
    }
}

impl<'c, U> Slot<'c, U> {
    fn service(&self) -> &(dyn Service<U> + 'c) {
        // SAFETY: valid as explained in `Services::each_mut`. A slot is entered only from a
        // kernel method; `Services` hands out references only while the kernel is held
        // exclusively, so none of them is alive now. Shared access from `&self`.
        unsafe { self.ptr.as_ref() }
    }

    fn service_mut(&mut self) -> &mut (dyn Service<U> + 'c) {
        // SAFETY: as in `service`; `&mut self` is the kernel's exclusive access to this slot,
        // and the returned borrow is tied to it.
        unsafe { self.ptr.as_mut() }
    }
}

impl<U> Component<U, StdClock> for Slot<'_, U> {
    fn name(&self) -> &'static str {
        self.service().name()
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        self.service_mut().setup(routes)
    }

    fn handle(&mut self, ctx: &mut Context<'_, U, StdClock>, event: &mut Event<U>) -> Flow {
        self.service_mut().handle(ctx, event)
    }

    fn counters(&self) -> Option<&dyn CounterSet> {
        self.service().counters()
    }

    fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> {
        self.service_mut().counters_mut()
    }

    fn state(&self, out: &mut dyn StateVisitor) {
        self.service().state(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zendaemon_core::{Counters, Kernel, Kind, Settings, StateValue, Step, UserEvent};

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

    #[derive(Default)]
    struct Counter {
        seen: u64,
        factor: u64,
        counters: Counters<2>,
    }

    impl Component<Tick, StdClock> for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
        fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
            routes.append(Kind::user(0))
        }
        fn handle(&mut self, _: &mut Context<'_, Tick, StdClock>, _: &mut Event<Tick>) -> Flow {
            self.seen += self.factor;
            let _ = self.counters.inc("ticks", 1);
            Flow::Continue
        }
        fn counters(&self) -> Option<&dyn CounterSet> {
            Some(&self.counters)
        }
        fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> {
            Some(&mut self.counters)
        }
        fn state(&self, out: &mut dyn StateVisitor) {
            out.field("seen", StateValue::U64(self.seen));
        }
    }

    impl Service<Tick> for Counter {
        fn persist(&self) -> Option<Value> {
            Some(serde_json::json!({ "seen": self.seen }))
        }
    }

    #[test]
    fn the_shell_reaches_a_service_between_kernel_steps() {
        let mut counter = Counter {
            factor: 1,
            ..Counter::default()
        };
        let mut services = Services::new();
        services.push(&mut counter);
        let mut slots = services.slots();
        let mut kernel: Kernel<'_, Tick, StdClock, 2, 8, 2, 4, 4> =
            Kernel::new(Settings::default());
        for slot in &mut slots {
            kernel.add(slot).unwrap();
        }
        kernel.start(StdClock::now()).unwrap();
        kernel.queue().schedule(Event::User(Tick)).unwrap();
        // start, then the tick
        for _ in 0..2 {
            assert!(matches!(
                kernel.step(StdClock::now()),
                Ok(Step::Dispatched { .. })
            ));
        }
        // Between steps: change the service through the shell's pointer.
        for s in services.each_mut(&mut kernel) {
            assert_eq!(s.persist(), Some(serde_json::json!({ "seen": 1 })));
        }
        kernel.queue().schedule(Event::User(Tick)).unwrap();
        let _ = kernel.step(StdClock::now());
        // The kernel still sees the same object through its slot.
        let names: Vec<_> = kernel.components().map(|c| c.name()).collect();
        assert_eq!(names, ["counter"]);
        let mut rates = Vec::new();
        kernel.for_each_rate(StdClock::now(), |c, k, r| rates.push((c, k, r.cnt)));
        assert_eq!(rates, [("counter", "ticks", 2)]);
        let persisted: Vec<_> = services.each(&mut kernel).map(|s| s.persist()).collect();
        assert_eq!(persisted, [Some(serde_json::json!({ "seen": 2 }))]);
        drop(kernel);
        drop(slots);
        drop(services);
        assert_eq!(counter.seen, 2);
    }
}
