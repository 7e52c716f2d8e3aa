//! A run's raw trace read straight from its Parquet segments (not through the analyzer),
//! for checks computed independently of it.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub struct Step {
    pub step: u64,
    pub end_ns: i64,
    pub pid: u32,
    pub sync_ns: Option<i64>,
}

impl Step {
    /// Where the rank reached the step's collective: its sync mark, else its end.
    pub fn arrival_ns(&self) -> i64 {
        self.sync_ns.unwrap_or(self.end_ns)
    }
}

fn batches(dir: &Path) -> Vec<RecordBatch> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let file = std::fs::File::open(f).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            reader.map(Result::unwrap).collect::<Vec<_>>()
        })
        .collect()
}

/// The run's steps in file order.
pub fn steps(run: &Path) -> Vec<Step> {
    let mut out = Vec::new();
    for b in batches(&run.join("steps")) {
        let step = b
            .column_by_name("step")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let end = b
            .column_by_name("end_ns")
            .unwrap()
            .as_primitive::<Int64Type>();
        let pid = b
            .column_by_name("pid")
            .unwrap()
            .as_primitive::<UInt32Type>();
        let sync = b
            .column_by_name("sync_ns")
            .map(|c| c.as_primitive::<Int64Type>().clone());
        for i in 0..b.num_rows() {
            out.push(Step {
                step: step.value(i),
                end_ns: end.value(i),
                pid: pid.value(i),
                sync_ns: sync.as_ref().filter(|s| s.is_valid(i)).map(|s| s.value(i)),
            });
        }
    }
    out
}

/// The node's CPU package energy counter: (ts_ns, cumulative µJ), summed over packages
/// read at the same instant.
pub fn package_energy(run: &Path) -> Vec<(i64, f64)> {
    let mut by_ts = std::collections::BTreeMap::<i64, f64>::new();
    for b in batches(&run.join("cpu")) {
        let ts = b
            .column_by_name("ts_ns")
            .unwrap()
            .as_primitive::<Int64Type>();
        let domain = b.column_by_name("domain").unwrap().as_string::<i32>();
        let e = b
            .column_by_name("energy_uj")
            .unwrap()
            .as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            if domain.value(i) == "package" && e.is_valid(i) {
                *by_ts.entry(ts.value(i)).or_default() += e.value(i) as f64;
            }
        }
    }
    by_ts.into_iter().collect()
}

/// The counter at `t`, linear between readings.
fn energy_at(curve: &[(i64, f64)], t: i64) -> f64 {
    let i = curve.partition_point(|(ts, _)| *ts <= t);
    match (i.checked_sub(1).map(|j| curve[j]), curve.get(i)) {
        (Some((t0, e0)), Some((t1, e1))) => e0 + (e1 - e0) * (t - t0) as f64 / (t1 - t0) as f64,
        (Some((_, e0)), None) => e0,
        (None, Some((_, e1))) => *e1,
        (None, None) => 0.0,
    }
}

/// The waiting rank's wait from step `from` on, from the raw traces of its node (`wait`)
/// and the slow rank's node (`slow`), which share this machine's CLOCK_MONOTONIC: the sum
/// over steps of [its arrival, the slow rank's arrival] in seconds, and its node's package
/// energy over those intervals in joules.
pub fn wait_from_traces(wait: &Path, slow: &Path, from: u64) -> (f64, f64) {
    let slow_at: std::collections::BTreeMap<u64, i64> = steps(slow)
        .iter()
        .map(|s| (s.step, s.arrival_ns()))
        .collect();
    let curve = package_energy(wait);
    let (mut wait_ns, mut wait_uj) = (0i64, 0.0);
    for s in steps(wait).iter().filter(|s| s.step >= from) {
        let Some(&latest) = slow_at.get(&s.step) else {
            continue;
        };
        let mine = s.arrival_ns();
        if latest > mine {
            wait_ns += latest - mine;
            wait_uj += energy_at(&curve, latest) - energy_at(&curve, mine);
        }
    }
    (wait_ns as f64 / 1e9, wait_uj / 1e6)
}
