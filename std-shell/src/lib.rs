//! zendaemon: the std shell that turns the `zendaemon-core` kernel into a Unix daemon.
#![warn(missing_docs, missing_debug_implementations)]

pub use zendaemon_core as core;

pub mod atomic;
mod civil;
pub mod cli;
pub mod config;
pub mod daemonize;
pub mod error;
pub mod logging;
pub mod notify;
pub mod paths;
pub mod pidfile;
pub mod runlog;
pub mod signals;
pub mod watchdog;

pub use error::{Error, Result};
