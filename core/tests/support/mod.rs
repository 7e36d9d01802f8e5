//! Code shared by the integration tests (and, through a `#[path]` include, the fuzz target).

pub mod model;
