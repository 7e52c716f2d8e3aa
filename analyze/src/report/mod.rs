//! A run's report: energy (per device, per step, between steps, per phase), samples/kWh,
//! CO2 with a fixed or time-varying grid intensity, cost, carbon budget, efficiency score.
//! The JSON keys are the users' contract (docs/analysis.md, "Report JSON"). Samples and
//! tokens (and every per-kWh, per-sample and score figure made from them) count training
//! steps only (no phase, or `train`); `phases` splits the energy by class, summing to
//! `energy_kwh`.

use std::collections::BTreeMap;
use std::path::Path;

use eco2ai_trace::{Run, Table, TraceError, cpu_total_j};
use serde::Serialize;

use crate::energy::{self, Device, Quality, Step, StepEnergy};
use crate::series::Series;

pub mod compare;
mod efficiency;
pub mod heatmap;
pub mod phases;
pub mod render;

pub use efficiency::Efficiency;

const J_PER_KWH: f64 = 3.6e6;

/// A per-kWh rate: grid gCO2/kWh or price USD/kWh, fixed or in time.
#[derive(Debug, Clone)]
pub enum Rate {
    Fixed(f64),
    Series(Series),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub intensity: Option<Rate>,
    pub pue: f64,
    pub price: Option<Rate>,
    pub gpu_hour_usd: Option<f64>,
    pub carbon_budget_kg: Option<f64>,
    /// Where the intensity comes from, in words (flag or run label, and the table).
    pub intensity_source: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            intensity: None,
            pue: 1.0,
            price: None,
            gpu_hour_usd: None,
            carbon_budget_kg: None,
            intensity_source: None,
        }
    }
}

/// What a run's trace says, loaded once.
pub struct Analysis {
    pub run_id: String,
    pub dir: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub mono_to_unix_ns: i64,
    pub truncated: bool,
    pub gpus: usize,
    pub country: Option<String>,
    pub region: Option<String>,
    pub devices: Vec<Device>,
    pub steps: Vec<Step>,
    pub step_energy: Vec<StepEnergy>,
    /// The run's time and energy by class: train, named phases, stall, idle.
    pub partition: energy::phases::Partition,
    pub quality: Quality,
    pub gpu_util_mean_pct: Option<f64>,
    /// The recorded process tree's share of the machine's CPU time.
    pub cpu_job_share: Option<f64>,
    /// The run's meta.json (command, host, sensors, labels), for the report's header.
    pub meta: eco2ai_trace::Meta,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("no energy readings in this run (no GPU or CPU energy rows): nothing to report")]
    NoEnergy,
}

/// Time-weighted mean utilisation of the `machine` and `job` rows: the job's share of
/// the CPU's busy time is their ratio.
fn job_share(run: &Run) -> Result<Option<f64>, TraceError> {
    let mut series: BTreeMap<&'static str, Vec<(i64, f64)>> = BTreeMap::new();
    for b in run.read_table(Table::Cpu)?.batches {
        for r in eco2ai_trace::from_batch::cpu_rows(&b) {
            let key = match &*r.domain {
                "machine" => "machine",
                "job" => "job",
                _ => continue,
            };
            if let Some(u) = r.util_pct.filter(|u| u.is_finite()) {
                series.entry(key).or_default().push((r.ts_ns, f64::from(u)));
            }
        }
    }
    let mean = |v: &mut Vec<(i64, f64)>| {
        v.sort_by_key(|p| p.0);
        let (mut num, mut den) = (0.0, 0.0);
        for w in v.windows(2) {
            let dt = (w[1].0 - w[0].0) as f64;
            num += w[1].1 * dt;
            den += dt;
        }
        (den > 0.0).then(|| num / den)
    };
    let machine = series.get_mut("machine").and_then(|v| mean(v));
    let job = series.get_mut("job").and_then(|v| mean(v));
    Ok(machine
        .zip(job)
        .filter(|(m, _)| *m > 0.0)
        .map(|(m, j)| (j / m).clamp(0.0, 1.0)))
}

pub fn analyse(dir: &Path) -> Result<Analysis, AnalysisError> {
    analyse_with(dir, &mut |_| {})
}

/// [`analyse`], telling `stage` what it is doing (for progress on a terminal).
pub fn analyse_with(dir: &Path, stage: &mut dyn FnMut(&str)) -> Result<Analysis, AnalysisError> {
    stage("reading meta.json");
    let run = Run::open(dir)?;
    let m = run.meta().clone();
    stage("energy curves (GPU and CPU tables)");
    let (devices, mut quality, gpu_util_mean_pct) = energy::devices(&run)?;
    if devices.is_empty() {
        return Err(AnalysisError::NoEnergy);
    }
    stage("steps");
    let steps = energy::steps(&run, &mut quality)?;
    stage("energy per step");
    let step_energy = energy::attribute(&devices, &steps);
    stage("energy per phase");
    let spans = energy::phases::spans(&run, &mut quality)?;
    let last = devices
        .iter()
        .filter_map(|d| d.curve.last_ns())
        .max()
        .unwrap_or(m.start_ns);
    let end_ns = m.end_ns.unwrap_or(last).max(m.start_ns);
    let partition = energy::phases::partition(&devices, &steps, &spans, m.start_ns, end_ns);
    drop(spans);
    stage("CPU share of the job");
    Ok(Analysis {
        run_id: m.run_id.clone(),
        dir: dir.display().to_string(),
        start_ns: m.start_ns,
        end_ns,
        mono_to_unix_ns: m.mono_to_unix_ns,
        truncated: !run.is_complete(),
        gpus: m
            .gpus
            .len()
            .max(devices.iter().filter(|d| d.gpu.is_some()).count()),
        country: m.labels.country.clone(),
        region: m.labels.region.clone(),
        gpu_util_mean_pct,
        cpu_job_share: job_share(&run)?,
        devices,
        steps,
        step_energy,
        partition,
        quality,
        meta: m,
    })
}

impl Analysis {
    /// IT energy over the union of the steps' spans, J (steps are in begin order).
    pub fn in_steps_j(&self) -> f64 {
        let mut total = 0.0;
        let mut open: Option<(i64, i64)> = None;
        for s in &self.steps {
            open = match open {
                Some((b, e)) if s.begin_ns <= e => Some((b, e.max(s.end_ns))),
                Some((b, e)) => {
                    total += self.it_j(b, e);
                    Some((s.begin_ns, s.end_ns))
                }
                None => Some((s.begin_ns, s.end_ns)),
            };
        }
        total + open.map_or(0.0, |(b, e)| self.it_j(b, e))
    }

    /// IT energy (GPUs + CPU) in [a, b], J.
    pub fn it_j(&self, a: i64, b: i64) -> f64 {
        let gpu: f64 = self
            .devices
            .iter()
            .filter(|d| d.gpu.is_some())
            .map(|d| d.curve.between(a, b))
            .sum();
        let cpu = cpu_total_j(
            self.devices
                .iter()
                .filter(|d| d.gpu.is_none())
                .map(|d| (d.name.as_str(), d.curve.between(a, b))),
        );
        gpu + cpu
    }

    /// Facility kWh in [a, b] times the rate in force, split where the rate changes.
    fn rated(&self, rate: &Rate, pue: f64, a: i64, b: i64) -> f64 {
        let kwh = |x: i64, y: i64| self.it_j(x, y) * pue / J_PER_KWH;
        match rate {
            Rate::Fixed(v) => kwh(a, b) * v,
            Rate::Series(s) => {
                let off = self.mono_to_unix_ns;
                let mut edges: Vec<i64> = vec![a];
                edges.extend(s.breaks(a + off, b + off).map(|t| t - off));
                edges.push(b);
                edges
                    .windows(2)
                    .map(|w| kwh(w[0], w[1]) * s.at(w[0] + off))
                    .sum()
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub energy_usd: Option<f64>,
    pub compute_usd: Option<f64>,
    pub total_usd: Option<f64>,
    pub usd_per_hour: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepStats {
    pub count: usize,
    pub p50_s: Option<f64>,
    pub p95_s: Option<f64>,
    pub energy_j_mean: Option<f64>,
    pub energy_j_p50: Option<f64>,
    pub energy_j_p95: Option<f64>,
    /// IT energy inside steps, and outside them (idle, data loading, evaluation).
    pub in_steps_kwh: f64,
    pub between_steps_kwh: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub budget_kg: f64,
    pub remaining_kg: f64,
    /// The step during which the run's CO2 passed the budget.
    pub exceeded_at_step: Option<u64>,
    /// At the run's CO2 per step, the step at which it would be passed.
    pub projected_step: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceEnergy {
    pub device: String,
    pub method: &'static str,
    pub source: &'static str,
    pub energy_kwh: f64,
    pub counter_resets: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: String,
    pub run_dir: String,
    pub duration_s: f64,
    /// Facility energy: (gpu + cpu) x PUE.
    pub energy_kwh: f64,
    pub gpu_energy_kwh: f64,
    pub cpu_energy_kwh: f64,
    /// The recorded processes' share of the CPU's busy time, and of its energy.
    pub cpu_job_share: Option<f64>,
    pub cpu_job_energy_kwh: Option<f64>,
    pub pue: f64,
    pub co2_kg: Option<f64>,
    pub grid_intensity_g_per_kwh: Option<f64>,
    /// Where the grid intensity comes from (a flag or the run's label, and its table).
    pub grid_intensity_source: Option<String>,
    /// Of training steps only: an eval step's samples are not trained on.
    pub samples: Option<u64>,
    pub tokens: Option<u64>,
    pub samples_per_kwh: Option<f64>,
    pub tokens_per_kwh: Option<f64>,
    pub j_per_sample: Option<f64>,
    pub cost: Cost,
    pub steps: StepStats,
    pub budget: Option<Budget>,
    pub efficiency: Efficiency,
    pub devices: Vec<DeviceEnergy>,
    /// Energy by class (train, each named phase, stall, idle); they sum to `energy_kwh`.
    pub phases: phases::Phases,
    pub sources: BTreeMap<&'static str, Vec<String>>,
    pub truncated: bool,
    pub quality: Quality,
}

/// Linear-interpolated quantile of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    Some(sorted[i] + (sorted.get(i + 1).unwrap_or(&sorted[i]) - sorted[i]) * f)
}

fn sorted(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn step_stats(a: &Analysis) -> StepStats {
    let dur = sorted(a.steps.iter().map(|s| (s.end_ns - s.begin_ns) as f64 / 1e9));
    let ej = sorted(a.step_energy.iter().map(|e| e.gpu_j + e.cpu_j));
    let sum_j: f64 = ej.iter().sum();
    // The energy of the time covered by steps, each instant once: overlapping steps
    // never make "in steps" more than the devices spent.
    let in_steps = a.in_steps_j();
    let total = a.it_j(a.start_ns, a.end_ns);
    StepStats {
        count: a.steps.len(),
        p50_s: quantile(&dur, 0.5),
        p95_s: quantile(&dur, 0.95),
        energy_j_mean: (!ej.is_empty()).then(|| sum_j / ej.len() as f64),
        energy_j_p50: quantile(&ej, 0.5),
        energy_j_p95: quantile(&ej, 0.95),
        in_steps_kwh: in_steps / J_PER_KWH,
        between_steps_kwh: (total - in_steps).max(0.0) / J_PER_KWH,
    }
}

fn budget(a: &Analysis, o: &Options, co2_kg: Option<f64>) -> Option<Budget> {
    let (b, co2, rate) = (o.carbon_budget_kg?, co2_kg?, o.intensity.as_ref()?);
    let mut cum = 0.0;
    let mut prev = a.start_ns;
    let mut exceeded = None;
    for s in &a.steps {
        cum += a.rated(rate, o.pue, prev, s.end_ns) / 1000.0;
        prev = s.end_ns;
        if cum > b && exceeded.is_none() {
            exceeded = Some(s.step);
        }
    }
    let per_step = (!a.steps.is_empty() && co2 > 0.0).then(|| co2 / a.steps.len() as f64);
    let first = a.steps.first().map_or(0, |s| s.step);
    Some(Budget {
        budget_kg: b,
        remaining_kg: b - co2,
        exceeded_at_step: exceeded,
        projected_step: per_step.map(|p| first.saturating_add((b / p).ceil() as u64)),
    })
}

/// Energy at the price in force (facility energy) plus GPU hours at their rate.
fn cost(a: &Analysis, o: &Options, hours: f64) -> Cost {
    let (s, e) = (a.start_ns, a.end_ns);
    let energy_usd = o.price.as_ref().map(|r| a.rated(r, o.pue, s, e));
    let compute_usd = o.gpu_hour_usd.map(|c| c * a.gpus as f64 * hours);
    let total_usd = match (energy_usd, compute_usd) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0.0) + y.unwrap_or(0.0)),
    };
    Cost {
        energy_usd,
        compute_usd,
        total_usd,
        usd_per_hour: total_usd.filter(|_| hours > 0.0).map(|t| t / hours),
    }
}

/// Each device by how it was measured (`measured` or `estimated`) and its method.
fn sources(a: &Analysis) -> BTreeMap<&'static str, Vec<String>> {
    let mut sources: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for d in &a.devices {
        sources
            .entry(d.source)
            .or_default()
            .push(format!("{} ({})", d.name, d.method.as_str()));
    }
    sources
}

/// Each device's energy over the run (IT energy, before PUE).
fn device_energies(a: &Analysis) -> Vec<DeviceEnergy> {
    a.devices
        .iter()
        .map(|d| DeviceEnergy {
            device: d.name.clone(),
            method: d.method.as_str(),
            source: d.source,
            energy_kwh: d.curve.between(a.start_ns, a.end_ns) / J_PER_KWH,
            counter_resets: d.counter_resets,
        })
        .collect()
}

pub fn report(a: &Analysis, o: &Options) -> Report {
    let (s, e) = (a.start_ns, a.end_ns);
    let hours = (e - s) as f64 / 3.6e12;
    let gpu_j: f64 = a
        .devices
        .iter()
        .filter(|d| d.gpu.is_some())
        .map(|d| d.curve.between(s, e))
        .sum();
    let it_j = a.it_j(s, e);
    let kwh = it_j * o.pue / J_PER_KWH;
    let co2_kg = o
        .intensity
        .as_ref()
        .map(|r| a.rated(r, o.pue, s, e) / 1000.0);
    // Training steps' samples only (an eval step's are not trained on); the sums
    // saturate: counts come from the recorded process (u64::MAX must not panic).
    let p = &a.partition;
    let train = energy::phases::TRAIN;
    let (samples, tokens) = (
        p.samples.get(train).copied().flatten(),
        p.tokens.get(train).copied().flatten(),
    );
    let per_kwh = |n: Option<u64>| n.filter(|_| kwh > 0.0).map(|n| n as f64 / kwh);
    Report {
        run_id: a.run_id.clone(),
        run_dir: a.dir.clone(),
        duration_s: (e - s) as f64 / 1e9,
        energy_kwh: kwh,
        // `+ 0.0`: an empty sum is -0.0, which prints as "-0".
        gpu_energy_kwh: gpu_j / J_PER_KWH + 0.0,
        cpu_energy_kwh: (it_j - gpu_j) / J_PER_KWH,
        cpu_job_share: a.cpu_job_share,
        cpu_job_energy_kwh: a.cpu_job_share.map(|s| s * (it_j - gpu_j) / J_PER_KWH),
        pue: o.pue,
        co2_kg,
        grid_intensity_g_per_kwh: co2_kg.filter(|_| kwh > 0.0).map(|c| c * 1000.0 / kwh),
        grid_intensity_source: o.intensity_source.clone(),
        samples,
        tokens,
        samples_per_kwh: per_kwh(samples),
        tokens_per_kwh: per_kwh(tokens),
        j_per_sample: samples
            .filter(|n| *n > 0)
            .map(|n| kwh * J_PER_KWH / n as f64),
        cost: cost(a, o, hours),
        steps: step_stats(a),
        budget: budget(a, o, co2_kg),
        efficiency: efficiency::efficiency(a, it_j, samples),
        devices: device_energies(a),
        phases: phases::phases(a, o),
        sources: sources(a),
        truncated: a.truncated,
        quality: a.quality.clone(),
    }
}
