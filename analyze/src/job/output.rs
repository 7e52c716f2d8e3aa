//! The job report as a terminal table, report.html, and the files of `--out DIR`.

use std::fmt::Write as _;
use std::path::Path;

use crate::numfmt::{fixed, kwh, mass_kg, sig, thousands};
use crate::report::render::esc;
use crate::report::render::html::row;
use crate::report::render::text::usd;

use super::{JobReport, figure};

/// Ranks and steps listed in the table and the page; all of them are in the JSON and CSVs.
const SHOWN: usize = 10;

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{} {unit}", thousands(v)))
}

pub fn table(r: &JobReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "job          {} ({} nodes, {} ranks, {} steps)",
        r.job_id,
        r.nodes.len(),
        r.ranks.len(),
        r.steps.len()
    );
    let _ = writeln!(
        o,
        "energy       {} (GPU {}, CPU {}; in steps {}; PUE {})",
        kwh(r.energy_kwh),
        kwh(r.gpu_kwh),
        kwh(r.cpu_kwh),
        kwh(r.in_steps_kwh),
        fixed(r.pue, 2)
    );
    let _ = writeln!(
        o,
        "efficiency   {} samples/kWh, {} tokens/kWh",
        opt(r.samples_per_kwh, ""),
        opt(r.tokens_per_kwh, "")
    );
    let co2 = r
        .co2_kg
        .map_or("- (a node has no grid intensity)".into(), mass_kg);
    let _ = writeln!(o, "CO2          {co2}   cost {}", usd(r.cost_usd, " USD"));
    if let Some(x) = r.budget_exceeded {
        let _ = writeln!(
            o,
            "budget       {} kg: {}",
            fixed(r.carbon_budget_kg.unwrap_or(0.0), 3),
            if x { "EXCEEDED by the job" } else { "within" }
        );
    }
    let _ = writeln!(
        o,
        "clocks       {} (reference {}), residual {} ms",
        r.clock.method,
        r.clock.reference_node,
        sig(r.clock_residual_ns as f64 / 1e6, 3)
    );
    node_lines(&mut o, r);
    straggler_lines(&mut o, r);
    for m in r.missing.iter().chain(&r.warnings) {
        let _ = writeln!(o, "warning      {m}");
    }
    o
}

/// The table's node lines: status, steps, energy, grid and clock offset.
fn node_lines(o: &mut String, r: &JobReport) {
    let _ = writeln!(
        o,
        "  {:<12} {:<10} {:>7} {:>14} {:>8} {:>10}",
        "node", "status", "steps", "energy", "gCO2/kWh", "offset ms"
    );
    for n in &r.nodes {
        let _ = writeln!(
            o,
            "  {:<12} {:<10} {:>7} {:>14} {:>8} {:>10}",
            n.node,
            n.status,
            n.steps,
            kwh(n.energy_kwh),
            n.gco2_per_kwh.map_or("-".into(), |g| fixed(g, 1)),
            fixed(n.clock_offset_ns as f64 / 1e6, 3)
        );
    }
}

fn straggler_lines(o: &mut String, r: &JobReport) {
    let s = &r.stragglers;
    if !s.identifiable {
        let _ = writeln!(o, "stragglers   cannot be told apart: {}", s.note);
        return;
    }
    let _ = writeln!(
        o,
        "stragglers   slowest {} (last in {} of {} steps), median lag {} ms; wait {} s, {} J",
        s.slowest.as_deref().unwrap_or("-"),
        s.slowest_steps,
        r.steps.len(),
        s.median_lag_ms.map_or("-".into(), |v| sig(v, 3)),
        sig(s.wait_s, 4),
        sig(s.wait_j, 4)
    );
    let mut by_wait: Vec<_> = r.ranks.iter().collect();
    by_wait.sort_by(|a, b| b.wait_j.total_cmp(&a.wait_j));
    for k in by_wait.iter().take(SHOWN) {
        let _ = writeln!(
            o,
            "  {:<24} waited {:>9} s {:>10} J; last in {} steps",
            k.label,
            sig(k.wait_s, 4),
            sig(k.wait_j, 4),
            k.straggler_steps
        );
    }
}

/// The page's headline table: size, energy, efficiency, CO2, cost, clocks, stragglers.
fn facts(o: &mut String, r: &JobReport) {
    o.push_str("<table>\n");
    row(
        o,
        "nodes, ranks, steps",
        format!("{}, {}, {}", r.nodes.len(), r.ranks.len(), r.steps.len()),
    );
    row(
        o,
        "energy (IT)",
        format!(
            "{} kWh (GPU {}, CPU {})",
            kwh(r.energy_kwh),
            kwh(r.gpu_kwh),
            kwh(r.cpu_kwh)
        ),
    );
    row(o, "samples/kWh", opt(r.samples_per_kwh, ""));
    row(o, "tokens/kWh", opt(r.tokens_per_kwh, ""));
    row(o, "CO2", r.co2_kg.map_or("-".into(), mass_kg));
    row(o, "cost", usd(r.cost_usd, " USD"));
    row(
        o,
        "clock alignment",
        format!(
            "{} (reference {}), residual {} ms",
            r.clock.method,
            r.clock.reference_node,
            sig(r.clock_residual_ns as f64 / 1e6, 3)
        ),
    );
    let s = &r.stragglers;
    row(
        o,
        "stragglers",
        match &s.slowest {
            Some(w) if s.identifiable => format!(
                "{w} last in {} of {} steps; wait {} s, {} J in all",
                s.slowest_steps,
                r.steps.len(),
                sig(s.wait_s, 4),
                sig(s.wait_j, 4)
            ),
            _ => s.note.clone(),
        },
    );
    o.push_str("</table>\n");
}

/// One row a node.
fn node_rows(o: &mut String, r: &JobReport) {
    o.push_str("<h2>Nodes</h2><table><tr><th>node</th><th>status</th><th>steps</th><th>kWh</th><th>gCO2/kWh</th><th>kg CO2</th><th>clock offset ms</th></tr>\n");
    for n in &r.nodes {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.node),
            esc(&n.status),
            n.steps,
            kwh(n.energy_kwh),
            n.gco2_per_kwh.map_or("-".into(), |g| fixed(g, 1)),
            n.co2_kg.map_or("-".into(), |c| sig(c, 4)),
            fixed(n.clock_offset_ns as f64 / 1e6, 3)
        );
    }
    o.push_str("</table>\n");
}

/// The steps that cost most, costliest first.
fn costliest_steps(o: &mut String, r: &JobReport) {
    o.push_str("<h2>Costliest steps</h2><table><tr><th>step</th><th>J</th><th>straggler</th><th>lag ms</th><th>wait J</th></tr>\n");
    let mut top: Vec<_> = r.steps.iter().collect();
    top.sort_by(|a, b| b.energy_j.total_cmp(&a.energy_j));
    for st in top.iter().take(SHOWN) {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            st.step,
            sig(st.energy_j, 5),
            esc(st.straggler.as_deref().unwrap_or("-")),
            sig(st.lag_ms, 3),
            sig(st.wait_j, 4)
        );
    }
    o.push_str("</table>\n");
}

/// report.html: the headline, the wait heatmaps, nodes, ranks, the costliest steps.
pub fn page(r: &JobReport, figs: &[(&'static str, String)]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>hf-eco2ai job: {id}</title>\n\
         <style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse}}th{{text-align:left;padding:2px 12px 2px 0}}\
         td{{padding:2px 8px 2px 0}}figure{{margin:1.5em 0}}.warn{{color:#b00}}</style></head><body>\n<h1>Job {id}</h1>",
        id = esc(&r.job_id)
    );
    for m in r.missing.iter().chain(&r.warnings) {
        let _ = writeln!(o, "<p class=\"warn\">{}</p>", esc(m));
    }
    facts(&mut o, r);
    for (name, svg) in figs {
        let _ = writeln!(o, "<figure>{svg}<figcaption>{name}</figcaption></figure>");
    }
    node_rows(&mut o, r);
    costliest_steps(&mut o, r);
    o.push_str("<p>Each step's job energy is the sum over every node of its GPUs and CPU packages over that node's span of the step (its first rank's begin to its last rank's end), from the per-run energy curves. Clocks are aligned on the step ends; a rank's wait is from its sync mark to the step's last arrival, on its GPU (or its share of the node's CPU). All steps: steps.csv; per node: node_steps.csv; everything: report.json.</p></body></html>\n");
    o
}

/// Writes report.json, report.html, the figures, steps.csv and node_steps.csv.
pub fn write_out(r: &JobReport, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(r).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    let figs = figure::figures(r);
    for (name, svg) in &figs {
        std::fs::write(dir.join(name), svg)?;
    }
    std::fs::write(dir.join("report.html"), page(r, &figs))?;
    let mut csv = String::from(
        "step,energy_j,gpu_j,cpu_j,nodes,ranks,samples,tokens,straggler_rank,lag_ms,wait_j\n",
    );
    for s in &r.steps {
        let _ = writeln!(
            csv,
            "{},{:.6},{:.6},{:.6},{},{},{},{},{},{:.6},{:.6}",
            s.step,
            s.energy_j,
            s.gpu_j,
            s.cpu_j,
            s.nodes,
            s.ranks,
            s.samples,
            s.tokens,
            s.straggler_rank.map_or(String::new(), |r| r.to_string()),
            s.lag_ms,
            s.wait_j
        );
    }
    std::fs::write(dir.join("steps.csv"), csv)?;
    let mut csv = String::from("node,step,gpu_j,cpu_j\n");
    for (n, step, g, c) in &r.node_steps {
        let name = r.nodes.get(*n as usize).map_or("", |x| x.node.as_str());
        let _ = writeln!(csv, "{name},{step},{g:.6},{c:.6}");
    }
    std::fs::write(dir.join("node_steps.csv"), csv)
}
