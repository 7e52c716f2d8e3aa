//! Steps through the marker library and the socket fallback, end to end.

mod common;

use std::path::PathBuf;
use std::process::Command;

use eco2ai_trace::{Run, Table};

fn record(args: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
        .args(["record", "--out", out.path().to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    (o, out)
}

fn run_dir(o: &std::process::Output) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&o.stdout).lines().last().unwrap())
}

#[test]
fn ten_thousand_markers_give_exactly_ten_thousand_steps() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/markers.py");
    let (o, _tmp) = record(&["--no-ebpf", "--", "python3", script, "10000"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = Run::open(&run_dir(&o)).unwrap();
    let steps = common::steps(&run);
    assert_eq!(steps.len(), 10_000);
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s.step, i as u64);
        assert!(
            s.begin_ns < s.end_ns,
            "step {i}: begin {} end {}",
            s.begin_ns,
            s.end_ns
        );
        assert!(i == 0 || s.begin_ns > steps[i - 1].begin_ns);
        assert_eq!(s.loss, Some(1.0 / (i + 1) as f64));
        assert_eq!(s.samples, Some(16));
        assert_eq!(s.source, "socket");
    }
    let evals = run.read_table(Table::Evals).unwrap();
    assert_eq!(evals.num_rows(), 10);
    assert!(
        run.meta()
            .sensor_errors
            .keys()
            .all(|k| !k.starts_with("marker")),
        "{:?}",
        run.meta().sensor_errors
    );
    assert_eq!(run.meta().dropped_rows, 0);
    let status = run
        .meta()
        .sensors
        .iter()
        .find(|s| s.kind == "markers")
        .unwrap();
    assert!(status.note.contains("--no-ebpf"), "{}", status.note);
}

#[test]
fn the_demo_marks_its_steps() {
    let (o, _tmp) = record(&["--demo", "--duration", "2s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = Run::open(&run_dir(&o)).unwrap();
    let n = run.read_table(Table::Steps).unwrap().num_rows();
    assert!((10..=20).contains(&n), "{n} steps in 2 s of 100 ms steps");
}
