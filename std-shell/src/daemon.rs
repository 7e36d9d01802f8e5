//! The runner: [`Daemon`] turns a set of [`Service`]s into a Unix daemon.
//!
//! ```no_run
//! # use zendaemon::core::{Component, Context, Event, Flow, Kind, RouteError, Routes, UserEvent};
//! # use zendaemon::clock::StdClock;
//! # use zendaemon::service::Service;
//! # use zendaemon::Daemon;
//! # #[derive(Debug, Clone)] struct Job;
//! # impl UserEvent for Job {
//! #     const KINDS: usize = 1;
//! #     fn kind(&self) -> usize { 0 }
//! #     fn kind_name(_: usize) -> &'static str { "job" }
//! # }
//! # #[derive(Default)] struct Worker;
//! # impl Component<Job, StdClock> for Worker {
//! #     fn name(&self) -> &'static str { "worker" }
//! #     fn setup(&mut self, r: &mut Routes<'_>) -> Result<(), RouteError> { r.append(Kind::START) }
//! #     fn handle(&mut self, _: &mut Context<'_, Job, StdClock>, _: &mut Event<Job>) -> Flow { Flow::Continue }
//! # }
//! # impl Service<Job> for Worker {}
//! fn main() -> std::process::ExitCode {
//!     let mut worker = Worker::default();
//!     Daemon::<Job>::new("mydaemon").component(&mut worker).run()
//! }
//! ```
//!
//! # What `run` does, in order
//!
//! 1. Parses the command line ([`Cli`]): `--help` prints the help and returns 0; a bad flag
//!    prints the error and returns 2. Relative paths given on the command line are made
//!    absolute against the current directory, so they keep meaning the same after the daemon
//!    changes directory (and a reload reads the same configuration file).
//! 2. Loads the configuration ([`Config::load`]) with every service's
//!    [`config_key`](Service::config_key): errors print and return 78. Relative paths from
//!    configuration files are made absolute the same way.
//! 3. With `--action`: runs the [action](crate::actions) and returns its code. Nothing else
//!    happens: no file is written, and no component is configured (except by `config-check`,
//!    which configures every service to check its section, and runs [`preflight`]).
//! 4. Runs the [`preflight`] checks (accounts, chroot and working directories: exit 78 naming
//!    the file), creates the per-user runtime directory when a default path lies in it, and
//!    takes the pidfile's start lock ([`Pidfile::acquire`]): a second instance is refused with
//!    `already running (pid N)` and [`exit::ALREADY_RUNNING`] before any component runs.
//! 5. Configures every service, reads the persistent state file and restores every service
//!    from it; builds the kernel and registers the services' routes (capacity errors show
//!    here).
//! 6. Chooses where log lines go and installs the logger ([`logging`]): the
//!    program's own logger if it installed one before `run` (the shell then logs through it
//!    and says so), else `log_target` (`auto`: the log file in daemon mode; in the foreground
//!    journald, `<N>`-prefixed stderr under systemd, or plain stderr). Holds the directories
//!    of the state, persistent state and runlog files open and removes the temporary files a
//!    killed run left in them ([`safepath`], [`atomic`]). Every file is opened under the
//!    ownership rules of [`safepath`] (exit 77 when one is broken).
//! 7. Daemonizes ([`daemonize()`], keeping the pidfile's and the log file's descriptors and the
//!    held directories) or, with `--no-daemon`, applies umask, chroot, working directory and
//!    privilege drop in place ([`foreground`]). Every error up to here reached the terminal,
//!    with the exit code of [`Error::exit_code`].
//! 8. In the daemon: installs the signal handlers ([`Signals`]) and starts the
//!    [`StopWatchdog`]; then takes the pidfile's run lock and writes its PID
//!    ([`Pidfile::hold`]; in `--parallel` mode it first creates and locks its own pidfile,
//!    named with that PID, see [`instances`]);
//!    [activates](Service::activate) the services; starts the checkpoint writer and the
//!    kernel, which arms the periodic `log_statistics`, `save_runlog` and `checkpoint` events;
//!    dispatches `start`, then the first `checkpoint`, and writes it (see
//!    [Checkpoints](#checkpoints)). A failure in this step reaches the launching process
//!    through the readiness pipe (it prints the message and exits with the error's code), or
//!    the console in the foreground.
//! 9. Reports readiness to the launcher and to systemd (`READY=1`), then runs the loop below.
//! 10. At the end: logs the reason, waits for the checkpoint writer, saves the persistent state
//!     (synchronously), writes the final runlog, removes the pidfile (or, after a privilege
//!     drop that leaves no right to remove it, truncates it to empty, which reads as "not
//!     running"), and returns 0, or 1 if any error was recorded during the run.
//!
//! # The loop
//!
//! Each turn: signals that arrived become kernel requests (posted to a
//! [`Requests`] the kernel drains): `SIGINT` → stop (each one
//! counts; the third ends the loop at once), `SIGTERM` → terminate (with `sigterm: stop`, a stop
//! like `SIGINT`'s, see [`Sigterm`]), `SIGHUP` → reload (below),
//! `SIGUSR1` → save runlog, `SIGUSR2` → save state, `SIGALRM` → nothing but the wake-up. Then
//! one clock reading and one [`Kernel::run`]: a batch of up to 16 events at that reading. The
//! batch size adapts: a batch that took more than 20 µs (full or not) makes the next one a
//! single event, and it doubles again after each full batch that stayed quicker. So with quick
//! handlers the clock and the signals are read every few microseconds, not for every event,
//! and with slow handlers once per event; a timer or a signal waits at most for the batch
//! under way (the first batch of slow events after quick ones can hold up to 16 of them), and
//! handlers within a batch see its clock reading as `ctx.now()`. A batch ends early when a
//! handler asks for a stop, so the shell guards the stop (below) before `stop` runs, and after
//! a lifecycle event, for which the shell does its part:
//!
//! | kind | the shell's part |
//! |---|---|
//! | `save_runlog` | writes a runlog file ([`report`]) |
//! | `save_state` | writes the state file |
//! | `checkpoint` | collects every service's `persist` and hands the persistent state to the checkpoint writer |
//! | `log_statistics` | logs every counter's rates, then starts a new statistics interval |
//! | `reload` | tells systemd `READY=1` (the reload is complete) |
//! | `stop` | starts the stop timeout of the [`StopWatchdog`] (if no `SIGINT` did), tells systemd `STOPPING=1` (the kernel cancelled the periodic events) |
//!
//! When nothing is due, the loop sleeps in [`Signals::wait_until`] until the kernel's next
//! deadline (or systemd's next watchdog ping, when `WATCHDOG_USEC` asks for them) or a signal.
//! An event without a handler is logged and recorded as an error of the run. No turn allocates
//! unless it logs or writes a file. A turn without a signal costs the shell six plain loads
//! ([`Signals::take_pending`]) and one clock read (two with watchdog pings) besides the batch.
//!
//! # Precise timers (opt-in)
//!
//! An idle loop sleeps on an exact timer, yet its timers run late by the time the system takes
//! to wake an idle CPU: tens to hundreds of microseconds, more on a virtual machine and after
//! longer sleeps. `--precise-timers` (configuration key `precise_timers`, or
//! `Daemon::new(..).default_setting("precise_timers", true)` to make it the program's
//! default) trades CPU time for punctuality: each sleep ends a margin before the deadline and
//! the loop spins on the clock for the rest ([`Signals::set_precise_timers`]). The margin is
//! learned from how late the wake-ups were (the [`precise`](crate::precise) module explains
//! the estimate), at most `precise_max_spin` (`--precise-max-spin`, default 2 ms).
//!
//! The cost: every timed wake-up spends the margin, less the wake-up's own latency, on the CPU;
//! never more than `precise_max_spin`. In the bench (`BENCHMARKS.md`, a quiet 2-vCPU KVM
//! guest) that was 7–50 µs more CPU time per wake-up than without (25–113 µs in all; with a
//! 1 ms timer 25–36 µs, 2.5–3.6% of a CPU), and 300–400 µs per wake-up in earlier runs where a
//! disturbance inflated the margin. A loop that never sleeps (always busy) pays nothing; a
//! wake-up that comes after the deadline anyway is simply late (no spinning past a deadline).
//! Signals still end a spin at once. Both settings take effect at the next start.
//!
//! # Checkpoints
//!
//! The persistent state file is written at every `checkpoint`: once right after `start`
//! (before the daemon reports ready, so a first run that crashes still knows where it began),
//! every `pstate_interval` (`--pstate-interval`, default 60 s), whenever a component asks
//! ([`Context::request_checkpoint`](zendaemon_core::Context::request_checkpoint), for example
//! after committing something that must not be redone), and at the end of the run. Each is
//! atomic and durable (fsync of the file and of its directory, [`atomic::write_atomic`]). The loop
//! only collects and serializes; the fsyncs, which take milliseconds, run in the
//! [`checkpoint::Writer`] thread, latest wins; a state equal to the last one is not written
//! again. The final write at the end waits for the writer, then writes itself.
//!
//! So a crash (kill -9, OOM, power loss) loses nothing a component has checkpointed, and a
//! component redoes at most what it did since the last checkpoint: one `pstate_interval` of
//! work, plus the time a write takes. Components that keep positions must checkpoint the
//! counters derived from them in the same `persist`, so both go back together.
//!
//! # Reload (`SIGHUP`)
//!
//! Ignored while stopping. Otherwise: `RELOADING=1` to systemd; the log file is reopened
//! (logrotate); the configuration files are read again. Broken files, or a service refusing
//! its new section, keep the whole old configuration (see [`service`]); this is logged as an
//! error but does not fail the run. On success the shell applies the log level, a new log
//! file, new runlog directory, state and persistent state files, the statistics, runlog and
//! checkpoint intervals (re-armed from now by [`Kernel::set_period`]), and the stop timeout (for the next stop: the
//! kernel's [`set_stop_timeout`](Kernel::set_stop_timeout), and the [`StopWatchdog`]'s);
//! then [`Event::Reload`](zendaemon_core::Event::Reload) goes through the kernel and `READY=1` follows
//! it. Settings that only take effect at a start (pidfile, user, group, chroot, working
//! directory, umask, daemon mode, parallel mode, precise timers) are logged as such when they
//! change.
//!
//! # Stopping
//!
//! A graceful stop (`SIGINT`, [`stop` action](crate::actions), a component's
//! `request_stop`) dispatches `stop`; the kernel cuts it off with `terminate` after the stop
//! timeout, counted from the stop's beginning: the first `SIGINT`'s arrival, not the moment
//! the loop got round to dispatching `stop`. A handler that never returns would keep the loop
//! from doing either, so the [`StopWatchdog`] guards the whole run from outside the loop, on
//! its own thread with its own `SIGINT` and `SIGTERM` handlers. It ends the process at the
//! stop timeout plus a margin after the first `SIGINT` (or the loop's own stop), and within
//! the margin after `SIGTERM` or the third `SIGINT`, whatever a handler is doing. The margin
//! is the `watchdog_margin` setting (`--watchdog-margin`, 1 s by default); it leaves the loop
//! time to end the run itself whenever it still turns. When the watchdog fires, it logs why
//! and which component was handling which event kind (the kernel's [`Activity`]), removes the
//! pidfile and exits with [`exit::WATCHDOG`] (70). No runlog or persistent state is written
//! then: the stuck handler may hold the state half-updated. `--action stop` on such a daemon
//! returns 0 once it is gone.
//!
//! Every way the loop ends ([`EndReason`]) counts as clean: handlers always run to their end
//! (signals only set flags that the loop reads between events), so components are consistent
//! and their persistent state is saved. The exit code is 0 unless errors were recorded.
//!
//! # Capacities
//!
//! `Daemon<U, M, K, H, S, T>`: `M` components, `K` event kinds (at least
//! [`kinds::<U>()`](zendaemon_core::kinds): the lifecycle kinds plus the user's, checked at
//! compile time), `H` handlers per kind, `S` sequential and `T`
//! timed events. [`Daemon::new`] uses the defaults ([`DEFAULT_COMPONENTS`] …);
//! [`Daemon::with_capacities`] takes them from the type. The kernel's periodic events use up to
//! three of the `T` timers.

use std::fs;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant as StdInstant, SystemTime};

use embedded_time::duration::Milliseconds;
use embedded_time::Instant;
use zendaemon_core::{
    Activity, EndReason, Kernel, Kind, Periodic, Request, Requests, Run,
    Settings as KernelSettings, Step, StepError, UserEvent,
};

use crate::actions;
use crate::atomic;
use crate::checkpoint;
use crate::cli::{Cli, Parsed};
use crate::clock::StdClock;
use crate::config::{Config, Settings};
use crate::daemonize::{self, daemonize, foreground, DaemonOptions, Privileges, Readiness};
use crate::error::{exit, Error, Result};
use crate::instances;
use crate::listen::{Acquire, Listeners};
use crate::logging::{self, LogTarget, Logger, Target};
use crate::notify::{self, Notifier};
use crate::paths;
use crate::pidfile::Pidfile;
use crate::preflight;
use crate::pstate::Pstate;
use crate::report::{self, RunInfo};
use crate::runlog;
use crate::safepath::{self, Dir};
use crate::service::{self, Service, ServiceKernel};
use crate::signals::{Signal, Signals};
use crate::watchdog::{Limits, StopWatchdog};
use crate::words::Sigterm;

/// Default capacity: components.
pub const DEFAULT_COMPONENTS: usize = 16;
/// Default capacity: event kinds (the 8 lifecycle kinds plus up to 56 of the user's).
pub const DEFAULT_KINDS: usize = 64;
/// Default capacity: handlers per event kind.
pub const DEFAULT_HANDLERS: usize = 16;
/// Default capacity: sequential events.
pub const DEFAULT_SEQUENTIAL: usize = 1024;
/// Default capacity: timed events.
pub const DEFAULT_TIMED: usize = 256;

/// A daemon under construction: its name and its services. See the [module
/// documentation](self) for what [`run`](Daemon::run) does.
pub struct Daemon<
    'c,
    U,
    const M: usize = DEFAULT_COMPONENTS,
    const K: usize = DEFAULT_KINDS,
    const H: usize = DEFAULT_HANDLERS,
    const S: usize = DEFAULT_SEQUENTIAL,
    const T: usize = DEFAULT_TIMED,
> {
    name: String,
    /// The services, in the order they were added; the kernel takes them over at the start.
    services: Vec<&'c mut (dyn Service<U> + 'c)>,
    args: Option<Vec<String>>,
    /// The program's own defaults for shell settings ([`Daemon::default_setting`]).
    program_defaults: serde_json::Map<String, serde_json::Value>,
    /// What the program does, for `--help` ([`Daemon::about`]).
    about: Option<String>,
}

impl<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>
    std::fmt::Debug for Daemon<'_, U, M, K, H, S, T>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("name", &self.name)
            .field(
                "services",
                &self.services.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<'c, U: UserEvent + Clone> Daemon<'c, U> {
    /// A daemon with the default capacities. `name` is its name unless `--name` gives another
    /// (pyzenkit's order: the flag, then the program's own choice).
    pub fn new(name: &str) -> Self {
        Self::with_capacities(name)
    }
}

impl<'c, U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>
    Daemon<'c, U, M, K, H, S, T>
where
    U: UserEvent + Clone,
{
    /// A daemon with the capacities of its type:
    /// `Daemon::<Job, 4, 16, 4, 64, 16>::with_capacities("small")`.
    pub fn with_capacities(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            services: Vec::new(),
            args: None,
            program_defaults: serde_json::Map::new(),
            about: None,
        }
    }

    /// Adds a service. Pipelines run in the order services are added (unless a service
    /// prepends its handler).
    pub fn component<C: Service<U> + 'c>(mut self, service: &'c mut C) -> Self {
        self.services.push(service);
        self
    }

    /// Replaces the shell's default for one of its settings: `key` is the setting's
    /// configuration key, `value` its value as a configuration file would give it.
    /// Configuration files and the command line still override it, and it stays through
    /// reloads; `--help` shows it as the default. For example, a daemon that logs
    /// statistics every 5 seconds unless told otherwise:
    /// `Daemon::<Job>::new("demo").default_setting("stats_interval", 5)`.
    ///
    /// A key that is not a shell setting (or is `name`, `config_file`, `config_dir` or
    /// `action`), or a bad value, makes [`run`](Daemon::run) fail with a configuration error
    /// (exit code 78) that names it.
    pub fn default_setting(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.program_defaults.insert(key.to_owned(), value.into());
        self
    }

    /// A line on what the program does, for `--help` (which also lists the services'
    /// configuration sections, and shows the program's own defaults).
    pub fn about(mut self, text: &str) -> Self {
        self.about = Some(text.to_owned());
        self
    }

    /// Uses this command line (program first) instead of the process's.
    pub fn args<A: Into<String>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Runs the daemon or the action the command line asks for, and returns the process's
    /// exit code (see the [module documentation](self)) for `main` to return, so destructors
    /// run (`std::process::exit` would skip them). In daemon mode the launching process never
    /// returns from here: it exits with the daemon's start-up result.
    pub fn run(self) -> ExitCode {
        ExitCode::from(u8::try_from(self.run_code()).unwrap_or(1))
    }

    /// [`run`](Self::run) with the exit code as a number.
    ///
    /// First of all it takes the sockets of systemd's socket activation
    /// ([`listen`](crate::listen)) and closes every other descriptor the process inherited:
    /// every descriptor above 2 without close-on-exec
    /// ([`close_inherited`](daemonize::close_inherited)). So before `run`, a program must not
    /// hold a descriptor without close-on-exec that it means to keep (std opens everything
    /// with close-on-exec; `nix::fcntl::open` without `O_CLOEXEC`, `dup` and sockets without
    /// `SOCK_CLOEXEC` do not): components open what they need in
    /// [`configure`](Service::configure), [`acquire`](Service::acquire) or
    /// [`activate`](Service::activate), which all run later, and keep it through
    /// daemonizing.
    fn run_code(mut self) -> i32 {
        // First of all, before any component code runs: the sockets systemd handed over are
        // ours, and whatever else the process inherited is closed (see `listen` and
        // "Descriptors" in `daemonize`).
        let listeners = match Listeners::from_env() {
            Ok(l) => l,
            Err(e) => return early(&self.name, &e),
        };
        // SAFETY: `run`'s documented precondition: before it, the program owns no descriptor
        // without close-on-exec (it opens what it needs in the services' hooks, all later).
        if let Err(e) = unsafe { daemonize::close_inherited(&listeners.raw_fds()) } {
            return early(&self.name, &e);
        }
        let args = match self.args.take() {
            Some(args) => args,
            None => match env_args() {
                Ok(args) => args,
                Err(e) => return early(&self.name, &e),
            },
        };
        let program = args
            .first()
            .and_then(|a| Path::new(a).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.name.clone());
        let mut cli = match Cli::parse(&args) {
            Ok(Parsed::Help(text)) => {
                let mut sections: Vec<&str> = self
                    .services
                    .iter()
                    .filter_map(|s| s.config_key())
                    .collect();
                sections.dedup();
                let text = crate::cli::program_help(
                    &text,
                    &self.name,
                    self.about.as_deref(),
                    &sections,
                    &self.program_defaults,
                );
                print!("{text}");
                return exit::OK;
            }
            Ok(Parsed::Run(cli)) => *cli,
            Err(e) => return early(&program, &e),
        };
        let base = match std::env::current_dir() {
            Ok(dir) => dir,
            Err(e) => return early(&program, &Error::os("read the current directory", e)),
        };
        absolutize_cli(&mut cli, &base);
        let name = cli.name.clone().unwrap_or_else(|| self.name.clone());
        let keys: Vec<&'static str> = {
            let mut keys: Vec<&'static str> = self
                .services
                .iter()
                .filter_map(|s| s.config_key())
                .collect();
            keys.sort_unstable();
            keys.dedup();
            keys
        };
        let defaults = match paths::defaults_from_env(&name) {
            Ok(d) => d,
            Err(e) => return early(&program, &e),
        };
        let own = &self.program_defaults;
        let config = match Config::load_with_defaults(&name, &cli, &defaults, own, &keys) {
            Ok(c) => c,
            Err(e) => return early(&program, &e),
        };
        if let Some(action) = config.settings().action {
            if action == crate::cli::Action::ConfigCheck {
                // The components' sections are checked as a start checks them.
                for s in &mut self.services {
                    if let Err(e) = s.configure(&config) {
                        return early(&program, &e);
                    }
                }
            }
            return actions::run(&config, action);
        }
        let launch = Launch {
            program,
            listeners,
            argv: args,
            base,
            runtime_dir: defaults.runtime_dir.clone(),
            pstate_dir: defaults.pstate_dir.clone(),
            old_pstate_file: defaults.old_pstate_file.clone(),
            config,
        };
        launch.start::<U, M, K, H, S, T>(self.services)
    }
}

/// Prints an error that ends the command before logging exists; returns its exit code.
fn early(program: &str, e: &Error) -> i32 {
    eprintln!("{program}: {e}");
    e.exit_code()
}

/// The process's arguments, which must be UTF-8.
fn env_args() -> Result<Vec<String>> {
    std::env::args_os()
        .map(|a| {
            a.into_string().map_err(|a| {
                Error::Usage(format!(
                    "argument is not valid UTF-8: {}",
                    a.to_string_lossy()
                ))
            })
        })
        .collect()
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Makes the command line's file paths absolute (not `--work-dir` and `--chroot-dir`, which
/// [`daemonize`] interprets itself).
fn absolutize_cli(cli: &mut Cli, base: &Path) {
    for p in [
        &mut cli.pid_file,
        &mut cli.state_file,
        &mut cli.runlog_dir,
        &mut cli.config_file,
        &mut cli.config_dir,
        &mut cli.pstate_file,
        &mut cli.log_file,
        &mut cli.syslog_socket,
        &mut cli.metrics_file,
        &mut cli.input,
    ]
    .into_iter()
    .flatten()
    {
        *p = absolute(base, p);
    }
}

/// The files the daemon writes, absolute.
#[derive(Debug, Clone, PartialEq)]
struct Files {
    pid_file: PathBuf,
    state_file: PathBuf,
    runlog_dir: PathBuf,
    pstate_file: PathBuf,
    log_file: PathBuf,
    metrics_file: Option<PathBuf>,
}

impl Files {
    /// The files of `settings`; with `instance`, the parallel instance's own state file.
    fn of(settings: &Settings, base: &Path, instance: Option<u32>) -> Files {
        let mut state_file = absolute(base, &settings.state_file);
        if let Some(pid) = instance {
            state_file = instances::instance_path(&state_file, pid);
        }
        Files {
            pid_file: absolute(base, &settings.pid_file),
            state_file,
            runlog_dir: absolute(base, &settings.runlog_dir),
            pstate_file: absolute(base, &settings.pstate_file),
            log_file: absolute(base, &settings.log_file),
            metrics_file: settings.metrics_file.as_deref().map(|p| absolute(base, p)),
        }
    }
}

/// A duration as the kernel's milliseconds, rounded up, at most `u32::MAX` (49.7 days).
fn millis(d: Duration) -> Milliseconds<u32> {
    Milliseconds(u32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX))
}

/// The kernel's settings from the shell's. The kernel arms and cancels the periodic events;
/// a reload changes their periods with [`Kernel::set_period`].
fn kernel_settings(s: &Settings) -> KernelSettings {
    KernelSettings::default()
        .with_stop_timeout(s.stop_timeout)
        .with_period(Periodic::Statistics, s.stats_interval)
        .with_period(Periodic::Runlog, s.runlog_interval)
        .with_period(Periodic::Checkpoint, s.pstate_interval)
        .with_max_stop_requests(3)
}

/// Names the handler in flight from `activity`, for the logger's `component` and `event`
/// fields.
fn handler_context<
    U,
    const M: usize,
    const K: usize,
    const H: usize,
    const S: usize,
    const T: usize,
>(
    kernel: &ServiceKernel<'_, U, M, K, H, S, T>,
    activity: &Arc<Activity>,
) -> logging::Context
where
    U: UserEvent + Clone,
{
    let names: Vec<&'static str> = kernel.components().map(|c| c.name()).collect();
    let kind_name: fn(Kind) -> &'static str = Kind::name::<U>;
    let activity = Arc::clone(activity);
    Box::new(move || {
        let d = activity.current()?;
        let component = names.get(usize::from(d.component)).copied().unwrap_or("?");
        Some((component, kind_name(d.kind)))
    })
}

/// Where the shell's logger writes, from `log_target` (see [`logging`]), and
/// what to use instead if that target cannot be opened (`auto`'s journald only).
fn log_target(settings: &Settings, files: &Files) -> Result<(Target, Option<Target>)> {
    let foreground_only = |word: LogTarget| {
        if settings.no_daemon {
            Ok(())
        } else {
            Err(Error::config(
                "log_target",
                format!(
                    "'{word}' works only in the foreground (no_daemon): a daemon's stderr is \
                     /dev/null and the journal needs it"
                ),
            ))
        }
    };
    Ok(match settings.log_target {
        LogTarget::Auto if !settings.no_daemon => (Target::File(files.log_file.clone()), None),
        LogTarget::Auto => match logging::Console::from_env() {
            logging::Console::Journal if cfg!(feature = "journald") => {
                (Target::Journald, Some(Target::ConsolePrefixed))
            }
            logging::Console::Journal | logging::Console::Prefixed => {
                (Target::ConsolePrefixed, None)
            }
            logging::Console::Plain => (Target::Console, None),
        },
        LogTarget::Console => {
            foreground_only(LogTarget::Console)?;
            (Target::Console, None)
        }
        LogTarget::File => (Target::File(files.log_file.clone()), None),
        LogTarget::Syslog => (Target::Syslog(settings.syslog_socket.clone()), None),
        LogTarget::Journald => {
            foreground_only(LogTarget::Journald)?;
            (Target::Journald, None)
        }
    })
}

/// Everything decided before the kernel exists.
struct Launch {
    program: String,
    /// Sockets from systemd, for the services' `acquire`.
    listeners: Listeners,
    argv: Vec<String>,
    base: PathBuf,
    runtime_dir: Option<PathBuf>,
    /// The default persistent state file's directory, and the file's place in earlier
    /// versions (see [`paths`]).
    pstate_dir: PathBuf,
    old_pstate_file: PathBuf,
    config: Config,
}

/// A pidfile shared with the stop watchdog's last words.
type SharedPidfile = Arc<Mutex<Option<Pidfile>>>;

fn take_pidfile(p: &SharedPidfile) -> Option<Pidfile> {
    p.lock().unwrap_or_else(PoisonError::into_inner).take()
}

fn remove_pidfile(p: &SharedPidfile) {
    if let Some(pidfile) = take_pidfile(p) {
        if let Err(e) = pidfile.remove() {
            log::error!("{e}");
        }
    }
}

/// The runlog directory `dir`, created (mode 0755) when missing, through its parent's held
/// descriptor; never a symbolic link (see [`safepath`]).
fn runlog_dir(dir: &Path) -> Result<Dir> {
    let open = |dir: &Path| {
        let (parent, name) = Dir::open_parent(dir)?;
        parent.subdir(&name, Some(0o755))
    };
    match open(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A missing parent (a runlog directory given a few levels deep): created by path.
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| Error::io("create runlog directory", dir, e))?;
            }
            open(dir)
        }
        other => other,
    }
    .map_err(|e| Error::io("open runlog directory", dir, e))
}

/// Holds the directories of the state, persistent state and runlog files open from before the
/// privilege drop, checks an existing runlog directory, and removes the temporary files that a
/// killed run left behind in them (see [`atomic`]).
fn prepare_dirs(files: &Files, settings: &Settings) -> Result<()> {
    for path in [&files.state_file, &files.pstate_file, &files.runlog_dir] {
        safepath::hold_parent(path).map_err(|e| Error::io("open the directory of", path, e))?;
    }
    let removed = |dir: &Dir, what: &Path, is_ours: &dyn Fn(&[u8]) -> bool| {
        match atomic::remove_stale_temporaries(dir, is_ours) {
            Ok(names) if !names.is_empty() => log::info!(
                "removed {} stale temporary file(s) of '{}'",
                names.len(),
                what.display()
            ),
            _ => {}
        }
    };
    let runlogs = &files.runlog_dir;
    if fs::symlink_metadata(runlogs).is_ok() {
        let dir = runlog_dir(runlogs)?;
        removed(&dir, runlogs, &|t: &[u8]| t.ends_with(b".runlog"));
    }
    for path in [&files.state_file, &files.pstate_file] {
        let Ok((dir, name)) = Dir::open_parent(path) else {
            continue;
        };
        let name = name.to_string_lossy().into_owned();
        // In parallel mode the instances' state files carry their PIDs: `<stem>.<pid>.<ext>`.
        let parallel = settings.parallel;
        removed(&dir, path, &|t: &[u8]| {
            t == name.as_bytes()
                || (parallel
                    && std::str::from_utf8(t)
                        .is_ok_and(|t| crate::instances::instance_pid(&name, t).is_some()))
        });
    }
    Ok(())
}

/// Starts the stop watchdog ([`crate::watchdog`]). Its last words log why it fired and which
/// handler was running then (from `activity`), and remove the pidfile.
fn start_watchdog<
    U,
    const M: usize,
    const K: usize,
    const H: usize,
    const S: usize,
    const T: usize,
>(
    settings: &Settings,
    kernel: &ServiceKernel<'_, U, M, K, H, S, T>,
    activity: &Arc<Activity>,
    pidfile: &SharedPidfile,
) -> Result<StopWatchdog>
where
    U: UserEvent + Clone,
{
    let names: Vec<&'static str> = kernel.components().map(|c| c.name()).collect();
    let kind_name: fn(Kind) -> &'static str = Kind::name::<U>;
    let activity = Arc::clone(activity);
    let pidfile = Arc::clone(pidfile);
    let limits = Limits {
        stop_timeout: settings.stop_timeout,
        margin: settings.watchdog_margin,
        max_stops: kernel_settings(settings).max_stop_requests as usize,
        term_is_stop: settings.sigterm == Sigterm::Stop,
    };
    StopWatchdog::start(limits, exit::WATCHDOG, move |why, limits| {
        let running = match activity.current() {
            Some(d) => format!(
                "component '{}' was handling a '{}' event",
                names.get(usize::from(d.component)).copied().unwrap_or("?"),
                kind_name(d.kind)
            ),
            None => "no handler was running".to_owned(),
        };
        log::error!(
            "stop watchdog: {}; {running}; exiting with code {} without saving the runlog or \
             the persistent state",
            why.describe(&limits),
            exit::WATCHDOG
        );
        if let Some(p) = take_pidfile(&pidfile) {
            let _ = p.remove();
        }
    })
}

/// Where errors go before the daemon runs: the terminal (and the log file, if open).
struct Early<'a> {
    program: &'a str,
    /// The logger writes to the console: it alone reaches the terminal.
    console_logger: bool,
    logger: bool,
}

impl Early<'_> {
    fn fail(&self, e: &Error) -> i32 {
        if !self.console_logger {
            eprintln!("{}: {e}", self.program);
        }
        if self.logger {
            log::error!("{e}");
        }
        e.exit_code()
    }
}

impl Launch {
    fn start<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>(
        mut self,
        mut services: Vec<&mut (dyn Service<U> + '_)>,
    ) -> i32
    where
        U: UserEvent + Clone,
    {
        let settings = self.config.settings().clone();
        let files = Files::of(&settings, &self.base, None);
        let mut early = Early {
            program: &self.program,
            console_logger: false,
            logger: false,
        };

        // Every value from the configuration that needs the system (accounts, directories)
        // is checked before anything else happens.
        let accounts = match preflight::check(&self.config) {
            Ok(a) => a,
            Err(e) => return early.fail(&e),
        };
        safepath::set_service_user(accounts.user);
        #[cfg(not(feature = "metrics"))]
        if settings.metrics_file.is_some() {
            let e = Error::config(
                "metrics_file",
                "this program was built without zendaemon's 'metrics' feature",
            );
            return early.fail(&e);
        }

        // Per-user runtime directory, when a default path lies in it.
        if let Some(rt) = &self.runtime_dir {
            let used = [
                &files.pid_file,
                &files.state_file,
                &files.runlog_dir,
                &files.pstate_file,
                &files.log_file,
            ]
            .iter()
            .any(|p| p.starts_with(rt));
            if used {
                if let Err(e) = paths::ensure_runtime_dir(rt, nix::unistd::geteuid().as_raw()) {
                    return early.fail(&e);
                }
            }
        }

        // The pidfile's start lock, before any component runs: a second instance is refused
        // before it configures anything or opens the log.
        let pidfile = if settings.parallel {
            None
        } else {
            match Pidfile::acquire(&files.pid_file) {
                Ok(p) => Some(p),
                Err(e) => return early.fail(&e),
            }
        };

        // Configure and restore the services, build the kernel: all before forking.
        for s in &mut services {
            if let Err(e) = s.configure(&self.config) {
                return early.fail(&e);
            }
        }
        // The default place, empty yet: the old default place is read once, and the state
        // moves at the first checkpoint.
        let default_pstate = files.pstate_file.starts_with(&self.pstate_dir);
        let migrate = default_pstate
            && files.pstate_file != self.old_pstate_file
            && !files.pstate_file.exists()
            && self.old_pstate_file.exists();
        let loaded = if migrate {
            Pstate::load(&self.old_pstate_file).map(|mut p| {
                p.set_path(files.pstate_file.clone());
                p
            })
        } else {
            Pstate::load(&files.pstate_file)
        };
        let pstate = match loaded {
            Ok(p) => p,
            Err(e) => return early.fail(&e),
        };
        for s in &mut services {
            if let Err(e) = s.restore(pstate.get(s.name())) {
                return early.fail(&e);
            }
        }
        if services.len() > M {
            let e = Error::Daemon(format!(
                "{} components, but the daemon has room for {M}",
                services.len()
            ));
            return early.fail(&e);
        }
        let requests = Requests::new();
        // What the kernel dispatches, for the stop watchdog's last words.
        let activity = Arc::new(Activity::new());
        let mut kernel: Box<ServiceKernel<'_, U, M, K, H, S, T>> =
            Box::new(Kernel::new(kernel_settings(&settings)));
        for service in services {
            let name = service.name();
            if let Err(e) = kernel.add(service) {
                let e = Error::Daemon(format!("cannot add component '{name}': {e}"));
                return early.fail(&e);
            }
        }

        // Logging.
        let logger = if logging::claim_facade() {
            let (target, fallback) = match log_target(&settings, &files) {
                Ok(t) => t,
                Err(e) => return early.fail(&e),
            };
            let mut fell_back = None;
            let made =
                Logger::new(&settings.name, target, settings.log_level).or_else(
                    |e| match fallback {
                        Some(f) => {
                            fell_back = Some(e);
                            Logger::new(&settings.name, f, settings.log_level)
                        }
                        None => Err(e),
                    },
                );
            let logger = match made.and_then(Logger::install) {
                Ok(l) => l,
                Err(e) => return early.fail(&e),
            };
            logger.set_format(settings.log_format);
            if let Some(e) = fell_back {
                log::warn!("{e}: logging to stderr with priority prefixes instead");
            }
            early.console_logger = matches!(
                logger.target(),
                Target::Console | Target::ConsolePrefixed | Target::Journald
            );
            Some(logger)
        } else {
            log::info!(
                "logging through the program's own logger: log_target, log_format and \
                 log_level do not apply"
            );
            None
        };
        early.logger = true;

        // The directories of the files written later, held open from before the privilege
        // drop; temporary files that a killed run left in them are removed.
        if let Err(e) = prepare_dirs(&files, &settings) {
            return early.fail(&e);
        }

        let (user, group) = (accounts.user, accounts.group);
        if migrate {
            log::info!(
                "persistent state read from its old place '{}'; from now on it is kept in '{}'",
                self.old_pstate_file.display(),
                files.pstate_file.display()
            );
        }
        if default_pstate {
            // Private, and the daemon's own after a privilege drop.
            let owner = user.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
            let made = paths::ensure_private_dir(&self.pstate_dir, owner).or_else(|e| {
                let ours = std::fs::symlink_metadata(&self.pstate_dir)
                    .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
                if user.is_some() && ours {
                    // Created by root just now: hand it to the daemon's user.
                    nix::unistd::chown(
                        &self.pstate_dir,
                        user.map(nix::unistd::Uid::from_raw),
                        group.map(nix::unistd::Gid::from_raw),
                    )
                    .map_err(|c| Error::io("hand over directory", &self.pstate_dir, c.into()))?;
                    paths::ensure_private_dir(&self.pstate_dir, owner)
                } else {
                    Err(e)
                }
            });
            if let Err(e) = made {
                return early.fail(&e);
            }
        }
        let mut keep_fds = Vec::new();
        keep_fds.extend(pidfile.as_ref().map(std::os::fd::AsRawFd::as_raw_fd));
        keep_fds.extend(logger.and_then(Logger::file_fd));
        keep_fds.extend(logger.and_then(Logger::socket_fd));
        keep_fds.extend(safepath::held_fds());
        let mut opts = DaemonOptions {
            chroot_dir: settings.chroot_dir.clone(),
            work_dir: Some(settings.work_dir.clone()),
            umask: Some(settings.umask),
            user,
            group,
            keep_fds,
            start_timeout: Some(settings.start_timeout),
        };
        // The privilege drop comes after the services' `acquire`, in the daemon.
        let privileges = match Privileges::plan(&opts) {
            Ok(p) => p,
            Err(e) => return early.fail(&e),
        };
        (opts.user, opts.group) = (None, None);
        log::debug!(
            "configuration files read: {:?}; starting {}",
            self.config.files(),
            if settings.no_daemon {
                "in the foreground"
            } else {
                "as a daemon"
            }
        );
        let readiness = if settings.no_daemon {
            match foreground(&opts) {
                Ok(()) => Readiness::detached(),
                Err(e) => return early.fail(&e),
            }
        } else {
            match daemonize(&opts) {
                Ok(r) => r,
                Err(e) => return early.fail(&e),
            }
        };

        // In the daemon from here on. The signal handlers and the stop watchdog come first,
        // before the PID is published (pidfile, readiness): a signal sent as soon as the PID
        // is known finds them (see "No start-up window" in the module docs).
        let pid = std::process::id();
        let files = Files::of(&settings, &self.base, settings.parallel.then_some(pid));
        let late = Late { readiness };
        let pidfile: SharedPidfile = Arc::new(Mutex::new(pidfile));
        let mut signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => return late.fail(&e, &pidfile),
        };
        signals.set_precise_timers(settings.precise_timers.then_some(settings.precise_max_spin));
        let watchdog =
            match start_watchdog::<U, M, K, H, S, T>(&settings, &kernel, &activity, &pidfile) {
                Ok(w) => w,
                Err(e) => return late.fail(&e, &pidfile),
            };
        kernel.attach_activity(&activity);
        if let Some(logger) = logger {
            logger.set_context(handler_context::<U, M, K, H, S, T>(&kernel, &activity));
        }
        let pid_path = if settings.parallel {
            instances::instance_path(&files.pid_file, pid)
        } else {
            files.pid_file.clone()
        };
        let written = {
            let mut held = pidfile.lock().unwrap_or_else(PoisonError::into_inner);
            // The run lock, taken by the daemon itself (record locks do not pass through
            // fork).
            match held.as_mut() {
                Some(p) => p.hold(),
                None => Pidfile::acquire(&pid_path).and_then(|mut p| {
                    p.hold()?;
                    *held = Some(p);
                    Ok(())
                }),
            }
        };
        if let Err(e) = written {
            return late.fail(&e, &pidfile);
        }
        let mut acquire = Acquire::new(&mut self.listeners);
        for s in kernel.components_mut() {
            if let Err(e) = s.acquire(&mut acquire) {
                let e = match e {
                    Error::Daemon(m) => Error::Daemon(format!("component '{}': {m}", s.name())),
                    other => other,
                };
                return late.fail(&e, &pidfile);
            }
        }
        self.listeners.close_unclaimed();
        if let Err(e) = privileges.apply() {
            return late.fail(&e, &pidfile);
        }
        for s in kernel.components_mut() {
            if let Err(e) = s.activate() {
                let e = match e {
                    Error::Daemon(m) => Error::Daemon(format!("component '{}': {m}", s.name())),
                    other => other,
                };
                return late.fail(&e, &pidfile);
            }
        }
        let notifier = match Notifier::from_env() {
            Ok(n) => n,
            Err(e) => {
                log::warn!("systemd notifications disabled: {e}");
                None
            }
        };
        let writer = match checkpoint::Writer::start() {
            Ok(w) => w,
            Err(e) => {
                let e = Error::Daemon(format!("cannot start the checkpoint writer: {e}"));
                return late.fail(&e, &pidfile);
            }
        };
        let mut runner = Runner {
            info: RunInfo::new(settings.name.clone(), pid, self.argv),
            pstate,
            writer,
            last_checkpoint: Vec::new(),
            pstate_moved: false,
            config: self.config,
            base: self.base,
            files,
            parallel: settings.parallel,
            logger,
            notifier,
            pidfile,
            watchdog: Some(watchdog),
            stopping: false,
            reload_pending: false,
            ping: None,
        };
        kernel.attach_requests(&requests);
        if let Err(e) = runner.start(&mut kernel) {
            return late.fail(&e, &runner.pidfile);
        }
        // The start line first: once the launcher returns, the log already says it started.
        runner.ready(pid, &pid_path);
        late.ready();
        let reason = runner.run(&mut kernel, &signals, &requests);
        runner.finish(reason, &mut kernel)
    }
}

/// Where errors go once the daemon runs and is not ready yet: the log (the console in the
/// foreground) and the launching process.
struct Late {
    readiness: Readiness,
}

impl Late {
    fn fail(self, e: &Error, pidfile: &SharedPidfile) -> i32 {
        log::error!("{e}");
        remove_pidfile(pidfile);
        let message = match e {
            Error::Daemon(m) => m.clone(),
            other => other.to_string(),
        };
        if let Err(e) = self.readiness.fail_with_code(e.exit_code(), &message) {
            log::error!("{e}");
        }
        e.exit_code()
    }

    fn ready(self) {
        if let Err(e) = self.readiness.ready() {
            log::warn!("{e}");
        }
    }
}

/// The running daemon's own state besides the kernel.
struct Runner {
    info: RunInfo,
    /// The persistent state as last collected from the services.
    pstate: Pstate,
    /// Writes checkpoints off the loop.
    writer: checkpoint::Writer,
    /// The bytes of the last checkpoint handed to the writer: an unchanged state is not
    /// written again (unless a reload moved the file).
    last_checkpoint: Vec<u8>,
    pstate_moved: bool,
    config: Config,
    base: PathBuf,
    files: Files,
    parallel: bool,
    /// The shell's logger; `None` when the program installed its own.
    logger: Option<&'static Logger>,
    notifier: Option<Notifier>,
    pidfile: SharedPidfile,
    watchdog: Option<StopWatchdog>,
    stopping: bool,
    /// A reload was applied; `READY=1` follows its event.
    reload_pending: bool,
    /// The next systemd watchdog ping, and the interval.
    ping: Option<(StdInstant, Duration)>,
}

type Kern<'k, U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize> =
    ServiceKernel<'k, U, M, K, H, S, T>;

/// How many events the loop hands the kernel per clock reading (see the module docs).
///
/// Reading the clock and the signal counters costs more than a quick event, so the loop
/// does both once per batch of up to [`Batch::MAX`] events. A timer that falls due, or a
/// signal that comes, during a batch waits for its end, so a batch must stay short: one
/// that took longer than [`Batch::BUDGET_US`] makes the next batch a single event, and the
/// size doubles again from there after each batch that used its whole limit in time. Every
/// batch is timed, also one that ended early (idle, a lifecycle event, a stop). Slow handlers
/// therefore get a clock reading and a signal check per event, as without batching; quick
/// ones share them.
#[derive(Debug)]
struct Batch {
    limit: NonZeroU32,
    /// When the last batch that used its whole limit began.
    full_since: Option<Instant<StdClock>>,
}

impl Batch {
    /// The most events per batch.
    const MAX: NonZeroU32 = NonZeroU32::new(16).unwrap();
    /// The longest a batch may take before the next one is a single event, in µs.
    const BUDGET_US: u64 = 20;

    fn new() -> Self {
        Self {
            limit: NonZeroU32::MIN,
            full_since: None,
        }
    }

    /// The limit for a batch starting `now`, adapted to how long the last full one took.
    fn limit(&mut self, now: Instant<StdClock>) -> NonZeroU32 {
        if let Some(since) = self.full_since.take() {
            self.limit = if Self::took(since, now) > Self::BUDGET_US {
                NonZeroU32::MIN
            } else {
                self.limit
                    .saturating_mul(NonZeroU32::new(2).unwrap())
                    .min(Self::MAX)
            };
        }
        self.limit
    }

    /// The batch that began at `since` dispatched its whole limit; the next call to
    /// [`limit`](Self::limit) times it.
    fn was_full(&mut self, since: Instant<StdClock>) {
        self.full_since = Some(since);
    }

    /// The batch that began at `since` ended early, at `until`: a slow one makes the next
    /// batch a single event; a quick one leaves the limit as it is (it did not use it all).
    fn ended_early(&mut self, since: Instant<StdClock>, until: Instant<StdClock>) {
        self.full_since = None;
        if Self::took(since, until) > Self::BUDGET_US {
            self.limit = NonZeroU32::MIN;
        }
    }

    /// Microseconds from `since` to `until`.
    fn took(since: Instant<StdClock>, until: Instant<StdClock>) -> u64 {
        StdClock::ticks(until).saturating_sub(StdClock::ticks(since))
    }
}

impl Runner {
    fn notify(&self, what: impl FnOnce(&Notifier) -> Result<()>) {
        if let Some(n) = &self.notifier {
            if let Err(e) = what(n) {
                log::warn!("{e}");
            }
        }
    }

    /// Starts the kernel (which arms the periodic events), dispatches `start`.
    fn start<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>(
        &mut self,
        kernel: &mut Kern<'_, U, M, K, H, S, T>,
    ) -> Result<()>
    where
        U: UserEvent + Clone,
    {
        kernel
            .start(StdClock::now())
            .map_err(|e| Error::Daemon(format!("cannot start the kernel: {e}")))?;
        match kernel.step(StdClock::now()) {
            Ok(Step::Dispatched { kind, .. }) if kind == Kind::START => self.write_metrics(kernel),
            other => {
                return Err(Error::Daemon(format!(
                    "the kernel did not dispatch start first: {other:?}"
                )))
            }
        }
        // The first checkpoint, written before the daemon reports ready: a first run that
        // crashes still knows where it began.
        kernel.request_checkpoint();
        match kernel.step(StdClock::now()) {
            Ok(Step::Dispatched { kind, .. }) if kind == Kind::CHECKPOINT => {}
            other => {
                return Err(Error::Daemon(format!(
                    "the kernel did not dispatch the start checkpoint: {other:?}"
                )))
            }
        }
        self.collect(kernel);
        if let Some(bytes) = self.pstate.to_bytes() {
            atomic::write_atomic_mode(self.pstate.path(), &bytes, atomic::PRIVATE_MODE)?;
            self.last_checkpoint = bytes;
        }
        Ok(())
    }

    /// Takes every service's [`persist`](Service::persist) into the persistent state (and
    /// its path from the configuration, which a reload may have moved); true when a service
    /// gave something.
    fn collect<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>(
        &mut self,
        kernel: &Kern<'_, U, M, K, H, S, T>,
    ) -> bool
    where
        U: UserEvent + Clone,
    {
        let mut persisted = false;
        for s in kernel.components() {
            if let Some(v) = s.persist() {
                self.pstate.set(s.name(), v);
                persisted = true;
            }
        }
        if self.files.pstate_file != self.pstate.path() {
            // A reload moved the file: the state goes to the new path.
            self.pstate.set_path(self.files.pstate_file.clone());
            self.pstate_moved = true;
        }
        persisted
    }

    /// A checkpoint after `checkpoint` went through the kernel: the state is collected and
    /// serialized here, and written by the [`checkpoint::Writer`] thread (an unchanged state
    /// is not written again).
    fn checkpoint<
        U,
        const M: usize,
        const K: usize,
        const H: usize,
        const S: usize,
        const T: usize,
    >(
        &mut self,
        kernel: &Kern<'_, U, M, K, H, S, T>,
    ) where
        U: UserEvent + Clone,
    {
        for e in self.writer.take_errors() {
            self.info.record_error(e);
        }
        self.collect(kernel);
        let Some(bytes) = self.pstate.to_bytes() else {
            return;
        };
        if bytes == self.last_checkpoint && !self.pstate_moved {
            return;
        }
        self.pstate_moved = false;
        self.last_checkpoint.clone_from(&bytes);
        self.writer.submit(self.pstate.path().to_path_buf(), bytes);
    }

    fn ready(&mut self, pid: u32, pid_path: &Path) {
        self.notify(|n| n.send(&format!("READY=1\nSTATUS=running\nMAINPID={pid}")));
        if self.notifier.is_some() {
            self.ping = notify::watchdog_interval().map(|i| {
                let every = (i / 2).max(Duration::from_millis(1));
                (StdInstant::now() + every, every)
            });
        }
        log::info!(
            "{} started (pid {pid}, pidfile '{}')",
            self.info.name,
            pid_path.display()
        );
    }

    /// Pings systemd's watchdog when due; returns the next ping's instant. Without pings (no
    /// `WATCHDOG_USEC`, the usual case) this is one inlined branch: no call, no clock read.
    #[inline]
    fn ping_if_due(&mut self) -> Option<StdInstant> {
        self.ping?;
        self.ping_now(StdInstant::now())
    }

    /// [`Runner::ping_if_due`] when systemd asked for pings.
    #[inline(never)]
    fn ping_now(&mut self, now: StdInstant) -> Option<StdInstant> {
        let (next, every) = self.ping?;
        if now < next {
            return Some(next);
        }
        self.notify(Notifier::watchdog);
        let next = now + every;
        self.ping = Some((next, every));
        Some(next)
    }

    /// The event loop; returns why it ended.
    fn run<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>(
        &mut self,
        kernel: &mut Kern<'_, U, M, K, H, S, T>,
        signals: &Signals,
        requests: &Requests,
    ) -> EndReason
    where
        U: UserEvent + Clone,
    {
        let mut batch = Batch::new();
        loop {
            if kernel.is_done() && !self.stopping {
                // A component asked for the stop (in the last batch, or in `start`): `stop`
                // goes next, and is guarded from its start.
                self.begin_stop(kernel);
            }
            let next_ping = self.ping_if_due();
            self.take_signals(kernel, signals, requests);
            let now = StdClock::now();
            let limit = batch.limit(now);
            let result = kernel.run(now, limit);
            if result == Ok(Run::Limit) {
                // Timed by the next turn's clock reading, which comes at once.
                batch.was_full(now);
            } else {
                batch.ended_early(now, StdClock::now());
            }
            match result {
                Ok(Run::Limit | Run::StopRequested) => {}
                Ok(Run::Lifecycle(kind)) => self.after(kind, kernel, now),
                Ok(Run::Idle) => {
                    let deadline = kernel.next_deadline().and_then(StdClock::to_std);
                    let deadline = match (deadline, next_ping) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    if let Err(e) = signals.wait_until(deadline) {
                        // Not expected; do not spin on it.
                        log::error!("{e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                Ok(Run::Ended(reason)) => return reason,
                // A reason to return early this shell does not know of: the next call goes on.
                Ok(_) => {}
                Err(StepError::Unhandled(kind)) => {
                    let event = kind.name::<U>();
                    let message = format!("no handler for event '{event}'");
                    log::error!(event = event; "{message}");
                    self.info.record_error(message);
                }
                Err(e) => {
                    log::error!("{e}");
                    self.info.record_error(e.to_string());
                }
            }
        }
    }

    /// Turns the signals that arrived into kernel requests (and a reload).
    fn take_signals<
        U,
        const M: usize,
        const K: usize,
        const H: usize,
        const S: usize,
        const T: usize,
    >(
        &mut self,
        kernel: &mut Kern<'_, U, M, K, H, S, T>,
        signals: &Signals,
        requests: &Requests,
    ) where
        U: UserEvent + Clone,
    {
        let mut stop_posted = false;
        for (signal, n) in signals.take_pending() {
            match signal {
                Signal::Int => {
                    log::warn!("received SIGINT ({n}x): graceful stop requested");
                    (0..n).for_each(|_| requests.post(Request::Stop));
                    stop_posted = true;
                    // Before the step that dispatches `stop`: its handlers may never return.
                    self.begin_stop(kernel);
                }
                Signal::Term => match self.config.settings().sigterm {
                    Sigterm::Terminate => {
                        log::warn!("received SIGTERM: terminating");
                        requests.post(Request::Terminate);
                        stop_posted = true;
                    }
                    Sigterm::Stop => {
                        // `sigterm: stop`: SIGTERM is SIGINT, each one a stop request.
                        log::warn!("received SIGTERM ({n}x): graceful stop requested");
                        (0..n).for_each(|_| requests.post(Request::Stop));
                        stop_posted = true;
                        self.begin_stop(kernel);
                    }
                },
                Signal::Hup => {
                    if stop_posted || kernel.is_done() || self.stopping {
                        log::info!("received SIGHUP: ignored while stopping");
                    } else {
                        log::info!("received SIGHUP: reloading");
                        if self.reload(kernel) {
                            requests.post(Request::Reload);
                        }
                    }
                }
                Signal::Usr1 => {
                    log::info!("received SIGUSR1: saving the runlog");
                    requests.post(Request::SaveRunlog);
                }
                Signal::Usr2 => {
                    log::info!("received SIGUSR2: saving the state");
                    requests.post(Request::SaveState);
                }
                Signal::Alrm => log::debug!("received SIGALRM: wake-up"),
            }
        }
    }

    /// The shell's part after an event's pipeline ran.
    fn after<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>(
        &mut self,
        kind: Kind,
        kernel: &mut Kern<'_, U, M, K, H, S, T>,
        now: Instant<StdClock>,
    ) where
        U: UserEvent + Clone,
    {
        match kind {
            Kind::SAVE_RUNLOG => self.write_runlog(kernel, now),
            Kind::SAVE_STATE => self.write_state(kernel, now),
            Kind::CHECKPOINT => self.checkpoint(kernel),
            Kind::LOG_STATISTICS => {
                log_statistics(kernel, now);
                self.write_metrics(kernel);
                kernel.rotate_statistics(now);
            }
            Kind::RELOAD if std::mem::take(&mut self.reload_pending) => {
                self.notify(|n| n.send("READY=1\nSTATUS=running"));
                log::info!("reload complete");
            }
            // Normally begun already, when the request came.
            Kind::STOP => self.begin_stop(kernel),
            Kind::TERMINATE => log::warn!(
                "graceful stop did not finish within the stop timeout of {} s: terminating",
                self.config.settings().stop_timeout.as_secs_f64()
            ),
            _ => {}
        }
    }

    /// Guards a stop from its start: the [`StopWatchdog`]'s stop timeout, counted from the
    /// signal's arrival, and systemd's `STOPPING=1`.
    fn begin_stop<
        U,
        const M: usize,
        const K: usize,
        const H: usize,
        const S: usize,
        const T: usize,
    >(
        &mut self,
        kernel: &mut Kern<'_, U, M, K, H, S, T>,
    ) where
        U: UserEvent + Clone,
    {
        if self.stopping {
            return;
        }
        self.stopping = true;
        log::info!("graceful stop initiated");
        self.notify(|n| n.send("STOPPING=1\nSTATUS=stopping"));
        // The stop timeout counts from the stop's beginning: the first SIGINT's arrival, as
        // the watchdog saw it, which may lie well before now if a handler held the loop.
        if let Some(w) = &self.watchdog {
            let since = w.stop_began();
            let left = self
                .config
                .settings()
                .stop_timeout
                .saturating_sub(since.elapsed());
            kernel.set_stop_timeout(millis(left));
        }
    }

    /// Reloads the configuration; true when it was applied.
    fn reload<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>(
        &mut self,
        kernel: &mut Kern<'_, U, M, K, H, S, T>,
    ) -> bool
    where
        U: UserEvent + Clone,
    {
        self.notify(Notifier::reloading);
        if let Err(e) = self.logger.map_or(Ok(()), Logger::reopen) {
            log::error!("{e}");
        }
        let new = match self.config.reload() {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload refused, keeping the previous configuration: {e}");
                self.notify(|n| n.send("READY=1\nSTATUS=running (reload refused)"));
                return false;
            }
        };
        if let Err((name, e)) = service::configure_all(kernel, &new, &self.config) {
            log::error!(
                "reload refused by component '{name}', keeping the previous configuration: {e}"
            );
            self.notify(|n| n.send("READY=1\nSTATUS=running (reload refused)"));
            return false;
        }
        self.apply(new, kernel);
        self.reload_pending = true;
        true
    }

    /// Applies a new, accepted configuration's shell settings.
    fn apply<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>(
        &mut self,
        new: Config,
        kernel: &mut Kern<'_, U, M, K, H, S, T>,
    ) where
        U: UserEvent + Clone,
    {
        let old = self.config.settings().clone();
        let s = new.settings().clone();
        self.config = new;
        let files = Files::of(&s, &self.base, self.parallel.then_some(self.info.pid));
        if let Some(logger) = self.logger {
            logger.set_level(s.log_level);
            logger.set_format(s.log_format);
            let to_file = matches!(logger.target(), Target::File(_));
            if to_file && files.log_file != self.files.log_file {
                match logger.set_target(Target::File(files.log_file.clone())) {
                    Ok(()) => log::info!("logging to '{}'", files.log_file.display()),
                    Err(e) => log::error!("{e}; logging goes on to the previous file"),
                }
            }
        }
        let pid_file = self.files.pid_file.clone();
        self.files = Files { pid_file, ..files };
        let restart_only = [
            ("pid_file", old.pid_file != s.pid_file),
            ("work_dir", old.work_dir != s.work_dir),
            ("chroot_dir", old.chroot_dir != s.chroot_dir),
            ("umask", old.umask != s.umask),
            ("user", old.user != s.user),
            ("group", old.group != s.group),
            ("no_daemon", old.no_daemon != s.no_daemon),
            ("parallel", old.parallel != s.parallel),
            ("start_timeout", old.start_timeout != s.start_timeout),
            ("precise_timers", old.precise_timers != s.precise_timers),
            ("log_target", old.log_target != s.log_target),
            ("syslog_socket", old.syslog_socket != s.syslog_socket),
            (
                "precise_max_spin",
                old.precise_max_spin != s.precise_max_spin,
            ),
        ];
        for (key, changed) in restart_only {
            if changed {
                log::warn!("'{key}' changed: it takes effect at the next start");
            }
        }
        if old.sigterm != s.sigterm {
            if let Some(w) = &self.watchdog {
                w.set_term_is_stop(s.sigterm == Sigterm::Stop);
            }
            log::info!("'sigterm' changed to {}", s.sigterm.as_str());
        }
        if old.stop_timeout != s.stop_timeout {
            // Reload is refused while stopping, so no stop is under way: both the kernel's
            // `terminate` deadline and the stop watchdog (`begin_stop` reads `self.config`)
            // use the new value at the next stop.
            kernel.set_stop_timeout(millis(s.stop_timeout));
            if let Some(w) = &self.watchdog {
                w.set_stop_timeout(s.stop_timeout);
            }
            log::info!(
                "'stop_timeout' changed to {} s: it applies to the next stop",
                s.stop_timeout.as_secs_f64()
            );
        }
        let periods = [
            (
                Periodic::Statistics,
                "stats_interval",
                old.stats_interval,
                s.stats_interval,
            ),
            (
                Periodic::Runlog,
                "runlog_interval",
                old.runlog_interval,
                s.runlog_interval,
            ),
            (
                Periodic::Checkpoint,
                "pstate_interval",
                old.pstate_interval,
                s.pstate_interval,
            ),
        ];
        for (which, key, was, is) in periods {
            if was != is {
                if let Err(e) = kernel.set_period(which, Some(millis(is)), StdClock::now()) {
                    log::error!("cannot re-arm '{key}' with {} s: {e}", is.as_secs_f64());
                }
            }
        }
        log::info!("configuration reloaded");
    }

    fn write_runlog<
        U,
        const M: usize,
        const K: usize,
        const H: usize,
        const S: usize,
        const T: usize,
    >(
        &mut self,
        kernel: &Kern<'_, U, M, K, H, S, T>,
        now: Instant<StdClock>,
    ) where
        U: UserEvent + Clone,
    {
        let doc = report::runlog(&self.info, kernel, now);
        let dir = &self.files.runlog_dir;
        let path = runlog::new_path(dir, SystemTime::now(), self.info.pid);
        let name = path.file_name().unwrap_or_default();
        let written = runlog_dir(dir).and_then(|d| {
            atomic::write_in(
                &d,
                name,
                report::to_text(&doc).as_bytes(),
                atomic::DEFAULT_MODE,
            )
        });
        match written {
            Ok(()) => log::info!("runlog saved to '{}'", path.display()),
            Err(e) => log::error!("{e}"),
        }
    }

    /// Writes the metrics file, if there is one (see [`metrics`](crate::metrics)).
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    fn write_metrics<
        U,
        const M: usize,
        const K: usize,
        const H: usize,
        const S: usize,
        const T: usize,
    >(
        &self,
        kernel: &Kern<'_, U, M, K, H, S, T>,
    ) where
        U: UserEvent + Clone,
    {
        #[cfg(feature = "metrics")]
        if let Some(path) = &self.files.metrics_file {
            let text = crate::metrics::render(&metric_figures(&self.info.name, kernel));
            if let Err(e) = atomic::write_atomic(path, text.as_bytes()) {
                log::error!("metrics not written: {e}");
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = kernel;
    }

    fn write_state<
        U,
        const M: usize,
        const K: usize,
        const H: usize,
        const S: usize,
        const T: usize,
    >(
        &mut self,
        kernel: &Kern<'_, U, M, K, H, S, T>,
        now: Instant<StdClock>,
    ) where
        U: UserEvent + Clone,
    {
        let doc = report::state(&self.info, &self.config, kernel, now);
        let path = &self.files.state_file;
        match atomic::write_atomic_mode(
            path,
            report::to_text(&doc).as_bytes(),
            atomic::PRIVATE_MODE,
        ) {
            Ok(()) => log::info!("state saved to '{}'", path.display()),
            Err(e) => log::error!("{e}"),
        }
    }

    /// The end of the run: persistent state, final runlog, pidfile.
    fn finish<U, const M: usize, const K: usize, const H: usize, const S: usize, const T: usize>(
        mut self,
        reason: EndReason,
        kernel: &mut Kern<'_, U, M, K, H, S, T>,
    ) -> i32
    where
        U: UserEvent + Clone,
    {
        log::info!("{}: {reason}", self.info.name);
        if !self.stopping {
            self.notify(|n| n.send("STOPPING=1\nSTATUS=stopping"));
        }
        // The last checkpoint, synchronously, after the writer's: it cannot be overtaken.
        self.writer.flush();
        for e in self.writer.take_errors() {
            self.info.record_error(e);
        }
        let persisted = self.collect(kernel);
        match self.pstate.save() {
            Ok(()) if persisted => log::info!(
                "persistent state saved to '{}'",
                self.files.pstate_file.display()
            ),
            Ok(()) => {}
            Err(e) => {
                log::error!("{e}");
                self.info.record_error(e.to_string());
            }
        }
        let now = StdClock::now();
        self.write_runlog(kernel, now);
        remove_pidfile(&self.pidfile);
        if let Some(w) = self.watchdog.take() {
            w.cancel();
        }
        let rc = self.info.rc();
        log::info!("{} exits with code {rc}", self.info.name);
        rc
    }
}

/// The kernel's and the components' figures for the metrics file.
#[cfg(feature = "metrics")]
fn metric_figures<
    U,
    const M: usize,
    const K: usize,
    const H: usize,
    const S: usize,
    const T: usize,
>(
    daemon: &str,
    kernel: &Kern<'_, U, M, K, H, S, T>,
) -> crate::metrics::Figures
where
    U: UserEvent + Clone,
{
    use embedded_time::Clock as _;
    let stats = kernel.stats();
    let queue = kernel.queue_stats();
    // Every lifecycle kind: the array's length is checked against the core's count.
    let builtin: [Kind; zendaemon_core::event::BUILTIN_KINDS] = [
        Kind::START,
        Kind::STOP,
        Kind::TERMINATE,
        Kind::RELOAD,
        Kind::SAVE_RUNLOG,
        Kind::SAVE_STATE,
        Kind::LOG_STATISTICS,
        Kind::CHECKPOINT,
    ];
    let kinds = builtin.into_iter().chain((0..U::KINDS).map(Kind::user));
    let dispatched = kinds
        .filter_map(|k| {
            let n = *stats.dispatched.get(k.index())?;
            Some((k.name::<U>(), n))
        })
        .collect();
    let components = kernel
        .components()
        .map(|c| {
            let counters = c
                .counters()
                .map(|set| {
                    (0..set.len())
                        .map(|i| {
                            let (key, value, _) = set.entry(i);
                            (key, value)
                        })
                        .collect()
                })
                .unwrap_or_default();
            (c.name(), counters)
        })
        .collect();
    let scale = StdClock::SCALING_FACTOR;
    crate::metrics::Figures {
        daemon: daemon.to_owned(),
        components,
        dispatched,
        unhandled: stats.unhandled,
        rejected: u64::from(queue.rejected),
        stop_requests: u64::from(stats.stop_requests),
        inbox_deferred: stats.inbox_deferred,
        missed_periods: u64::from(queue.missed_periods),
        sequential_high_water: u64::from(queue.sequential_high_water),
        timed_high_water: u64::from(queue.timed_high_water),
        lateness: stats.lateness,
        ticks_per_second: f64::from(*scale.denominator()) / f64::from(*scale.numerator()),
    }
}

/// Logs every component's counters (pyzenkit's statistics pattern).
fn log_statistics<
    U,
    const M: usize,
    const K: usize,
    const H: usize,
    const S: usize,
    const T: usize,
>(
    kernel: &Kern<'_, U, M, K, H, S, T>,
    now: Instant<StdClock>,
) where
    U: UserEvent + Clone,
{
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    let stats = kernel.stats();
    log::info!(
        "statistics: {} events, {} unhandled, {} rejected by full queues",
        stats.total_dispatched(),
        stats.unhandled,
        kernel.queue_stats().rejected
    );
    kernel.for_each_rate(now, |component, key, rate| {
        log::info!(
            component = component;
            "component '{component}': {key:<20} {:>14} ({:>+10}, {:>10.2} #/s, {:>7.2} %)",
            rate.cnt,
            rate.inc,
            rate.spd(),
            rate.pct()
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: u64) -> Instant<StdClock> {
        Instant::new(us)
    }

    #[test]
    fn batches_double_while_quick_and_fall_to_one_event_after_a_slow_one() {
        let mut batch = Batch::new();
        let mut t = 1_000;
        let mut limits = Vec::new();
        for _ in 0..7 {
            limits.push(batch.limit(at(t)).get());
            batch.was_full(at(t));
            t += Batch::BUDGET_US; // exactly the budget: still quick
        }
        assert_eq!(limits, [1, 2, 4, 8, 16, 16, 16]);
        // This batch takes longer than the budget: the next one is a single event.
        batch.was_full(at(t));
        t += Batch::BUDGET_US + 1;
        assert_eq!(batch.limit(at(t)).get(), 1);
    }

    #[test]
    fn batches_that_end_early_are_timed_too() {
        let mut batch = Batch::new();
        let mut t = 0;
        for _ in 0..5 {
            batch.limit(at(t));
            batch.was_full(at(t));
            t += 1;
        }
        assert_eq!(batch.limit(at(t)).get(), 16);
        // A quick batch that ended early (idle): the limit stays; the time asleep after it
        // is not its cost.
        batch.ended_early(at(t), at(t + Batch::BUDGET_US));
        t += 1_000_000;
        assert_eq!(batch.limit(at(t)).get(), 16);
        // Bursts of slow events that never fill a batch (each ends idle): every one of them
        // is timed, and the next batches hold one event each.
        let mut limits = Vec::new();
        for _ in 0..4 {
            let limit = batch.limit(at(t)).get();
            limits.push(limit);
            batch.ended_early(at(t), at(t + 100_000));
            t += 1_000_000;
        }
        assert_eq!(limits, [16, 1, 1, 1]);
    }

    #[test]
    fn durations_become_milliseconds_rounded_up() {
        assert_eq!(millis(Duration::from_secs(300)), Milliseconds(300_000u32));
        assert_eq!(millis(Duration::from_micros(1500)), Milliseconds(2u32));
        assert_eq!(
            millis(Duration::from_secs(u64::MAX)),
            Milliseconds(u32::MAX)
        );
    }

    #[test]
    fn relative_paths_become_absolute() {
        let mut cli = Cli {
            pid_file: Some("run/d.pid".into()),
            log_file: Some("/var/log/d.log".into()),
            work_dir: Some("w".into()),
            ..Cli::default()
        };
        absolutize_cli(&mut cli, Path::new("/home/u"));
        assert_eq!(
            cli.pid_file.as_deref(),
            Some(Path::new("/home/u/run/d.pid"))
        );
        assert_eq!(cli.log_file.as_deref(), Some(Path::new("/var/log/d.log")));
        assert_eq!(cli.work_dir.as_deref(), Some(Path::new("w")));
    }

    #[test]
    fn log_targets_from_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = paths::DefaultPaths {
            pid_file: "d.pid".into(),
            runlog_dir: "r".into(),
            state_file: "d.state".into(),
            pstate_file: "d.pstate".into(),
            pstate_dir: "state".into(),
            old_pstate_file: "old/d.pstate".into(),
            log_file: "d.log".into(),
            config_file: dir.path().join("d.conf"),
            config_dir: dir.path().join("d"),
            runtime_dir: None,
        };
        let target = |args: &[&str]| {
            let mut argv = vec!["d".to_owned()];
            argv.extend(args.iter().map(|a| (*a).to_owned()));
            let Ok(Parsed::Run(cli)) = Cli::parse(&argv) else {
                panic!("{args:?}")
            };
            let config = Config::load("d", &cli, &defaults, &[]).unwrap();
            let files = Files::of(config.settings(), Path::new("/b"), None);
            log_target(config.settings(), &files)
        };
        let log = Target::File("/b/d.log".into());
        assert_eq!(target(&[]).unwrap(), (log.clone(), None));
        assert_eq!(target(&["--log-target", "file"]).unwrap(), (log, None));
        assert_eq!(
            target(&["--log-target", "syslog", "--syslog-socket", "/s"]).unwrap(),
            (Target::Syslog("/s".into()), None)
        );
        assert_eq!(
            target(&["--log-target", "console", "--no-daemon"]).unwrap(),
            (Target::Console, None)
        );
        for word in ["console", "journald"] {
            let err = target(&["--log-target", word]).unwrap_err();
            assert_eq!(err.exit_code(), exit::CONFIG);
            assert!(err.to_string().contains("only in the foreground"), "{err}");
        }
    }

    #[test]
    fn parallel_instances_get_their_own_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = paths::DefaultPaths {
            pid_file: "d.pid".into(),
            runlog_dir: "r".into(),
            state_file: "s/d.state".into(),
            pstate_file: "d.pstate".into(),
            pstate_dir: ".".into(),
            old_pstate_file: "old.pstate".into(),
            log_file: "d.log".into(),
            config_file: dir.path().join("d.conf"),
            config_dir: dir.path().join("d"),
            runtime_dir: None,
        };
        let config = Config::load("d", &Cli::default(), &defaults, &[]).unwrap();
        let f = Files::of(config.settings(), Path::new("/b"), Some(42));
        assert_eq!(f.state_file, Path::new("/b/s/d.42.state"));
        assert_eq!(f.pid_file, Path::new("/b/d.pid"));
        let f = Files::of(config.settings(), Path::new("/b"), None);
        assert_eq!(f.state_file, Path::new("/b/s/d.state"));
    }
}
