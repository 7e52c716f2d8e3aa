//! The hf_training_* metric families: a state fed with trace rows (live by the probe's
//! writer, offline by the analyzer's replay) and a renderer that hands every family and
//! sample to a [`Sink`]: the Prometheus text format here, OpenMetrics with timestamps and
//! remote_write in the analyzer. One renderer, so live and replayed metrics cannot drift.

pub mod phases;
pub mod proto;
pub mod render;
pub mod server;
pub mod state;
pub mod text;
pub mod web_config;

pub use phases::{LivePhases, PhaseTotals};
pub use render::{Kind, Sink, render};
pub use server::MetricsServer;
pub use state::{GpuLive, MetricsState, RunInfo};
pub use text::{TextSink, escape, push_escaped};
pub use web_config::{WebConfig, WebConfigError};
