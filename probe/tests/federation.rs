//! monitoring/ as a cluster runs it: two probes (two nodes of job 4242) scraped by a
//! cluster Prometheus (monitoring/prometheus.yml), federated by a global Prometheus
//! (monitoring/prometheus-global.yml). The global one must see the job's two nodes,
//! every dashboard query must be valid PromQL there, and the troubleshooting commands
//! of monitoring/README.md must give the answers it says. Needs Debian's prometheus
//! (`cargo xtask setup`); skips with a reason otherwise, unless ECO2AI_REQUIRE_STACK=1.

mod stack;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use stack::{PROMETHEUS, PROMTOOL, free_port, missing, monitoring, replaced, vector, wait_for};

/// Writes the cluster and global configurations for these ports into `dir`.
fn configs(dir: &std::path::Path, probes: [u16; 2], cluster: u16) {
    let prom = monitoring("prometheus.yml");
    let prom = replaced(&prom, "scrape_interval: 5s", "scrape_interval: 1s");
    // Both nodes of one job, plain targets as the README says: the probes serve job_id.
    let prom = replaced(
        &prom,
        "      - targets: [\"127.0.0.1:9091\"]\n",
        &format!(
            "      - targets: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
            probes[0], probes[1]
        ),
    );
    // No Alertmanager here: the rules are evaluated, nothing is sent.
    let prom = replaced(
        &prom,
        "127.0.0.1:9093",
        &format!("127.0.0.1:{}", free_port()),
    );
    std::fs::write(dir.join("prometheus.yml"), prom).unwrap();
    std::fs::write(dir.join("alerts.yml"), monitoring("alerts.yml")).unwrap();
    let global = monitoring("prometheus-global.yml");
    let global = replaced(&global, "scrape_interval: 15s", "scrape_interval: 1s");
    let global = replaced(&global, "127.0.0.1:9090", &format!("127.0.0.1:{cluster}"));
    std::fs::write(dir.join("prometheus-global.yml"), global).unwrap();
}

fn label<'a>(series: &'a Value, name: &str) -> &'a str {
    series["metric"][name].as_str().unwrap_or("")
}

fn value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `curl localhost:9091/metrics | grep hf_training` and `| promtool check metrics`.
fn scrape_checks(probe: u16) {
    let (code, body) = stack::get(probe, "/metrics").expect("the probe serves nothing");
    assert_eq!(code, 200);
    let ours: Vec<&str> = body.lines().filter(|l| l.contains("hf_training")).collect();
    for family in [
        "hf_training_energy_kwh_total{",
        "hf_training_co2_kg_total{",
        "hf_training_plugin_info{",
    ] {
        assert!(
            ours.iter().any(|l| l.starts_with(family)),
            "no {family} in:\n{body}"
        );
    }
    if missing(&[PROMTOOL]).is_some() {
        return;
    }
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // The guide's names that promtool's naming lint dislikes (README.md says why they
    // stay); anything else it reports is a new problem.
    let known = [
        "hf_training_epoch_count counter metrics should have \"_total\" suffix",
        "hf_training_epoch_count non-histogram and non-summary metrics should not have \"_count\" suffix",
        "hf_training_gpu_count non-histogram and non-summary metrics should not have \"_count\" suffix",
        "hf_training_step_count counter metrics should have \"_total\" suffix",
        "hf_training_step_count non-histogram and non-summary metrics should not have \"_count\" suffix",
    ];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            known.contains(&line.trim()),
            "promtool check metrics: {line}\n{text}"
        );
    }
}

/// The README's cardinality query: the ten families with the most series.
fn cardinality_checks(prom: u16) {
    let all = vector(prom, r#"count by (__name__)({__name__=~"hf_training.*"})"#);
    let top = vector(
        prom,
        r#"topk(10, count by (__name__)({__name__=~"hf_training.*"}))"#,
    );
    assert_eq!(top.len(), all.len().min(10), "{top:?}");
    let counts: BTreeMap<&str, f64> = all
        .iter()
        .map(|s| (label(s, "__name__"), value(s)))
        .collect();
    // Two nodes: two energy series, one a node.
    assert_eq!(
        counts.get("hf_training_energy_kwh_total"),
        Some(&2.0),
        "{counts:?}"
    );
    let least_shown = top.iter().map(value).fold(f64::INFINITY, f64::min);
    for s in &top {
        assert!(label(s, "__name__").starts_with("hf_training_"), "{s}");
    }
    let shown: Vec<&str> = top.iter().map(|s| label(s, "__name__")).collect();
    for (name, n) in &counts {
        assert!(
            shown.contains(name) || *n <= least_shown,
            "{name} ({n} series) left out of {shown:?}"
        );
    }
}

/// Every dashboard query, its variables set to All, is accepted by Prometheus.
fn dashboard_queries(prom: u16) {
    let dir = stack::repo().join("dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for p in dash["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$project", ".*")
                    .replace("$job", ".*");
                let answer = stack::query(prom, &expr);
                assert_eq!(
                    answer["status"],
                    "success",
                    "{}: {}: {expr}: {answer}",
                    path.display(),
                    p["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "{checked} queries");
}

#[test]
fn a_global_prometheus_sees_both_nodes_of_a_job() {
    if missing(&[PROMETHEUS]).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let probes = [free_port(), free_port()];
    let (cluster, global) = (free_port(), free_port());
    configs(d, probes, cluster);
    let _nodes = probes.map(|p| stack::probe(d, p, "fed", &["--job-id", "4242"]));
    let _cluster = stack::prometheus(d, "prometheus.yml", cluster);
    let _global = stack::prometheus(d, "prometheus-global.yml", global);
    let job_query =
        r#"sum by (job_id) (rate(hf_training_energy_kwh_total{job_id="4242"}[5m])) * 3600"#;
    wait_for(
        Duration::from_secs(60),
        "both nodes' energy rate in the global Prometheus",
        || {
            let nodes = stack::try_vector(
                global,
                r#"count by (instance) (hf_training_energy_kwh_total{job_id="4242"})"#,
            )?;
            let job = stack::try_vector(global, job_query)?;
            (nodes.len() == 2 && !job.is_empty()).then_some(())
        },
    );
    let series = vector(global, r#"hf_training_energy_kwh_total{job_id="4242"}"#);
    for s in &series {
        // honor_labels: the cluster's own job name and its external label survive.
        assert_eq!(label(s, "job"), "hf-eco2ai-probe", "{s}");
        assert_eq!(label(s, "cluster"), "local", "{s}");
        assert_eq!(label(s, "project_name"), "fed", "{s}");
        // The probe's own job labels, not renamed by a target label.
        assert!(!label(s, "node").is_empty(), "{s}");
        assert_eq!(label(s, "exported_job_id"), "", "{s}");
    }
    let job = vector(global, job_query);
    assert_eq!(job.len(), 1, "{job:?}");
    assert!(value(&job[0]) > 0.0, "{job:?}");
    // Federation takes the hf_training families only (not the cluster's own series).
    assert!(vector(global, "up{job=\"hf-eco2ai-probe\"}").is_empty());
    scrape_checks(probes[0]);
    cardinality_checks(cluster);
    dashboard_queries(global);
}
