//! Well-typed but hostile values in a trace never panic the analyzer and never come out
//! as silently wrong numbers: a counter spike to 2^63, overlapping steps, steps far
//! outside the run, u64::MAX samples; and a run given twice is refused.

use std::path::Path;
use std::process::{Command, Output};

use eco2ai_trace::{GpuInfo, GpuRow, Meta, Rows, StepRow, TraceWriter};

const START_NS: i64 = 1_000_000_000_000;
const LEN_S: i64 = 60;
/// One GPU at a steady 300 W for a minute.
const TRUE_KWH: f64 = 300.0 * LEN_S as f64 / 3.6e6;

fn step(k: u64, begin_ns: i64, end_ns: i64, samples: u64) -> StepRow {
    StepRow {
        step: k,
        begin_ns,
        end_ns,
        pid: 1,
        samples: Some(samples),
        tokens: None,
        loss: None,
        lr: None,
        epoch: None,
        source: "uprobe",
        counts: [None; 4],
        sync_ns: None,
        phase: None,
    }
}

/// A minute of one GPU at 300 W (power every 100 ms, counter every second, the counter
/// passed through `counter`), with the steps given.
fn write(dir: &Path, gpu_name: &str, counter: impl Fn(i64, u64) -> u64, steps: Vec<StepRow>) {
    let mut meta = Meta::new("hostile");
    meta.start_ns = START_NS;
    meta.mono_to_unix_ns = 1_767_225_600_000_000_000 - START_NS;
    meta.gpus = vec![GpuInfo {
        index: 0,
        name: gpu_name.into(),
        uuid: "GPU-0".into(),
        power_limit_mw: Some(700_000),
    }];
    let mut w = TraceWriter::create(dir, meta).unwrap();
    let mut gpu = Vec::new();
    for k in 0..=LEN_S * 10 {
        let ts = START_NS + k * 100_000_000;
        let energy_mj = (k % 10 == 0).then(|| counter(k / 10, (k * 30_000) as u64));
        gpu.push(GpuRow {
            ts_ns: ts,
            gpu: 0,
            power_mw: Some(300_000),
            power_instant_mw: Some(300_000),
            energy_mj,
            ..GpuRow::default()
        });
    }
    w.append(Rows::Gpu(gpu));
    w.append(Rows::Steps(steps));
    w.finish(START_NS + LEN_S * 1_000_000_000).unwrap();
}

fn regular_steps() -> Vec<StepRow> {
    (0..LEN_S as u64)
        .map(|k| {
            let b = START_NS + k as i64 * 1_000_000_000;
            step(k, b, b + 900_000_000, 8)
        })
        .collect()
}

fn report(runs: &[&Path], extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .arg("report")
        .args(runs)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_counter_spike_to_2_pow_63_is_bridged_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    write(
        &run,
        "H200",
        |s, e| if s == 30 { 1 << 63 } else { e },
        regular_steps(),
    );
    let r = json(&report(&[&run], &[]));
    let kwh = r["energy_kwh"].as_f64().unwrap();
    assert!(
        (kwh / TRUE_KWH - 1.0).abs() < 0.01,
        "{kwh} kWh, truth {TRUE_KWH}"
    );
    assert_eq!(r["quality"]["counter_glitches"], 1, "{}", r["quality"]);
}

#[test]
fn overlapping_steps_never_count_more_than_the_device_spent() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let end = START_NS + (LEN_S - 1) * 1_000_000_000;
    let steps = (0..50)
        .map(|k| step(k, START_NS + 1_000_000_000, end, 8))
        .collect();
    write(&run, "H200", |_, e| e, steps);
    let r = json(&report(&[&run], &[]));
    let (total, in_steps) = (
        r["energy_kwh"].as_f64().unwrap(),
        r["steps"]["in_steps_kwh"].as_f64().unwrap(),
    );
    assert!(
        in_steps <= total * 1.000_001,
        "{in_steps} in steps of {total}"
    );
    assert_eq!(r["quality"]["overlapping_steps"], 49);
}

#[test]
fn extreme_steps_are_left_out_and_counts_saturate() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let mut steps = regular_steps();
    steps.push(step(1000, i64::MIN, i64::MIN + 1, 8));
    steps.push(step(1001, i64::MAX - 1, i64::MAX, 8));
    steps.push(step(1002, START_NS + 10, START_NS + 20, u64::MAX));
    write(&run, "H200", |_, e| e, steps);
    let o = report(
        &[&run],
        &["--gco2-per-kwh", "100", "--carbon-budget-kg", "1"],
    );
    let r = json(&o);
    assert_eq!(r["quality"]["steps_outside_run"], 2, "{}", r["quality"]);
    assert_eq!(r["samples"].as_u64(), Some(u64::MAX));
    // The table and the HTML render the same values without a panic.
    let out = tmp.path().join("out");
    let o = report(&[&run], &["--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_run_given_twice_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    write(&run, "H200", |_, e| e, regular_steps());
    let twice = tmp.path().join("./r/");
    let o = report(&[&run, &twice], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("given twice"), "{err}");
}

#[test]
fn compare_says_when_the_hardware_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write(&a, "NVIDIA A100-SXM4-80GB", |_, e| e, regular_steps());
    write(&b, "NVIDIA H200", |_, e| e, regular_steps());
    let o = Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args(["compare", a.to_str().unwrap(), b.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("warning: unlike hardware")
            && table.contains("A100")
            && table.contains("H200"),
        "{table}"
    );
}

#[test]
fn two_grid_intensities_or_two_prices_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    write(&run, "H200", |_, e| e, regular_steps());
    for flags in [
        &["--country", "FR", "--region", "gcp:europe-west1"][..],
        &["--price-per-kwh", "0.2", "--price-series", "/dev/null"][..],
    ] {
        let o = report(&[&run], flags);
        assert_eq!(o.status.code(), Some(2), "{flags:?}");
    }
}

#[test]
fn replay_of_steps_far_outside_the_run_ends_promptly() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let mut steps = regular_steps();
    let far = START_NS + 1_000_000_000_000_000; // 10^15 ns (11.6 days) after the start
    steps.push(step(2000, far, far + 1, 8));
    steps.push(step(2001, i64::MAX - 1, i64::MAX, u64::MAX));
    write(&run, "H200", |_, e| e, steps);
    let om = tmp.path().join("out.om");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args([
            "replay",
            run.to_str().unwrap(),
            "--openmetrics",
            om.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("replay still running after 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(
        err.contains("2 rows outside the run's time span left out"),
        "{err}"
    );
    // A minute of run at the default tick: kilobytes, not days of empty ticks.
    let size = std::fs::metadata(&om).unwrap().len();
    assert!(size < 2_000_000, "{size} bytes of OpenMetrics");
}

#[test]
fn synth_and_footprint_refuse_numbers_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    for flags in [
        &["synth", out.to_str().unwrap(), "--step-ms", "inf"][..],
        &["synth", out.to_str().unwrap(), "--gap-ms", "NaN"][..],
        &["synth", out.to_str().unwrap(), "--duration-s", "1e30"][..],
        &[
            "footprint",
            "--gpu-hours",
            "1e300",
            "--watts",
            "1e300",
            "--gco2-per-kwh",
            "1",
        ][..],
        &[
            "footprint",
            "--gpu-hours",
            "1",
            "--watts",
            "700",
            "--gco2-per-kwh",
            "1e300",
        ][..],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
            .args(flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        assert!(!err.contains("panicked"), "{flags:?}: {err}");
    }
    assert!(!out.exists(), "a refused synth wrote {}", out.display());
}

#[test]
fn a_spike_in_the_first_counter_reading_is_bridged_too() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    write(
        &run,
        "H200",
        |s, e| if s == 0 { 1 << 63 } else { e },
        regular_steps(),
    );
    let r = json(&report(&[&run], &["--gco2-per-kwh", "100"]));
    let kwh = r["energy_kwh"].as_f64().unwrap();
    assert!(
        (kwh / TRUE_KWH - 1.0).abs() < 0.01,
        "{kwh} kWh, truth {TRUE_KWH}"
    );
    assert_eq!(r["grid_intensity_source"], "--gco2-per-kwh");
}

#[test]
fn meta_json_clock_fields_out_of_range_are_refused() {
    for (key, value) in [
        ("end_ns", i64::MAX.to_string()),
        ("start_ns", "-5".to_string()),
        ("mono_to_unix_ns", i64::MIN.to_string()),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("r");
        write(&run, "H200", |_, e| e, regular_steps());
        let path = run.join("meta.json");
        let mut meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        meta[key] = serde_json::Value::Number(value.parse::<i64>().unwrap().into());
        std::fs::write(&path, meta.to_string()).unwrap();
        for cmd in ["report", "summary"] {
            let o = Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
                .args([cmd, run.to_str().unwrap()])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{cmd} with {key}={value}: {err}");
            assert!(err.contains(key) && !err.contains("panicked"), "{err}");
        }
    }
}
