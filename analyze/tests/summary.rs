use eco2ai_analyze::summary::summarise;
use eco2ai_trace::{CpuRow, GpuRow, Meta, Rows, TraceWriter};

fn write_run(dir: &std::path::Path, finish: bool, with_counter: bool) {
    let mut meta = Meta::new("t");
    meta.start_ns = 0;
    let mut w = TraceWriter::create(dir, meta).unwrap();
    // 2 GPUs at 100 W and 200 W for 10 s, sampled every 20 ms; counter every 100 ms.
    let mut gpu = Vec::new();
    for i in 0..=500i64 {
        let ts = i * 20_000_000;
        for g in 0..2u32 {
            let w_mw = 100_000 * (g + 1);
            gpu.push(GpuRow {
                ts_ns: ts,
                gpu: g,
                power_mw: Some(w_mw),
                ..Default::default()
            });
            if with_counter && i % 5 == 0 {
                let e = (w_mw as i64 * ts / 1_000_000_000) as u64; // mW x s = mJ
                gpu.push(GpuRow {
                    ts_ns: ts,
                    gpu: g,
                    energy_mj: Some(e),
                    energy_changed: Some(i > 0),
                    ..Default::default()
                });
            }
        }
    }
    w.append(Rows::Gpu(gpu));
    // package 50 W, core 30 W (inside the package), dram 5 W at 1 kHz.
    let mut cpu = Vec::new();
    for i in 0..=10_000i64 {
        let ts = i * 1_000_000;
        for (dom, watts) in [("package-0", 50), ("core-0", 30), ("dram-0", 5)] {
            cpu.push(CpuRow {
                ts_ns: ts,
                domain: dom.into(),
                source: "powercap",
                energy_uj: Some((watts * ts / 1_000) as u64),
                energy_changed: Some(i > 0),
                util_pct: None,
            });
        }
    }
    w.append(Rows::Cpu(cpu));
    if finish {
        w.finish(10_000_000_000).unwrap();
    } else {
        w.flush().unwrap();
        std::mem::forget(w);
    }
}

#[test]
fn totals_match_the_known_power() {
    let dir = tempfile::tempdir().unwrap();
    write_run(&dir.path().join("r"), true, true);
    let s = summarise(&dir.path().join("r")).unwrap();
    assert!(!s.truncated);
    assert!((s.duration_s - 10.0).abs() < 1e-9);
    let by: std::collections::BTreeMap<_, _> =
        s.devices.iter().map(|d| (d.device.as_str(), d)).collect();
    assert!(
        (by["gpu0"].energy_j - 1000.0).abs() < 1e-6,
        "{:?}",
        by["gpu0"]
    );
    assert_eq!(by["gpu0"].method, "nvml-counter");
    assert!((by["gpu1"].energy_j - 2000.0).abs() < 1e-6);
    assert!((by["package-0"].energy_j - 500.0).abs() < 1e-6);
    // CPU = package + dram (core is inside the package).
    assert!(
        (s.cpu_energy_kwh * 3.6e6 - 550.0).abs() < 1e-6,
        "{}",
        s.cpu_energy_kwh * 3.6e6
    );
    assert!((s.energy_kwh * 3.6e6 - 3550.0).abs() < 1e-6);
    assert!(!s.sources.contains_key("estimated"));
}

#[test]
fn falls_back_to_the_power_integral_and_flags_cut_off_runs() {
    let dir = tempfile::tempdir().unwrap();
    write_run(&dir.path().join("r"), false, false);
    let s = summarise(&dir.path().join("r")).unwrap();
    assert!(s.truncated);
    assert!((s.duration_s - 10.0).abs() < 1e-9, "{}", s.duration_s);
    let g0 = s.devices.iter().find(|d| d.device == "gpu0").unwrap();
    assert_eq!(g0.method, "nvml-power-integral");
    assert!((g0.energy_j - 1000.0).abs() < 1e-6, "{}", g0.energy_j);
    assert!(s.to_table().contains("cut off"));
}

#[test]
fn not_a_run_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = summarise(dir.path()).unwrap_err();
    assert!(err.to_string().contains("not a run directory"));
}

#[test]
fn footprint_cli_gives_json_and_refuses_bad_input() {
    let bin = env!("CARGO_BIN_EXE_eco2ai-analyze");
    let o = std::process::Command::new(bin)
        .args([
            "footprint",
            "--gpu-hours",
            "100",
            "--watts",
            "400",
            "--pue",
            "1.2",
            "--gco2-per-kwh",
            "500",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["energy_kwh"], 48.0);
    assert_eq!(v["co2_kg"], 24.0);
    for bad in [
        vec!["footprint", "--gpu-hours", "1", "--watts", "1"],
        vec![
            "footprint",
            "--gpu-hours",
            "1",
            "--watts",
            "1",
            "--country",
            "QQ",
        ],
        vec![
            "footprint",
            "--gpu-hours",
            "0",
            "--watts",
            "1",
            "--country",
            "FR",
        ],
        vec![
            "footprint",
            "--gpu-hours",
            "1",
            "--watts",
            "1",
            "--country",
            "FR",
            "--format",
            "xml",
        ],
    ] {
        let o = std::process::Command::new(bin).args(&bad).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("error:"),
            "{bad:?}"
        );
    }
}

/// A real trace: 55 s of bf16 matrix products on an NVIDIA H200 (driver 580.159.04),
/// recorded with the probe's defaults of the time (20 ms power, 100 ms energy counter).
#[test]
fn a_real_h200_trace_counter_and_power_integral_agree() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/traces/h200-matmul");
    let s = summarise(&dir).unwrap();
    assert!(!s.truncated);
    assert_eq!(s.steps, 1474);
    let check = s.gpu_checks.iter().find(|c| c.device == "gpu0").unwrap();
    assert!(
        (check.counter_j.unwrap() - 26426.176).abs() < 1e-6,
        "{check:?}"
    );
    // The counter and the 20 ms power samples must tell the same story within 0.5%.
    assert!(
        check.integral_vs_counter_pct.unwrap().abs() < 0.5,
        "{check:?}"
    );
    // H200 power and energy both refresh every 100 ms.
    assert!(
        (check.power_update_ms_median.unwrap() - 100.0).abs() < 1.0,
        "{check:?}"
    );
}
