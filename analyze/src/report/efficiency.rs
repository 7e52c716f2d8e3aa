//! The efficiency score: one definition, live and offline (docs/analysis.md).

use serde::Serialize;

use super::Analysis;
use crate::energy;

/// The efficiency score's window: a minute, as the live gauge's.
const WINDOW_NS: i64 = 60_000_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct Efficiency {
    /// In [0, 1]: the run's samples/kWh over its best minute's, the definition of the
    /// live `hf_training_efficiency_score` (docs/analysis.md, "Efficiency score").
    /// None without samples.
    pub score: Option<f64>,
    /// The same ratio (kept as a key of the JSON contract).
    pub throughput: Option<f64>,
    /// Mean GPU utilisation / 100 (a diagnostic beside the score, not part of it).
    pub utilisation: Option<f64>,
    /// Share of the energy spent inside steps (a diagnostic beside the score).
    pub busy: Option<f64>,
}

/// The efficiency score, as live /metrics defines it (`hf_training_efficiency_score`):
/// samples/kWh of a stretch over the run's best one-minute samples/kWh, here with the
/// whole run as the stretch. Energy is the devices' over the whole stretch (steps and
/// what lies between them), so stalls lower the score.
pub(super) fn efficiency(a: &Analysis, it_j: f64, samples: Option<u64>) -> Efficiency {
    let throughput = samples.and_then(|n| {
        let run = n as f64 / it_j;
        let best = best_window_samples_per_j(a)?;
        (run.is_finite() && it_j > 0.0).then(|| (run / best).clamp(0.0, 1.0))
    });
    let utilisation = a.gpu_util_mean_pct.map(|u| (u / 100.0).clamp(0.0, 1.0));
    let in_steps: f64 = a.step_energy.iter().map(|e| e.gpu_j + e.cpu_j).sum();
    let busy = (it_j > 0.0 && !a.steps.is_empty()).then(|| (in_steps / it_j).clamp(0.0, 1.0));
    Efficiency {
        score: throughput,
        throughput,
        utilisation,
        busy,
    }
}

/// Samples per joule of the run's best whole minute (steps counted in the minute they
/// end); a run shorter than a minute is its own window.
fn best_window_samples_per_j(a: &Analysis) -> Option<f64> {
    let span_ns = a.end_ns.saturating_sub(a.start_ns);
    let windows = (span_ns / WINDOW_NS).max(1);
    let width_ns = if span_ns < WINDOW_NS {
        span_ns
    } else {
        WINDOW_NS
    };
    let mut samples = vec![0u64; windows as usize];
    for s in a.steps.iter().filter(|s| energy::phases::is_train(s)) {
        let k = s.end_ns.saturating_sub(a.start_ns) / width_ns.max(1);
        if let Some(n) = usize::try_from(k).ok().and_then(|k| samples.get_mut(k)) {
            *n = n.saturating_add(s.samples.unwrap_or(0));
        }
    }
    let best = samples
        .iter()
        .enumerate()
        .filter_map(|(k, &n)| {
            let b = a.start_ns.saturating_add(k as i64 * width_ns);
            let j = a.it_j(b, b.saturating_add(width_ns));
            (j > 0.0).then(|| n as f64 / j)
        })
        .fold(0.0, f64::max);
    (best > 0.0).then_some(best)
}
