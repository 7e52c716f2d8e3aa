//! The report and the comparison of two runs as terminal tables.

use std::fmt::Write as _;

use crate::numfmt::{fixed, kwh, mass_kg, sig, thousands};
use crate::report::Report;
use crate::report::compare::Comparison;

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
    phase_lines(&mut o, r);
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

/// Where the energy went, class by class: train, named phases, stall, idle.
fn phase_lines(o: &mut String, r: &Report) {
    if r.phases.0.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "{:<15}{:>14} {:>6} {:>10} {:>7}  samples/kWh",
        "phases", "energy", "share", "time", "steps"
    );
    for (name, l) in &r.phases.0 {
        let _ = writeln!(
            o,
            "  {:<12} {:>14} {:>6} {:>10} {:>7}  {}",
            name,
            kwh(l.energy_kwh),
            l.share
                .map_or_else(|| "-".into(), |s| format!("{}%", fixed(s * 100.0, 1))),
            format!("{} s", fixed(l.seconds, 1)),
            thousands(l.steps as f64),
            l.samples_per_kwh.map_or_else(|| "-".into(), thousands)
        );
    }
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
