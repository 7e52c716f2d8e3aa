//! `eco2ai-analyze job` against synthetic multi-node jobs with known truth: per-step job
//! energy, straggler identification, wait energy, clock offsets; and bad input (a node
//! cut off by kill -9, two jobs mixed, a node with no steps, duplicate node names).

use std::path::Path;
use std::process::Command;

use eco2ai_analyze::job::{self, JobError, JobReport};
use eco2ai_analyze::synth_job::{JobSpec, JobTruth, generate_job};
use eco2ai_trace::pricing::PriceArgs;

fn prices() -> PriceArgs {
    PriceArgs {
        country: None,
        region: None,
        gco2_per_kwh: None,
        pue: None,
        price_per_kwh: None,
        gpu_hour_usd: None,
        carbon_budget_kg: None,
    }
}

fn make(spec: &JobSpec) -> (tempfile::TempDir, JobTruth) {
    let tmp = tempfile::tempdir().unwrap();
    let truth = generate_job(tmp.path(), spec).unwrap();
    (tmp, truth)
}

fn analyse(dir: &Path) -> JobReport {
    job::analyse(dir, &prices()).unwrap()
}

/// Largest relative per-step error of the job's energy against the truth.
fn worst_step_error(r: &JobReport, t: &JobTruth) -> f64 {
    assert_eq!(r.steps.len(), t.step_j.len());
    r.steps
        .iter()
        .map(|s| {
            let want = t.step_j[&s.step];
            (s.energy_j - want).abs() / want
        })
        .fold(0.0, f64::max)
}

#[test]
fn per_step_job_energy_stragglers_and_wait_energy_match_the_truth() {
    let spec = JobSpec {
        nodes: 3,
        gpus: 2,
        clock_offsets_ns: vec![0, 23_000_000, -41_000_000],
        straggler: Some((3, 40.0)),
        countries: vec!["FR".into(), "DE".into(), "FR".into()],
        ..JobSpec::default()
    };
    let (_tmp, t) = make(&spec);
    let r = analyse(&t.job_dir);
    // Each node's CO2 at its own country's intensity, summed.
    let (fr, de) = (
        r.nodes[0].gco2_per_kwh.unwrap(),
        r.nodes[1].gco2_per_kwh.unwrap(),
    );
    assert!(fr < de, "{fr} {de}");
    let co2: f64 = r
        .nodes
        .iter()
        .map(|n| n.energy_kwh * n.gco2_per_kwh.unwrap() / 1e3)
        .sum();
    assert!((r.co2_kg.unwrap() - co2).abs() <= 1e-9 * co2);
    let worst = worst_step_error(&r, &t);
    eprintln!("worst per-step job energy error {:.4}%", worst * 100.0);
    assert!(worst <= 0.005, "{worst}");
    // Every step's straggler is the injected rank, named exactly.
    assert!(r.stragglers.identifiable);
    for s in &r.steps {
        assert_eq!(
            s.straggler_rank,
            Some(t.straggler[&s.step]),
            "step {}",
            s.step
        );
        assert!((s.lag_ms - 40.0).abs() < 15.0, "lag {} ms", s.lag_ms);
    }
    assert_eq!(r.stragglers.slowest.as_deref(), Some("rank 3 (node01)"));
    let wait_err = (r.stragglers.wait_j - t.wait_j).abs() / t.wait_j;
    eprintln!(
        "wait energy {:.1} J vs truth {:.1} J ({:.3}%); wait {:.3} s vs {:.3} s",
        r.stragglers.wait_j,
        t.wait_j,
        wait_err * 100.0,
        r.stragglers.wait_s,
        t.wait_ns as f64 / 1e9
    );
    assert!(wait_err <= 0.02, "{wait_err}");
    assert_eq!(r.ranks.len(), 6);
    assert!(
        r.warnings.is_empty() && r.missing.is_empty(),
        "{:?} {:?}",
        r.warnings,
        r.missing
    );
}

#[test]
fn a_known_clock_offset_is_recovered_within_a_millisecond() {
    let spec = JobSpec {
        nodes: 4,
        gpus: 2,
        clock_offsets_ns: vec![0, 0, 37_000_000, 0],
        ..JobSpec::default()
    };
    let (_tmp, t) = make(&spec);
    let r = analyse(&t.job_dir);
    assert_eq!(r.clock.method, "step_ends");
    for (n, want) in spec.clock_offsets_ns.iter().enumerate() {
        let got = r.clock_offsets_ns[&format!("node{n:02}")];
        eprintln!("node{n:02}: offset {got} ns (injected {want} ns)");
        assert!((got - want).abs() <= 1_000_000, "node {n}: {got} vs {want}");
    }
    assert!(r.clock_residual_ns <= 1_000_000, "{}", r.clock_residual_ns);
    // The straggler is still found on the node whose clock was off.
    assert_eq!(r.stragglers.slowest.as_deref(), Some("rank 1 (node00)"));
}

#[test]
fn nodes_without_gpus_share_their_cpu_package_among_their_ranks() {
    let spec = JobSpec {
        cpu_only: true,
        clock_offsets_ns: vec![0, -30_000_000],
        ..JobSpec::default()
    };
    let (_tmp, t) = make(&spec);
    let r = analyse(&t.job_dir);
    assert!(r.nodes.iter().all(|n| n.gpus == 0 && n.cpu_kwh > 0.0));
    let worst = worst_step_error(&r, &t);
    let wait_err = (r.stragglers.wait_j - t.wait_j).abs() / t.wait_j;
    eprintln!(
        "CPU nodes: worst step {:.4}%, wait {:.3}%",
        worst * 100.0,
        wait_err * 100.0
    );
    assert!(worst <= 0.005, "{worst}");
    assert!(wait_err <= 0.02, "{wait_err}");
    assert!(r.steps.iter().all(|s| s.straggler_rank == Some(1)));
}

#[test]
fn without_sync_marks_no_straggler_is_named() {
    let spec = JobSpec {
        sync_marks: false,
        ..JobSpec::default()
    };
    let (_tmp, t) = make(&spec);
    let r = analyse(&t.job_dir);
    assert!(!r.stragglers.identifiable);
    assert!(r.steps.iter().all(|s| s.straggler.is_none()));
    assert_eq!(r.stragglers.wait_j, 0.0);
    assert!(r.stragglers.note.contains("cannot be told apart"));
    assert!(worst_step_error(&r, &t) <= 0.005);
}

#[test]
fn a_node_cut_off_by_kill_is_named_and_its_steps_counted_to_the_cut() {
    let spec = JobSpec {
        cut_node: Some((1, 30.0)),
        ..JobSpec::default()
    };
    let (_tmp, t) = make(&spec);
    let r = analyse(&t.job_dir);
    let cut = r.nodes.iter().find(|n| n.node == "node01").unwrap();
    assert_eq!(cut.status, "recording");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("node node01 was cut off")),
        "{:?}",
        r.warnings
    );
    // Steps after the cut have one node; before, two; energy still per the truth.
    assert!(r.steps.iter().any(|s| s.nodes == 1) && r.steps.iter().any(|s| s.nodes == 2));
    assert!(worst_step_error(&r, &t) <= 0.005);
}

#[test]
fn a_node_with_no_steps_is_named_and_its_energy_kept() {
    let spec = JobSpec {
        nodes: 3,
        stepless_node: Some(2),
        straggler: Some((0, 40.0)),
        ..JobSpec::default()
    };
    let (_tmp, t) = make(&spec);
    let r = analyse(&t.job_dir);
    assert_eq!(r.nodes.len(), 3);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("node node02 recorded no steps"))
    );
    assert!(r.nodes[2].energy_kwh > 0.0);
    assert!(worst_step_error(&r, &t) <= 0.005);
    assert!(
        r.missing.iter().any(|m| m.contains("missing rank 4, 5")),
        "{:?}",
        r.missing
    );
}

#[test]
fn a_missing_node_is_named() {
    let spec = JobSpec {
        nodes: 3,
        ..JobSpec::default()
    };
    let (_tmp, t) = make(&spec);
    std::fs::remove_dir_all(t.job_dir.join("node=node01")).unwrap();
    std::fs::create_dir(t.job_dir.join("node=node09")).unwrap();
    let r = analyse(&t.job_dir);
    assert!(
        r.missing
            .iter()
            .any(|m| m.contains("node=node09 holds no run")),
        "{:?}",
        r.missing
    );
    assert!(
        r.missing
            .iter()
            .any(|m| m.contains("2 of 3 nodes found; no run for node rank 1")),
        "{:?}",
        r.missing
    );
}

fn refused(dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .arg("job")
        .arg(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn runs_of_two_jobs_mixed_are_refused() {
    let (tmp, t) = make(&JobSpec::default());
    let other = JobSpec {
        job_id: "777".into(),
        nodes: 3,
        ..JobSpec::default()
    };
    let o = generate_job(tmp.path(), &other).unwrap();
    std::fs::rename(o.job_dir.join("node=node02"), t.job_dir.join("node=node02")).unwrap();
    assert!(matches!(
        job::analyse(&t.job_dir, &prices()),
        Err(JobError::MixedJobs { .. })
    ));
    let (code, err) = refused(&t.job_dir);
    assert_eq!(code, 2);
    assert!(
        err.contains("more than one job") && err.contains("job 777"),
        "{err}"
    );
}

#[test]
fn duplicate_node_names_are_refused() {
    let (_tmp, t) = make(&JobSpec::default());
    // A second run of node00 under another node directory.
    let copy = t.job_dir.join("node=node00-again/synthetic-node00-b");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(&t.node_dirs[0])
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(matches!(
        job::analyse(&t.job_dir, &prices()),
        Err(JobError::DuplicateNode { .. })
    ));
    let (code, err) = refused(&t.job_dir);
    assert_eq!(code, 2);
    assert!(
        err.contains("node name node00 is claimed by 2 runs"),
        "{err}"
    );
}

#[test]
fn a_directory_that_is_no_job_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, err) = refused(tmp.path());
    assert_eq!(code, 2);
    assert!(err.contains("no node=<name>/ directories"), "{err}");
    let (code, err) = refused(&tmp.path().join("nope"));
    assert_eq!(code, 2);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn json_and_out_dir_carry_the_contract_keys() {
    let (tmp, t) = make(&JobSpec {
        duration_s: 20.0,
        ..JobSpec::default()
    });
    let out_dir = tmp.path().join("report");
    let out = Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args(["job", "--format", "json", "--country", "FR", "--out"])
        .arg(&out_dir)
        .arg(&t.job_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "clock_offsets_ns",
        "clock_residual_ns",
        "steps",
        "ranks",
        "nodes",
        "stragglers",
        "co2_kg",
        "samples_per_kwh",
        "tokens_per_kwh",
    ] {
        assert!(!v[k].is_null(), "{k} missing: {v}");
    }
    assert!(v["co2_kg"].as_f64().unwrap() > 0.0);
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("Wait energy: ranks x steps") && html.contains("<rect"));
    for f in [
        "steps.csv",
        "node_steps.csv",
        "report.json",
        "wait_time.svg",
    ] {
        assert!(out_dir.join(f).exists(), "{f}");
    }
}

#[test]
fn with_two_ranks_the_stragglers_lag_is_measured_against_the_other() {
    // One rank a node: a median over both arrivals would be the straggler's own.
    let spec = JobSpec {
        nodes: 2,
        gpus: 1,
        straggler: Some((1, 40.0)),
        ..JobSpec::default()
    };
    let (_tmp, t) = make(&spec);
    let r = analyse(&t.job_dir);
    for s in &r.steps {
        assert_eq!(s.straggler_rank, Some(1), "step {}", s.step);
        assert!(
            (s.lag_ms - 40.0).abs() < 15.0,
            "step {} lag {} ms",
            s.step,
            s.lag_ms
        );
    }
}

#[test]
fn each_node_keeps_the_pue_its_probe_recorded_unless_a_flag_says() {
    let spec = JobSpec {
        countries: vec!["FR".into(), "FR".into()],
        ..JobSpec::default()
    };
    let (_tmp, t) = make(&spec);
    // Node 1 ran in a data centre of PUE 1.5 (`record --pue 1.5` writes labels.pue).
    let meta_path = t.node_dirs[1].join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["labels"]["pue"] = serde_json::json!(1.5);
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let r = analyse(&t.job_dir);
    assert_eq!((r.nodes[0].pue, r.nodes[1].pue), (1.0, 1.5));
    let it = |n: &job::report::NodeReport| n.energy_kwh * n.gco2_per_kwh.unwrap() / 1e3;
    assert!((r.nodes[1].co2_kg.unwrap() - 1.5 * it(&r.nodes[1])).abs() < 1e-12);
    let facility = r.nodes[0].energy_kwh + 1.5 * r.nodes[1].energy_kwh;
    assert!((r.pue - facility / r.energy_kwh).abs() < 1e-12, "{}", r.pue);
    // A --pue flag is the one rule's first word: every node takes it.
    let flagged = job::analyse(
        &t.job_dir,
        &PriceArgs {
            pue: Some(1.2),
            ..prices()
        },
    )
    .unwrap();
    assert!(flagged.nodes.iter().all(|n| n.pue == 1.2));
    // A recorded PUE outside 1..10 is refused when the run is read, as the flag is.
    meta["labels"]["pue"] = serde_json::json!(0.5);
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let e = job::analyse(&t.job_dir, &prices()).unwrap_err();
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        chain.push_str(&format!(": {s}"));
        src = s.source();
    }
    assert!(
        chain.contains("labels.pue 0.5 is not from 1 to 10"),
        "{chain}"
    );
}
