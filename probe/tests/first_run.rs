//! What a newcomer meets on the command line: a hint when the command is given without
//! `--`, a refused budget that could never fire, and CO2, cost and budget printed at the
//! end of a recording.

use std::process::{Command, Output};

fn probe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
        .args(args)
        .output()
        .expect("run eco2ai-probe")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_command_without_dashdash_gets_a_hint() {
    let o = probe(&["record", "sleep", "1"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("unexpected argument 'sleep'"), "{err}");
    assert!(
        err.contains("hint: put the command to record after '--'"),
        "{err}"
    );
}

#[test]
fn a_budget_without_an_intensity_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let o = probe(&[
        "record",
        "--carbon-budget-kg",
        "5",
        "--out",
        out.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--carbon-budget-kg needs a grid intensity"),
        "{}",
        stderr(&o)
    );
    assert!(
        !out.exists(),
        "a refused record must not create its output directory"
    );
}

#[test]
fn the_end_of_a_recording_prints_co2_cost_and_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let o = probe(&[
        "record",
        "--no-metrics",
        "--country",
        "FR",
        "--price-per-kwh",
        "0.2",
        "--carbon-budget-kg",
        "0.000000001",
        "--out",
        out.to_str().unwrap(),
        "--",
        "sleep",
        "0.5", // a fixed time, not a count of iterations a faster machine ends sooner
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("at 41.4 gCO2/kWh (from country FR"), "{err}");
    assert!(
        err.contains("CO2 at 41.4 gCO2/kWh from country FR"),
        "{err}"
    );
    assert!(err.contains("cost      "), "{err}");
    assert!(err.contains("budget    EXCEEDED"), "{err}");
}

#[test]
fn gpus_named_twice_or_absent_and_bad_metrics_addresses_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let out_s = out.to_str().unwrap();
    for (flags, want) in [
        (&["--gpus", "0,0"][..], "invalid --gpus '0,0'"),
        (&["--gpus", "99"][..], "--gpus 99: no such GPU to record"),
        (&["--fake-gpus", "2", "--gpus", "2"][..], "GPUs found: 0, 1"),
        (
            &["--metrics-addr", "not:an:addr"][..],
            "invalid --metrics-addr",
        ),
    ] {
        let mut args = vec!["record", "--out", out_s];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "true"]);
        let o = probe(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(want), "{flags:?}: {err}");
        assert!(!out.exists(), "{flags:?} created {}", out.display());
    }
}

#[test]
fn a_fixed_intensity_given_to_record_is_kept_for_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let o = probe(&[
        "record",
        "--no-metrics",
        "--gco2-per-kwh",
        "100",
        "--pue",
        "1.3",
        "--out",
        out.to_str().unwrap(),
        "--",
        "true",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("CO2 at 100.0 gCO2/kWh from --gco2-per-kwh"),
        "{err}"
    );
    let dir = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["labels"]["gco2_per_kwh"], 100.0);
    // The PUE too: later analyses use it unless told otherwise (analyze/tests/report.rs).
    assert_eq!(meta["labels"]["pue"], 1.3);
}
