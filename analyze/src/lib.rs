//! hf-eco2ai offline analysis of recorded runs.

pub mod energy;
pub mod figures;
pub mod footprint;
pub mod heatmap;
pub mod html;
pub mod job;
pub use eco2ai_trace::numfmt;
pub mod png;
pub mod replay;
pub mod report;
pub mod report_text;
pub mod series;
pub mod summary;
pub mod synth;
pub mod synth_job;
