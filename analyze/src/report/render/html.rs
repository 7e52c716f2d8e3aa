//! report.html: one self-contained page (figures inline as SVG, no scripts, no fetches),
//! so it opens offline and can be mailed or archived as it is. It says what the run
//! was (command, host, sensors), its figures, how they are made, and its steps.

use std::fmt::Write as _;

use super::svg;
use super::text::usd;
use crate::numfmt::{fixed, kwh, mass_kg, sig, thousands};
use crate::report::heatmap::Cell;
use crate::report::{Analysis, Report};

/// Steps listed in the page; all of them are in steps.csv.
const STEPS_SHOWN: usize = 25;

pub(crate) use super::esc;

pub(crate) fn row(o: &mut String, k: &str, v: String) {
    let _ = writeln!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
}

fn opt(v: Option<f64>, unit: &str, digits: usize) -> String {
    v.map_or_else(
        || "-".into(),
        |v| {
            format!("{} {unit}", fixed(v, digits))
                .trim_end()
                .to_string()
        },
    )
}

/// The figures of a run, by file name.
pub fn figure_set(a: &Analysis, r: &Report, cells: &[Cell]) -> Vec<(&'static str, String)> {
    vec![
        ("power.svg", svg::power(a)),
        ("heatmap.svg", svg::heatmap(cells)),
        ("steps_by_gpu.svg", svg::steps_by_gpu(a)),
        ("breakdown.svg", svg::breakdown(r)),
    ]
}

pub fn page(a: &Analysis, r: &Report, figs: &[(&'static str, String)]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>hf-eco2ai report: {id}</title>\n\
         <style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse}}th{{text-align:left;padding:2px 12px 2px 0}}\
         td{{padding:2px 8px 2px 0}}figure{{margin:1.5em 0}}.warn{{color:#b00}}\
         #steps td,#phases td+td{{text-align:right}}</style></head><body>\n\
         <h1>Run {id}</h1>",
        id = esc(&r.run_id)
    );
    if r.truncated {
        let _ = writeln!(
            o,
            "<p class=\"warn\">This run was cut off: figures cover it up to its last flushed sample.</p>"
        );
    }
    summary(&mut o, r);
    phases(&mut o, r);
    for (name, svg) in figs {
        let _ = writeln!(
            o,
            "<figure id=\"{}\">{svg}</figure>",
            name.trim_end_matches(".svg")
        );
    }
    steps(&mut o, a);
    run_facts(&mut o, a, r);
    method(&mut o);
    o.push_str("<p>Made by eco2ai-analyze from the run's trace; the same figures are in report.json and the .svg/.png files beside this page, every step in steps.csv.</p>\n</body></html>\n");
    o
}

/// The headline figures.
fn summary(o: &mut String, r: &Report) {
    o.push_str("<table id=\"summary\">\n");
    row(o, "duration", format!("{} s", fixed(r.duration_s, 1)));
    row(
        o,
        "energy",
        format!(
            "{} (GPU {}, CPU {}, PUE {})",
            kwh(r.energy_kwh),
            kwh(r.gpu_energy_kwh),
            kwh(r.cpu_energy_kwh),
            fixed(r.pue, 2)
        ),
    );
    let co2 = r.co2_kg.map_or_else(|| "-".into(), mass_kg);
    row(
        o,
        "CO2",
        format!("{co2} at {}", opt(r.grid_intensity_g_per_kwh, "g/kWh", 1)),
    );
    row(
        o,
        "training samples per kWh",
        r.samples_per_kwh.map_or_else(|| "-".into(), thousands),
    );
    step_rows(o, r);
    row(
        o,
        "cost",
        format!(
            "{} (energy {}, compute {})",
            usd(r.cost.total_usd, " USD"),
            usd(r.cost.energy_usd, ""),
            usd(r.cost.compute_usd, "")
        ),
    );
    if let Some(b) = &r.budget {
        row(o, "carbon budget", super::text::budget_line(b));
    }
    row(o, "efficiency score", opt(r.efficiency.score, "", 3));
    if let Some(est) = r.sources.get("estimated") {
        row(o, "estimated (no sensor)", est.join(", "));
    }
    o.push_str("</table>\n");
}

/// Where the energy went, class by class (the bands of the power figure).
fn phases(o: &mut String, r: &Report) {
    if r.phases.0.is_empty() {
        return;
    }
    o.push_str(
        "<h2>Phases</h2>\n<p>Every instant of the run is in one class: a named phase (any \
         process's span; the latest-begun where spans overlap), else a training step, else a \
         stall between the first and last training steps, else idle. The classes' energies sum \
         to the run's; samples/kWh counts each class's own steps (training samples for train).</p>\n\
         <table id=\"phases\"><tr><th>phase</th><th>energy</th><th>share</th><th>time</th>\
         <th>spans</th><th>steps</th><th>samples/kWh</th></tr>\n",
    );
    for (name, l) in &r.phases.0 {
        let cells = [
            name.clone(),
            kwh(l.energy_kwh),
            l.share
                .map_or_else(|| "-".into(), |s| format!("{}%", fixed(s * 100.0, 1))),
            format!("{} s", fixed(l.seconds, 1)),
            thousands(l.spans as f64),
            thousands(l.steps as f64),
            l.samples_per_kwh.map_or_else(|| "-".into(), thousands),
        ];
        o.push_str("<tr>");
        for c in cells {
            let _ = write!(o, "<td>{}</td>", esc(&c));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");
}

/// Steps, their energy, and where the energy went.
fn step_rows(o: &mut String, r: &Report) {
    let s = &r.steps;
    row(
        o,
        "steps",
        format!(
            "{} (duration p50 {}, p95 {})",
            thousands(s.count as f64),
            opt(s.p50_s, "s", 4),
            opt(s.p95_s, "s", 4)
        ),
    );
    row(
        o,
        "energy per step",
        format!(
            "mean {}, p50 {}, p95 {}",
            opt(s.energy_j_mean, "J", 2),
            opt(s.energy_j_p50, "J", 2),
            opt(s.energy_j_p95, "J", 2)
        ),
    );
    row(
        o,
        "in steps / between steps",
        format!("{} / {}", kwh(s.in_steps_kwh), kwh(s.between_steps_kwh)),
    );
}

/// The first steps and the most energetic ones; the rest are in steps.csv.
fn steps(o: &mut String, a: &Analysis) {
    let _ = writeln!(o, "<h2>Steps</h2>");
    if a.steps.is_empty() {
        o.push_str("<p class=\"warn\">No steps were recorded: per-step energy needs the step markers (the marker library, the Python callback or StepTracker).</p>\n");
        return;
    }
    let mut order: Vec<usize> = (0..a.steps.len()).collect();
    let joules = |i: usize| a.step_energy.get(i).map_or(0.0, |e| e.gpu_j + e.cpu_j);
    order.sort_by(|x, y| joules(*y).total_cmp(&joules(*x)));
    order.truncate(STEPS_SHOWN);
    order.sort_unstable();
    let _ = writeln!(
        o,
        "<p>The {} most energetic of {} steps, in step order (all of them: <a href=\"steps.csv\">steps.csv</a>).</p>\n<table id=\"steps\"><tr><th>step</th><th>duration (s)</th><th>samples</th><th>loss</th><th>GPU (J)</th><th>CPU (J)</th></tr>",
        order.len(),
        thousands(a.steps.len() as f64)
    );
    for i in order {
        let s = &a.steps[i];
        let e = a.step_energy.get(i);
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.step,
            fixed(s.end_ns.saturating_sub(s.begin_ns) as f64 / 1e9, 4),
            s.samples.map_or("-".into(), |n| n.to_string()),
            s.loss.map_or("-".into(), |l| sig(l, 4)),
            e.map_or("-".into(), |e| fixed(e.gpu_j, 2)),
            e.map_or("-".into(), |e| fixed(e.cpu_j, 2)),
        );
    }
    o.push_str("</table>\n");
}

/// What was recorded, where, with which sensors (and why others were not used).
fn run_facts(o: &mut String, a: &Analysis, r: &Report) {
    let m = &a.meta;
    o.push_str("<h2>Run</h2>\n<table id=\"run\">\n");
    row(o, "command", m.command.join(" "));
    row(o, "host", format!("{} (kernel {})", m.host, m.kernel));
    row(
        o,
        "CPU",
        format!(
            "{} x{} socket(s), {} threads",
            m.cpu_model, m.cpu_sockets, m.cpu_threads
        ),
    );
    let gpus: Vec<String> = m
        .gpus
        .iter()
        .map(|g| format!("{}: {}", g.index, g.name))
        .collect();
    row(
        o,
        "GPUs",
        if gpus.is_empty() {
            "none".into()
        } else {
            gpus.join(", ")
        },
    );
    for s in &m.sensors {
        let state = if s.used { "used" } else { "not used" };
        row(
            o,
            &format!("sensor {} {}", s.kind, s.name),
            format!("{state}: {}", s.note),
        );
    }
    let labels = &m.labels;
    let intensity = r.grid_intensity_g_per_kwh.map_or_else(
        || "no fixed intensity (a series, or none given)".into(),
        |g| format!("{} gCO2/kWh", fixed(g, 1)),
    );
    let source = r
        .grid_intensity_source
        .as_deref()
        .unwrap_or("none: no --country, --region or intensity given, and no label in the run");
    row(o, "grid intensity", format!("{intensity}, from {source}"));
    row(
        o,
        "project / model",
        format!(
            "{} / {}",
            labels.project_name.as_deref().unwrap_or("-"),
            labels.model_name.as_deref().unwrap_or("-")
        ),
    );
    row(o, "probe version", m.tool_version.clone());
    row(o, "status", format!("{:?}", m.status).to_lowercase());
    o.push_str("</table>\n");
}

/// How the numbers are made, in a paragraph a reader can check them against.
fn method(o: &mut String) {
    o.push_str(
        "<h2>How these numbers are made</h2>\n<p>Each device's energy is a curve E(t): the \
         power samples' shape (NVML instant power at 20 ms, RAPL at 1 ms, or the CPU estimate) \
         rescaled so that it passes through the device's own energy counter at anchors at \
         least 30 s apart, with each polled value placed at the moment the driver refreshed it. \
         A step's energy is E(end) - E(begin) on every device, never a difference of counter \
         readings at the step's edges (those are quantised to the counter's ~100 ms refresh). \
         CO2 is facility energy (IT energy x PUE) times the grid intensity in force; cost is \
         facility energy times the price plus GPU hours times their rate. The efficiency score \
         (0-1) is the run's samples/kWh over its best minute's, the same ratio the live \
         hf_training_efficiency_score gives for the last minute; stalls between steps lower \
         it.</p>\n",
    );
}
