//! The shipped Grafana dashboards only query metrics the probe serves, in both formats
//! (the bare model for provisioning files, the `{"dashboard": ...}` wrapper for
//! Grafana's HTTP API), and have what the monitoring guide shows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use eco2ai_metrics::{MetricsState, RunInfo, TextSink, render};
use eco2ai_trace::{CpuRow, EvalRow, GpuRow, Rows, StepRow};
use serde_json::Value;

/// The whole exposition of a run with every optional input given.
fn served_text() -> String {
    let info = RunInfo {
        project: "p".into(),
        // A node of a job, as `record --job-id` serves it.
        job_id: "j".into(),
        node: "n".into(),
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
            sync_ns: None,
            phase: None,
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
    out.0
}

fn served_families() -> BTreeSet<String> {
    served_text()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (file name, bare model) of every dashboard; each has its API wrapper beside it.
fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            out.push((name, json(&path)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 2,
        "dashboards: {:?}",
        out.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    out
}

/// Every PromQL text of a dashboard: panel targets and query variables.
fn exprs(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: target without expr", p["title"]));
            out.push((
                p["title"].as_str().unwrap_or("?").to_string(),
                expr.to_string(),
            ));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            out.push((
                format!("variable {}", v["name"]),
                v["definition"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

fn families_in(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("hf_training_"))
}

fn panel<'a>(dash: &'a Value, title: &str) -> &'a Value {
    dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("{}: no panel {title}", dash["title"]))
}

fn variable<'a>(dash: &'a Value, name: &str) -> &'a Value {
    dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{}: no variable {name}", dash["title"]))
}

fn threshold_values(p: &Value) -> Vec<f64> {
    p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no thresholds", p["title"]))
        .iter()
        .filter_map(|s| s["value"].as_f64())
        .collect()
}

#[test]
fn every_query_of_every_dashboard_uses_a_served_metric() {
    let served = served_families();
    let mut uids = BTreeSet::new();
    for (name, dash) in dashboards() {
        assert!(
            uids.insert(dash["uid"].to_string()),
            "{name}: uid used twice"
        );
        let mut used = BTreeSet::new();
        for (title, expr) in exprs(&dash) {
            for word in families_in(&expr) {
                assert!(
                    served.contains(word),
                    "{name}: {title} queries {word}, which the probe does not serve"
                );
                used.insert(word.to_string());
            }
        }
        assert!(used.len() >= 8, "{name} uses only {used:?}");
        // The job variable sums a job's nodes (issue 10): every dashboard has it.
        let job = variable(&dash, "job");
        assert!(
            job["definition"].as_str().unwrap().contains(", job_id)"),
            "{name}: {job}"
        );
        assert_eq!(job["includeAll"], true, "{name}");
        assert_eq!(
            job["allValue"], ".*",
            "{name}: All must also match runs without a job_id"
        );
        assert!(
            exprs(&dash)
                .iter()
                .any(|(_, e)| e.contains("sum by (job_id)") && e.contains("$job")),
            "{name}: no query sums a job's nodes"
        );
        // What a job's queries sum by, the probe serves on each family they use.
        let text = served_text();
        for (title, expr) in exprs(&dash).iter().filter(|(_, e)| e.contains("job_id")) {
            for word in families_in(expr) {
                let labelled = text
                    .lines()
                    .filter(|l| l.starts_with(&format!("{word}{{")))
                    .all(|l| l.contains("job_id=\"j\"") && l.contains("node=\"n\""));
                assert!(
                    labelled,
                    "{name}: {title}: {word} served without job_id/node"
                );
            }
        }
    }
}

#[test]
fn the_api_format_wraps_the_same_model() {
    for (name, dash) in dashboards() {
        assert!(
            dash.get("dashboard").is_none(),
            "{name}: the bare model is for provisioning files"
        );
        assert!(
            dash["id"].is_null(),
            "{name}: an id would clash with another Grafana's"
        );
        let api = json(&repo().join("dashboards/api").join(&name));
        assert_eq!(api["overwrite"], true, "{name}");
        assert_eq!(
            api["dashboard"], dash,
            "dashboards/api/{name} differs from dashboards/{name}"
        );
    }
    let prov =
        std::fs::read_to_string(repo().join("dashboards/provisioning/dashboards.yml")).unwrap();
    for want in [
        "apiVersion: 1",
        "type: file",
        "path: /var/lib/grafana/dashboards/hf-eco2ai",
    ] {
        assert!(prov.contains(want), "dashboards.yml lacks {want}");
    }
    let ds =
        std::fs::read_to_string(repo().join("dashboards/provisioning/datasource.yml")).unwrap();
    for want in [
        "apiVersion: 1",
        "type: prometheus",
        "url: http://127.0.0.1:9090",
    ] {
        assert!(ds.contains(want), "datasource.yml lacks {want}");
    }
}

#[test]
fn carbon_tracking_has_the_issue_panels() {
    let dash = json(&repo().join("dashboards/hf-carbon-tracking.json"));
    assert_eq!(dash["title"], "HF Eco2AI Carbon Tracking");
    for want in [
        "Total CO2 (kg)",
        "Energy over time",
        "Efficiency (samples/kWh) by hour",
        "CO2 rate (kg/h)",
        "GPUs",
        "Cost and training",
        "Job energy rate by node (kW)",
    ] {
        panel(&dash, want);
    }
    assert_eq!(
        threshold_values(panel(&dash, "Total CO2 (kg)")),
        vec![10.0, 25.0]
    );
}

#[test]
fn realtime_carbon_monitoring_is_the_guides() {
    let dash = json(&repo().join("dashboards/realtime-carbon-monitoring.json"));
    assert_eq!(dash["title"], "Real-time Carbon Monitoring");
    assert_eq!(dash["refresh"], "5s");
    assert_eq!(dash["time"]["from"], "now-1h");
    assert_eq!(dash["time"]["to"], "now");
    let panels = dash["panels"].as_array().unwrap();
    // A stat panel per project: repeated over the project variable, one legend each.
    let per_project = panels
        .iter()
        .find(|p| p["type"] == "stat" && p["repeat"] == "project")
        .expect("no stat panel repeated by project");
    assert_eq!(
        per_project["targets"][0]["legendFormat"],
        "{{project_name}}"
    );
    assert!(
        per_project["targets"][0]["expr"]
            .as_str()
            .unwrap()
            .contains("hf_training_co2_kg_total")
    );
    assert_eq!(threshold_values(per_project), vec![10.0, 25.0]);
    assert_eq!(variable(&dash, "project")["multi"], true);
    // The energy panel is a rate of the energy counter over 5 minutes.
    let energy = panel(&dash, "Energy rate (kW)");
    let expr = energy["targets"][0]["expr"].as_str().unwrap();
    assert!(
        expr.contains("rate(hf_training_energy_kwh_total{") && expr.contains("[5m])"),
        "{expr}"
    );
    assert_eq!(threshold_values(energy), vec![10.0]);
    for p in panels
        .iter()
        .filter(|p| p["type"] == "stat" || p["type"] == "gauge")
    {
        assert!(
            !threshold_values(p).is_empty(),
            "{}: no thresholds",
            p["title"]
        );
    }
}

#[test]
fn plugin_info_carries_the_build_commit() {
    let text = served_text();
    assert!(
        !text.contains("hf_training_plugin_version"),
        "the old gauge is still served"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("hf_training_plugin_info{"))
        .expect("no plugin_info");
    assert!(line.ends_with("} 1"), "{line}");
    let commit = line
        .split("commit=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    assert!(
        line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    // Built from a git checkout with git at hand: a short hash; elsewhere "unknown".
    let in_git = std::process::Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git {
        assert!(
            commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "commit {commit:?} in a git checkout"
        );
    } else {
        assert_eq!(commit, "unknown");
    }
}
