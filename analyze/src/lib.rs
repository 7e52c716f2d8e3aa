//! hf-eco2ai offline analysis of recorded runs.

pub mod energy;
pub mod figures;
pub mod footprint;
pub mod heatmap;
pub mod html;
pub mod numfmt;
pub mod png;
pub mod replay;
pub mod report;
pub mod report_text;
pub mod series;
pub mod summary;
pub mod synth;
