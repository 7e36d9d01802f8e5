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
//! | after daemonizing, still as root, before the privilege drop | [`acquire`](Service::acquire): bind low ports, open root-only files, take sockets from systemd |
//! | after the privilege drop, before the kernel starts | [`activate`](Service::activate): open what belongs to the daemon process |
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
//! [`Event::Reload`](zendaemon_core::Event::Reload) through the kernel, so a component's
//! `Reload` handler already sees its new settings.
//!
//! # How the shell reaches components the kernel holds
//!
//! The kernel borrows its components (`&mut`) for its whole life, yet a reload must call
//! `configure` in the middle of it, and the end of the run `persist`. The runner's kernel
//! therefore holds the services as what they are: its last type parameter, the object type of
//! its components, is `dyn Service<U>` rather than the default `dyn Component`. Between two
//! steps, while it holds the kernel exclusively, the runner reaches the services through it:
//! [`Kernel::components_mut`] (and [`components`](Kernel::components)) yield them in the order
//! they were added, with every `Service` method. Each service has one borrow, the kernel's,
//! and the shell needs no `unsafe` for this: the borrow checker itself sees that no kernel
//! method runs meanwhile.

use serde_json::Value;
use zendaemon_core::{Component, Kernel, UserEvent};

use crate::clock::StdClock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::listen::Acquire;

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
    /// [`Error::Config`]) and at every reload.
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

    /// Opens what needs root, in the daemon process before it drops its privileges
    /// (`--user`, `--group`): a port below 1024, a file only root may read, and the sockets
    /// systemd passed ([`Acquire::listener`]; see [`listen`](crate::listen)). Called once,
    /// after daemonizing (and the chroot, if any), the pidfile written and signals installed,
    /// before [`activate`](Service::activate). What it opens, the component keeps.
    ///
    /// # Errors
    ///
    /// As [`activate`](Service::activate).
    fn acquire(&mut self, ctx: &mut Acquire<'_>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Opens what must belong to the daemon process itself: threads, sockets, files that are
    /// only reachable after the chroot or the privilege drop. Called once in the daemon (after
    /// the last fork, the pidfile written, signals installed, privileges dropped), before the
    /// kernel starts.
    ///
    /// # Errors
    ///
    /// An error ends the start: in daemon mode the launching process prints it and exits
    /// with its exit code. For a failure of the component's own, return
    /// [`Error::Daemon`] with the message: the launcher prints
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

/// The kernel the runner drives: it holds the services as `dyn Service`, so the shell reaches
/// them between steps (see the [module documentation](self)).
pub(crate) type ServiceKernel<
    'c,
    U,
    const M: usize,
    const K: usize,
    const H: usize,
    const S: usize,
    const T: usize,
> = Kernel<'c, U, StdClock, M, K, H, S, T, dyn Service<U> + 'c>;

/// Configures every service of `kernel` with `new`, in order, all or nothing (see the [module
/// documentation](self) on reload). When one refuses, the services before it are configured
/// again with `old` (a refusal then is logged) and the refusing service's name and error come
/// back.
pub(crate) fn configure_all<
    U,
    const M: usize,
    const K: usize,
    const H: usize,
    const S: usize,
    const T: usize,
>(
    kernel: &mut ServiceKernel<'_, U, M, K, H, S, T>,
    new: &Config,
    old: &Config,
) -> std::result::Result<(), (&'static str, Error)>
where
    U: UserEvent + Clone,
{
    let mut accepted = 0;
    let mut refused = None;
    for s in kernel.components_mut() {
        if let Err(e) = s.configure(new) {
            refused = Some((s.name(), e));
            break;
        }
        accepted += 1;
    }
    let Some(refusal) = refused else {
        return Ok(());
    };
    for s in kernel.components_mut().take(accepted) {
        if let Err(e) = s.configure(old) {
            log::error!(
                "component '{}' refused its previous configuration: {e}",
                s.name()
            );
        }
    }
    Err(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::paths::DefaultPaths;
    use zendaemon_core::{
        Context, CounterSet, Counters, Event, Flow, Kind, RouteError, Routes, Settings, StateValue,
        StateVisitor, Step,
    };

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

    type TestKernel<'c> = ServiceKernel<'c, Tick, 4, { zendaemon_core::kinds::<Tick>() }, 4, 4, 4>;

    /// Counts ticks, `factor` at a time; configured from its own section, a number.
    struct Counter {
        name: &'static str,
        seen: u64,
        factor: u64,
        counters: Counters<2>,
    }

    impl Counter {
        fn new(name: &'static str) -> Self {
            Counter {
                name,
                seen: 0,
                factor: 1,
                counters: Counters::new(),
            }
        }
    }

    impl Component<Tick, StdClock> for Counter {
        fn name(&self) -> &'static str {
            self.name
        }
        fn setup(&mut self, routes: &mut Routes<'_>) -> std::result::Result<(), RouteError> {
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
        fn config_key(&self) -> Option<&'static str> {
            Some(self.name)
        }
        fn configure(&mut self, config: &Config) -> Result<()> {
            // All or nothing: deserialize first, then assign.
            let factor: Option<u64> = config.component(self.name)?;
            self.factor = factor.unwrap_or(1);
            Ok(())
        }
        fn persist(&self) -> Option<Value> {
            Some(serde_json::json!({ "seen": self.seen }))
        }
    }

    /// A configuration whose file holds `text`.
    fn config(dir: &tempfile::TempDir, text: &str) -> Config {
        let d = dir.path();
        std::fs::write(d.join("d.conf"), text).unwrap();
        let defaults = DefaultPaths {
            pid_file: d.join("d.pid"),
            runlog_dir: d.join("r"),
            state_file: d.join("d.state"),
            pstate_file: d.join("d.pstate"),
            pstate_dir: d.to_path_buf(),
            old_pstate_file: d.join("old.pstate"),
            log_file: d.join("d.log"),
            config_file: d.join("d.conf"),
            config_dir: d.join("d"),
            runtime_dir: None,
        };
        Config::load("d", &Cli::default(), &defaults, &["a", "b", "c"]).unwrap()
    }

    fn persisted(kernel: &TestKernel<'_>) -> Vec<Option<Value>> {
        kernel.components().map(|s| s.persist()).collect()
    }

    /// Dispatches one `tick` through the started kernel.
    fn tick(kernel: &mut TestKernel<'_>) {
        kernel.queue().schedule(Tick).unwrap();
        assert_eq!(
            kernel.step(StdClock::now()),
            Ok(Step::Dispatched {
                kind: Kind::user(0),
                handlers: kernel.components().count() as u8
            })
        );
    }

    fn start(kernel: &mut TestKernel<'_>) {
        kernel.start(StdClock::now()).unwrap();
        assert!(matches!(
            kernel.step(StdClock::now()),
            Ok(Step::Dispatched {
                kind: Kind::START,
                ..
            })
        ));
    }

    #[test]
    fn the_shell_reaches_a_service_between_kernel_steps() {
        let mut counter = Counter::new("a");
        let mut kernel = TestKernel::new(Settings::default());
        kernel.add(&mut counter).unwrap();
        start(&mut kernel);
        tick(&mut kernel);
        // Between steps: the service, with its `Service` methods, through the kernel.
        for s in kernel.components_mut() {
            assert_eq!(s.persist(), Some(serde_json::json!({ "seen": 1 })));
            s.configure(&config(&tempfile::tempdir().unwrap(), r#"{"a": 10}"#))
                .unwrap();
        }
        tick(&mut kernel);
        let mut rates = Vec::new();
        kernel.for_each_rate(StdClock::now(), |c, k, r| rates.push((c, k, r.cnt)));
        assert_eq!(rates, [("a", "ticks", 2)]);
        assert_eq!(
            persisted(&kernel),
            [Some(serde_json::json!({ "seen": 11 }))]
        );
        drop(kernel);
        assert_eq!(counter.seen, 11);
    }

    #[test]
    fn a_refusal_puts_the_services_before_it_back_on_the_old_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let old = config(&dir, r#"{"a": 2, "b": 3, "c": 4}"#);
        let (mut a, mut b, mut c) = (Counter::new("a"), Counter::new("b"), Counter::new("c"));
        let mut kernel = TestKernel::new(Settings::default());
        for s in [&mut a, &mut b, &mut c] {
            kernel.add(s).unwrap();
        }
        configure_all(&mut kernel, &old, &old).unwrap();
        start(&mut kernel);
        tick(&mut kernel);
        let before = persisted(&kernel);
        let seen = |a, b, c| [a, b, c].map(|n: u64| Some(serde_json::json!({ "seen": n })));
        assert_eq!(before, seen(2, 3, 4));

        // `b` refuses (not a number): `a` goes back to 2, `c` never saw the new one.
        let bad = config(&dir, r#"{"a": 20, "b": "x", "c": 40}"#);
        let (name, e) = configure_all(&mut kernel, &bad, &old).unwrap_err();
        assert_eq!(name, "b");
        assert!(e.to_string().contains('b'), "{e}");
        tick(&mut kernel);
        assert_eq!(persisted(&kernel), seen(4, 6, 8));

        // All accept: all change.
        let good = config(&dir, r#"{"a": 100, "b": 200, "c": 300}"#);
        configure_all(&mut kernel, &good, &old).unwrap();
        tick(&mut kernel);
        assert_eq!(persisted(&kernel), seen(104, 206, 308));
    }
}
