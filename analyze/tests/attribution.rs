//! Per-step attribution against a known truth: seeded synthetic traces whose power is a
//! closed-form function, with the sensors modelled on NVML (100 ms refresh, 20 ms power
//! polls, 1 s counter polls), and the real H200 trace.

use eco2ai_analyze::energy::{self, Method};
use eco2ai_analyze::synth::{self, Spec};
use eco2ai_trace::Run;

/// Largest relative per-step error over all GPUs and steps, and the run total's error.
fn errors(spec: &Spec) -> (f64, f64, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let truth = synth::generate(&dir, spec).unwrap();
    let run = Run::open(&dir).unwrap();
    let (devices, quality, _) = energy::devices(&run).unwrap();
    let steps = energy::steps(&run, &mut Default::default()).unwrap();
    assert_eq!(steps.len(), truth.steps.len());
    let got = energy::attribute(&devices, &steps);
    let (mut worst, mut total_err) = (0.0f64, 0.0f64);
    for g in 0..spec.gpus as usize {
        let d = &devices[g];
        assert_eq!(d.gpu, Some(g as u32));
        assert_eq!(d.method, Method::CounterShapedByPower);
        for (k, s) in got.iter().enumerate() {
            let want = truth.step_j[g][k];
            worst = worst.max((s.device_j[g] - want).abs() / want);
        }
        let t = truth.total_j[g];
        total_err = total_err.max((d.curve.total() - t).abs() / t);
    }
    (worst, total_err, quality.counter_resets)
}

#[test]
fn steps_of_about_one_sensor_period_within_half_a_percent() {
    let (worst, total, _) = errors(&Spec::default());
    eprintln!(
        "100 ms steps: worst step error {:.3}%, total {:.4}%",
        worst * 100.0,
        total * 100.0
    );
    assert!(worst <= 0.005, "{worst}");
    assert!(total <= 0.001, "{total}");
}

#[test]
fn steps_five_times_shorter_than_the_sensor_period() {
    let spec = Spec {
        step_ms: 20.0,
        gap_ms: 5.0,
        duration_s: 60.0,
        seed: 7,
        ..Spec::default()
    };
    let (worst, total, _) = errors(&spec);
    eprintln!(
        "20 ms steps: worst step error {:.3}%, total {:.4}%",
        worst * 100.0,
        total * 100.0
    );
    assert!(worst <= 0.005, "{worst}");
    assert!(total <= 0.001, "{total}");
}

#[test]
fn counter_resets_are_bridged() {
    let spec = Spec {
        resets_at_s: vec![40.3, 81.7],
        seed: 3,
        ..Spec::default()
    };
    let (worst, total, resets) = errors(&spec);
    eprintln!(
        "with 2 resets: worst step error {:.3}%, total {:.4}%",
        worst * 100.0,
        total * 100.0
    );
    assert_eq!(resets, 4, "two resets on each of two GPUs");
    assert!(worst <= 0.005, "{worst}");
    assert!(total <= 0.002, "{total}");
}

#[test]
fn eight_gpus() {
    let spec = Spec {
        gpus: 8,
        duration_s: 60.0,
        seed: 11,
        ..Spec::default()
    };
    let (worst, total, _) = errors(&spec);
    assert!(worst <= 0.005, "{worst}");
    assert!(total <= 0.001, "{total}");
}

/// The H200 trace: identical steps must get near-identical energies, and the total must
/// be the counter's.
#[test]
fn real_h200_steps_of_one_kind_agree() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/traces/h200-matmul");
    let run = Run::open(&dir).unwrap();
    let (devices, _, _) = energy::devices(&run).unwrap();
    let gpu = &devices[0];
    assert_eq!(gpu.method, Method::CounterShapedByPower);
    // The counter's total, plus the power past its last reading (under a second).
    let total = gpu.curve.total();
    assert!(total >= 26426.176 && total < 26426.176 * 1.001, "{total}");
    let steps = energy::steps(&run, &mut Default::default()).unwrap();
    let got = energy::attribute(&devices, &steps);
    // Phases from the workload's own log: 131 long, 1305 short, 38 gapped steps.
    let phase = |range: std::ops::Range<usize>| {
        let v: Vec<f64> = got[range].iter().map(|s| s.gpu_j).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        (mean, sd / mean)
    };
    let (long, long_cv) = phase(5..126);
    let (short, short_cv) = phase(136..1431);
    let (gapped, gapped_cv) = phase(1441..1469);
    eprintln!(
        "H200 per-step energy: long {long:.1} J (CV {:.1}%), short {short:.2} J (CV {:.1}%), gapped {gapped:.1} J (CV {:.1}%)",
        long_cv * 100.0,
        short_cv * 100.0,
        gapped_cv * 100.0
    );
    assert!(long_cv < 0.10 && short_cv < 0.10 && gapped_cv < 0.15);
    // A long step is ten short ones' worth of products.
    assert!((long / short - 10.0).abs() < 2.0, "{long} vs {short}");
}

/// Zeus profiles (real A40 and V100 training windows: energy and length per window):
/// traces built from them give every window's energy back within 1.5%. The windows start
/// and stop sharply, and a 100 ms sensor places an edge only to within its period.
#[test]
fn zeus_profiles_come_back_window_by_window() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/zeus_profiles");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "{files:?}");
    let mut worst = 0.0f64;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let gpus = header.iter().filter(|h| h.ends_with("_energy")).count() as u32;
        let rows: Vec<Vec<f64>> = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split(',')
                    .enumerate()
                    .filter(|(i, _)| *i != 1)
                    .map(|(_, v)| v.parse().unwrap())
                    .collect()
            })
            .collect();
        // start_time, elapsed_time, gpuN_energy...; windows placed from 1 s in.
        let t0 = rows[0][0] - 1.0;
        let windows: Vec<(f64, f64, Vec<f64>)> = rows
            .iter()
            .map(|r| {
                (
                    r[0] - t0,
                    r[0] - t0 + r[1],
                    r[2..].iter().map(|e| e / r[1]).collect(),
                )
            })
            .collect();
        let end = windows.last().unwrap().1 + 1.0;
        let spans: Vec<(i64, i64)> = windows
            .iter()
            .map(|w| ((w.0 * 1e9) as i64, (w.1 * 1e9) as i64))
            .collect();
        let spec = Spec {
            gpus,
            duration_s: end,
            ..Spec::default()
        };
        let profile = synth::Windows {
            windows: windows.clone(),
            idle_w: 60.0,
        };
        let tmp = tempfile::tempdir().unwrap();
        synth::generate_with(&tmp.path().join("r"), &spec, &profile, &spans).unwrap();
        let run = Run::open(&tmp.path().join("r")).unwrap();
        let (devices, _, _) = energy::devices(&run).unwrap();
        let got = energy::attribute(
            &devices,
            &energy::steps(&run, &mut Default::default()).unwrap(),
        );
        assert_eq!(got.len(), rows.len(), "{}", f.display());
        for (k, r) in rows.iter().enumerate() {
            for g in 0..gpus as usize {
                let err = (got[k].device_j[g] - r[2 + g]).abs() / r[2 + g];
                worst = worst.max(err);
                assert!(
                    err <= 0.015,
                    "{} window {k} gpu{g}: {} vs {}",
                    f.display(),
                    got[k].device_j[g],
                    r[2 + g]
                );
            }
        }
    }
    eprintln!("zeus profiles: worst window error {:.3}%", worst * 100.0);
}
