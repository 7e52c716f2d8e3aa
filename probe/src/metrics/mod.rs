//! Live metrics: the hf_training_* families on /metrics while a run records.

pub mod render;
pub mod server;
pub mod state;

pub use server::MetricsServer;
pub use state::{MetricsState, RunInfo};
