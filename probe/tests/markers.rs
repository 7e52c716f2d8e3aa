//! Steps through the marker library and the socket fallback, end to end.

use std::path::PathBuf;
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
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
    let steps = run.read_table(Table::Steps).unwrap();
    assert_eq!(steps.num_rows(), 10_000);
    let mut expect = 0u64;
    let mut last_begin = i64::MIN;
    for b in &steps.batches {
        let step = b
            .column_by_name("step")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let begin = b
            .column_by_name("begin_ns")
            .unwrap()
            .as_primitive::<Int64Type>();
        let end = b
            .column_by_name("end_ns")
            .unwrap()
            .as_primitive::<Int64Type>();
        let loss = b
            .column_by_name("loss")
            .unwrap()
            .as_primitive::<Float64Type>();
        let samples = b
            .column_by_name("samples")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let source = b.column_by_name("source").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            assert_eq!(step.value(i), expect);
            assert!(
                begin.value(i) < end.value(i),
                "step {expect}: begin {} end {}",
                begin.value(i),
                end.value(i)
            );
            assert!(begin.value(i) > last_begin);
            assert_eq!(loss.value(i), 1.0 / (expect + 1) as f64);
            assert_eq!(samples.value(i), 16);
            assert_eq!(source.value(i), "socket");
            last_begin = begin.value(i);
            expect += 1;
        }
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
