//! `eco2ai-analyze report` and `compare` on synthetic runs with a known truth, and on bad
//! input.

use std::path::Path;
use std::process::{Command, Output};

use eco2ai_analyze::synth::{self, Spec};

fn analyze(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args(args)
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn make(dir: &Path, spec: &Spec) -> synth::Truth {
    synth::generate(dir, spec).unwrap()
}

#[test]
fn the_report_has_the_documented_keys_and_the_truths_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let spec = Spec {
        duration_s: 60.0,
        ..Spec::default()
    };
    let truth = make(&run, &spec);
    let o = analyze(&[
        "report",
        run.to_str().unwrap(),
        "--format",
        "json",
        "--gco2-per-kwh",
        "100",
        "--price-per-kwh",
        "0.2",
        "--gpu-hour-usd",
        "2",
        "--pue",
        "1.5",
        "--carbon-budget-kg",
        "0.001",
    ]);
    let r = json(&o);
    for k in [
        "duration_s",
        "energy_kwh",
        "gpu_energy_kwh",
        "cpu_energy_kwh",
        "co2_kg",
        "samples_per_kwh",
        "sources",
        "truncated",
    ] {
        assert!(!r[k].is_null(), "{k} missing in {r}");
    }
    for k in ["energy_usd", "compute_usd", "total_usd"] {
        assert!(r["cost"][k].is_number(), "cost.{k}");
    }
    for k in ["count", "p50_s", "p95_s", "energy_j_mean"] {
        assert!(r["steps"][k].is_number(), "steps.{k}");
    }
    let gpu_j: f64 = truth.total_j.iter().sum();
    let kwh = gpu_j / 3.6e6 * 1.5;
    let got = r["energy_kwh"].as_f64().unwrap();
    assert!((got - kwh).abs() / kwh < 1e-3, "{got} vs {kwh}");
    assert!((r["co2_kg"].as_f64().unwrap() - got * 0.1).abs() < 1e-12);
    assert!((r["cost"]["energy_usd"].as_f64().unwrap() - got * 0.2).abs() < 1e-12);
    let compute = 2.0 * 2.0 * 60.0 / 3600.0;
    assert!((r["cost"]["compute_usd"].as_f64().unwrap() - compute).abs() < 1e-9);
    assert_eq!(
        r["steps"]["count"].as_u64().unwrap() as usize,
        truth.steps.len()
    );
    let samples = 32.0 * truth.steps.len() as f64;
    assert!((r["samples_per_kwh"].as_f64().unwrap() - samples / got).abs() < 1e-6 * samples / got);
    assert_eq!(r["truncated"], false);
    assert!((r["cpu_job_share"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    // 0.001 kg at 100 g/kWh is 0.01 kWh of facility energy: passed partway.
    let exceeded = r["budget"]["exceeded_at_step"]
        .as_u64()
        .expect("budget passed");
    assert!(exceeded > 0 && (exceeded as usize) < truth.steps.len());
    let score = r["efficiency"]["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score));
    assert!(r["sources"]["measured"].as_array().unwrap().len() == 2);
}

#[test]
fn a_time_varying_intensity_applies_at_each_moment() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let spec = Spec {
        duration_s: 40.0,
        gpus: 1,
        ..Spec::default()
    };
    make(&run, &spec);
    // The synthetic run starts at 2026-01-01T00:00:00Z: 100 g/kWh for 20 s, then 500.
    let csv = tmp.path().join("grid.csv");
    std::fs::write(
        &csv,
        "timestamp,gco2_per_kwh\n2026-01-01T00:00:00Z,100\n2026-01-01T00:00:20Z,500\n",
    )
    .unwrap();
    let r = json(&analyze(&[
        "report",
        run.to_str().unwrap(),
        "--format",
        "json",
        "--intensity-series",
        csv.to_str().unwrap(),
    ]));
    let kwh = |a: f64, b: f64| (synth::energy_j(0, b) - synth::energy_j(0, a)) / 3.6e6;
    let want = (kwh(0.0, 20.0) * 100.0 + kwh(20.0, 40.0) * 500.0) / 1000.0;
    let got = r["co2_kg"].as_f64().unwrap();
    assert!((got - want).abs() / want < 2e-3, "{got} vs {want}");
}

#[test]
fn out_dir_holds_report_steps_and_heatmap() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let truth = make(
        &run,
        &Spec {
            duration_s: 30.0,
            ..Spec::default()
        },
    );
    let out = tmp.path().join("out");
    let o = analyze(&[
        "report",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--country",
        "FR",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("CO2") && table.contains("samples/kWh"),
        "{table}"
    );
    let dir = out.join("synthetic");
    let steps = std::fs::read_to_string(dir.join("steps.csv")).unwrap();
    assert_eq!(steps.lines().count(), truth.steps.len() + 1);
    // The phase column is appended after the per-device columns.
    assert!(
        steps
            .lines()
            .next()
            .unwrap()
            .ends_with("gpu0_j,gpu1_j,phase")
    );
    let hm = std::fs::read_to_string(dir.join("heatmap.csv")).unwrap();
    assert!(
        hm.lines().nth(1).unwrap().starts_with("2026-01-01,0,"),
        "{hm}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert!(r["co2_kg"].as_f64().unwrap() > 0.0);
    for fig in ["power", "heatmap", "steps_by_gpu", "breakdown"] {
        assert!(dir.join(format!("{fig}.svg")).exists(), "{fig}.svg");
        let png = std::fs::read(dir.join(format!("{fig}.png"))).unwrap();
        let img = resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
        assert_eq!(img.width(), 1800, "{fig}: drawn at twice the SVG's 900 px");
        // Drawn, not blank: a good share of the pixels carry ink or colour.
        let inked = img
            .pixels()
            .iter()
            .filter(|p| p.red() < 200 || p.green() < 200 || p.blue() < 200)
            .count();
        assert!(
            inked * 100 > img.pixels().len(),
            "{fig}: {inked} inked pixels"
        );
    }
}

#[test]
fn compare_names_the_more_efficient_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    make(
        &a,
        &Spec {
            duration_s: 30.0,
            samples_per_step: 32,
            ..Spec::default()
        },
    );
    make(
        &b,
        &Spec {
            duration_s: 30.0,
            samples_per_step: 48,
            ..Spec::default()
        },
    );
    let c = json(&analyze(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--format",
        "json",
    ]));
    assert_eq!(c["more_efficient"], "synthetic");
    let by = c["by"].as_f64().unwrap();
    assert!((by - 1.5).abs() < 1e-6, "{by}");
    let o = analyze(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("by 50.0%"));
}

fn fails_with(args: &[&str], want: &str) {
    let o = analyze(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_is_a_clear_error_or_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    make(
        &run,
        &Spec {
            duration_s: 10.0,
            ..Spec::default()
        },
    );
    let r = run.to_str().unwrap();
    fails_with(&["report", r, "--country", "XX"], "unknown country 'XX'");
    fails_with(&["report", r, "--pue", "0.5"], "--pue");
    fails_with(&["report", r, "--format", "yaml"], "--format");
    let csv = tmp.path().join("bad.csv");
    std::fs::write(&csv, "2026-01-01T00:00:00Z,abc\n").unwrap();
    fails_with(
        &["report", r, "--intensity-series", csv.to_str().unwrap()],
        "not a number",
    );
    fails_with(
        &["report", tmp.path().to_str().unwrap()],
        "not a run directory",
    );

    // A run without steps: the per-run figures are still there.
    let empty_steps = tmp.path().join("nosteps");
    make(
        &empty_steps,
        &Spec {
            duration_s: 2.0,
            step_ms: 5000.0,
            ..Spec::default()
        },
    );
    let j = json(&analyze(&[
        "report",
        empty_steps.to_str().unwrap(),
        "--format",
        "json",
    ]));
    assert_eq!(j["steps"]["count"], 0);
    assert!(j["energy_kwh"].as_f64().unwrap() > 0.0);

    // Wrong schema version.
    let meta = run.join("meta.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    let future = tmp.path().join("future");
    std::fs::create_dir_all(&future).unwrap();
    for t in ["gpu", "cpu", "steps", "procs", "evals"] {
        let _ = std::fs::create_dir_all(future.join(t));
    }
    std::fs::write(
        future.join("meta.json"),
        text.replace("\"schema_version\": 1", "\"schema_version\": 99"),
    )
    .unwrap();
    fails_with(&["report", future.to_str().unwrap()], "schema");

    // A corrupt Parquet segment.
    let seg = std::fs::read_dir(run.join("gpu"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&["report", r], "reading run");
}

#[test]
fn an_empty_run_says_there_is_nothing_to_report() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("empty");
    let mut meta = eco2ai_trace::Meta::new("empty");
    meta.start_ns = 0;
    let w = eco2ai_trace::TraceWriter::create(&run, meta).unwrap();
    w.finish(1_000_000_000).unwrap();
    fails_with(&["report", run.to_str().unwrap()], "no energy readings");
}

/// Rows out of time order and NaN losses: reported, and flagged in `quality`.
#[test]
fn out_of_order_rows_and_nan_are_flagged_not_fatal() {
    use eco2ai_trace::{GpuRow, Meta, Rows, StepRow, TraceWriter};
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("messy");
    let mut meta = Meta::new("messy");
    meta.start_ns = 0;
    let mut w = TraceWriter::create(&run, meta).unwrap();
    let mut gpu: Vec<GpuRow> = (0..=100)
        .map(|k| GpuRow {
            ts_ns: k * 100_000_000,
            gpu: 0,
            power_mw: Some(200_000),
            power_instant_mw: Some(200_000),
            ..GpuRow::default()
        })
        .collect();
    gpu.swap(10, 20);
    w.append(Rows::Gpu(gpu));
    w.append(Rows::Steps(vec![StepRow {
        step: 1,
        begin_ns: 1_000_000_000,
        end_ns: 2_000_000_000,
        pid: 1,
        samples: Some(4),
        tokens: None,
        loss: Some(f64::NAN),
        lr: None,
        epoch: None,
        source: "socket",
        counts: [None; 4],
        sync_ns: None,
        phase: None,
    }]));
    w.finish(10_000_000_000).unwrap();
    let r = json(&analyze(&[
        "report",
        run.to_str().unwrap(),
        "--format",
        "json",
    ]));
    assert!(
        r["quality"]["timestamps_out_of_order"].as_u64().unwrap() >= 1,
        "{r}"
    );
    // 200 W for 10 s, whatever the row order.
    let kwh = r["gpu_energy_kwh"].as_f64().unwrap();
    assert!((kwh * 3.6e6 - 2000.0).abs() < 1e-6, "{kwh}");
    let step_j = r["steps"]["energy_j_mean"].as_f64().unwrap();
    assert!((step_j - 200.0).abs() < 1e-6, "{step_j}");
}

/// Energy columns are run-relative: what a counter gained before its first reading
/// belongs to the run (the report agrees with `summary`).
#[test]
fn energy_before_the_first_reading_counts() {
    use eco2ai_trace::{CpuRow, Meta, Rows, TraceWriter};
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("late");
    let mut meta = Meta::new("late");
    meta.start_ns = 0;
    let mut w = TraceWriter::create(&run, meta).unwrap();
    // 100 W from the start; the first reading comes at 0.5 s.
    let cpu = (1..=20)
        .map(|k| CpuRow {
            ts_ns: k * 500_000_000,
            domain: "package-0".into(),
            source: "powercap",
            energy_uj: Some(k as u64 * 50_000_000),
            energy_changed: Some(true),
            util_pct: None,
        })
        .collect();
    w.append(Rows::Cpu(cpu));
    w.finish(10_000_000_000).unwrap();
    let r = json(&analyze(&[
        "report",
        run.to_str().unwrap(),
        "--format",
        "json",
    ]));
    let s = json(&analyze(&["summary", "--json", run.to_str().unwrap()]));
    let (rj, sj) = (
        r["cpu_energy_kwh"].as_f64().unwrap() * 3.6e6,
        s["cpu_energy_kwh"].as_f64().unwrap() * 3.6e6,
    );
    assert!((rj - 1000.0).abs() < 1e-6, "{rj}");
    assert!((rj - sj).abs() < 1e-6, "{rj} vs {sj}");
}

#[test]
fn the_pue_recorded_with_a_run_applies_unless_a_flag_says() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    make(
        &run,
        &Spec {
            duration_s: 30.0,
            ..Spec::default()
        },
    );
    let meta_path = run.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["labels"]["pue"] = serde_json::json!(1.3);
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let r = run.to_str().unwrap();
    let recorded = json(&analyze(&["report", r, "--format", "json"]));
    let flagged = json(&analyze(&["report", r, "--format", "json", "--pue", "1.1"]));
    assert_eq!(
        (recorded["pue"].as_f64(), flagged["pue"].as_f64()),
        (Some(1.3), Some(1.1))
    );
    let kwh = |v: &serde_json::Value| v["energy_kwh"].as_f64().unwrap();
    assert!((kwh(&recorded) / kwh(&flagged) - 1.3 / 1.1).abs() < 1e-9);
}
