//! Phases in the report (issue 11): the run's energy split into train, named phases,
//! stall and idle, checked against a synthetic run's closed-form truth; samples/kWh of
//! training steps only; the JSON, the terminal table and steps.csv.

use std::process::{Command, Output};

use eco2ai_analyze::report::{self, Options};
use eco2ai_analyze::synth::{self, PhaseSpec, Spec};

fn analyze(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args(args)
        .output()
        .unwrap()
}

const J_PER_KWH: f64 = 3.6e6;

/// Every class's energy within 0.5% of the closed-form truth.
fn within_half_a_percent(truth: &synth::Truth, r: &report::Report) {
    for (name, true_j) in &truth.phase_j {
        let got_j = r.phases.get(name).unwrap().energy_kwh * J_PER_KWH;
        let err = (got_j - true_j).abs() / true_j;
        eprintln!(
            "{name:<10} true {true_j:>12.3} J, got {got_j:>12.3} J, error {:.4}%",
            err * 100.0
        );
        assert!(err <= 0.005, "{name}: {got_j} J against {true_j} J");
    }
}

#[test]
fn other_seeds_keep_every_class_within_half_a_percent() {
    let tmp = tempfile::tempdir().unwrap();
    for seed in 2..=4 {
        let run = tmp.path().join(format!("r{seed}"));
        let spec = Spec {
            seed,
            ..Spec::with_phases()
        };
        let truth = synth::generate(&run, &spec).unwrap();
        let r = report::report(&report::analyse(&run).unwrap(), &Options::default());
        eprintln!("seed {seed}:");
        within_half_a_percent(&truth, &r);
    }
}

#[test]
fn each_class_has_its_true_energy_and_the_classes_sum_to_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let spec = Spec::with_phases();
    let truth = synth::generate(&run, &spec).unwrap();
    let a = report::analyse(&run).unwrap();
    let r = report::report(&a, &Options::default());
    let names: Vec<&str> = r.phases.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["train", "eval", "checkpoint", "stall", "idle"]);
    within_half_a_percent(&truth, &r);
    let sum: f64 = r.phases.0.iter().map(|(_, l)| l.energy_kwh).sum();
    assert!(
        (sum - r.energy_kwh).abs() <= 1e-9 * r.energy_kwh,
        "{sum} against {}",
        r.energy_kwh
    );
    let share: f64 = r.phases.0.iter().filter_map(|(_, l)| l.share).sum();
    assert!((share - 1.0).abs() < 1e-9, "{share}");
    let secs: f64 = r.phases.0.iter().map(|(_, l)| l.seconds).sum();
    assert!(
        (secs - r.duration_s).abs() < 1e-6,
        "{secs} s of {}",
        r.duration_s
    );
    // The spans' own seconds, and their steps.
    let (eval, ckpt) = (
        r.phases.get("eval").unwrap(),
        r.phases.get("checkpoint").unwrap(),
    );
    assert!((eval.seconds - 20.0).abs() < 1e-9 && (ckpt.seconds - 25.0).abs() < 1e-9);
    assert_eq!((eval.spans, ckpt.spans), (1, 1));
    let eval_steps = truth.step_phase.iter().filter(|p| p.is_some()).count();
    let train_steps = truth.steps.len() - eval_steps;
    assert!(eval_steps > 100, "{eval_steps}");
    assert_eq!((eval.steps, ckpt.steps), (eval_steps, 0));
    // samples/kWh: training samples only, over the run's energy (the old key) and over
    // the training energy (the phase's).
    let train_samples = train_steps as u64 * spec.samples_per_step;
    assert_eq!(r.samples, Some(train_samples));
    let per_kwh = r.samples_per_kwh.unwrap();
    assert!((per_kwh - train_samples as f64 / r.energy_kwh).abs() < 1e-6 * per_kwh);
    let train = r.phases.get("train").unwrap();
    assert_eq!(
        (train.steps, train.samples),
        (train_steps, Some(train_samples))
    );
    let train_per_kwh = train.samples_per_kwh.unwrap();
    assert!((train_per_kwh - train_samples as f64 / train.energy_kwh).abs() < 1e-6 * train_per_kwh);
    assert_eq!(
        eval.samples,
        Some(eval_steps as u64 * spec.samples_per_step)
    );
}

#[test]
fn an_old_trace_has_train_stall_and_idle_and_train_is_the_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let truth = synth::generate(&run, &Spec::default()).unwrap();
    // A trace from before phases has no phases table at all.
    let _ = std::fs::remove_dir_all(run.join("phases"));
    let a = report::analyse(&run).unwrap();
    let r = report::report(&a, &Options::default());
    let names: Vec<&str> = r.phases.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["train", "stall", "idle"]);
    // Without phases, train is the steps' union: the report's "in steps".
    let train = r.phases.get("train").unwrap();
    assert!((train.energy_kwh - r.steps.in_steps_kwh).abs() <= 1e-9 * train.energy_kwh);
    assert_eq!(train.steps, truth.steps.len());
    for (name, true_j) in &truth.phase_j {
        let got_j = r.phases.get(name).unwrap().energy_kwh * J_PER_KWH;
        assert!(
            (got_j - true_j).abs() <= 0.005 * true_j,
            "{name}: {got_j} J against {true_j} J"
        );
    }
}

#[test]
fn phase_rows_outside_the_run_are_left_out_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let far = |name: &str, begin_s: f64| PhaseSpec {
        name: name.into(),
        begin_s,
        end_s: begin_s + 10.0,
        power_w: 300.0,
        steps: false,
    };
    let spec = Spec {
        duration_s: 20.0,
        phases: vec![far("eval", -1000.0), far("checkpoint", 1e6)],
        ..Spec::default()
    };
    synth::generate(&run, &spec).unwrap();
    let a = report::analyse(&run).unwrap();
    let r = report::report(&a, &Options::default());
    assert_eq!(r.quality.phases_outside_run, 2);
    let names: Vec<&str> = r.phases.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["train", "stall", "idle"]);
}

#[test]
fn json_table_and_steps_csv_carry_the_phases() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let spec = Spec::with_phases();
    synth::generate(&run, &spec).unwrap();
    let dir = run.to_str().unwrap();
    let o = analyze(&["report", dir, "--format", "json", "--pue", "1.5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let phases = j["phases"].as_object().unwrap();
    let keys: Vec<&str> = phases.keys().map(|k| k.as_str()).collect();
    for k in ["train", "eval", "checkpoint", "stall", "idle"] {
        assert!(keys.contains(&k), "{keys:?}");
    }
    for key in [
        "energy_kwh",
        "gpu_energy_kwh",
        "cpu_energy_kwh",
        "seconds",
        "share",
        "spans",
        "steps",
        "samples",
        "samples_per_kwh",
        "tokens_per_kwh",
    ] {
        assert!(phases["eval"].get(key).is_some(), "{key}");
    }
    // Facility energy with the PUE, like the report's energy_kwh.
    let sum: f64 = phases
        .values()
        .map(|p| p["energy_kwh"].as_f64().unwrap())
        .sum();
    let total = j["energy_kwh"].as_f64().unwrap();
    assert!((sum - total).abs() <= 1e-9 * total, "{sum} against {total}");
    let gpu = phases["train"]["gpu_energy_kwh"].as_f64().unwrap();
    let train = phases["train"]["energy_kwh"].as_f64().unwrap();
    assert!((train - 1.5 * gpu).abs() <= 1e-9 * train);

    let o = analyze(&["report", dir]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    let lines: Vec<&str> = table.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("phases")).unwrap();
    for (k, name) in ["train", "eval", "checkpoint", "stall", "idle"]
        .iter()
        .enumerate()
    {
        assert!(lines[at + 1 + k].trim_start().starts_with(name), "{table}");
    }

    let out = tmp.path().join("out");
    let o = analyze(&["report", dir, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("synthetic").join("steps.csv")).unwrap();
    let mut rows = csv.lines();
    assert!(rows.next().unwrap().ends_with(",phase"));
    let phase_of: Vec<&str> = rows.map(|l| l.rsplit(',').next().unwrap()).collect();
    assert!(phase_of.contains(&"eval") && phase_of.contains(&"train"));
    assert!(phase_of.iter().all(|p| *p == "eval" || *p == "train"));
}

#[test]
fn compare_and_the_heatmap_count_training_samples_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (with, without) = (tmp.path().join("a"), tmp.path().join("b"));
    let spec = Spec::with_phases();
    let truth = synth::generate(&with, &spec).unwrap();
    synth::generate(&without, &Spec::default()).unwrap();
    let train_steps = truth.step_phase.iter().filter(|p| p.is_none()).count();
    let train_samples = (train_steps as u64 * spec.samples_per_step) as f64;
    let r = report::report(&report::analyse(&with).unwrap(), &Options::default());

    let o = analyze(&[
        "compare",
        with.to_str().unwrap(),
        without.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let line = c["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["metric"] == "samples_per_kwh")
        .unwrap();
    let a = line["a"].as_f64().unwrap();
    assert!((a - train_samples / r.energy_kwh).abs() < 1e-6 * a, "{a}");

    let out = tmp.path().join("out");
    let o = analyze(&[
        "report",
        with.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hm = std::fs::read_to_string(out.join("synthetic").join("heatmap.csv")).unwrap();
    // One hour cell: its samples are the training steps'.
    let cells: Vec<Vec<&str>> = hm.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(cells.len(), 1, "{hm}");
    let (kwh, per_kwh): (f64, f64) = (cells[0][3].parse().unwrap(), cells[0][4].parse().unwrap());
    let samples = kwh * per_kwh;
    assert!(
        (samples - train_samples).abs() < 1e-3 * train_samples,
        "{samples} vs {train_samples}"
    );
}

/// Rewrites a run's steps table with the steps numbered below `below` marked `eval`.
fn mark_eval(run: &std::path::Path, below: u64) {
    use eco2ai_trace::segment::TableWriter;
    use eco2ai_trace::{Rows, Run, Table};
    let data = Run::open(run).unwrap().read_table(Table::Steps).unwrap();
    let mut rows: Vec<_> = data
        .batches
        .iter()
        .flat_map(eco2ai_trace::from_batch::step_rows)
        .collect();
    for r in &mut rows {
        if r.step < below {
            r.phase = Some("eval".into());
        }
    }
    std::fs::remove_dir_all(run.join("steps")).unwrap();
    let mut w = TableWriter::create(run, Table::Steps).unwrap();
    w.write(&Rows::Steps(rows).to_batch().unwrap()).unwrap();
    w.rotate().unwrap();
}

#[test]
fn job_counts_training_samples_only() {
    use eco2ai_analyze::synth_job::{JobSpec, generate_job};
    let tmp = tempfile::tempdir().unwrap();
    let truth = generate_job(tmp.path(), &JobSpec::default()).unwrap();
    let prices = eco2ai_trace::pricing::PriceArgs {
        country: None,
        region: None,
        gco2_per_kwh: None,
        pue: None,
        price_per_kwh: None,
        gpu_hour_usd: None,
        carbon_budget_kg: None,
    };
    let before = eco2ai_analyze::job::analyse(&truth.job_dir, &prices).unwrap();
    let eval_samples: u64 = before
        .steps
        .iter()
        .filter(|s| s.step < 5)
        .map(|s| s.samples)
        .sum();
    assert!(eval_samples > 0);
    for node in &truth.node_dirs {
        mark_eval(node, 5);
    }
    let after = eco2ai_analyze::job::analyse(&truth.job_dir, &prices).unwrap();
    assert_eq!(after.samples, before.samples - eval_samples);
    assert!(
        after
            .steps
            .iter()
            .filter(|s| s.step < 5)
            .all(|s| s.samples == 0)
    );
}
