//! zendaemon: the std shell that turns the `zendaemon-core` kernel into a Unix daemon.
#![warn(missing_docs, missing_debug_implementations)]

pub use zendaemon_core as core;

pub mod actions;
pub mod atomic;
mod civil;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod daemonize;
pub mod error;
pub mod instances;
pub mod logging;
pub mod notify;
pub mod paths;
pub mod pidfile;
pub mod pstate;
pub mod report;
pub mod runlog;
pub mod service;
pub mod signals;
pub mod watchdog;

pub use clock::StdClock;
pub use config::Config;
pub use daemon::Daemon;
pub use error::{Error, Result};
pub use service::Service;
