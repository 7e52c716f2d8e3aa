//! The flags and wiring of the binary's commands that are not the library's own
//! (`job` keeps its flags beside its analysis in `job::cmd`).

pub mod replay;
pub mod report;
