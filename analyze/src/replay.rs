//! Replaying a run into Prometheus: an OpenMetrics file with timestamps, for
//! `promtool tsdb create-blocks-from openmetrics` (backfill).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use eco2ai_trace::{Run, Table, TraceError, cpu_total_j};

use crate::summary::{col_i64, col_u32, col_u64};

/// A device's cumulative energy (J) or a gauge, sorted by time.
type Points = Vec<(i64, f64)>;

/// The value in force at `t`: the latest point at or before it.
fn at(points: &Points, t: i64) -> Option<f64> {
    let i = points.partition_point(|p| p.0 <= t);
    (i > 0).then(|| points[i - 1].1)
}

struct Series {
    gpu_energy: BTreeMap<u32, Points>,
    gpu_power: BTreeMap<u32, Points>,
    cpu_energy: BTreeMap<String, Points>,
    /// (end_ns, loss) of every step.
    steps: Vec<(i64, Option<f64>)>,
}

fn read(run: &Run) -> Result<Series, TraceError> {
    let mut s = Series {
        gpu_energy: BTreeMap::new(),
        gpu_power: BTreeMap::new(),
        cpu_energy: BTreeMap::new(),
        steps: Vec::new(),
    };
    for b in run.read_table(Table::Gpu)?.batches {
        let (Some(ts), Some(g), Some(p), Some(e)) = (
            col_i64(&b, "ts_ns"),
            col_u32(&b, "gpu"),
            col_u32(&b, "power_mw"),
            col_u64(&b, "energy_mj"),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            let (Some(t), Some(g)) = (ts[i], g[i]) else {
                continue;
            };
            if let Some(e) = e[i] {
                s.gpu_energy.entry(g).or_default().push((t, e as f64 / 1e3));
            }
            if let Some(p) = p[i] {
                s.gpu_power.entry(g).or_default().push((t, p as f64 / 1e3));
            }
        }
    }
    for b in run.read_table(Table::Cpu)?.batches {
        let (Some(ts), Some(e), Some(dom)) = (
            col_i64(&b, "ts_ns"),
            col_u64(&b, "energy_uj"),
            b.column_by_name("domain"),
        ) else {
            continue;
        };
        let Some(dom) = dom.as_string_opt::<i32>() else {
            continue;
        };
        for i in 0..b.num_rows() {
            if let (Some(t), Some(e), false) = (ts[i], e[i], dom.is_null(i)) {
                s.cpu_energy
                    .entry(dom.value(i).to_string())
                    .or_default()
                    .push((t, e as f64 / 1e6));
            }
        }
    }
    for b in run.read_table(Table::Steps)?.batches {
        let (Some(end), Some(loss)) = (col_i64(&b, "end_ns"), b.column_by_name("loss")) else {
            continue;
        };
        let loss = loss.as_primitive_opt::<arrow_array::types::Float64Type>();
        for (i, end) in end.iter().enumerate() {
            let l = loss.and_then(|l| (!l.is_null(i)).then(|| l.value(i)));
            s.steps.extend(end.map(|e| (e, l)));
        }
    }
    for p in s
        .gpu_energy
        .values_mut()
        .chain(s.gpu_power.values_mut())
        .chain(s.cpu_energy.values_mut())
    {
        p.sort_by_key(|x| x.0);
    }
    s.steps.sort_by_key(|x| x.0);
    Ok(s)
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let l: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", l.join(","))
}

/// The run as OpenMetrics text, one point per `every_s` seconds from start to end:
/// energy (counter), step count, loss and GPU power (gauges).
pub fn openmetrics(dir: &Path, every_s: f64) -> Result<String, TraceError> {
    let run = Run::open(dir)?;
    let m = run.meta().clone();
    let s = read(&run)?;
    let last = s
        .cpu_energy
        .values()
        .chain(s.gpu_energy.values())
        .filter_map(|p| p.last().map(|x| x.0))
        .max()
        .unwrap_or(m.start_ns);
    let end = m.end_ns.unwrap_or(last);
    let step_ns = ((every_s * 1e9) as i64).max(1_000_000);
    let times: Vec<i64> = (0..)
        .map(|k| m.start_ns + k * step_ns)
        .take_while(|t| *t <= end)
        .chain(std::iter::once(end))
        .collect();
    let unix = |t: i64| (t + m.mono_to_unix_ns) as f64 / 1e9;
    let project = m.labels.project_name.clone().unwrap_or_default();
    let model = m.labels.model_name.clone().unwrap_or_default();
    let pm = labels(&[("project_name", &project), ("model_name", &model)]);
    let p = labels(&[("project_name", &project)]);
    let mut o = String::new();
    let energy_kwh = |t: i64| {
        let gpu: f64 = s.gpu_energy.values().filter_map(|pts| at(pts, t)).sum();
        let cpu = cpu_total_j(
            s.cpu_energy
                .iter()
                .filter_map(|(d, pts)| at(pts, t).map(|j| (d.as_str(), j)))
                .collect::<Vec<_>>(),
        );
        // `+ 0.0`: an empty sum is -0.0, which would print as "-0".
        (gpu + cpu) / 3.6e6 + 0.0
    };
    let _ = writeln!(
        o,
        "# HELP hf_training_energy_kwh Energy used by the run so far, kWh.\n# TYPE hf_training_energy_kwh counter"
    );
    for &t in &times {
        let _ = writeln!(
            o,
            "hf_training_energy_kwh_total{pm} {} {:.3}",
            energy_kwh(t),
            unix(t)
        );
    }
    // OpenMetrics counters must end in _total, so the step count is replayed as a gauge.
    let _ = writeln!(
        o,
        "# HELP hf_training_step_count Training steps recorded.\n# TYPE hf_training_step_count gauge"
    );
    for &t in &times {
        let n = s.steps.partition_point(|x| x.0 <= t);
        let _ = writeln!(o, "hf_training_step_count{p} {n} {:.3}", unix(t));
    }
    let _ = writeln!(
        o,
        "# HELP hf_training_loss Training loss of the latest step.\n# TYPE hf_training_loss gauge"
    );
    for &t in &times {
        let n = s.steps.partition_point(|x| x.0 <= t);
        if let Some(l) = s.steps[..n].iter().rev().find_map(|x| x.1) {
            let _ = writeln!(o, "hf_training_loss{pm} {l} {:.3}", unix(t));
        }
    }
    let _ = writeln!(
        o,
        "# HELP hf_training_gpu_power_watts GPU power.\n# TYPE hf_training_gpu_power_watts gauge"
    );
    for (g, pts) in &s.gpu_power {
        let name = m
            .gpus
            .iter()
            .find(|x| x.index == *g)
            .map(|x| x.name.clone())
            .unwrap_or_default();
        let l = labels(&[("gpu_id", &g.to_string()), ("gpu_model", &name)]);
        for &t in &times {
            if let Some(w) = at(pts, t) {
                let _ = writeln!(o, "hf_training_gpu_power_watts{l} {w} {:.3}", unix(t));
            }
        }
    }
    o.push_str("# EOF\n");
    Ok(o)
}

#[cfg(test)]
mod tests {
    #[test]
    fn value_in_force_is_the_latest_at_or_before() {
        let p = vec![(10, 1.0), (20, 2.0)];
        assert_eq!(super::at(&p, 5), None);
        assert_eq!(super::at(&p, 10), Some(1.0));
        assert_eq!(super::at(&p, 19), Some(1.0));
        assert_eq!(super::at(&p, 25), Some(2.0));
    }
}
