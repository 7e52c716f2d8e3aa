//! How rarely the probe may read a GPU's energy counter: per-step attribution error
//! against the synthetic truth with the counter read every 1, 5, 10, 30 and 60 s (the
//! analyzer anchors its curve at readings >= 30 s apart, and the power samples carry the
//! shape in between). The counter read costs ~4 ms of CPU on Hopper, so the probe reads
//! it as rarely as this allows (`--nvml-energy-interval`, default 30 s).

use eco2ai_analyze::energy;
use eco2ai_analyze::synth::{self, Spec};
use eco2ai_trace::Run;

/// Worst and mean relative per-step error, and worst run-total error, over the GPUs.
fn errors(spec: &Spec) -> (f64, f64, f64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let truth = synth::generate(&dir, spec).unwrap();
    let run = Run::open(&dir).unwrap();
    let (devices, _, _) = energy::devices(&run).unwrap();
    let steps = energy::steps(&run, &mut Default::default()).unwrap();
    let got = energy::attribute(&devices, &steps);
    let (mut worst, mut total, mut sum, mut n) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    for g in 0..spec.gpus as usize {
        for (k, s) in got.iter().enumerate() {
            let want = truth.step_j[g][k];
            let err = (s.device_j[g] - want).abs() / want;
            worst = worst.max(err);
            sum += err;
            n += 1;
        }
        let t = truth.total_j[g];
        total = total.max((devices[g].curve.total() - t).abs() / t);
    }
    (worst, sum / n.max(1) as f64, total)
}

const INTERVALS_S: [f64; 5] = [1.0, 5.0, 10.0, 30.0, 60.0];
/// A run just past a multiple of every interval: the synthetic counter is then read
/// within ~2 s of the end, as the probe reads it at the stop (an unanchored tail of up
/// to a whole interval would measure the synthesis, not the probe).
const RUN_S: f64 = 122.0;

fn sweep(name: &str, base: Spec) -> Vec<(f64, f64, f64, f64)> {
    INTERVALS_S
        .iter()
        .map(|&s| {
            let spec = Spec {
                counter_poll_ms: s * 1e3,
                ..base.clone()
            };
            let (worst, mean, total) = errors(&spec);
            eprintln!(
                "{name}: counter every {s:>4} s: step error mean {:.3}%, worst {:.3}%; total {:.4}%",
                mean * 100.0,
                worst * 100.0,
                total * 100.0
            );
            (s, worst, mean, total)
        })
        .collect()
}

#[test]
fn a_30_s_counter_read_attributes_steps_as_well_as_a_1_s_one() {
    let cases = [
        (
            "100 ms steps",
            Spec {
                duration_s: RUN_S,
                ..Spec::default()
            },
        ),
        (
            "20 ms steps",
            Spec {
                step_ms: 20.0,
                gap_ms: 5.0,
                duration_s: RUN_S,
                seed: 7,
                ..Spec::default()
            },
        ),
        (
            "2 counter resets",
            Spec {
                resets_at_s: vec![40.3, 81.7],
                duration_s: RUN_S,
                seed: 3,
                ..Spec::default()
            },
        ),
    ];
    for (name, spec) in cases {
        let rows = sweep(name, spec);
        let at = |s: f64| rows.iter().find(|r| r.0 == s).copied().unwrap();
        let (_, w1, m1, _) = at(1.0);
        let (_, w30, m30, t30) = at(30.0);
        // The step error comes from the 100 ms sensor, not the anchors: with a 30 s
        // read the mean step error stays within 0.05 points of the 1 s read's, the
        // worst step (one of thousands, noisy) within 0.5 points, the total within 0.1%.
        assert!(m30 <= m1 + 0.0005, "{name}: mean {m30} vs {m1} at 1 s");
        assert!(w30 <= w1 + 0.005, "{name}: worst {w30} vs {w1} at 1 s");
        assert!(t30 <= 0.001, "{name}: total {t30}");
    }
}
