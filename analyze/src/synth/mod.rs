//! A seeded synthetic trace with a known power function, for testing attribution and
//! for benchmarks. GPU power is known in closed form, so every step's true energy is
//! exact; the sensors are modelled on NVML on a Hopper GPU (measured on an H200): power
//! and the energy counter refresh every ~100 ms, the power reading being the average over
//! the period just ended; power is polled every 20 ms and the counter every second, in
//! whole milliwatts and millijoules.

use std::f64::consts::TAU;
use std::path::Path;

use std::sync::Arc;

use eco2ai_trace::{CpuRow, GpuRow, Meta, PhaseRow, Rows, StepRow, TraceError, TraceWriter};

mod phases;

use phases::phase_truth;
pub use phases::{PhaseSpec, Phased};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub seed: u64,
    pub duration_s: f64,
    pub gpus: u32,
    /// Mean step length and mean gap between steps (each varies by +-30%).
    pub step_ms: f64,
    pub gap_ms: f64,
    pub sensor_update_ms: f64,
    pub power_poll_ms: f64,
    pub counter_poll_ms: f64,
    /// Counter resets (the column drops to 0 and counts on) at these seconds.
    pub resets_at_s: Vec<f64>,
    pub samples_per_step: u64,
    /// Named phase spans (disjoint, inside the steps' stretch), each at its own power.
    pub phases: Vec<PhaseSpec>,
    /// Seconds without steps at the run's start and end, at `idle_w` on every GPU
    /// (loading before training, saving after it); 0: steps from 0.5 s.
    pub idle_s: f64,
    pub idle_w: f64,
}

impl Spec {
    /// An eval span (35-55 s of a 120 s run, its steps marked `eval`, 150 W), a
    /// checkpoint span (70-95 s, no steps, 120 W), 10 s idle at 100 W at each end, and
    /// 30 ms stalls between 100 ms steps. The spans are long against the sensor's 100 ms
    /// averages: each edge where the power jumps is blurred (up to ~30 ms x the jump's W
    /// per GPU, measured), which 10-25 s spans keep under 0.5%.
    pub fn with_phases() -> Spec {
        let span = |name: &str, begin_s, end_s, power_w, steps| PhaseSpec {
            name: name.into(),
            begin_s,
            end_s,
            power_w,
            steps,
        };
        Spec {
            phases: vec![
                span("eval", 35.0, 55.0, 150.0, true),
                span("checkpoint", 70.0, 95.0, 120.0, false),
            ],
            gap_ms: 30.0,
            idle_s: 10.0,
            idle_w: 100.0,
            ..Spec::default()
        }
    }
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            seed: 1,
            duration_s: 120.0,
            gpus: 2,
            step_ms: 100.0,
            gap_ms: 10.0,
            sensor_update_ms: 100.0,
            power_poll_ms: 20.0,
            counter_poll_ms: 1000.0,
            resets_at_s: Vec::new(),
            samples_per_step: 32,
            phases: Vec::new(),
            idle_s: 0.0,
            idle_w: 0.0,
        }
    }
}

/// The truth the trace was made from: each step's energy per GPU, J.
#[derive(Debug, Clone)]
pub struct Truth {
    pub steps: Vec<(i64, i64)>,
    pub step_j: Vec<Vec<f64>>,
    pub total_j: Vec<f64>,
    /// Each step's phase (None: train), as written.
    pub step_phase: Vec<Option<String>>,
    /// Each class of the report's partition (train, stall, idle, each named phase) and
    /// its true energy over every GPU, J, from the closed form.
    pub phase_j: Vec<(String, f64)>,
}

impl Truth {
    /// `step,gpu_j`: each step's true energy summed over the GPUs.
    pub fn steps_csv(&self) -> String {
        let mut csv = String::from("step,gpu_j\n");
        for k in 0..self.steps.len() {
            let j: f64 = self.step_j.iter().map(|g| g[k]).sum();
            csv.push_str(&format!("{k},{j:.6}\n"));
        }
        csv
    }
}

/// xorshift64*: small, seeded, good enough for jitter.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(crate) fn around(&mut self, mean: f64, spread: f64) -> f64 {
        mean * (1.0 + spread * (2.0 * self.next() - 1.0))
    }
}

/// A known power function and its exact integral, per GPU, in W and J from t = 0 s.
pub trait Profile {
    fn power_w(&self, g: u32, t: f64) -> f64;
    fn energy_j(&self, g: u32, t: f64) -> f64;
}

/// Smooth sinusoids, 220-380 W.
pub struct Smooth;

impl Profile for Smooth {
    fn power_w(&self, g: u32, t: f64) -> f64 {
        power_w(g, t)
    }
    fn energy_j(&self, g: u32, t: f64) -> f64 {
        energy_j(g, t)
    }
}

/// Constant power per window (e.g. a Zeus profile: energy and length of each window),
/// `idle_w` between windows.
pub struct Windows {
    /// (start s, end s, W per GPU).
    pub windows: Vec<(f64, f64, Vec<f64>)>,
    pub idle_w: f64,
}

impl Windows {
    fn level(&self, g: u32, t: f64) -> f64 {
        self.windows
            .iter()
            .find(|w| w.0 <= t && t < w.1)
            .map_or(self.idle_w, |w| w.2[g as usize])
    }
}

impl Profile for Windows {
    fn power_w(&self, g: u32, t: f64) -> f64 {
        self.level(g, t)
    }
    fn energy_j(&self, g: u32, t: f64) -> f64 {
        let (mut e, mut at) = (0.0, 0.0);
        for w in &self.windows {
            if w.0 >= t {
                break;
            }
            e += self.idle_w * (w.0 - at) + w.2[g as usize] * (w.1.min(t) - w.0);
            at = w.1.min(t);
        }
        e + self.idle_w * (t - at).max(0.0)
    }
}

/// GPU g's power at t seconds: smooth, 220-380 W, changing by up to 86 W/s.
pub fn power_w(g: u32, t: f64) -> f64 {
    let ph = g as f64 * 0.7;
    300.0 + 60.0 * (TAU * t / 7.3 + ph).sin() + 20.0 * (TAU * t / 3.7 + 2.0 * ph).sin()
}

/// Exact integral of `power_w` from 0 to t, J.
pub fn energy_j(g: u32, t: f64) -> f64 {
    let ph = g as f64 * 0.7;
    let a = 60.0 * 7.3 / TAU * ((ph).cos() - (TAU * t / 7.3 + ph).cos());
    let b = 20.0 * 3.7 / TAU * ((2.0 * ph).cos() - (TAU * t / 3.7 + 2.0 * ph).cos());
    300.0 * t + a + b
}

const S: f64 = 1e9;
/// Rows per Parquet segment of a generated trace (the recorder rotates once a minute:
/// ~24 k rows for 8 GPUs; bigger segments keep a generated 100 M-row trace's file count sane).
const SEGMENT_ROWS: usize = 1 << 20;

/// Writes a run of the smooth profile (at each phase's own power inside its span) with
/// generated steps into `dir`; returns the truth.
pub fn generate(dir: &Path, spec: &Spec) -> Result<Truth, TraceError> {
    let mut rng = Rng(spec.seed.max(1) ^ 0x5eed);
    let spans = spans(spec, &mut rng);
    if spec.phases.is_empty() && spec.idle_s <= 0.0 {
        return generate_with(dir, spec, &Smooth, &spans);
    }
    // The idle ends as spans without steps or rows.
    let idle = |begin_s, end_s| PhaseSpec {
        name: String::new(),
        begin_s,
        end_s,
        power_w: spec.idle_w,
        steps: false,
    };
    let mut quiet = spec.phases.clone();
    if spec.idle_s > 0.0 {
        quiet.push(idle(0.0, spec.idle_s));
        quiet.push(idle(spec.duration_s - spec.idle_s, spec.duration_s));
    }
    let profile = Phased {
        base: &Smooth,
        spans: quiet
            .iter()
            .map(|p| (p.begin_s, p.end_s, p.power_w))
            .collect(),
    };
    let mut steps: Vec<(i64, i64, Option<String>)> = Vec::new();
    for &(b, e) in &spans {
        let over = quiet
            .iter()
            .find(|p| (b as f64) < p.end_s * S && (e as f64) > p.begin_s * S);
        match over {
            None => steps.push((b, e, None)),
            Some(p) if p.steps && b as f64 >= p.begin_s * S && e as f64 <= p.end_s * S => {
                steps.push((b, e, Some(p.name.clone())))
            }
            Some(_) => {}
        }
    }
    write_run(dir, spec, &profile, &steps)
}

/// Writes a run of `profile` with the given steps (ns) into `dir`; returns the truth.
pub fn generate_with(
    dir: &Path,
    spec: &Spec,
    profile: &dyn Profile,
    spans: &[(i64, i64)],
) -> Result<Truth, TraceError> {
    let steps: Vec<_> = spans.iter().map(|&(b, e)| (b, e, None)).collect();
    write_run(dir, spec, profile, &steps)
}

/// Steps as (begin ns, end ns, phase) with the spec's phase spans written as rows.
fn write_run(
    dir: &Path,
    spec: &Spec,
    profile: &dyn Profile,
    spans: &[(i64, i64, Option<String>)],
) -> Result<Truth, TraceError> {
    let mut meta = Meta::new("synthetic");
    meta.start_ns = 0;
    meta.mono_to_unix_ns = EPOCH_UNIX_NS;
    meta.labels.project_name = Some("synthetic".into());
    meta.host = "synth".into();
    let mut w = TraceWriter::create(dir, meta)?;
    let end_ns = (spec.duration_s * S) as i64;
    write_gpus(&mut w, spec, profile, end_ns)?;
    write_cpu_util(&mut w, end_ns);
    let truth = steps(&mut w, spec, profile, spans, end_ns);
    let phases: Vec<PhaseRow> = spec
        .phases
        .iter()
        .map(|p| PhaseRow {
            pid: 1,
            name: Arc::from(p.name.as_str()),
            begin_ns: (p.begin_s * S) as i64,
            end_ns: (p.end_s * S) as i64,
            source: "uprobe",
        })
        .collect();
    if !phases.is_empty() {
        w.append(Rows::Phases(phases));
    }
    w.finish(end_ns)?;
    Ok(truth)
}

/// 2026-01-01T00:00:00Z: the Unix time of a generated run's CLOCK_MONOTONIC 0.
pub const EPOCH_UNIX_NS: i64 = 1_767_225_600 * 1_000_000_000;

/// The instants the GPU sensor refreshes its reading, with a little jitter.
struct Refreshes(Vec<i64>);

impl Refreshes {
    fn new(rng: &mut Rng, every_ms: f64, end_ns: i64) -> Refreshes {
        let (mut at, mut u) = (Vec::new(), 0.0);
        while u * S < end_ns as f64 {
            at.push((u * S) as i64);
            u += rng.around(every_ms, 0.02) / 1e3;
        }
        Refreshes(at)
    }

    /// The latest refresh at or before `t`.
    fn last(&self, t: i64) -> i64 {
        self.0[self.0.partition_point(|x| *x <= t).max(1) - 1]
    }

    /// The reading after a refresh: the average power over the period it closed.
    fn reading_w(&self, profile: &dyn Profile, g: u32, t: i64) -> f64 {
        let i = self.0.partition_point(|x| *x <= t).max(1) - 1;
        match i.checked_sub(1) {
            Some(p) => {
                let (a, b) = (self.0[p] as f64 / S, self.0[i] as f64 / S);
                (profile.energy_j(g, b) - profile.energy_j(g, a)) / (b - a)
            }
            None => profile.power_w(g, 0.0),
        }
    }
}

/// The GPU table of `profile` from 0 to `end_ns` as NVML shows it: power refreshed every
/// ~`sensor_update_ms` and polled every ~`power_poll_ms`, the counter polled every
/// ~`counter_poll_ms`; long tables go to disk a segment at a time.
pub fn write_gpus(
    w: &mut TraceWriter,
    spec: &Spec,
    profile: &dyn Profile,
    end_ns: i64,
) -> Result<(), TraceError> {
    let mut rng = Rng(spec.seed.max(1));
    let sensor = Refreshes::new(&mut rng, spec.sensor_update_ms, end_ns);
    let reset_ns: Vec<i64> = spec.resets_at_s.iter().map(|s| (s * S) as i64).collect();
    for g in 0..spec.gpus {
        let mut rows = Vec::new();
        let (mut tp, mut tc) = (0i64, 0i64);
        let mut last_mw = None;
        while tp <= end_ns || tc <= end_ns {
            if tp <= tc {
                let v = (sensor.reading_w(profile, g, tp) * 1e3).round() as u32;
                rows.push(GpuRow {
                    ts_ns: tp,
                    gpu: g,
                    power_mw: Some(v),
                    power_instant_mw: Some(v),
                    power_changed: Some(last_mw != Some(v)),
                    ..GpuRow::default()
                });
                last_mw = Some(v);
                tp += (rng.around(spec.power_poll_ms, 0.05) * 1e6) as i64;
            } else {
                let u = sensor.last(tc);
                let before_reset = reset_ns.iter().filter(|r| **r <= u).max().copied();
                let base = before_reset.map_or(0.0, |r| profile.energy_j(g, r as f64 / S));
                rows.push(GpuRow {
                    ts_ns: tc,
                    gpu: g,
                    energy_mj: Some(
                        ((profile.energy_j(g, u as f64 / S) - base) * 1e3).floor() as u64
                    ),
                    energy_changed: Some(true),
                    ..GpuRow::default()
                });
                tc += (rng.around(spec.counter_poll_ms, 0.02) * 1e6) as i64;
            }
            if rows.len() == SEGMENT_ROWS {
                // Long runs go to disk a segment at a time, as the recorder writes them.
                w.append(Rows::Gpu(std::mem::take(&mut rows)));
                w.rotate()?;
            }
        }
        w.append(Rows::Gpu(rows));
    }
    Ok(())
}

/// CPU utilisation once a second: the machine half busy, the job a quarter (the job's
/// share of the CPU is 0.5).
pub fn write_cpu_util(w: &mut TraceWriter, end_ns: i64) {
    let util = |ts_ns, domain: &str, u| CpuRow {
        ts_ns,
        domain: domain.into(),
        source: "procfs",
        energy_uj: None,
        energy_changed: None,
        util_pct: Some(u),
    };
    let mut cpu = Vec::new();
    for k in 0..=(end_ns / 1_000_000_000) {
        cpu.push(util(k * 1_000_000_000, "machine", 50.0));
        cpu.push(util(k * 1_000_000_000, "job", 25.0));
    }
    w.append(Rows::Cpu(cpu));
}

/// Steps of about `step_ms` with gaps of about `gap_ms`, from 0.5 s to 0.5 s before the end.
fn spans(spec: &Spec, rng: &mut Rng) -> Vec<(i64, i64)> {
    let end = spec.duration_s * S;
    let mut t = 0.5 * S;
    let mut spans = Vec::new();
    loop {
        let b = t;
        let e = b + rng.around(spec.step_ms, 0.3) * 1e6;
        if e >= end - 0.5 * S {
            return spans;
        }
        spans.push((b as i64, e as i64));
        t = e + rng.around(spec.gap_ms, 0.3) * 1e6;
    }
}

fn steps(
    w: &mut TraceWriter,
    spec: &Spec,
    profile: &dyn Profile,
    steps: &[(i64, i64, Option<String>)],
    end_ns: i64,
) -> Truth {
    let rows = steps
        .iter()
        .enumerate()
        .map(|(k, (b, e, phase))| StepRow {
            step: k as u64,
            begin_ns: *b,
            end_ns: *e,
            pid: 1,
            samples: Some(spec.samples_per_step),
            tokens: None,
            loss: Some(1.0 / (k + 1) as f64),
            lr: None,
            epoch: None,
            source: "uprobe",
            counts: [None; 4],
            sync_ns: None,
            phase: phase.as_deref().map(Arc::from),
        })
        .collect();
    w.append(Rows::Steps(rows));
    let spans: Vec<(i64, i64)> = steps.iter().map(|s| (s.0, s.1)).collect();
    let step_j = (0..spec.gpus)
        .map(|g| {
            spans
                .iter()
                .map(|&(b, e)| {
                    profile.energy_j(g, e as f64 / S) - profile.energy_j(g, b as f64 / S)
                })
                .collect()
        })
        .collect();
    let total_j = (0..spec.gpus)
        .map(|g| profile.energy_j(g, end_ns as f64 / S))
        .collect();
    Truth {
        steps: spans,
        step_j,
        total_j,
        step_phase: steps.iter().map(|s| s.2.clone()).collect(),
        phase_j: phase_truth(spec, profile, steps, end_ns),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_energy_is_the_integral_of_the_power() {
        for g in 0..3 {
            let (mut e, dt) = (0.0, 1e-4);
            for k in 0..100_000 {
                e += super::power_w(g, (k as f64 + 0.5) * dt) * dt;
            }
            assert!((e - super::energy_j(g, 10.0)).abs() < 1e-6 * e, "{e}");
        }
    }
}
