//! Whole-run totals straight from the trace: energy per GPU (driver counter, or the
//! integral of power where no counter was read) and per CPU domain, duration, and
//! whether the run was cut off. Per-step attribution builds on the same tables.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use eco2ai_trace::{Run, RunStatus, Table, TraceError, counts_line, cpu_total_j};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviceEnergy {
    /// `gpu0`, `package-0`, `dram-0`, `psys`.
    pub device: String,
    /// nvml-counter | nvml-power-integral | powercap | perf | estimate
    pub method: String,
    pub energy_j: f64,
    pub avg_power_w: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub status: RunStatus,
    /// The recorder did not finish the run (killed, or still recording).
    pub truncated: bool,
    pub duration_s: f64,
    pub energy_kwh: f64,
    pub gpu_energy_kwh: f64,
    pub cpu_energy_kwh: f64,
    pub devices: Vec<DeviceEnergy>,
    pub gpu_checks: Vec<GpuCheck>,
    /// Steps recorded (marked by the training loop).
    pub steps: u64,
    /// Devices measured by a sensor vs estimated (TDP x load curve).
    pub sources: BTreeMap<String, Vec<String>>,
    pub rows: BTreeMap<String, u64>,
    pub sensor_errors: BTreeMap<String, u64>,
    pub dropped_rows: u64,
}

const J_PER_KWH: f64 = 3.6e6;

pub(crate) fn col_i64(b: &RecordBatch, name: &str) -> Option<Vec<Option<i64>>> {
    Some(
        b.column_by_name(name)?
            .as_primitive_opt::<Int64Type>()?
            .iter()
            .collect(),
    )
}

pub(crate) fn col_u64(b: &RecordBatch, name: &str) -> Option<Vec<Option<u64>>> {
    Some(
        b.column_by_name(name)?
            .as_primitive_opt::<UInt64Type>()?
            .iter()
            .collect(),
    )
}

pub(crate) fn col_u32(b: &RecordBatch, name: &str) -> Option<Vec<Option<u32>>> {
    Some(
        b.column_by_name(name)?
            .as_primitive_opt::<UInt32Type>()?
            .iter()
            .collect(),
    )
}

#[derive(Default)]
struct GpuAcc {
    max_energy_mj: Option<u64>,
    power: Vec<(i64, u32)>,
}

/// A GPU's two energy figures side by side, and how often its power reading moved:
/// what validating NVML on a new card comes down to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GpuCheck {
    pub device: String,
    /// From the driver's cumulative energy counter.
    pub counter_j: Option<f64>,
    /// Trapezoidal integral of the polled power.
    pub power_integral_j: f64,
    /// (integral - counter) / counter, in percent.
    pub integral_vs_counter_pct: Option<f64>,
    /// Median time between changes of the power reading (the sensor's update period).
    pub power_update_ms_median: Option<f64>,
}

/// Median interval between changes of a power series sorted by time, in ms.
fn update_period_ms(power: &[(i64, u32)]) -> Option<f64> {
    let changes: Vec<i64> = power
        .windows(2)
        .filter(|w| w[0].1 != w[1].1)
        .map(|w| w[1].0)
        .collect();
    let mut gaps: Vec<i64> = changes.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_unstable();
    Some(gaps[gaps.len() / 2] as f64 / 1e6)
}

fn gpu_energy(batches: &[RecordBatch], last_ts: &mut i64) -> (Vec<DeviceEnergy>, Vec<GpuCheck>) {
    let mut acc: BTreeMap<u32, GpuAcc> = BTreeMap::new();
    for b in batches {
        let (Some(ts), Some(gpu), Some(p), Some(e)) = (
            col_i64(b, "ts_ns"),
            col_u32(b, "gpu"),
            col_u32(b, "power_mw"),
            col_u64(b, "energy_mj"),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            let (Some(t), Some(g)) = (ts[i], gpu[i]) else {
                continue;
            };
            *last_ts = (*last_ts).max(t);
            let a = acc.entry(g).or_default();
            if let Some(e) = e[i] {
                a.max_energy_mj = Some(a.max_energy_mj.map_or(e, |m| m.max(e)));
            }
            if let Some(p) = p[i] {
                a.power.push((t, p));
            }
        }
    }
    let mut devices = Vec::new();
    let mut checks = Vec::new();
    for (g, mut a) in acc {
        a.power.sort_unstable();
        let span_s = match (a.power.first(), a.power.last()) {
            (Some(f), Some(l)) => (l.0 - f.0) as f64 / 1e9,
            _ => 0.0,
        };
        let integral_j = trapezoid_j(&a.power);
        let counter_j = a.max_energy_mj.map(|e| e as f64 / 1e3);
        let (method, energy_j) = match counter_j {
            Some(e) => ("nvml-counter", e),
            None => ("nvml-power-integral", integral_j),
        };
        let device = format!("gpu{g}");
        checks.push(GpuCheck {
            device: device.clone(),
            counter_j,
            power_integral_j: integral_j,
            integral_vs_counter_pct: counter_j
                .filter(|c| *c > 0.0)
                .map(|c| 100.0 * (integral_j - c) / c),
            power_update_ms_median: update_period_ms(&a.power),
        });
        devices.push(DeviceEnergy {
            device,
            method: method.into(),
            energy_j,
            avg_power_w: energy_j / span_s.max(1e-9),
        });
    }
    (devices, checks)
}

/// Trapezoidal integral of (ts_ns, power_mw) samples, in joules.
pub fn trapezoid_j(samples: &[(i64, u32)]) -> f64 {
    samples
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) as f64 / 1e9 * (w[0].1 as f64 + w[1].1 as f64) / 2.0 / 1e3)
        .sum()
}

fn cpu_energy(batches: &[RecordBatch], last_ts: &mut i64) -> Vec<DeviceEnergy> {
    let mut acc: BTreeMap<(String, String), (u64, i64, i64)> = BTreeMap::new();
    for b in batches {
        let (Some(ts), Some(e)) = (col_i64(b, "ts_ns"), col_u64(b, "energy_uj")) else {
            continue;
        };
        let (Some(dom), Some(src)) = (b.column_by_name("domain"), b.column_by_name("source"))
        else {
            continue;
        };
        let (Some(dom), Some(src)) = (dom.as_string_opt::<i32>(), src.as_string_opt::<i32>())
        else {
            continue;
        };
        for i in 0..b.num_rows() {
            let (Some(t), Some(e)) = (ts[i], e[i]) else {
                continue;
            };
            if dom.is_null(i) || src.is_null(i) {
                continue;
            }
            *last_ts = (*last_ts).max(t);
            let a = acc
                .entry((dom.value(i).to_string(), src.value(i).to_string()))
                .or_insert((0, t, t));
            *a = (a.0.max(e), a.1.min(t), a.2.max(t));
        }
    }
    acc.into_iter()
        .map(|((device, method), (e, first, last))| {
            let energy_j = e as f64 / 1e6;
            DeviceEnergy {
                device,
                method,
                energy_j,
                avg_power_w: energy_j / ((last - first) as f64 / 1e9).max(1e-9),
            }
        })
        .collect()
}

pub fn summarise(dir: &Path) -> Result<Summary, TraceError> {
    let run = Run::open(dir)?;
    let m = run.meta().clone();
    let mut last_ts = m.start_ns;
    let (gpus, gpu_checks) = gpu_energy(&run.read_table(Table::Gpu)?.batches, &mut last_ts);
    let cpus = cpu_energy(&run.read_table(Table::Cpu)?.batches, &mut last_ts);
    let end = m.end_ns.unwrap_or(last_ts);
    let gpu_j: f64 = gpus.iter().map(|d| d.energy_j).sum();
    let cpu_j = cpu_total_j(cpus.iter().map(|d| (d.device.as_str(), d.energy_j)));
    let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in gpus.iter().chain(cpus.iter()) {
        let kind = if d.method == "estimate" {
            "estimated"
        } else {
            "measured"
        };
        sources
            .entry(kind.into())
            .or_default()
            .push(format!("{} ({})", d.device, d.method));
    }
    Ok(Summary {
        run_id: m.run_id.clone(),
        status: m.status,
        truncated: m.status != RunStatus::Complete,
        duration_s: (end - m.start_ns).max(0) as f64 / 1e9,
        energy_kwh: (gpu_j + cpu_j) / J_PER_KWH,
        gpu_energy_kwh: gpu_j / J_PER_KWH,
        cpu_energy_kwh: cpu_j / J_PER_KWH,
        devices: gpus.into_iter().chain(cpus).collect(),
        gpu_checks,
        steps: run.read_table(Table::Steps)?.num_rows() as u64,
        sources,
        rows: m.rows.clone(),
        sensor_errors: m.sensor_errors.clone(),
        dropped_rows: m.dropped_rows,
    })
}

impl Summary {
    pub fn to_table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let state = if self.truncated {
            format!(
                "{:?}: cut off, figures cover what was recorded",
                self.status
            )
        } else {
            "complete".into()
        };
        let _ = writeln!(s, "run        {} ({state})", self.run_id);
        let _ = writeln!(s, "duration   {:.1} s", self.duration_s);
        // `+ 0.0` turns a -0.0 sum into 0.0 for display.
        let _ = writeln!(
            s,
            "energy     {:.6} kWh (GPU {:.6}, CPU {:.6})",
            self.energy_kwh + 0.0,
            self.gpu_energy_kwh + 0.0,
            self.cpu_energy_kwh + 0.0
        );
        if self.steps > 0 {
            let _ = writeln!(
                s,
                "steps      {} (run energy / steps: {:.1} J)",
                self.steps,
                self.energy_kwh * J_PER_KWH / self.steps as f64
            );
        }
        for d in &self.devices {
            let _ = writeln!(
                s,
                "  {:<12} {:<20} {:>12.1} J {:>9.1} W avg",
                d.device, d.method, d.energy_j, d.avg_power_w
            );
        }
        for c in &self.gpu_checks {
            let counter = c
                .counter_j
                .map_or("no counter".to_string(), |j| format!("counter {j:.1} J"));
            let diff = c
                .integral_vs_counter_pct
                .map_or(String::new(), |p| format!(" ({p:+.2}%)"));
            let period = c.power_update_ms_median.map_or(String::new(), |ms| {
                format!("; power updates every {ms:.0} ms")
            });
            let _ = writeln!(
                s,
                "  {:<12} {counter}, power integral {:.1} J{diff}{period}",
                c.device, c.power_integral_j
            );
        }
        if let Some(est) = self.sources.get("estimated") {
            let _ = writeln!(
                s,
                "estimated  {} (no sensor: TDP x load curve)",
                est.join(", ")
            );
        }
        let _ = writeln!(s, "errors     {}", counts_line(&self.sensor_errors));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapezoid_of_constant_power() {
        // 100 W for 2 s
        assert!(
            (trapezoid_j(&[
                (0, 100_000),
                (1_000_000_000, 100_000),
                (2_000_000_000, 100_000)
            ]) - 200.0)
                .abs()
                < 1e-9
        );
        assert_eq!(trapezoid_j(&[(0, 5)]), 0.0);
    }

    #[test]
    fn update_period_is_the_median_gap_between_changes() {
        // Polled every 20 ms, the value moves every 100 ms (one gap of 60 ms).
        let mut p = Vec::new();
        for i in 0..50i64 {
            let k = if i < 25 { i / 5 } else { (i + 2) / 5 };
            p.push((i * 20_000_000, 100 + k as u32));
        }
        assert_eq!(update_period_ms(&p), Some(100.0));
        assert_eq!(update_period_ms(&[(0, 1), (1, 1)]), None);
    }
}
