//! Typed rows as the samplers produce them, and their conversion to Arrow batches.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, StringBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;

use crate::schema::Table;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuRow {
    pub ts_ns: i64,
    pub gpu: u32,
    pub power_mw: Option<u32>,
    pub power_changed: Option<bool>,
    pub power_instant_mw: Option<u32>,
    pub energy_mj: Option<u64>,
    pub energy_changed: Option<bool>,
    pub util_gpu_pct: Option<u32>,
    pub util_mem_pct: Option<u32>,
    pub mem_used_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    pub temp_c: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CpuRow {
    pub ts_ns: i64,
    /// Shared so that a 1 kHz sampler does not allocate a string per sample.
    pub domain: Arc<str>,
    pub source: &'static str,
    pub energy_uj: Option<u64>,
    pub energy_changed: Option<bool>,
    pub util_pct: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub step: u64,
    pub begin_ns: i64,
    pub end_ns: i64,
    pub pid: u32,
    pub samples: Option<u64>,
    pub tokens: Option<u64>,
    pub loss: Option<f64>,
    pub lr: Option<f64>,
    pub epoch: Option<f64>,
    pub source: &'static str,
    /// Calls of each counted function during the step.
    pub counts: [Option<u64>; 4],
    /// The last `eco2ai_step_sync` mark inside the step (CLOCK_MONOTONIC): where the
    /// rank's own compute ended and its wait on the step's collective began.
    pub sync_ns: Option<i64>,
    /// The phase its pid was in when it began (`crate::phase`); None is `train`.
    pub phase: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcRow {
    pub ts_ns: i64,
    pub pid: u32,
    pub comm: String,
    pub oncpu_ns: u64,
    pub source: &'static str,
}

/// A span of one process in a named phase (`crate::phase`).
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseRow {
    pub pid: u32,
    /// A valid phase name (`crate::phase::valid_name`), shared between the rows of it.
    pub name: Arc<str>,
    pub begin_ns: i64,
    pub end_ns: i64,
    pub source: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    pub ts_ns: i64,
    pub step: u64,
    pub pid: u32,
    pub eval_loss: Option<f64>,
}

/// A batch of rows of one table: the unit that travels from a sampler to the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    Gpu(Vec<GpuRow>),
    Cpu(Vec<CpuRow>),
    Steps(Vec<StepRow>),
    Procs(Vec<ProcRow>),
    Evals(Vec<EvalRow>),
    Phases(Vec<PhaseRow>),
}

impl Rows {
    pub fn table(&self) -> Table {
        match self {
            Rows::Gpu(_) => Table::Gpu,
            Rows::Cpu(_) => Table::Cpu,
            Rows::Steps(_) => Table::Steps,
            Rows::Procs(_) => Table::Procs,
            Rows::Evals(_) => Table::Evals,
            Rows::Phases(_) => Table::Phases,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Rows::Gpu(v) => v.len(),
            Rows::Cpu(v) => v.len(),
            Rows::Steps(v) => v.len(),
            Rows::Procs(v) => v.len(),
            Rows::Evals(v) => v.len(),
            Rows::Phases(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer for `table`.
    pub fn empty(table: Table) -> Rows {
        match table {
            Table::Gpu => Rows::Gpu(Vec::new()),
            Table::Cpu => Rows::Cpu(Vec::new()),
            Table::Steps => Rows::Steps(Vec::new()),
            Table::Procs => Rows::Procs(Vec::new()),
            Table::Evals => Rows::Evals(Vec::new()),
            Table::Phases => Rows::Phases(Vec::new()),
        }
    }

    /// Moves the rows of `other` (same table) to the end of `self`.
    /// Returns `other` back if the tables differ.
    pub fn append(&mut self, other: Rows) -> Result<(), Rows> {
        match (self, other) {
            (Rows::Gpu(a), Rows::Gpu(b)) => a.extend(b),
            (Rows::Cpu(a), Rows::Cpu(b)) => a.extend(b),
            (Rows::Steps(a), Rows::Steps(b)) => a.extend(b),
            (Rows::Procs(a), Rows::Procs(b)) => a.extend(b),
            (Rows::Evals(a), Rows::Evals(b)) => a.extend(b),
            (Rows::Phases(a), Rows::Phases(b)) => a.extend(b),
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// Converts to a record batch of this table's schema.
    pub fn to_batch(&self) -> Result<RecordBatch, ArrowError> {
        let columns = match self {
            Rows::Gpu(v) => gpu_columns(v),
            Rows::Cpu(v) => cpu_columns(v),
            Rows::Steps(v) => steps_columns(v),
            Rows::Procs(v) => procs_columns(v),
            Rows::Evals(v) => evals_columns(v),
            Rows::Phases(v) => phases_columns(v),
        };
        RecordBatch::try_new(self.table().schema(), columns)
    }
}

macro_rules! col {
    ($rows:expr, $builder:ty, |$r:ident| $value:expr) => {{
        let mut b = <$builder>::with_capacity($rows.len());
        for $r in $rows {
            b.append_option($value);
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

fn gpu_columns(v: &[GpuRow]) -> Vec<ArrayRef> {
    vec![
        col!(v, Int64Builder, |r| Some(r.ts_ns)),
        col!(v, UInt32Builder, |r| Some(r.gpu)),
        col!(v, UInt32Builder, |r| r.power_mw),
        col!(v, BooleanBuilder, |r| r.power_changed),
        col!(v, UInt32Builder, |r| r.power_instant_mw),
        col!(v, UInt64Builder, |r| r.energy_mj),
        col!(v, BooleanBuilder, |r| r.energy_changed),
        col!(v, UInt32Builder, |r| r.util_gpu_pct),
        col!(v, UInt32Builder, |r| r.util_mem_pct),
        col!(v, UInt64Builder, |r| r.mem_used_bytes),
        col!(v, UInt64Builder, |r| r.mem_total_bytes),
        col!(v, UInt32Builder, |r| r.temp_c),
        col!(v, UInt32Builder, |r| r.sm_clock_mhz),
    ]
}

fn strings<'a>(v: impl ExactSizeIterator<Item = &'a str>) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(v.len(), v.len() * 8);
    for s in v {
        b.append_value(s);
    }
    Arc::new(b.finish())
}

fn cpu_columns(v: &[CpuRow]) -> Vec<ArrayRef> {
    vec![
        col!(v, Int64Builder, |r| Some(r.ts_ns)),
        strings(v.iter().map(|r| &*r.domain)),
        strings(v.iter().map(|r| r.source)),
        col!(v, UInt64Builder, |r| r.energy_uj),
        col!(v, BooleanBuilder, |r| r.energy_changed),
        col!(v, Float32Builder, |r| r.util_pct),
    ]
}

fn steps_columns(v: &[StepRow]) -> Vec<ArrayRef> {
    vec![
        col!(v, UInt64Builder, |r| Some(r.step)),
        col!(v, Int64Builder, |r| Some(r.begin_ns)),
        col!(v, Int64Builder, |r| Some(r.end_ns)),
        col!(v, UInt32Builder, |r| Some(r.pid)),
        col!(v, UInt64Builder, |r| r.samples),
        col!(v, UInt64Builder, |r| r.tokens),
        col!(v, Float64Builder, |r| r.loss),
        col!(v, Float64Builder, |r| r.lr),
        col!(v, Float64Builder, |r| r.epoch),
        strings(v.iter().map(|r| r.source)),
        col!(v, UInt64Builder, |r| r.counts[0]),
        col!(v, UInt64Builder, |r| r.counts[1]),
        col!(v, UInt64Builder, |r| r.counts[2]),
        col!(v, UInt64Builder, |r| r.counts[3]),
        col!(v, Int64Builder, |r| r.sync_ns),
        optional_strings(v.iter().map(|r| r.phase.as_deref())),
    ]
}

fn optional_strings<'a>(v: impl ExactSizeIterator<Item = Option<&'a str>>) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(v.len(), v.len() * 4);
    for s in v {
        b.append_option(s);
    }
    Arc::new(b.finish())
}

fn phases_columns(v: &[PhaseRow]) -> Vec<ArrayRef> {
    vec![
        col!(v, UInt32Builder, |r| Some(r.pid)),
        strings(v.iter().map(|r| &*r.name)),
        col!(v, Int64Builder, |r| Some(r.begin_ns)),
        col!(v, Int64Builder, |r| Some(r.end_ns)),
        strings(v.iter().map(|r| r.source)),
    ]
}

fn procs_columns(v: &[ProcRow]) -> Vec<ArrayRef> {
    vec![
        col!(v, Int64Builder, |r| Some(r.ts_ns)),
        col!(v, UInt32Builder, |r| Some(r.pid)),
        strings(v.iter().map(|r| r.comm.as_str())),
        col!(v, UInt64Builder, |r| Some(r.oncpu_ns)),
        strings(v.iter().map(|r| r.source)),
    ]
}

fn evals_columns(v: &[EvalRow]) -> Vec<ArrayRef> {
    vec![
        col!(v, Int64Builder, |r| Some(r.ts_ns)),
        col!(v, UInt64Builder, |r| Some(r.step)),
        col!(v, UInt32Builder, |r| Some(r.pid)),
        col!(v, Float64Builder, |r| r.eval_loss),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_converts_to_its_schema() {
        let samples = [
            Rows::Gpu(vec![GpuRow {
                ts_ns: 1,
                gpu: 0,
                power_mw: Some(5),
                ..Default::default()
            }]),
            Rows::Cpu(vec![CpuRow {
                ts_ns: 1,
                domain: "package-0".into(),
                source: "powercap",
                energy_uj: Some(7),
                energy_changed: Some(true),
                util_pct: None,
            }]),
            Rows::Steps(vec![StepRow {
                step: 1,
                begin_ns: 1,
                end_ns: 2,
                pid: 3,
                samples: Some(8),
                tokens: None,
                loss: Some(0.5),
                lr: None,
                epoch: None,
                source: "socket",
                counts: [Some(3), None, None, None],
                sync_ns: Some(2),
                phase: Some("eval".into()),
            }]),
            Rows::Procs(vec![ProcRow {
                ts_ns: 1,
                pid: 2,
                comm: "python".into(),
                oncpu_ns: 9,
                source: "procfs",
            }]),
            Rows::Evals(vec![EvalRow {
                ts_ns: 1,
                step: 2,
                pid: 3,
                eval_loss: Some(1.5),
            }]),
            Rows::Phases(vec![PhaseRow {
                pid: 3,
                name: "checkpoint".into(),
                begin_ns: 1,
                end_ns: 2,
                source: "uprobe",
            }]),
        ];
        for rows in samples {
            let batch = rows.to_batch().expect("batch");
            assert_eq!(batch.num_rows(), 1);
            assert_eq!(batch.schema(), rows.table().schema());
        }
    }

    #[test]
    fn append_refuses_another_table() {
        let mut a = Rows::empty(Table::Gpu);
        assert!(a.append(Rows::empty(Table::Cpu)).is_err());
        assert!(a.append(Rows::Gpu(vec![GpuRow::default()])).is_ok());
        assert_eq!(a.len(), 1);
    }
}
