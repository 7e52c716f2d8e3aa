//! report.html: one self-contained page (figures inline as SVG, no scripts, no fetches),
//! so it opens offline and can be mailed or archived as it is.

use std::fmt::Write as _;

use crate::figures;
use crate::heatmap::Cell;
use crate::report::{Analysis, Report};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn row(o: &mut String, k: &str, v: String) {
    let _ = writeln!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
}

fn opt(v: Option<f64>, unit: &str, digits: usize) -> String {
    v.map_or_else(
        || "-".into(),
        |v| format!("{v:.digits$} {unit}").trim_end().to_string(),
    )
}

/// The figures of a run, by file name.
pub fn figures(a: &Analysis, r: &Report, cells: &[Cell]) -> Vec<(&'static str, String)> {
    vec![
        ("power.svg", figures::power(a)),
        ("heatmap.svg", figures::heatmap(cells)),
        ("steps_by_gpu.svg", figures::steps_by_gpu(a)),
        ("breakdown.svg", figures::breakdown(r)),
    ]
}

pub fn page(r: &Report, figs: &[(&'static str, String)]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>hf-eco2ai report: {id}</title>\n\
         <style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse}}th{{text-align:left;padding:2px 12px 2px 0}}\
         td{{padding:2px 0}}figure{{margin:1.5em 0}}.warn{{color:#b00}}</style></head><body>\n\
         <h1>Run {id}</h1>",
        id = esc(&r.run_id)
    );
    if r.truncated {
        let _ = writeln!(
            o,
            "<p class=\"warn\">This run was cut off: figures cover it up to its last flushed sample.</p>"
        );
    }
    o.push_str("<table id=\"summary\">\n");
    row(&mut o, "duration", format!("{:.1} s", r.duration_s));
    row(
        &mut o,
        "energy",
        format!(
            "{:.6} kWh (GPU {:.6}, CPU {:.6}, PUE {:.2})",
            r.energy_kwh, r.gpu_energy_kwh, r.cpu_energy_kwh, r.pue
        ),
    );
    row(
        &mut o,
        "CO2",
        format!(
            "{} at {}",
            opt(r.co2_kg, "kg", 6),
            opt(r.grid_intensity_g_per_kwh, "g/kWh", 1)
        ),
    );
    row(&mut o, "samples per kWh", opt(r.samples_per_kwh, "", 0));
    row(
        &mut o,
        "steps",
        format!(
            "{} (p50 {}, p95 {})",
            r.steps.count,
            opt(r.steps.p50_s, "s", 4),
            opt(r.steps.p95_s, "s", 4)
        ),
    );
    row(
        &mut o,
        "energy per step",
        opt(r.steps.energy_j_mean, "J", 2),
    );
    row(
        &mut o,
        "between steps",
        format!("{:.6} kWh", r.steps.between_steps_kwh),
    );
    row(
        &mut o,
        "cost",
        format!(
            "{} (energy {}, compute {})",
            opt(r.cost.total_usd, "USD", 4),
            opt(r.cost.energy_usd, "", 4),
            opt(r.cost.compute_usd, "", 4)
        ),
    );
    if let Some(b) = &r.budget {
        let when = b.exceeded_at_step.map_or_else(
            || {
                b.projected_step.map_or("not reached".into(), |s| {
                    format!("would be exceeded at step {s}")
                })
            },
            |s| format!("exceeded at step {s}"),
        );
        row(
            &mut o,
            "carbon budget",
            format!(
                "{:.3} kg, {:.6} kg left, {when}",
                b.budget_kg, b.remaining_kg
            ),
        );
    }
    row(&mut o, "efficiency score", opt(r.efficiency.score, "", 3));
    if let Some(est) = r.sources.get("estimated") {
        row(&mut o, "estimated (no sensor)", est.join(", "));
    }
    o.push_str("</table>\n");
    for (name, svg) in figs {
        let _ = writeln!(
            o,
            "<figure id=\"{}\">{svg}</figure>",
            name.trim_end_matches(".svg")
        );
    }
    o.push_str("<p>Made by eco2ai-analyze from the run's trace; the same figures are in report.json and the .svg files beside this page.</p>\n</body></html>\n");
    o
}
