//! Efficiency by hour of day x day: samples per kWh of the steps that ended in each hour
//! (UTC), grouped with polars so that a fleet's millions of steps group in one pass.

use polars::prelude::*;
use serde::Serialize;

use crate::report::Analysis;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cell {
    /// YYYY-MM-DD (UTC).
    pub day: String,
    pub hour: u32,
    pub steps: u32,
    pub energy_kwh: f64,
    pub samples_per_kwh: Option<f64>,
}

fn civil(days: i64) -> String {
    let (y, m, d) = eco2ai_trace::civil::from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Cells of the runs' steps, in time order.
pub fn cells(runs: &[&Analysis]) -> PolarsResult<Vec<Cell>> {
    let (mut day, mut hour, mut samples, mut joules) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for a in runs {
        for (s, e) in a.steps.iter().zip(&a.step_energy) {
            let unix_s = (s.end_ns + a.mono_to_unix_ns).div_euclid(1_000_000_000);
            day.push(unix_s.div_euclid(86_400));
            hour.push(unix_s.rem_euclid(86_400) / 3600);
            samples.push(s.samples.map(|n| n as f64));
            joules.push(e.gpu_j + e.cpu_j);
        }
    }
    let df = df!("day" => day, "hour" => hour, "samples" => samples, "j" => joules)?;
    let out = df
        .lazy()
        .group_by([col("day"), col("hour")])
        .agg([
            col("j").count().alias("steps"),
            col("j").sum(),
            col("samples").sum(),
        ])
        .sort(["day", "hour"], SortMultipleOptions::default())
        .collect()?;
    let (d, h) = (out.column("day")?.i64()?, out.column("hour")?.i64()?);
    let (n, j, s) = (
        out.column("steps")?.u32()?,
        out.column("j")?.f64()?,
        out.column("samples")?.f64()?,
    );
    let mut cells = Vec::with_capacity(out.height());
    for i in 0..out.height() {
        let kwh = j.get(i).unwrap_or(0.0) / 3.6e6;
        cells.push(Cell {
            day: civil(d.get(i).unwrap_or(0)),
            hour: h.get(i).unwrap_or(0) as u32,
            steps: n.get(i).unwrap_or(0),
            energy_kwh: kwh,
            samples_per_kwh: s.get(i).filter(|x| *x > 0.0 && kwh > 0.0).map(|x| x / kwh),
        });
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_civil_dates() {
        assert_eq!(super::civil(0), "1970-01-01");
        assert_eq!(super::civil(20_454), "2026-01-01");
    }
}
