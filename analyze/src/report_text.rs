//! The report as a terminal table, and the comparison of two runs.

use std::fmt::Write as _;

use serde::Serialize;

use crate::numfmt::{fixed, kwh, mass_kg, sig, thousands};
use crate::report::Report;

fn opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{}{unit}", fixed(v, digits)))
}

/// Money with three significant digits: a seconds-long run costs fractions of a cent.
pub fn usd(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{}{unit}", sig(v, 3)))
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
    energy_lines(&mut o, r);
    step_lines(&mut o, r);
    money_lines(&mut o, r);
    let _ = writeln!(o, "efficiency   {}", opt(r.efficiency.score, 3, ""));
    if let Some(est) = r.sources.get("estimated") {
        let _ = writeln!(o, "estimated    {}", est.join(", "));
    }
    data_line(&mut o, &r.quality);
    o
}

/// Energy in all, per device, and its CO2.
fn energy_lines(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "energy       {} kWh (GPU {}, CPU {}, PUE {})",
        fixed(r.energy_kwh, 6),
        fixed(r.gpu_energy_kwh, 6),
        fixed(r.cpu_energy_kwh, 6),
        fixed(r.pue, 2)
    );
    for d in &r.devices {
        let _ = writeln!(
            o,
            "  {:<10} {:>12} kWh  {} ({})",
            d.device,
            fixed(d.energy_kwh, 6),
            d.method,
            d.source
        );
    }
    let _ = writeln!(
        o,
        "CO2          {} at {}",
        r.co2_kg.map_or_else(|| "-".into(), mass_kg),
        opt(r.grid_intensity_g_per_kwh, 1, " g/kWh")
    );
}

/// Steps, their energy, and samples per kWh.
fn step_lines(o: &mut String, r: &Report) {
    let s = &r.steps;
    let _ = writeln!(
        o,
        "steps        {} (p50 {}, p95 {})",
        thousands(s.count as f64),
        opt(s.p50_s, 4, " s"),
        opt(s.p95_s, 4, " s"),
    );
    let _ = writeln!(
        o,
        "energy/step  mean {}, p50 {}, p95 {}; {} in steps, {} between",
        opt(s.energy_j_mean, 2, " J"),
        opt(s.energy_j_p50, 2, " J"),
        opt(s.energy_j_p95, 2, " J"),
        kwh(s.in_steps_kwh),
        kwh(s.between_steps_kwh)
    );
    let _ = writeln!(
        o,
        "samples/kWh  {}   J/sample {}",
        r.samples_per_kwh.map_or_else(|| "-".into(), thousands),
        opt(r.j_per_sample, 3, "")
    );
}

/// Cost and the carbon budget.
fn money_lines(o: &mut String, r: &Report) {
    let c = &r.cost;
    let _ = writeln!(
        o,
        "cost         {} (energy {}, compute {}; {} per hour)",
        usd(c.total_usd, " USD"),
        usd(c.energy_usd, ""),
        usd(c.compute_usd, ""),
        usd(c.usd_per_hour, "")
    );
    if let Some(b) = &r.budget {
        let _ = writeln!(o, "budget       {}", budget_line(b));
    }
}

/// `5.00 g, -0.138 g left, exceeded at step 12`: the budget as people read it.
pub fn budget_line(b: &crate::report::Budget) -> String {
    let when = match (b.exceeded_at_step, b.projected_step) {
        (Some(s), _) => format!("exceeded at step {s}"),
        (None, Some(s)) => format!("would be exceeded at step {s}"),
        _ => "not reached".into(),
    };
    format!(
        "{}, {} left, {when}",
        mass_kg(b.budget_kg),
        mass_kg(b.remaining_kg)
    )
}

/// What was repaired or left out of the trace, when anything was.
fn data_line(o: &mut String, q: &crate::energy::Quality) {
    let notes: Vec<String> = [
        (q.counter_resets, "counter resets repaired"),
        (q.dropped_readings, "readings dropped (NaN/duplicate)"),
        (q.timestamps_out_of_order, "timestamps out of order"),
        (
            q.counter_glitches,
            "impossible counter jumps bridged with the power curve",
        ),
        (q.steps_outside_run, "step rows outside the run left out"),
        (
            q.overlapping_steps,
            "overlapping steps of one process (a data error)",
        ),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if !notes.is_empty() {
        let _ = writeln!(o, "data         {}", notes.join(", "));
    }
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
    /// What makes the comparison less than like for like (hardware that differs).
    pub warnings: Vec<String>,
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
        warnings: Vec::new(),
    }
}

pub fn comparison_table(c: &Comparison) -> String {
    let mut o = String::new();
    for w in &c.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    let _ = writeln!(o, "{:<18} {:>16} {:>16} {:>8}", "", c.a, c.b, "B/A");
    for l in &c.lines {
        let f = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| sig(v, 6));
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
