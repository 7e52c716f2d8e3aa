//! Efficiency by hour of day x day: samples of the steps that ended in each hour (UTC)
//! per kWh of that hour, and each hour's whole energy, from the devices' energy curves.
//! The group-by is a BTreeMap over the steps already in memory: against polars' lazy
//! group-by on the same 1 M steps the report took the same time and wrote the same
//! heatmap.csv (ARCHITECTURE.md), and the analyzer no longer builds polars.

use std::collections::BTreeMap;

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
pub fn cells(runs: &[&Analysis]) -> Vec<Cell> {
    // (unix day, hour) -> (steps, training samples)
    let mut groups: BTreeMap<(i64, i64), (u32, u64)> = BTreeMap::new();
    for a in runs {
        for s in &a.steps {
            let unix_s = s
                .end_ns
                .saturating_add(a.mono_to_unix_ns)
                .div_euclid(1_000_000_000);
            let key = (unix_s.div_euclid(86_400), unix_s.rem_euclid(86_400) / 3600);
            let g = groups.entry(key).or_default();
            g.0 = g.0.saturating_add(1);
            // Training samples only: an eval step's samples are not trained on.
            if crate::energy::phases::is_train(s) {
                g.1 = g.1.saturating_add(s.samples.unwrap_or(0));
            }
        }
    }
    let mut cells = Vec::with_capacity(groups.len());
    let mut samples = Vec::with_capacity(groups.len());
    for ((day, hour), (steps, n)) in groups {
        cells.push(Cell {
            day: civil(day),
            hour: hour as u32,
            steps,
            energy_kwh: 0.0,
            samples_per_kwh: None,
        });
        samples.push(n as f64);
    }
    add_hour_energy(runs, &mut cells);
    // As the report counts it: samples over all the energy of the hour, not only the
    // energy inside steps.
    for (c, n) in cells.iter_mut().zip(samples) {
        c.samples_per_kwh = (n > 0.0 && c.energy_kwh > 0.0).then(|| n / c.energy_kwh);
    }
    cells.sort_by(|x, y| (&x.day, x.hour).cmp(&(&y.day, y.hour)));
    cells
}

/// Each cell's energy is all the energy of its hour (in steps or not), so a run with
/// few or no steps still lands in the hours it ran; hours without steps get a cell too.
fn add_hour_energy(runs: &[&Analysis], cells: &mut Vec<Cell>) {
    const HOUR_NS: i64 = 3_600_000_000_000;
    let mut by_hour: BTreeMap<i64, f64> = BTreeMap::new();
    for a in runs {
        let (t0, t1) = (
            a.start_ns.saturating_add(a.mono_to_unix_ns),
            a.end_ns.saturating_add(a.mono_to_unix_ns),
        );
        let mut h = t0.div_euclid(HOUR_NS);
        // A run longer than ten years is not a run: bound the walk.
        while h.saturating_mul(HOUR_NS) < t1 && h - t0.div_euclid(HOUR_NS) < 24 * 3660 {
            let (a_ns, b_ns) = ((h * HOUR_NS).max(t0), ((h + 1) * HOUR_NS).min(t1));
            let j = a.it_j(a_ns - a.mono_to_unix_ns, b_ns - a.mono_to_unix_ns);
            *by_hour.entry(h).or_default() += j / 3.6e6;
            h += 1;
        }
    }
    let index: std::collections::HashMap<(String, u32), usize> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| ((c.day.clone(), c.hour), i))
        .collect();
    for (h, kwh) in by_hour {
        let (day, hour) = (civil(h.div_euclid(24)), h.rem_euclid(24) as u32);
        match index.get(&(day.clone(), hour)) {
            Some(&i) => cells[i].energy_kwh += kwh,
            None => cells.push(Cell {
                day,
                hour,
                steps: 0,
                energy_kwh: kwh,
                samples_per_kwh: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_civil_dates() {
        assert_eq!(super::civil(0), "1970-01-01");
        assert_eq!(super::civil(20_454), "2026-01-01");
    }
}
