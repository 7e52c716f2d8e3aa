//! hf-eco2ai offline analysis of recorded runs.

pub mod energy;
pub mod footprint;
pub mod job;
pub use eco2ai_trace::numfmt;
pub mod replay;
pub mod report;
pub mod series;
pub mod summary;
pub mod synth;
pub mod synth_job;
