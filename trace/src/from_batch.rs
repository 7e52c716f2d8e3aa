//! Record batches read back into typed rows, for code that replays a run row by row (the
//! analyzer's Prometheus replay feeds them to the same state the live exporter uses).
//! A column that is missing or of another type reads as nulls, never a panic; rows
//! without their timestamp are skipped.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Float32Type, Float64Type, Int64Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};

use crate::phase;
use crate::rows::{CpuRow, EvalRow, GpuRow, PhaseRow, StepRow};

fn prim<T: ArrowPrimitiveType>(b: &RecordBatch, name: &str) -> Vec<Option<T::Native>> {
    match b
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<T>())
    {
        Some(a) => a.iter().collect(),
        None => vec![None; b.num_rows()],
    }
}

fn bools(b: &RecordBatch, name: &str) -> Vec<Option<bool>> {
    match b.column_by_name(name).and_then(|c| c.as_boolean_opt()) {
        Some(a) => a.iter().collect(),
        None => vec![None; b.num_rows()],
    }
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    match b
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
    {
        Some(a) => (0..a.len())
            .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
            .collect(),
        None => vec![None; b.num_rows()],
    }
}

/// The row types carry `&'static str` sources (the recorder's constants).
fn source(s: Option<&str>) -> &'static str {
    match s {
        Some("powercap") => "powercap",
        Some("perf") => "perf",
        Some("estimate") => "estimate",
        Some("procfs") => "procfs",
        Some("ebpf") => "ebpf",
        Some("uprobe") => "uprobe",
        Some("socket") => "socket",
        _ => "other",
    }
}

pub fn gpu_rows(b: &RecordBatch) -> Vec<GpuRow> {
    let (ts, gpu) = (prim::<Int64Type>(b, "ts_ns"), prim::<UInt32Type>(b, "gpu"));
    let (p, pc) = (prim::<UInt32Type>(b, "power_mw"), bools(b, "power_changed"));
    let pi = prim::<UInt32Type>(b, "power_instant_mw");
    let (e, ec) = (
        prim::<UInt64Type>(b, "energy_mj"),
        bools(b, "energy_changed"),
    );
    let (ug, um) = (
        prim::<UInt32Type>(b, "util_gpu_pct"),
        prim::<UInt32Type>(b, "util_mem_pct"),
    );
    let (mu, mt) = (
        prim::<UInt64Type>(b, "mem_used_bytes"),
        prim::<UInt64Type>(b, "mem_total_bytes"),
    );
    let (t, clk) = (
        prim::<UInt32Type>(b, "temp_c"),
        prim::<UInt32Type>(b, "sm_clock_mhz"),
    );
    (0..b.num_rows())
        .filter_map(|i| {
            Some(GpuRow {
                ts_ns: ts[i]?,
                gpu: gpu[i]?,
                power_mw: p[i],
                power_changed: pc[i],
                power_instant_mw: pi[i],
                energy_mj: e[i],
                energy_changed: ec[i],
                util_gpu_pct: ug[i],
                util_mem_pct: um[i],
                mem_used_bytes: mu[i],
                mem_total_bytes: mt[i],
                temp_c: t[i],
                sm_clock_mhz: clk[i],
            })
        })
        .collect()
}

pub fn cpu_rows(b: &RecordBatch) -> Vec<CpuRow> {
    let (ts, dom, src) = (
        prim::<Int64Type>(b, "ts_ns"),
        strings(b, "domain"),
        strings(b, "source"),
    );
    let (e, ec) = (
        prim::<UInt64Type>(b, "energy_uj"),
        bools(b, "energy_changed"),
    );
    let util = prim::<Float32Type>(b, "util_pct");
    // One shared string per domain, as the recorder does.
    let mut names: Vec<Arc<str>> = Vec::new();
    (0..b.num_rows())
        .filter_map(|i| {
            let d = dom[i].as_deref()?;
            let domain = match names.iter().find(|n| &***n == d) {
                Some(n) => n.clone(),
                None => {
                    names.push(Arc::from(d));
                    names[names.len() - 1].clone()
                }
            };
            Some(CpuRow {
                ts_ns: ts[i]?,
                domain,
                source: source(src[i].as_deref()),
                energy_uj: e[i],
                energy_changed: ec[i],
                util_pct: util[i],
            })
        })
        .collect()
}

pub fn step_rows(b: &RecordBatch) -> Vec<StepRow> {
    let (step, begin, end) = (
        prim::<UInt64Type>(b, "step"),
        prim::<Int64Type>(b, "begin_ns"),
        prim::<Int64Type>(b, "end_ns"),
    );
    let (pid, samples, tokens) = (
        prim::<UInt32Type>(b, "pid"),
        prim::<UInt64Type>(b, "samples"),
        prim::<UInt64Type>(b, "tokens"),
    );
    let (loss, lr, epoch) = (
        prim::<Float64Type>(b, "loss"),
        prim::<Float64Type>(b, "lr"),
        prim::<Float64Type>(b, "epoch"),
    );
    let src = strings(b, "source");
    // Null for every step of a file written before the column existed.
    let sync = prim::<Int64Type>(b, "sync_ns");
    let mut names = Names::default();
    let phases = strings(b, "phase");
    let counts: Vec<_> = (0..4)
        .map(|k| prim::<UInt64Type>(b, &format!("count_{k}")))
        .collect();
    (0..b.num_rows())
        .filter_map(|i| {
            Some(StepRow {
                step: step[i].unwrap_or(0),
                begin_ns: begin[i]?,
                end_ns: end[i]?,
                pid: pid[i].unwrap_or(0),
                samples: samples[i],
                tokens: tokens[i],
                loss: loss[i],
                lr: lr[i],
                epoch: epoch[i],
                source: source(src[i].as_deref()),
                counts: [counts[0][i], counts[1][i], counts[2][i], counts[3][i]],
                sync_ns: sync[i],
                phase: phases[i].as_deref().and_then(|p| names.get(p)),
            })
        })
        .collect()
}

/// One shared string per phase name; names that break the rule read as None.
#[derive(Default)]
struct Names(Vec<Arc<str>>);

impl Names {
    fn get(&mut self, name: &str) -> Option<Arc<str>> {
        if let Some(n) = self.0.iter().find(|n| &***n == name) {
            return Some(n.clone());
        }
        if !phase::valid_name(name) {
            return None;
        }
        let n: Arc<str> = Arc::from(name);
        self.0.push(n.clone());
        Some(n)
    }
}

/// Phase spans; rows without a valid name or time are skipped.
pub fn phase_rows(b: &RecordBatch) -> Vec<PhaseRow> {
    let (pid, name) = (prim::<UInt32Type>(b, "pid"), strings(b, "name"));
    let (begin, end) = (
        prim::<Int64Type>(b, "begin_ns"),
        prim::<Int64Type>(b, "end_ns"),
    );
    let src = strings(b, "source");
    let mut names = Names::default();
    (0..b.num_rows())
        .filter_map(|i| {
            Some(PhaseRow {
                pid: pid[i].unwrap_or(0),
                name: names.get(name[i].as_deref()?)?,
                begin_ns: begin[i]?,
                end_ns: end[i]?,
                source: source(src[i].as_deref()),
            })
        })
        .collect()
}

pub fn eval_rows(b: &RecordBatch) -> Vec<EvalRow> {
    let (ts, step) = (prim::<Int64Type>(b, "ts_ns"), prim::<UInt64Type>(b, "step"));
    let (pid, loss) = (
        prim::<UInt32Type>(b, "pid"),
        prim::<Float64Type>(b, "eval_loss"),
    );
    (0..b.num_rows())
        .filter_map(|i| {
            Some(EvalRow {
                ts_ns: ts[i]?,
                step: step[i].unwrap_or(0),
                pid: pid[i].unwrap_or(0),
                eval_loss: loss[i],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Rows;

    #[test]
    fn rows_survive_a_round_trip_through_a_batch() {
        let gpu = vec![GpuRow {
            ts_ns: 5,
            gpu: 1,
            power_mw: Some(7),
            energy_mj: Some(9),
            ..Default::default()
        }];
        let b = Rows::Gpu(gpu.clone()).to_batch().unwrap();
        assert_eq!(gpu_rows(&b), gpu);
        let steps = vec![StepRow {
            step: 3,
            begin_ns: 1,
            end_ns: 2,
            pid: 4,
            samples: Some(8),
            tokens: None,
            loss: Some(0.5),
            lr: None,
            epoch: Some(1.5),
            source: "socket",
            counts: [Some(1), None, None, None],
            sync_ns: Some(2),
            phase: Some("eval".into()),
        }];
        let b = Rows::Steps(steps.clone()).to_batch().unwrap();
        assert_eq!(step_rows(&b), steps);
        let phases = vec![PhaseRow {
            pid: 4,
            name: "checkpoint".into(),
            begin_ns: 3,
            end_ns: 9,
            source: "socket",
        }];
        let b = Rows::Phases(phases.clone()).to_batch().unwrap();
        assert_eq!(phase_rows(&b), phases);
        let cpu = vec![CpuRow {
            ts_ns: 1,
            domain: "package-0".into(),
            source: "powercap",
            energy_uj: Some(3),
            energy_changed: Some(true),
            util_pct: None,
        }];
        let b = Rows::Cpu(cpu.clone()).to_batch().unwrap();
        assert_eq!(cpu_rows(&b), cpu);
    }

    #[test]
    fn a_batch_of_another_table_reads_as_no_rows() {
        let b = Rows::Evals(vec![EvalRow {
            ts_ns: 1,
            step: 1,
            pid: 1,
            eval_loss: None,
        }])
        .to_batch()
        .unwrap();
        assert!(gpu_rows(&b).is_empty());
        assert!(step_rows(&b).is_empty());
    }
}
