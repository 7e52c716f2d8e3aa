//! The hf-eco2ai trace format, shared by the recorder (`eco2ai-probe`) and the
//! analyzer. A run is a directory: `meta.json` plus one sub-directory per table
//! holding Parquet segments and at most one open Arrow IPC stream.

pub mod civil;
pub mod error;
pub mod from_batch;
pub mod grid;
pub mod job;
pub mod live;
pub mod meta;
pub mod numfmt;
pub mod parse;
pub mod phase;
pub mod pricing;
pub mod reader;
pub mod rows;
pub mod run_id;
pub mod scan;
pub mod schema;
pub mod segment;
pub mod writer;

pub use error::TraceError;
pub use job::{JobInfo, RankInfo};
pub use live::{LIVE_FILE, Live, cpu_total_j};
pub use meta::{GpuInfo, Labels, META_FILE, Meta, RunStatus, Sampling, SensorStatus, counts_line};
pub use reader::{Run, TableData};
pub use rows::{CpuRow, EvalRow, GpuRow, PhaseRow, ProcRow, Rows, StepRow};
pub use run_id::{RunIdError, validate_run_id};
pub use schema::{SCHEMA_VERSION, Table};
pub use writer::TraceWriter;
