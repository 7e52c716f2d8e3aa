//! The shipped Grafana dashboard only queries metrics the probe serves.

use std::collections::BTreeSet;

use eco2ai_metrics::{MetricsState, RunInfo, TextSink, render};
use eco2ai_trace::{CpuRow, EvalRow, GpuRow, Rows, StepRow};

fn served_families() -> BTreeSet<String> {
    let info = RunInfo {
        project: "p".into(),
        intensity_g_per_kwh: Some(50.0),
        carbon_budget_kg: Some(1.0),
        price_per_kwh: Some(0.2),
        gpu_hour_usd: Some(2.0),
        pue: 1.0,
        ..RunInfo::default()
    };
    let mut s = MetricsState::new(info);
    for i in 0..3i64 {
        let ts = i * 2_000_000_000;
        let gpu = GpuRow {
            ts_ns: ts,
            gpu: 0,
            power_mw: Some(300_000),
            temp_c: Some(50),
            mem_used_bytes: Some(1),
            mem_total_bytes: Some(2),
            util_gpu_pct: Some(90),
            energy_mj: Some(600_000 * i as u64),
            ..GpuRow::default()
        };
        s.observe(&Rows::Gpu(vec![gpu]));
        let step = StepRow {
            step: i as u64,
            begin_ns: ts,
            end_ns: ts + 1,
            pid: 1,
            samples: Some(8),
            tokens: None,
            loss: Some(1.0),
            lr: Some(0.1),
            epoch: Some(0.5),
            source: "uprobe",
            counts: [None; 4],
        };
        s.observe(&Rows::Steps(vec![step]));
        s.observe(&Rows::Evals(vec![EvalRow {
            ts_ns: ts,
            step: 1,
            pid: 1,
            eval_loss: Some(1.2),
        }]));
        let cpu = CpuRow {
            ts_ns: ts,
            domain: "package-0".into(),
            source: "powercap",
            energy_uj: Some(50_000_000 * i as u64),
            energy_changed: Some(true),
            util_pct: None,
        };
        s.observe(&Rows::Cpu(vec![cpu]));
    }
    let mut out = TextSink::default();
    render(&s, &Default::default(), 10.0, &mut out);
    let text = out.0;
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn every_query_uses_a_served_metric() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dashboards/hf-carbon-tracking.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(dash["title"], "HF Eco2AI Carbon Tracking");
    let served = served_families();
    let mut used = BTreeSet::new();
    let panels = dash["panels"].as_array().unwrap();
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("hf_training_") {
                    assert!(
                        served.contains(word),
                        "{} queries {word}, which the probe does not serve",
                        p["title"]
                    );
                    used.insert(word.to_string());
                }
            }
        }
    }
    // The panels the Prometheus issue asks for.
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Total CO2 (kg)",
        "Energy over time",
        "Efficiency (samples/kWh) by hour",
        "CO2 rate (kg/h)",
        "GPUs",
        "Cost and training",
    ] {
        assert!(titles.contains(&want), "no panel {want}");
    }
    let co2 = panels
        .iter()
        .find(|p| p["title"] == "Total CO2 (kg)")
        .unwrap();
    let steps: Vec<f64> = co2["fieldConfig"]["defaults"]["thresholds"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["value"].as_f64())
        .collect();
    assert_eq!(steps, vec![10.0, 25.0]);
    assert!(used.len() >= 15, "{used:?}");
}
