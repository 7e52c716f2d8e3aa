//! Real Slurm on a two-node namespace cluster: `srun --nodes 2` and `sbatch` running
//! `eco2ai-probe record` on every node leave `OUT/job=<SLURM_JOB_ID>/node=<n>/<run>/` for
//! each node, `eco2ai-analyze job` names both nodes, and a global Prometheus federating
//! the cluster's Prometheus (monitoring/) sees both nodes' probes of the job. Root and
//! Debian's slurm-wlm, munge and prometheus; skips with a reason otherwise, unless
//! ECO2AI_REQUIRE_CLUSTER=1.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Bins, Cluster, Killed, ok};

/// The marked workload every node runs (`SECONDS` of 0.1 s busy steps).
fn workload(seconds: u32) -> Vec<String> {
    let repo = eco2ai_cluster::repo();
    vec![
        repo.join(".venv/bin/python").display().to_string(),
        repo.join("python/tests/fixtures/cluster_steps.py")
            .display()
            .to_string(),
        seconds.to_string(),
    ]
}

fn record_cmd(bins: &Bins, out: &Path, seconds: u32) -> Vec<String> {
    let mut cmd = vec![
        bins.probe.display().to_string(),
        "record".into(),
        "--out".into(),
        out.display().to_string(),
        "--project".into(),
        "cluster".into(),
        // Every node serves its own /metrics on its own address (one network a node).
        "--metrics-addr".into(),
        "0.0.0.0:9091".into(),
        "--".into(),
    ];
    cmd.extend(workload(seconds));
    cmd
}

/// The one job directory under `out`, checked: it is Slurm job `job_id`'s, with one
/// complete run per node of the cluster, each saying its node and job; and
/// `eco2ai-analyze job` names both nodes.
fn check_job(c: &Cluster, bins: &Bins, out: &Path, job_id: &str) {
    let jobs = common::job_dirs(out);
    assert_eq!(
        jobs,
        vec![out.join(format!("job={job_id}"))],
        "{}",
        c.logs()
    );
    let runs = common::node_runs(&jobs[0]);
    let names: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    let want: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, want);
    for (i, (node, dir, meta)) in runs.iter().enumerate() {
        assert_eq!(meta["status"], "complete", "{}", dir.display());
        let job = &meta["job"];
        assert_eq!(job["job_id"], job_id, "{meta}");
        assert_eq!(job["id_source"], "slurm", "{meta}");
        assert_eq!(job["node"], node.as_str(), "{meta}");
        assert_eq!(job["node_rank"], i as u64, "{meta}");
        assert_eq!(job["num_nodes"], 2, "{meta}");
        // Each node's run is still a run of its own: `report` reads it as before.
        let one = ok(
            Command::new(&bins.analyze).args(["report", dir.to_str().unwrap(), "--format", "json"]),
            "eco2ai-analyze report on one node's run",
        );
        let one: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
        let steps = one["steps"]["count"].as_u64().unwrap_or(0);
        assert!(
            steps >= 20,
            "{node}: {steps} steps of 0.1 s in 3 s or more: {one}"
        );
    }
    let report = common::analyze_job(bins, &jobs[0]);
    let said = common::strings(&report);
    for n in &want {
        assert!(said.iter().any(|s| s == n), "{n} not named in {report}");
    }
}

/// The cluster Prometheus (monitoring/prometheus.yml scraping both nodes' probes at
/// their namespace addresses) and the global one (monitoring/prometheus-global.yml
/// federating it), on the host's address on the cluster's bridge.
fn federation(c: &Cluster, dir: &Path) -> (String, [Killed; 2]) {
    let cluster_at = format!("{}:{}", c.host_addr, common::free_port(&c.host_addr));
    let global_at = format!("{}:{}", c.host_addr, common::free_port(&c.host_addr));
    let targets: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("\"{}:9091\"", n.addr))
        .collect();
    let prom =
        std::fs::read_to_string(eco2ai_cluster::repo().join("monitoring/prometheus.yml")).unwrap();
    let prom = common::replaced(&prom, "scrape_interval: 5s", "scrape_interval: 1s");
    let prom = common::replaced(
        &prom,
        "      - targets: [\"127.0.0.1:9091\"]\n",
        &format!("      - targets: [{}]\n", targets.join(", ")),
    );
    // No Alertmanager: rules are evaluated, nothing is sent (and nothing leaves).
    let prom = common::replaced(&prom, "127.0.0.1:9093", &format!("{}:19093", c.host_addr));
    std::fs::write(dir.join("prometheus.yml"), prom).unwrap();
    let alerts = eco2ai_cluster::repo().join("monitoring/alerts.yml");
    std::fs::copy(alerts, dir.join("alerts.yml")).unwrap();
    let global =
        std::fs::read_to_string(eco2ai_cluster::repo().join("monitoring/prometheus-global.yml"))
            .unwrap();
    let global = common::replaced(&global, "scrape_interval: 15s", "scrape_interval: 1s");
    let global = common::replaced(&global, "127.0.0.1:9090", &cluster_at);
    std::fs::write(dir.join("prometheus-global.yml"), global).unwrap();
    let servers = [
        common::prometheus(dir, "prometheus.yml", &cluster_at),
        common::prometheus(dir, "prometheus-global.yml", &global_at),
    ];
    (global_at, servers)
}

/// srun on both nodes, the federated Prometheus watching while it runs.
fn srun_and_federation(c: &Cluster, bins: &Bins) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let (global, _servers) = federation(c, tmp.path());
    let record = record_cmd(bins, &out, 8);
    let mut args = vec![
        // A hung job fails the test instead of stalling the suite.
        "timeout",
        "180",
        "srun",
        "--time=3",
        "--nodes",
        "2",
        "--ntasks-per-node",
        "1",
        "--job-name",
        "eco2ai-srun",
    ];
    args.extend(record.iter().map(String::as_str));
    let srun = c
        .exec(0, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both nodes' energy series, in the global Prometheus, while the job runs.
    let seen = common::wait_for(
        Duration::from_secs(40),
        "both nodes' hf_training_energy_kwh_total in the global Prometheus",
        || {
            let s = common::try_vector(&global, "hf_training_energy_kwh_total")?;
            (s.len() == 2).then_some(s)
        },
    );
    let out_of_srun = srun.wait_with_output().unwrap();
    assert!(
        out_of_srun.status.success(),
        "srun failed:\n{}\n{}",
        String::from_utf8_lossy(&out_of_srun.stderr),
        c.logs()
    );
    let jobs = common::job_dirs(&out);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job_id = jobs[0].file_name().unwrap().to_string_lossy()["job=".len()..].to_string();
    // The directory's id is the Slurm job's, by Slurm's own account.
    let shown = ok(
        &mut c.exec(0, &["scontrol", "show", "job", "-o", &job_id]),
        "scontrol show job",
    );
    assert!(String::from_utf8_lossy(&shown.stdout).contains("JobName=eco2ai-srun"));
    let mut nodes: Vec<&str> = seen
        .iter()
        .map(|s| s["metric"]["node"].as_str().unwrap_or(""))
        .collect();
    nodes.sort();
    let want: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nodes, want, "{seen:?}");
    for s in &seen {
        assert_eq!(s["metric"]["job_id"], job_id.as_str(), "{s}");
    }
    // After the job, the way a user asks the global Prometheus: the job's energy, by node
    // and in all (last_over_time: the ended probes' series are stale by now).
    let by_node = common::try_vector(
        &global,
        &format!(r#"sum by (node) (last_over_time(hf_training_energy_kwh_total{{job_id="{job_id}"}}[10m]))"#),
    )
    .expect("the global Prometheus answers");
    assert_eq!(by_node.len(), 2, "{by_node:?}");
    let job = common::try_vector(
        &global,
        &format!(r#"sum by (job_id) (last_over_time(hf_training_energy_kwh_total{{job_id="{job_id}"}}[10m]))"#),
    )
    .expect("the global Prometheus answers");
    let kwh: f64 = job[0]["value"][1].as_str().unwrap().parse().unwrap();
    let parts: f64 = by_node
        .iter()
        .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        kwh > 0.0 && (kwh - parts).abs() <= 1e-9 * kwh.max(1.0),
        "{job:?} {by_node:?}"
    );
    check_job(c, bins, &out, &job_id);
}

fn sbatch(c: &Cluster, bins: &Bins) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let record: Vec<String> = record_cmd(bins, &out, 3)
        .iter()
        .map(|a| format!("'{a}'"))
        .collect();
    let script = tmp.path().join("job.sh");
    let body = format!(
        "#!/bin/sh\n#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n#SBATCH --job-name=eco2ai-sbatch\nsrun {}\n",
        record.join(" ")
    );
    std::fs::write(&script, body).unwrap();
    let log = tmp.path().join("slurm-%j.out");
    let submitted = ok(
        &mut c.exec(
            0,
            &[
                "timeout",
                "180",
                "sbatch",
                "--time=3",
                "--parsable",
                "--wait",
                "-o",
                log.to_str().unwrap(),
                script.to_str().unwrap(),
            ],
        ),
        "sbatch --wait",
    );
    let job_id = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .to_string();
    assert!(job_id.parse::<u32>().is_ok(), "sbatch said {job_id:?}");
    check_job(c, bins, &out, &job_id);
}

#[test]
fn slurm_jobs_on_a_namespace_cluster() {
    if !common::runnable(&[common::PROMETHEUS]) {
        return;
    }
    let bins = common::bins();
    let c = Cluster::up("e2s", 2);
    // Nodes are hosts of their own: their own names, their own addresses.
    for (i, n) in c.nodes.iter().enumerate() {
        let host = ok(&mut c.exec(i, &["hostname"]), "hostname");
        assert_eq!(String::from_utf8_lossy(&host.stdout).trim(), n.name);
    }
    let ping = Command::new("ping")
        .args(["-c", "1", "-W", "2", &c.nodes[1].addr])
        .output();
    if let Ok(p) = ping {
        assert!(p.status.success(), "the host cannot reach node 1");
    }
    common::scenarios(&[
        ("srun --nodes 2 with federated Prometheus", &|| {
            srun_and_federation(&c, &bins)
        }),
        ("sbatch --nodes 2", &|| sbatch(&c, &bins)),
    ]);
}
