//! zendaemon: the std shell that turns the [`zendaemon-core`](zendaemon_core) event kernel
//! into a proper Unix daemon.
//!
//! You write components (the kernel's [`Component`](zendaemon_core::Component) plus the
//! shell's [`Service`] hooks) and a `main` of a few lines; [`Daemon`] does the rest: command
//! line, configuration files, daemonization with a readiness pipe, a locked pidfile, signals
//! turned into kernel events, control actions, runlog, state and persistent state files,
//! logging, systemd notifications.
//!
//! # Example
//!
//! A daemon whose one component counts a `tick` every `tick_ms` milliseconds (from its
//! `"ticker"` configuration section) and keeps the total across restarts:
//!
//! ```no_run
//! use serde::Deserialize;
//! use std::time::Duration;
//! use zendaemon::core::{
//!     Component, Context, CounterSet, Counters, Event, Flow, Kind, RouteError, Routes,
//!     UserEvent,
//! };
//! use zendaemon::{Config, Daemon, Service, StdClock};
//!
//! #[derive(Debug, Clone)]
//! struct Tick;
//!
//! impl UserEvent for Tick {
//!     const KINDS: usize = 1;
//!     fn kind(&self) -> usize { 0 }
//!     fn kind_name(_: usize) -> &'static str { "tick" }
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(default)]
//! struct TickerSettings { tick_ms: u64 }
//!
//! impl Default for TickerSettings {
//!     fn default() -> Self { Self { tick_ms: 1000 } }
//! }
//!
//! #[derive(Default)]
//! struct Ticker { every: u64, total: u64, counters: Counters<1> }
//!
//! impl Component<Tick, StdClock> for Ticker {
//!     fn name(&self) -> &'static str { "ticker" }
//!
//!     fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
//!         routes.append(Kind::START)?;
//!         routes.append(Kind::user(0))
//!     }
//!
//!     fn handle(&mut self, ctx: &mut Context<'_, Tick, StdClock>, event: &mut Event<Tick>) -> Flow {
//!         if let Event::User(Tick) = event {
//!             self.total += 1;
//!             let _ = self.counters.inc("ticks", 1);
//!         }
//!         if !ctx.is_done() {
//!             let _ = ctx.schedule_after(Duration::from_millis(self.every), Tick);
//!         }
//!         Flow::Continue
//!     }
//!
//!     fn counters(&self) -> Option<&dyn CounterSet> { Some(&self.counters) }
//!     fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> { Some(&mut self.counters) }
//! }
//!
//! impl Service<Tick> for Ticker {
//!     fn config_key(&self) -> Option<&'static str> { Some("ticker") }
//!
//!     fn configure(&mut self, config: &Config) -> zendaemon::Result<()> {
//!         let s: TickerSettings = config.component_or_default("ticker")?;
//!         self.every = s.tick_ms.max(1);
//!         Ok(())
//!     }
//!
//!     fn restore(&mut self, saved: Option<&serde_json::Value>) -> zendaemon::Result<()> {
//!         self.total = saved.and_then(|v| v["total"].as_u64()).unwrap_or(0);
//!         Ok(())
//!     }
//!
//!     fn persist(&self) -> Option<serde_json::Value> {
//!         Some(serde_json::json!({ "total": self.total }))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let mut ticker = Ticker::default();
//!     Daemon::<Tick>::new("ticker").component(&mut ticker).run()
//! }
//! ```
//!
//! Then `ticker --no-daemon` runs it in the foreground, `ticker` as a daemon,
//! `ticker --action status` asks whether it runs, `kill -USR1` makes it write a runlog, and so
//! on: see [`daemon`] for the whole life of a run, [`actions`] for the control actions.
//!
//! # Under systemd
//!
//! Run the daemon in the foreground (`--no-daemon`) as a `Type=notify` service: the shell
//! tells systemd when it is ready, reloading and stopping, and pings `WatchdogSec=` at half
//! its interval ([`notify`]). Pass `--sigterm=stop`, so that `SIGTERM`, systemd's
//! `KillSignal=`, is the graceful stop (by default `SIGTERM` ends a run at once, without
//! `stop`: pyzenkit's meaning). Reload with `SIGHUP`. In the foreground under systemd the
//! shell logs to the journal ([`logging`]). The unit `std-shell/examples/zendaemon-demo.service`
//! in the repository does all this for the demo daemon (`demo`, in the `zendaemon-examples`
//! package), as a dynamic user in a sandbox (`systemd-analyze security` exposure 0.2; a
//! template unit for several instances, `zendaemon-demo@.service`, sits beside it):
//!
//! ```ini
#![doc = include_str!("../examples/zendaemon-demo.service")]
//! ```
//!
//! # Anatomy
//!
//! * The runner: [`daemon`] ([`Daemon`]), [`service`] ([`Service`]), [`clock`] ([`StdClock`]),
//!   [`actions`].
//! * Its building blocks, each usable alone: [`cli`] (flags), [`config`] (files, merge,
//!   validation), [`words`] (one-word settings: `sigterm`, `log_target`, `log_format`),
//!   [`paths`] (default paths without root), [`logging`] (the `log` backend and the choice of
//!   target), `syslog` (the syslog target, feature `syslog`), `metrics` (the Prometheus file,
//!   feature `metrics`),
//!   [`pidfile`] (locked pidfiles), [`instances`] (parallel-mode names), [`daemonize`]
//!   (daemon(7) steps, readiness, the privilege drop), [`listen`] (the `acquire` hook's
//!   context and systemd's socket activation), [`signals`] (counters and a self-pipe), [`precise`] (the
//!   wake-up margin of the opt-in precise timers), [`watchdog`] (the stop timeout enforced
//!   from outside the loop, counted from the signal), [`notify`] (systemd), [`atomic`] (atomic file replacement),
//!   [`runlog`] (runlog files and their actions), [`report`] (the runlog and state documents),
//!   [`pstate`] (the persistent state file), [`checkpoint`] (its durable writes off the loop),
//!   [`safepath`] (ownership rules for the paths the shell opens, directories held across the
//!   privilege drop), [`error`] (errors and exit codes).
//! * The kernel itself is re-exported as [`core`].
//!
//! # Limitations
//!
//! * Linux (the thread count before forking comes from `/proc`; abstract notify sockets).
//! * One [`Daemon`] per process: it installs the process's logger (unless the program installed
//!   its own first) and signal handlers.
//! * The kernel borrows the components (`&mut`) for the whole run, so they must outlive the
//!   [`Daemon`] (locals of `main` do). The shell reaches them between kernel steps through the
//!   kernel itself, which holds them as [`Service`]s (see [`service`]); the runner has no
//!   `unsafe` of its own.
//! * With `--chroot-dir`, files opened by path after the chroot (runlogs, state files, a log
//!   file reopened on `SIGHUP`) resolve inside it.
#![warn(missing_docs, missing_debug_implementations)]

pub use zendaemon_core as core;

pub mod actions;
pub mod atomic;
pub mod checkpoint;
mod civil;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod daemonize;
pub mod error;
pub mod instances;
pub mod listen;
pub mod logging;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod notify;
pub mod paths;
pub mod pidfile;
pub mod precise;
pub mod preflight;
pub mod pstate;
pub mod report;
pub mod runlog;
pub mod safepath;
pub mod service;
pub mod signals;
#[cfg(feature = "syslog")]
pub mod syslog;
pub mod watchdog;
pub mod words;

pub use clock::StdClock;
pub use config::Config;
pub use daemon::Daemon;
pub use error::{Error, Result};
pub use listen::Acquire;
pub use service::Service;
