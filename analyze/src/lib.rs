//! hf-eco2ai offline analysis of recorded runs.

pub mod footprint;
pub mod replay;
pub mod summary;
