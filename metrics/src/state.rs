//! What the live metrics show, updated by the writer thread from the rows it writes.

use std::collections::{BTreeMap, VecDeque};

use eco2ai_trace::{Meta, Rows, cpu_total_j, phase};

use crate::phases::LivePhases;

/// Labels and prices of the run, fixed at start.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub project: String,
    pub model: String,
    pub country: String,
    pub region: String,
    pub instance: String,
    /// The multi-node job and this node's name in it (`meta.job`), empty outside a job:
    /// when set, every sample carries `job_id` and `node` labels.
    pub job_id: String,
    pub node: String,
    pub intensity_g_per_kwh: Option<f64>,
    pub carbon_budget_kg: Option<f64>,
    pub price_per_kwh: Option<f64>,
    pub gpu_hour_usd: Option<f64>,
    pub pue: f64,
    pub gpu_models: BTreeMap<u32, String>,
    pub start_unix_s: f64,
    pub mono_to_unix_ns: i64,
    /// A GPU without a sample for this long (a lost GPU) stops being exported.
    pub stale_after_ns: Option<i64>,
}

impl RunInfo {
    /// Labels, GPU models and clocks of a run; no prices, PUE 1.
    pub fn from_meta(meta: &Meta, instance: &str) -> RunInfo {
        RunInfo {
            project: meta.labels.project_name.clone().unwrap_or_default(),
            model: meta.labels.model_name.clone().unwrap_or_default(),
            country: meta.labels.country.clone().unwrap_or_default(),
            region: meta.labels.region.clone().unwrap_or_default(),
            instance: instance.to_string(),
            job_id: meta
                .job
                .as_ref()
                .map(|j| j.job_id.clone())
                .unwrap_or_default(),
            node: meta
                .job
                .as_ref()
                .map(|j| j.node.clone())
                .unwrap_or_default(),
            pue: 1.0,
            gpu_models: meta
                .gpus
                .iter()
                .map(|g| (g.index, g.name.clone()))
                .collect(),
            start_unix_s: meta.start_ns.saturating_add(meta.mono_to_unix_ns) as f64 / 1e9,
            mono_to_unix_ns: meta.mono_to_unix_ns,
            ..RunInfo::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct GpuLive {
    pub power_w: Option<f64>,
    pub temp_c: Option<u32>,
    pub mem_used: Option<u64>,
    pub mem_total: Option<u64>,
    pub util: Option<u32>,
    pub energy_j: f64,
    pub last_ts_ns: i64,
    /// The integral of the power samples, J: what a phase span's energy is measured
    /// with, since the counter (`energy_j`) is read only every 30 s.
    pub power_j: f64,
    /// The last power sample (ts_ns, W).
    power_at: Option<(i64, f64)>,
}

/// Power samples further apart than this are a gap (a GPU not answering), not energy.
const MAX_POWER_GAP_NS: i64 = 10_000_000_000;

impl GpuLive {
    fn power_sample(&mut self, ts_ns: i64, w: f64) {
        if let Some((t0, w0)) = self.power_at {
            if ts_ns <= t0 {
                return;
            }
            if ts_ns - t0 <= MAX_POWER_GAP_NS {
                self.power_j += w0 * (ts_ns - t0) as f64 / 1e9;
            }
        }
        self.power_at = Some((ts_ns, w));
    }
}

/// (ts_ns, energy J so far, samples so far), one a second.
type Point = (i64, f64, u64);
/// (ts_ns, J) of a CPU domain's counter.
type Reading = (i64, f64);

#[derive(Debug, Default)]
pub struct MetricsState {
    pub info: RunInfo,
    pub gpus: BTreeMap<u32, GpuLive>,
    /// domain -> (ts_ns, J) latest, and the reading about a second before it.
    cpu: BTreeMap<String, (Reading, Reading)>,
    pub steps: u64,
    pub samples: u64,
    pub loss: Option<f64>,
    pub lr: Option<f64>,
    pub epoch: Option<f64>,
    pub eval_loss: Option<f64>,
    pub last_ts_ns: i64,
    /// TCP connect time to each monitored target, ms (latest).
    pub latency_ms: BTreeMap<String, f64>,
    history: VecDeque<Point>,
    best_samples_per_kwh: f64,
    /// Seconds and energy per named phase (`phases.rs`).
    pub phases: LivePhases,
}

const WINDOW_NS: i64 = 60_000_000_000;

impl MetricsState {
    pub fn new(info: RunInfo) -> MetricsState {
        MetricsState {
            info,
            ..MetricsState::default()
        }
    }

    pub fn observe(&mut self, rows: &Rows) {
        match rows {
            Rows::Gpu(v) => {
                for r in v {
                    let g = self.gpus.entry(r.gpu).or_default();
                    g.power_w = r.power_mw.map(|p| p as f64 / 1e3).or(g.power_w);
                    if let Some(mw) = r.power_mw {
                        g.power_sample(r.ts_ns, mw as f64 / 1e3);
                    }
                    g.temp_c = r.temp_c.or(g.temp_c);
                    g.mem_used = r.mem_used_bytes.or(g.mem_used);
                    g.mem_total = r.mem_total_bytes.or(g.mem_total);
                    g.util = r.util_gpu_pct.or(g.util);
                    if let Some(e) = r.energy_mj {
                        g.energy_j = e as f64 / 1e3;
                    }
                    g.last_ts_ns = g.last_ts_ns.max(r.ts_ns);
                    self.last_ts_ns = self.last_ts_ns.max(r.ts_ns);
                    self.note_phase_energy();
                }
            }
            Rows::Cpu(v) => {
                for r in v {
                    let Some(e) = r.energy_uj else { continue };
                    let now = (r.ts_ns, e as f64 / 1e6);
                    let slot = self.cpu.entry(r.domain.to_string()).or_insert((now, now));
                    // Keep the older point about a second back, for a steady power figure.
                    if now.0.saturating_sub(slot.1.0) >= 1_000_000_000 {
                        slot.1 = slot.0;
                    }
                    slot.0 = now;
                    self.last_ts_ns = self.last_ts_ns.max(r.ts_ns);
                    self.note_phase_energy();
                }
            }
            Rows::Steps(v) => {
                for r in v {
                    // Counts come from a file or a socket: saturate, never overflow.
                    self.steps = self.steps.saturating_add(1);
                    // samples/kWh counts training samples only: an eval step's are not.
                    if r.phase.as_deref().is_none_or(|p| p == phase::TRAIN) {
                        self.samples = self.samples.saturating_add(r.samples.unwrap_or(0));
                    }
                    self.loss = r.loss.or(self.loss);
                    self.lr = r.lr.or(self.lr);
                    self.epoch = r.epoch.or(self.epoch);
                    self.phases.clock(r.end_ns);
                }
            }
            Rows::Evals(v) => {
                self.eval_loss = v.iter().rev().find_map(|r| r.eval_loss).or(self.eval_loss)
            }
            Rows::Phases(v) => self.phases.spans(v),
            Rows::Procs(_) => {}
        }
        self.remember();
    }

    /// GPUs with a sample within `stale_after_ns` of the newest sample.
    pub fn live_gpus(&self) -> impl Iterator<Item = (&u32, &GpuLive)> {
        let cutoff = self
            .info
            .stale_after_ns
            .map_or(i64::MIN, |s| self.last_ts_ns.saturating_sub(s));
        self.gpus
            .iter()
            .filter(move |(_, g)| g.last_ts_ns >= cutoff)
    }

    pub fn gpu_energy_j(&self) -> f64 {
        self.gpus.values().map(|g| g.energy_j).sum()
    }

    pub fn cpu_energy_j(&self) -> f64 {
        cpu_total_j(self.cpu.iter().map(|(d, (now, _))| (d.as_str(), now.1)))
    }

    /// Facility energy (PUE applied), J.
    pub fn energy_j(&self) -> f64 {
        (self.gpu_energy_j() + self.cpu_energy_j()) * self.info.pue
    }

    /// Facility energy as phase spans measure it, J: each GPU's power integral (it moves
    /// with the 20 ms samples, not the 30 s counter) plus the CPU counters, PUE applied.
    pub fn phase_energy_j(&self) -> f64 {
        let gpu: f64 = self.gpus.values().map(|g| g.power_j).sum();
        (gpu + self.cpu_energy_j()) * self.info.pue
    }

    /// A point of the cumulative energy phase spans are measured against, per row (the
    /// history keeps one per 0.1 s), so a batch's rows resolve the same live and replayed.
    fn note_phase_energy(&mut self) {
        let j = self.phase_energy_j();
        self.phases.energy(self.last_ts_ns, j);
    }

    /// CPU power over the last second, from the domains the CPU total counts.
    pub fn cpu_power_w(&self) -> Option<f64> {
        let rate = |(a, b): &(Reading, Reading)| {
            if a.0 > b.0 {
                (a.1 - b.1) / (a.0.saturating_sub(b.0) as f64 / 1e9)
            } else {
                0.0
            }
        };
        (!self.cpu.is_empty())
            .then(|| cpu_total_j(self.cpu.iter().map(|(d, pts)| (d.as_str(), rate(pts)))))
    }

    fn remember(&mut self) {
        let ts = self.last_ts_ns;
        if self
            .history
            .back()
            .is_some_and(|p| ts.saturating_sub(p.0) < 1_000_000_000)
        {
            return;
        }
        self.history.push_back((ts, self.energy_j(), self.samples));
        while self
            .history
            .front()
            .is_some_and(|p| ts.saturating_sub(p.0) > WINDOW_NS)
        {
            self.history.pop_front();
        }
        if let Some(spk) = self
            .window()
            .and_then(|(_, e, s)| (e > 0.0).then(|| s as f64 / (e / 3.6e6)))
        {
            self.best_samples_per_kwh = self.best_samples_per_kwh.max(spk);
        }
    }

    /// (seconds, J, samples) over the last minute of history.
    pub fn window(&self) -> Option<(f64, f64, u64)> {
        let (a, b) = (self.history.front()?, self.history.back()?);
        (b.0 > a.0).then(|| {
            (
                b.0.saturating_sub(a.0) as f64 / 1e9,
                b.1 - a.1,
                b.2.saturating_sub(a.2),
            )
        })
    }

    /// Samples per kWh over the last minute relative to the best minute so far (0..1).
    pub fn efficiency_score(&self) -> Option<f64> {
        let (_, e, s) = self.window()?;
        (e > 0.0 && self.best_samples_per_kwh > 0.0)
            .then(|| (s as f64 / (e / 3.6e6) / self.best_samples_per_kwh).clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use eco2ai_trace::{GpuRow, Rows};

    use super::*;

    #[test]
    fn a_gpu_without_samples_goes_stale() {
        let mut s = MetricsState::new(RunInfo {
            stale_after_ns: Some(10_000_000_000),
            ..RunInfo::default()
        });
        let row = |ts_ns, gpu| GpuRow {
            ts_ns,
            gpu,
            power_mw: Some(1000),
            ..GpuRow::default()
        };
        s.observe(&Rows::Gpu(vec![row(0, 0), row(0, 1)]));
        assert_eq!(s.live_gpus().count(), 2);
        s.observe(&Rows::Gpu(vec![row(20_000_000_000, 0)]));
        let live: Vec<u32> = s.live_gpus().map(|(id, _)| *id).collect();
        assert_eq!(live, vec![0]);
    }

    #[test]
    fn a_node_of_a_job_labels_every_sample_with_job_and_node() {
        let mut meta = Meta::new("r");
        let text = |meta: &Meta| {
            let s = MetricsState::new(RunInfo::from_meta(meta, "host-a"));
            let mut out = crate::TextSink::default();
            crate::render(&s, &BTreeMap::from([("x".into(), 1)]), 0.0, &mut out);
            out.0
        };
        let samples = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        let plain = text(&meta);
        assert!(!plain.contains("job_id="), "{plain}");
        meta.job = Some(eco2ai_trace::JobInfo {
            job_id: "4242".into(),
            node: "n1".into(),
            ..Default::default()
        });
        let job = text(&meta);
        let lines = samples(&job);
        assert_eq!(lines.len(), samples(&plain).len());
        for l in &lines {
            assert!(
                l.contains(r#"job_id="4242""#) && l.contains(r#"node="n1""#),
                "{l}"
            );
        }
        assert!(job.contains(r#"instance="host-a""#), "{job}");
    }

    #[test]
    fn extreme_counts_and_timestamps_saturate() {
        use eco2ai_trace::{CpuRow, StepRow};
        let mut s = MetricsState::new(RunInfo::default());
        let step = |samples| StepRow {
            step: 1,
            begin_ns: i64::MIN,
            end_ns: i64::MAX,
            pid: 1,
            samples: Some(samples),
            tokens: None,
            loss: None,
            lr: None,
            epoch: None,
            source: "socket",
            counts: [None; 4],
            sync_ns: None,
            phase: None,
        };
        s.observe(&Rows::Steps(vec![step(u64::MAX), step(u64::MAX)]));
        assert_eq!(s.samples, u64::MAX);
        assert_eq!(s.steps, 2);
        let cpu = |ts_ns| CpuRow {
            ts_ns,
            domain: "package-0".into(),
            source: "powercap",
            energy_uj: Some(1),
            energy_changed: None,
            util_pct: None,
        };
        s.observe(&Rows::Cpu(vec![cpu(i64::MIN), cpu(i64::MAX)]));
        s.observe(&Rows::Gpu(vec![GpuRow {
            ts_ns: i64::MIN,
            ..GpuRow::default()
        }]));
        assert!(s.cpu_power_w().is_some_and(f64::is_finite));
        assert!(s.window().is_none_or(|(secs, _, _)| secs.is_finite()));
    }
}
