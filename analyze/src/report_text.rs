//! The report as a terminal table, and the comparison of two runs.

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::Report;

fn opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}{unit}"))
}

pub fn table(r: &Report) -> String {
    let mut o = String::new();
    let flag = if r.truncated {
        " (cut off: totals up to the last flushed sample)"
    } else {
        ""
    };
    let _ = writeln!(o, "run          {}{flag}", r.run_id);
    let _ = writeln!(o, "duration     {:.1} s", r.duration_s);
    let _ = writeln!(
        o,
        "energy       {:.6} kWh (GPU {:.6}, CPU {:.6}, PUE {:.2})",
        r.energy_kwh, r.gpu_energy_kwh, r.cpu_energy_kwh, r.pue
    );
    for d in &r.devices {
        let _ = writeln!(
            o,
            "  {:<10} {:>12.6} kWh  {} ({})",
            d.device, d.energy_kwh, d.method, d.source
        );
    }
    let _ = writeln!(
        o,
        "CO2          {} at {}",
        opt(r.co2_kg, 6, " kg"),
        opt(r.grid_intensity_g_per_kwh, 1, " g/kWh")
    );
    let s = &r.steps;
    let _ = writeln!(
        o,
        "steps        {} (p50 {}, p95 {}; {} per step; {:.6} kWh in steps, {:.6} between)",
        s.count,
        opt(s.p50_s, 4, " s"),
        opt(s.p95_s, 4, " s"),
        opt(s.energy_j_mean, 2, " J"),
        s.in_steps_kwh,
        s.between_steps_kwh
    );
    let _ = writeln!(
        o,
        "samples/kWh  {}   J/sample {}",
        opt(r.samples_per_kwh, 0, ""),
        opt(r.j_per_sample, 3, "")
    );
    let c = &r.cost;
    let _ = writeln!(
        o,
        "cost         {} (energy {}, compute {}; {} per hour)",
        opt(c.total_usd, 4, " USD"),
        opt(c.energy_usd, 4, ""),
        opt(c.compute_usd, 4, ""),
        opt(c.usd_per_hour, 4, "")
    );
    if let Some(b) = &r.budget {
        let when = match (b.exceeded_at_step, b.projected_step) {
            (Some(s), _) => format!("exceeded at step {s}"),
            (None, Some(s)) => format!("would be exceeded at step {s}"),
            _ => "not reached".into(),
        };
        let _ = writeln!(
            o,
            "budget       {:.3} kg, {:.6} kg left, {when}",
            b.budget_kg, b.remaining_kg
        );
    }
    let _ = writeln!(o, "efficiency   {}", opt(r.efficiency.score, 3, ""));
    if let Some(est) = r.sources.get("estimated") {
        let _ = writeln!(o, "estimated    {}", est.join(", "));
    }
    let q = &r.quality;
    if q.counter_resets + q.dropped_readings + q.timestamps_out_of_order > 0 {
        let _ = writeln!(
            o,
            "data         {} counter resets repaired, {} readings dropped (NaN/duplicate), {} timestamps out of order",
            q.counter_resets, q.dropped_readings, q.timestamps_out_of_order
        );
    }
    o
}

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
    let verdict = match (
        a.samples_per_kwh,
        b.samples_per_kwh,
        a.steps.energy_j_mean,
        b.steps.energy_j_mean,
    ) {
        (Some(x), Some(y), _, _) if x > 0.0 && y > 0.0 => Some((y >= x, (y / x).max(x / y))),
        (_, _, Some(x), Some(y)) if x > 0.0 && y > 0.0 => Some((y <= x, (y / x).max(x / y))),
        _ => None,
    };
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
    }
}

pub fn comparison_table(c: &Comparison) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{:<18} {:>16} {:>16} {:>8}", "", c.a, c.b, "B/A");
    for l in &c.lines {
        let f = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.6}"));
        let _ = writeln!(
            o,
            "{:<18} {:>16} {:>16} {:>8}",
            l.metric,
            f(l.a),
            f(l.b),
            opt(l.b_over_a, 3, "")
        );
    }
    match (&c.more_efficient, c.by) {
        (Some(w), Some(by)) => {
            let _ = writeln!(o, "more efficient: {w}, by {:.1}%", (by - 1.0) * 100.0);
        }
        _ => {
            let _ = writeln!(
                o,
                "more efficient: unknown (neither samples nor steps recorded in both)"
            );
        }
    }
    o
}
