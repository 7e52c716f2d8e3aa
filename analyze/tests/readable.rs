//! What a person reads in a report: no `-0`, figures that draw something (no empty
//! heatmap with a denormal maximum), report.html with the run's facts, the method and
//! the steps, and an error that says a path does not exist.

use std::path::Path;
use std::process::{Command, Output};

use eco2ai_analyze::synth::{self, Spec};

fn analyze(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args(args)
        .output()
        .unwrap()
}

fn synth_run(dir: &Path, duration_s: f64) {
    synth::generate(
        dir,
        &Spec {
            duration_s,
            ..Spec::default()
        },
    )
    .unwrap();
}

/// Drawing elements of an SVG beyond its white background.
fn drawn(svg: &str) -> usize {
    svg.matches("<rect").count() - 1 + svg.matches("<polyline").count()
}

#[test]
fn a_missing_run_is_said_not_to_exist() {
    for cmd in ["summary", "report"] {
        let o = analyze(&[cmd, "/no/such/run-dir"]);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("/no/such/run-dir does not exist"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn report_figures_and_page_show_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    synth_run(&run, 20.0);
    let out = tmp.path().join("out");
    let o = analyze(&[
        "report",
        run.to_str().unwrap(),
        "--country",
        "FR",
        "--price-per-kwh",
        "0.2",
        "--gpu-hour-usd",
        "2",
        "--carbon-budget-kg",
        "0.000001",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        !table.contains("-0.0") && !table.contains(" -0 "),
        "{table}"
    );
    // The budget is a few mg: shown in g with significant digits, not "0.000 kg".
    assert!(
        table.contains(" g, -") && !table.contains("0.000 kg"),
        "{table}"
    );
    assert!(table.contains("energy/step  mean"), "{table}");

    let dir = out.join("synthetic");
    let heat = std::fs::read_to_string(dir.join("heatmap.svg")).unwrap();
    assert!(drawn(&heat) >= 1, "empty heatmap: {heat}");
    assert!(!heat.contains("e-3"), "denormal maximum in {heat}");
    for f in ["power.svg", "steps_by_gpu.svg", "breakdown.svg"] {
        let svg = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(drawn(&svg) >= 2, "{f} draws nothing");
    }
    let brk = std::fs::read_to_string(dir.join("breakdown.svg")).unwrap();
    assert!(
        brk.contains("Energy (kWh") && brk.contains("Cost (USD"),
        "{brk}"
    );
    assert!(
        brk.contains("CO2: ") && brk.contains(" g at 41.4 gCO2/kWh"),
        "{brk}"
    );

    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for want in [
        "How these numbers are made",
        "<table id=\"steps\">",
        "<table id=\"run\">",
        "href=\"steps.csv\"",
        "probe version",
        "country FR",
    ] {
        assert!(html.contains(want), "report.html lacks {want}");
    }
    assert!(!html.contains(">-0.0"), "-0 in report.html");
}

#[test]
fn power_axis_ticks_are_round() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    synth_run(&run, 15.0);
    let out = tmp.path().join("out");
    let o = analyze(&[
        "report",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(out.join("synthetic/power.svg")).unwrap();
    // The y labels: text anchored at the end, left of the axis.
    let labels: Vec<f64> = svg
        .lines()
        .filter(|l| l.contains("text-anchor=\"end\""))
        .filter_map(|l| l.split('>').nth(1)?.split('<').next()?.parse().ok())
        .collect();
    assert!(labels.len() >= 3, "{svg}");
    let step = labels[1] - labels[0];
    let mantissa = step / 10f64.powf(step.log10().floor());
    assert!(
        [1.0, 2.0, 2.5, 5.0]
            .iter()
            .any(|m| (m - mantissa).abs() < 1e-9),
        "tick step {step} in {labels:?}"
    );
}

#[test]
fn progress_shows_on_a_terminal_and_not_when_piped() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    synth_run(&run, 5.0);
    let piped = analyze(&["report", run.to_str().unwrap()]);
    assert!(piped.status.success());
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !err.contains("energy per step") && !err.contains('\r'),
        "{err}"
    );
    // `script` (util-linux) gives the command a terminal.
    let cmd = format!(
        "{} report {} > /dev/null",
        env!("CARGO_BIN_EXE_eco2ai-analyze"),
        run.display()
    );
    let log = tmp.path().join("tty.log");
    let Ok(o) = Command::new("script")
        .args(["-qec", &cmd, log.to_str().unwrap()])
        .output()
    else {
        eprintln!("SKIPPED: no `script` to give the analyzer a terminal");
        return;
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = std::fs::read_to_string(&log).unwrap();
    assert!(shown.contains("energy per step"), "{shown}");
}

#[test]
fn a_run_recorded_with_a_fixed_intensity_is_reported_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    synth_run(&run, 5.0);
    let path = run.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    meta["labels"]["gco2_per_kwh"] = serde_json::json!(100.0);
    std::fs::write(&path, meta.to_string()).unwrap();
    let o = analyze(&["report", run.to_str().unwrap(), "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["grid_intensity_source"], "the run's label --gco2-per-kwh");
    let g = r["grid_intensity_g_per_kwh"].as_f64().unwrap();
    assert!((g - 100.0).abs() < 1e-6, "{g}");
}
