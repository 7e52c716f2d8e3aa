//! The end-of-record lines a user reads on stderr: the run, its energy per device, rows
//! and errors (`summary`), then CO2 at the grid intensity given, cost at the prices
//! given, and the carbon budget, from the run's final totals (live.json). The same
//! numbers as the live metrics: IT energy x PUE.

use std::fmt::Write as _;

use eco2ai_trace::Live;
use eco2ai_trace::grid::Intensity;

use crate::recorder::Finished;

/// What `--country/--region`, `--pue`, the prices and the budget resolved to.
#[derive(Debug, Clone, Default)]
pub struct Money {
    /// gCO2/kWh and where it came from (e.g. "--country FR").
    pub intensity: Option<(f64, String)>,
    pub pue: f64,
    pub price_per_kwh: Option<f64>,
    pub gpu_hour_usd: Option<f64>,
    pub carbon_budget_kg: Option<f64>,
}

impl Money {
    /// From the resolved intensity (eco2ai_trace::grid::resolve) and the PUE.
    pub fn new(intensity: Option<Intensity>, pue: f64) -> Money {
        Money {
            intensity: intensity.map(|i| (i.g_per_kwh, i.source)),
            pue,
            ..Money::default()
        }
    }

    /// The start-up line: which intensity CO2 is computed with, live and offline alike.
    pub fn startup_line(&self) -> String {
        match &self.intensity {
            Some((g, from)) => format!(
                "eco2ai-probe: CO2 at {g:.1} gCO2/kWh from {from}; the report uses the same unless told otherwise"
            ),
            None => "eco2ai-probe: no grid intensity (--country, --region or --gco2-per-kwh): CO2 is not measured live and the report needs one".into(),
        }
    }
}

/// Lines for CO2, cost and budget; none for what was not asked for.
pub fn lines(live: &Live, gpus: usize, m: &Money) -> String {
    let mut s = String::new();
    let facility_kwh = live.energy_j * m.pue.max(1.0) / 3.6e6;
    let co2_kg = m.intensity.as_ref().map(|(g, _)| facility_kwh * g / 1000.0);
    match (&m.intensity, co2_kg) {
        (Some((g, from)), Some(kg)) => {
            let _ = writeln!(
                s,
                "co2       {:.3} g at {g:.1} gCO2/kWh (from {from}), PUE {:.2}",
                kg * 1000.0,
                m.pue
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "co2       - (no --country, --region or --gco2-per-kwh given)"
            );
        }
    }
    let energy_usd = m.price_per_kwh.map(|p| facility_kwh * p);
    let compute_usd = m
        .gpu_hour_usd
        .map(|p| p * gpus as f64 * live.elapsed_s.max(0.0) / 3600.0);
    if energy_usd.is_some() || compute_usd.is_some() {
        let total = energy_usd.unwrap_or(0.0) + compute_usd.unwrap_or(0.0);
        let part = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
        let _ = writeln!(
            s,
            "cost      {total:.4} USD (energy {}, compute {})",
            part(energy_usd),
            part(compute_usd)
        );
    }
    if let (Some(budget), Some(kg)) = (m.carbon_budget_kg, co2_kg) {
        let left = budget - kg;
        let verdict = if left < 0.0 { "EXCEEDED" } else { "within" };
        let _ = writeln!(
            s,
            "budget    {verdict}: {:.3} g of {:.3} g used, {:.3} g left",
            kg * 1000.0,
            budget * 1000.0,
            left * 1000.0 + 0.0
        );
    }
    s
}

/// The run, its energy per device, rows and errors.
pub fn summary(f: &Finished) -> String {
    let m = &f.meta;
    let secs = (m.end_ns.unwrap_or(m.start_ns) - m.start_ns) as f64 / 1e9;
    let mut s = String::new();
    let _ = writeln!(s, "run       {} ({:?})", f.dir.display(), m.status);
    let _ = writeln!(s, "duration  {secs:.1} s");
    for (name, j) in f.totals.gpu_j.iter().chain(f.totals.cpu_j.iter()) {
        let _ = writeln!(
            s,
            "energy    {name:<24} {j:>12.1} J  ({:.2} W avg)",
            j / secs.max(1e-9)
        );
    }
    if f.totals.gpu_j.is_empty() && f.totals.cpu_j.is_empty() {
        let _ = writeln!(
            s,
            "energy    no energy sensor recorded (see `eco2ai-probe info`)"
        );
    }
    let rows: Vec<String> = m.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let _ = writeln!(s, "rows      {}", rows.join(", "));
    let _ = writeln!(
        s,
        "errors    {}",
        eco2ai_trace::counts_line(&m.sensor_errors)
    );
    let _ = writeln!(s, "dropped   {} rows", m.dropped_rows);
    if let Some(c) = m.exit_code {
        let _ = writeln!(s, "exit code {c}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(energy_j: f64, elapsed_s: f64) -> Live {
        Live {
            energy_j,
            elapsed_s,
            ..Live::default()
        }
    }

    #[test]
    fn co2_cost_and_an_exceeded_budget() {
        let m = Money {
            intensity: Some((100.0, "--gco2".into())),
            pue: 1.5,
            price_per_kwh: Some(0.2),
            gpu_hour_usd: Some(2.0),
            carbon_budget_kg: Some(0.000_1),
        };
        // 3.6 MJ = 1 kWh IT, 1.5 kWh facility: 150 g, 0.30 USD energy; 2 GPUs x 1 h x 2.
        let out = lines(&live(3.6e6, 3600.0), 2, &m);
        assert!(
            out.contains("co2       150.000 g at 100.0 gCO2/kWh (from --gco2)"),
            "{out}"
        );
        assert!(
            out.contains("cost      4.3000 USD (energy 0.3000, compute 4.0000)"),
            "{out}"
        );
        assert!(
            out.contains("budget    EXCEEDED: 150.000 g of 0.100 g"),
            "{out}"
        );
    }

    #[test]
    fn nothing_asked_nothing_printed_but_the_missing_intensity() {
        let out = lines(
            &live(10.0, 1.0),
            0,
            &Money {
                pue: 1.0,
                ..Money::default()
            },
        );
        assert_eq!(
            out,
            "co2       - (no --country, --region or --gco2-per-kwh given)\n"
        );
    }

    #[test]
    fn the_startup_line_names_the_source() {
        let fr = eco2ai_trace::grid::resolve(eco2ai_trace::grid::GridChoice {
            country: Some("FR"),
            ..Default::default()
        })
        .unwrap();
        let line = Money::new(fr, 1.0).startup_line();
        assert!(line.contains("41.4 gCO2/kWh from country FR"), "{line}");
        assert!(
            Money::new(None, 1.0)
                .startup_line()
                .contains("no grid intensity")
        );
    }
}
