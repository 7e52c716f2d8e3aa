//! Two runs side by side: each figure of A and B and their ratio, which run is more
//! efficient and by how much, and what makes them unlike.

use serde::Serialize;

use crate::report::Report;

/// One figure of two runs and how B compares with A (B / A).
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub metric: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
    pub b_over_a: Option<f64>,
    /// Whether more is better for this figure.
    pub higher_is_better: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub lines: Vec<Line>,
    /// The run with more samples per kWh (else less energy per step).
    pub more_efficient: Option<String>,
    /// How much more efficient, as a ratio >= 1.
    pub by: Option<f64>,
    /// What makes the comparison less than like for like (hardware that differs).
    pub warnings: Vec<String>,
}

/// Whether B is the more efficient run and by what ratio (>= 1): samples per kWh where
/// both have them, else energy per step.
fn verdict(a: &Report, b: &Report) -> Option<(bool, f64)> {
    match (
        a.samples_per_kwh,
        b.samples_per_kwh,
        a.steps.energy_j_mean,
        b.steps.energy_j_mean,
    ) {
        (Some(x), Some(y), _, _) if x > 0.0 && y > 0.0 => Some((y >= x, (y / x).max(x / y))),
        (_, _, Some(x), Some(y)) if x > 0.0 && y > 0.0 => Some((y <= x, (y / x).max(x / y))),
        _ => None,
    }
}

pub fn compare(a: &Report, b: &Report) -> Comparison {
    let avg_w = |r: &Report| (r.duration_s > 0.0).then(|| r.energy_kwh * 3.6e6 / r.duration_s);
    let rows: [(&'static str, Option<f64>, Option<f64>, bool); 9] = [
        (
            "samples_per_kwh",
            a.samples_per_kwh,
            b.samples_per_kwh,
            true,
        ),
        (
            "energy_j_per_step",
            a.steps.energy_j_mean,
            b.steps.energy_j_mean,
            false,
        ),
        ("energy_kwh", Some(a.energy_kwh), Some(b.energy_kwh), false),
        ("co2_kg", a.co2_kg, b.co2_kg, false),
        ("cost_usd", a.cost.total_usd, b.cost.total_usd, false),
        ("step_p50_s", a.steps.p50_s, b.steps.p50_s, false),
        ("step_p95_s", a.steps.p95_s, b.steps.p95_s, false),
        ("avg_power_w", avg_w(a), avg_w(b), false),
        (
            "efficiency_score",
            a.efficiency.score,
            b.efficiency.score,
            true,
        ),
    ];
    let lines: Vec<Line> = rows
        .into_iter()
        .map(|(metric, x, y, hib)| Line {
            metric,
            a: x,
            b: y,
            b_over_a: x.zip(y).filter(|(x, _)| *x != 0.0).map(|(x, y)| y / x),
            higher_is_better: hib,
        })
        .collect();
    let verdict = verdict(a, b);
    Comparison {
        a: a.run_id.clone(),
        b: b.run_id.clone(),
        more_efficient: verdict.map(|(b_wins, _)| {
            if b_wins {
                b.run_id.clone()
            } else {
                a.run_id.clone()
            }
        }),
        by: verdict.map(|v| v.1),
        lines,
        warnings: Vec::new(),
    }
}
