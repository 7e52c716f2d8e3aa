//! Real multi-node torch.distributed on a two-node namespace cluster: `torchrun --nnodes 2
//! --nproc_per_node 1 --rdzv_backend c10d` in each node (gloo over the namespace network),
//! a real HF Trainer with Eco2AICallback on each rank, one probe a node started by the
//! callback, the job analysed by `eco2ai-analyze job`. Then the same with one rank slowed
//! by a sleep inside its step: the report must name it the straggler, its lag and the
//! other's wait within 10% of the sleep, and the other's wait energy within 10% of its
//! node's energy over those intervals computed here from the raw trace. Root, Debian's
//! slurm-wlm and munge (the harness), .venv with torch and transformers; skips with a
//! reason otherwise, unless ECO2AI_REQUIRE_CLUSTER=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::raw;
use common::{Bins, Cluster};
use serde_json::Value;

const STEPS: u32 = 10;
const SLOW_S: f64 = 0.4;

/// torchrun on every node at once; each node's output on failure.
fn torchrun(c: &Cluster, bins: &Bins, out: &Path, run_id: &str, slow: Option<u32>) {
    let repo = eco2ai_cluster::repo();
    let fixture = repo.join("python/tests/fixtures/cluster_train.py");
    let endpoint = format!("{}:29400", c.nodes[0].addr);
    let steps = STEPS.to_string();
    let children: Vec<_> = (0..c.nodes.len())
        .map(|i| {
            let mut args: Vec<String> = vec![
                // A hung rendezvous or collective fails the test, not the suite.
                "timeout".into(),
                "240".into(),
                "env".into(),
                "OMP_NUM_THREADS=1".into(),
                // gloo binds the node's own interface, as on a cluster with one NIC.
                "GLOO_SOCKET_IFNAME=eth0".into(),
                format!("ECO2AI_PROBE={}", bins.probe.display()),
                format!("ECO2AI_ANALYZE={}", bins.analyze.display()),
                repo.join(".venv/bin/torchrun").display().to_string(),
                "--nnodes".into(),
                c.nodes.len().to_string(),
                "--nproc_per_node".into(),
                "1".into(),
                "--rdzv_backend".into(),
                "c10d".into(),
                "--rdzv_endpoint".into(),
                endpoint.clone(),
                "--rdzv_id".into(),
                run_id.into(),
                fixture.display().to_string(),
                out.display().to_string(),
                steps.clone(),
            ];
            if let Some(rank) = slow {
                args.extend([rank.to_string(), SLOW_S.to_string()]);
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            c.exec(i, &refs)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|ch| ch.wait_with_output().unwrap())
        .collect();
    for (i, o) in outputs.iter().enumerate() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: String = err
            .chars()
            .rev()
            .take(4000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert!(
            o.status.success(),
            "torchrun on node {i} failed ({}):\n{tail}",
            o.status
        );
    }
}

/// Each node's run of job `run_id`: one rank a node, ranks 0 and 1 between them, every
/// step of the rank on its node's probe. Returns (node, run dir, rank) by rank.
fn check_layout(c: &Cluster, out: &Path, run_id: &str) -> Vec<(String, PathBuf, u64)> {
    let jobs = common::job_dirs(out);
    assert_eq!(jobs, vec![out.join(format!("job={run_id}"))]);
    let runs = common::node_runs(&jobs[0]);
    let names: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    let want: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, want);
    let mut by_rank = Vec::new();
    for (node, dir, meta) in runs {
        assert_eq!(meta["status"], "complete", "{}", dir.display());
        let job = &meta["job"];
        assert_eq!(job["job_id"], run_id, "{meta}");
        assert_eq!(job["id_source"], "torchelastic", "{meta}");
        assert_eq!(job["node"], node.as_str(), "{meta}");
        assert_eq!(job["world_size"], 2, "{meta}");
        let ranks = job["ranks"].as_object().expect("meta.job.ranks");
        assert_eq!(ranks.len(), 1, "one rank a node: {meta}");
        let (pid, rank) = ranks.iter().next().unwrap();
        let steps = raw::steps(&dir);
        let pids: Vec<u32> = steps.iter().map(|s| s.pid).collect();
        assert!(
            pids.iter().all(|p| p.to_string() == *pid),
            "{node}: steps of other processes: {pids:?}"
        );
        let numbers: Vec<u64> = steps.iter().map(|s| s.step).collect();
        assert_eq!(
            numbers,
            (1..=u64::from(STEPS)).collect::<Vec<_>>(),
            "{node}"
        );
        by_rank.push((node, dir, rank["rank"].as_u64().unwrap()));
    }
    by_rank.sort_by_key(|r| r.2);
    assert_eq!(by_rank.iter().map(|r| r.2).collect::<Vec<_>>(), vec![0, 1]);
    by_rank
}

fn job_of_two_nodes(c: &Cluster, bins: &Bins) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let run_id = format!("tr-{}", std::process::id());
    torchrun(c, bins, &out, &run_id, None);
    let runs = check_layout(c, &out, &run_id);
    let report = common::analyze_job(bins, &out.join(format!("job={run_id}")));
    let nodes: Vec<&str> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        c.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>()
    );
    assert!(
        report["missing"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    assert_eq!(
        report["steps"].as_array().unwrap().len(),
        STEPS as usize,
        "{report}"
    );
    assert!(report["energy_kwh"].as_f64().unwrap() > 0.0, "{report}");
    let ranks: Vec<u64> = report["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["rank"].as_u64())
        .collect();
    assert_eq!(ranks.len(), 2, "{report}");
    let _ = runs;
}

/// |got - want| <= 10% of want.
fn within_10pct(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 0.1 * want.abs(),
        "{what}: {got} vs {want} (more than 10% apart)"
    );
}

fn slowed_rank(c: &Cluster, bins: &Bins) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let run_id = format!("slow-{}", std::process::id());
    torchrun(c, bins, &out, &run_id, Some(1));
    let runs = check_layout(c, &out, &run_id);
    let report = common::analyze_job(bins, &out.join(format!("job={run_id}")));
    let s = &report["stragglers"];
    assert_eq!(s["identifiable"], true, "{report}");
    // The nodes share this machine's CLOCK_MONOTONIC: alignment must find ~no offset.
    for (node, off) in report["clock_offsets_ns"].as_object().unwrap() {
        assert!(
            off.as_i64().unwrap().abs() < 5_000_000,
            "{node} offset {off}"
        );
    }
    // Step 1 carries the start-up (rendezvous, first allocations): judged from step 2.
    let steps: Vec<&Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"].as_u64().unwrap() >= 2)
        .collect();
    for st in &steps {
        assert_eq!(st["straggler_rank"], 1, "step {}: {st}", st["step"]);
    }
    // The waiting rank (0) by the report, and independently from the raw traces. With
    // two ranks the median arrival is the straggler's own, so the lag says nothing here:
    // the other rank's wait is what the sleep must show.
    let ranks = report["ranks"].as_array().unwrap();
    let rank = |r: u64| ranks.iter().find(|k| k["rank"] == r).unwrap();
    // Rank 1 waits only in step 1 (no sync marks before the first backward: arrivals
    // are step ends, which the collective makes nearly equal).
    let waits = (
        rank(0)["wait_s"].as_f64().unwrap(),
        rank(1)["wait_s"].as_f64().unwrap(),
    );
    assert!(waits.1 < 0.05 * waits.0, "{waits:?}");
    let (_, dir0, _) = &runs[0];
    let (_, dir1, _) = &runs[1];
    let (wait_s, wait_j) = raw::wait_from_traces(dir0, dir1, 2);
    let judged = steps.len() as f64;
    within_10pct(
        wait_s / judged,
        SLOW_S,
        "rank 0's wait a step (s), from the raw traces",
    );
    let reported_s = rank(0)["wait_s"].as_f64().unwrap();
    let all_s = raw::wait_from_traces(dir0, dir1, 1).0;
    within_10pct(reported_s, all_s, "rank 0's wait (s), report vs raw traces");
    let reported_j: f64 = steps.iter().map(|s| s["wait_j"].as_f64().unwrap()).sum();
    within_10pct(
        reported_j,
        wait_j,
        "rank 0's wait energy in steps 2.. (J), report vs raw trace",
    );
    eprintln!(
        "slowed rank: wait from the traces {wait_s:.3} s {wait_j:.2} J in {judged} steps; report {:.3} s (all steps) {reported_j:.2} J; clock offsets {}",
        reported_s, report["clock_offsets_ns"]
    );
}

#[test]
fn torchrun_across_two_namespace_nodes() {
    let repo = eco2ai_cluster::repo();
    let torchrun = repo.join(".venv/bin/torchrun");
    if !common::runnable(&[torchrun.to_str().unwrap()]) {
        return;
    }
    let bins = common::bins();
    let c = Cluster::up("e2t", 2);
    common::scenarios(&[
        ("torchrun --nnodes 2: one job, both nodes", &|| {
            job_of_two_nodes(&c, &bins)
        }),
        ("torchrun --nnodes 2 with a slowed rank", &|| {
            slowed_rank(&c, &bins)
        }),
    ]);
}
