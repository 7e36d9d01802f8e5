//! Code shared by the integration tests (and, through a `#[path]` include, the fuzz targets).

pub mod kernel_model;
pub mod model;
