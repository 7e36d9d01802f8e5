//! The std shell of zendaemon (work in progress): re-exports the core.
pub use zendaemon_core as core;
