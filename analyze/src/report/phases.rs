//! The report's `phases`: where the run's energy went, class by class (train, each named
//! phase, stall, idle); their energies sum to the run's (`energy::phases`).

use serde::ser::{Serialize, SerializeMap, Serializer};

use eco2ai_trace::cpu_total_j;

use super::{Analysis, J_PER_KWH, Options};
use crate::energy::phases::{IDLE, STALL, TRAIN};

/// One class of the run's time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseLine {
    /// Facility energy: (GPU + CPU) x PUE, as the report's `energy_kwh`.
    pub energy_kwh: f64,
    /// IT energy of the GPUs and of the CPU, as the report's keys of those names.
    pub gpu_energy_kwh: f64,
    pub cpu_energy_kwh: f64,
    /// Wall time in the class.
    pub seconds: f64,
    /// Share of the run's energy, 0-1 (None when the run spent none).
    pub share: Option<f64>,
    /// Named-phase spans of this name (any process), clipped to the run.
    pub spans: usize,
    /// Steps whose phase is this class, and their samples and tokens.
    pub steps: usize,
    pub samples: Option<u64>,
    pub tokens: Option<u64>,
    /// Those samples and tokens over this class's energy (for `train`: training samples
    /// over training energy).
    pub samples_per_kwh: Option<f64>,
    pub tokens_per_kwh: Option<f64>,
}

/// The classes in the order people read them: train, named phases, stall, idle.
#[derive(Debug, Clone, Default)]
pub struct Phases(pub Vec<(String, PhaseLine)>);

impl Phases {
    pub fn get(&self, name: &str) -> Option<&PhaseLine> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, l)| l)
    }
}

impl Serialize for Phases {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, line) in &self.0 {
            m.serialize_entry(name, line)?;
        }
        m.end()
    }
}

/// The classes of the analysis' partition, with the report's PUE.
pub fn phases(a: &Analysis, o: &Options) -> Phases {
    let p = &a.partition;
    if p.names.len() < 3 || p.device_j.len() != p.names.len() {
        // Not partitioned (an analysis built without `analyse`): nothing to say.
        return Phases::default();
    }
    let line = |k: usize| {
        let per_device = &p.device_j[k];
        let gpu_j: f64 = a
            .devices
            .iter()
            .zip(per_device)
            .filter(|(d, _)| d.gpu.is_some())
            .map(|(_, j)| j)
            .sum();
        let cpu_j = cpu_total_j(
            a.devices
                .iter()
                .zip(per_device)
                .filter(|(d, _)| d.gpu.is_none())
                .map(|(d, j)| (d.name.as_str(), *j)),
        );
        let kwh = (gpu_j + cpu_j) * o.pue / J_PER_KWH;
        let per_kwh = |n: Option<u64>| n.filter(|_| kwh > 0.0).map(|n| n as f64 / kwh);
        PhaseLine {
            // `+ 0.0`: an empty sum is -0.0, which prints as "-0".
            energy_kwh: kwh + 0.0,
            gpu_energy_kwh: gpu_j / J_PER_KWH + 0.0,
            cpu_energy_kwh: cpu_j / J_PER_KWH + 0.0,
            seconds: p.seconds[k] + 0.0,
            share: None,
            spans: p.spans[k],
            steps: p.steps[k],
            samples: p.samples[k],
            tokens: p.tokens[k],
            samples_per_kwh: per_kwh(p.samples[k]),
            tokens_per_kwh: per_kwh(p.tokens[k]),
        }
    };
    let named = (0..p.names.len()).filter(|k| ![TRAIN, STALL, IDLE].contains(k));
    let mut lines: Vec<(String, PhaseLine)> = std::iter::once(TRAIN)
        .chain(named)
        .chain([STALL, IDLE])
        .map(|k| (p.names[k].to_string(), line(k)))
        .collect();
    let total: f64 = lines.iter().map(|(_, l)| l.energy_kwh).sum();
    for (_, l) in &mut lines {
        l.share = (total > 0.0).then(|| (l.energy_kwh / total).clamp(0.0, 1.0));
    }
    Phases(lines)
}
