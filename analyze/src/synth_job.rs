//! A seeded synthetic multi-node job with known truth: N nodes x G GPUs (one rank per
//! GPU), each node a real run directory in the hive layout `OUT/job=<id>/node=<n>/<run>/`
//! with `meta.job`. Each node's wall clock is off by a known amount (its
//! `mono_to_unix_ns`), ranks finish their compute at skewed instants (the sync mark), a
//! straggler rank finishes later by a known lag, and every rank leaves the step's
//! collective within microseconds of the others (the step end). The GPUs' power is the
//! closed-form smooth profile of [`crate::synth`], so each step's job energy and each
//! rank's wait energy are exact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use eco2ai_trace::job::{JobInfo, RankInfo};
use eco2ai_trace::{CpuRow, Meta, Rows, StepRow, TraceError, TraceWriter};

use crate::synth::{self, EPOCH_UNIX_NS, Profile, Rng, Smooth};

const S: f64 = 1e9;

/// What to generate.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub seed: u64,
    pub job_id: String,
    pub nodes: u32,
    /// GPUs per node, one rank each.
    pub gpus: u32,
    pub duration_s: f64,
    /// Mean compute time of a step (varies by +-20% from step to step) and the gap
    /// between steps.
    pub step_ms: f64,
    pub gap_ms: f64,
    /// The collective after the last rank's compute, ms.
    pub collective_ms: f64,
    /// Ranks finish their compute up to this much before the step's nominal end, ms.
    pub skew_ms: f64,
    /// Ranks leave the collective up to this far apart, microseconds.
    pub exit_jitter_us: f64,
    /// The error of each node's wall clock (added to its `mono_to_unix_ns`), ns; missing
    /// entries are 0.
    pub clock_offsets_ns: Vec<i64>,
    /// A global rank that finishes its compute this many ms after the nominal end.
    pub straggler: Option<(u32, f64)>,
    /// Whether ranks mark their compute's end (`eco2ai_step_sync`).
    pub sync_marks: bool,
    pub power_poll_ms: f64,
    /// A node whose probe was killed (kill -9) at this second: its rows stop there and
    /// its meta.json stays `recording`.
    pub cut_node: Option<(u32, f64)>,
    /// A node that recorded no steps (and so no ranks).
    pub stepless_node: Option<u32>,
    /// Each node's country label (missing entries: none).
    pub countries: Vec<String>,
    /// Nodes without GPUs (gloo on CPUs): one CPU package each, read every 10 ms like
    /// RAPL, its power the profile of the node's first GPU; the node's ranks share it.
    pub cpu_only: bool,
}

impl Default for JobSpec {
    fn default() -> Self {
        JobSpec {
            seed: 1,
            job_id: "4242".into(),
            nodes: 2,
            gpus: 2,
            duration_s: 60.0,
            step_ms: 400.0,
            gap_ms: 20.0,
            collective_ms: 8.0,
            skew_ms: 10.0,
            exit_jitter_us: 50.0,
            clock_offsets_ns: Vec::new(),
            straggler: Some((1, 40.0)),
            sync_marks: true,
            power_poll_ms: 20.0,
            cut_node: None,
            stepless_node: None,
            countries: Vec::new(),
            cpu_only: false,
        }
    }
}

/// The truth the job was made from.
#[derive(Debug, Clone, Default)]
pub struct JobTruth {
    /// Each node's run directory, by node index.
    pub node_dirs: Vec<PathBuf>,
    /// The job's directory (`OUT/job=<id>`).
    pub job_dir: PathBuf,
    /// Step numbers and each step's energy summed over every node's GPUs, each node
    /// over its own span of the step (its first rank's begin to its last rank's end), J.
    pub step_j: BTreeMap<u64, f64>,
    /// The rank with the latest compute end of each step.
    pub straggler: BTreeMap<u64, u32>,
    /// The energy of every rank's GPU from its compute end to the step's latest, J.
    pub wait_j: f64,
    /// The same time summed over ranks and steps, ns.
    pub wait_ns: i128,
}

/// GPU g of node n is GPU `n * gpus + g` of the smooth profile: each GPU its own phase.
struct NodeProfile {
    first: u32,
}

impl Profile for NodeProfile {
    fn power_w(&self, g: u32, t: f64) -> f64 {
        Smooth.power_w(self.first + g, t)
    }
    fn energy_j(&self, g: u32, t: f64) -> f64 {
        Smooth.energy_j(self.first + g, t)
    }
}

/// One rank's step on the true time axis, ns.
#[derive(Debug, Clone, Copy)]
struct RankStep {
    begin_ns: i64,
    sync_ns: i64,
    end_ns: i64,
}

/// Every step of every rank: `[k][rank]`, on the true time axis (CLOCK_MONOTONIC 0 on
/// every node is true time 0; only the wall clocks disagree).
fn timeline(spec: &JobSpec, end_ns: i64) -> Vec<Vec<RankStep>> {
    let mut rng = Rng(spec.seed.max(1) ^ 0x10b5);
    let ranks = (spec.nodes * spec.gpus) as usize;
    let mut out = Vec::new();
    let mut t = 0.5 * S;
    loop {
        let compute = rng.around(spec.step_ms, 0.2) * 1e6;
        let mut sync: Vec<f64> = (0..ranks)
            .map(|_| t + compute - rng.next() * spec.skew_ms * 1e6)
            .collect();
        if let Some((r, lag_ms)) = spec.straggler
            && let Some(s) = sync.get_mut(r as usize)
        {
            *s = t + compute + lag_ms * 1e6;
        }
        let last = sync.iter().copied().fold(f64::MIN, f64::max);
        let exit = last + spec.collective_ms * 1e6;
        if exit + spec.exit_jitter_us * 1e3 >= end_ns as f64 - 0.5 * S {
            return out;
        }
        out.push(
            sync.iter()
                .map(|&s| RankStep {
                    begin_ns: (t + rng.next() * 200e3) as i64,
                    sync_ns: s as i64,
                    end_ns: (exit + rng.next() * spec.exit_jitter_us * 1e3) as i64,
                })
                .collect(),
        );
        t = exit + rng.around(spec.gap_ms, 0.3) * 1e6;
    }
}

fn node_name(n: u32) -> String {
    format!("node{n:02}")
}

/// Writes the job under `out` (as `out/job=<id>/node=<n>/<run>/`); returns the truth.
pub fn generate_job(out: &Path, spec: &JobSpec) -> Result<JobTruth, TraceError> {
    let end_ns = (spec.duration_s * S) as i64;
    let steps = timeline(spec, end_ns);
    let job_dir = out.join(format!("job={}", spec.job_id));
    let mut truth = JobTruth {
        job_dir: job_dir.clone(),
        ..JobTruth::default()
    };
    for n in 0..spec.nodes {
        truth
            .node_dirs
            .push(write_node(&job_dir, spec, n, &steps, end_ns)?);
    }
    let g = spec.gpus as usize;
    for (k, ranks) in steps.iter().enumerate() {
        let k = k as u64;
        let mut job_j = 0.0;
        for n in 0..spec.nodes as usize {
            if node_cut_ns(spec, n as u32).is_some_and(|c| ranks[n * g].end_ns > c)
                || spec.stepless_node == Some(n as u32)
            {
                continue;
            }
            let mine = &ranks[n * g..(n + 1) * g];
            let b = mine.iter().map(|r| r.begin_ns).min().unwrap_or(0) as f64 / S;
            let e = mine.iter().map(|r| r.end_ns).max().unwrap_or(0) as f64 / S;
            let p = NodeProfile {
                first: n as u32 * spec.gpus,
            };
            job_j += (0..devices(spec))
                .map(|gi| p.energy_j(gi, e) - p.energy_j(gi, b))
                .sum::<f64>();
        }
        truth.step_j.insert(k, job_j);
        let (latest_rank, latest) = ranks
            .iter()
            .enumerate()
            .map(|(r, s)| (r as u32, arrival(spec, s)))
            .fold((0, i64::MIN), |a, b| if b.1 > a.1 { b } else { a });
        truth.straggler.insert(k, latest_rank);
        for (r, s) in ranks.iter().enumerate() {
            let a = arrival(spec, s);
            let p = NodeProfile {
                first: (r / g) as u32 * spec.gpus,
            };
            // A rank's device: its GPU, or an equal share of the node's one package.
            let (gi, share) = match spec.cpu_only {
                true => (0, 1.0 / g as f64),
                false => ((r % g) as u32, 1.0),
            };
            truth.wait_j +=
                share * (p.energy_j(gi, latest as f64 / S) - p.energy_j(gi, a as f64 / S));
            truth.wait_ns += i128::from(latest - a);
        }
    }
    Ok(truth)
}

/// Energy devices of a node: its GPUs, or its one CPU package.
fn devices(spec: &JobSpec) -> u32 {
    if spec.cpu_only { 1 } else { spec.gpus }
}

fn arrival(spec: &JobSpec, s: &RankStep) -> i64 {
    if spec.sync_marks { s.sync_ns } else { s.end_ns }
}

fn node_cut_ns(spec: &JobSpec, n: u32) -> Option<i64> {
    spec.cut_node.filter(|c| c.0 == n).map(|c| (c.1 * S) as i64)
}

/// The pid of a node's `gi`-th rank.
fn rank_pid(gi: u32) -> u32 {
    1000 + gi
}

/// Node `n`'s meta.json: its clock error, country, and its ranks (as the probe records
/// them, only for processes that send steps).
fn node_meta(spec: &JobSpec, n: u32, node: &str, run_id: String) -> Meta {
    let mut meta = Meta::new(run_id);
    meta.start_ns = 0;
    let err_ns = spec.clock_offsets_ns.get(n as usize).copied().unwrap_or(0);
    meta.mono_to_unix_ns = EPOCH_UNIX_NS + err_ns;
    meta.labels.project_name = Some("synthetic-job".into());
    meta.labels.country = spec.countries.get(n as usize).cloned();
    meta.host = node.to_string();
    let g = spec.gpus;
    meta.job = Some(JobInfo {
        job_id: spec.job_id.clone(),
        id_source: "flag".into(),
        node: node.to_string(),
        node_rank: Some(n),
        num_nodes: Some(spec.nodes),
        world_size: Some(spec.nodes * g),
        // The probe records a rank when its process sends steps.
        ranks: (0..g)
            .filter(|_| spec.stepless_node != Some(n))
            .map(|gi| {
                let info = RankInfo {
                    rank: n * g + gi,
                    local_rank: Some(gi),
                };
                (rank_pid(gi), info)
            })
            .collect(),
    });
    meta
}

/// Node `n`'s step rows: each of its ranks' steps that ended before `node_end`.
fn node_step_rows(spec: &JobSpec, n: u32, steps: &[Vec<RankStep>], node_end: i64) -> Vec<StepRow> {
    let g = spec.gpus;
    let mut rows = Vec::new();
    for (k, ranks) in steps.iter().enumerate() {
        for gi in 0..g {
            let s = ranks[(n * g + gi) as usize];
            if s.end_ns > node_end {
                continue;
            }
            let sync = spec.sync_marks.then_some(s.sync_ns);
            rows.push(step_row(k as u64, rank_pid(gi), s, sync));
        }
    }
    rows
}

fn write_node(
    job_dir: &Path,
    spec: &JobSpec,
    n: u32,
    steps: &[Vec<RankStep>],
    end_ns: i64,
) -> Result<PathBuf, TraceError> {
    let node = node_name(n);
    let run_id = format!("synthetic-{node}");
    let dir = job_dir.join(format!("node={node}")).join(&run_id);
    let meta = node_meta(spec, n, &node, run_id);
    let mut w = TraceWriter::create(&dir, meta)?;
    let cut = node_cut_ns(spec, n);
    let node_end = cut.unwrap_or(end_ns);
    let g = spec.gpus;
    let gpu_spec = synth::Spec {
        seed: spec.seed.wrapping_add(u64::from(n) * 7919),
        duration_s: spec.duration_s,
        gpus: g,
        power_poll_ms: spec.power_poll_ms,
        ..synth::Spec::default()
    };
    let profile = NodeProfile { first: n * g };
    if spec.cpu_only {
        write_package(&mut w, &profile, node_end);
    } else {
        synth::write_gpus(&mut w, &gpu_spec, &profile, node_end)?;
    }
    synth::write_cpu_util(&mut w, node_end);
    if spec.stepless_node != Some(n) {
        w.append(Rows::Steps(node_step_rows(spec, n, steps, node_end)));
    }
    if cut.is_some() {
        // As after kill -9: whatever was flushed stays; meta.json still says recording.
        w.rotate()?;
        return Ok(dir);
    }
    w.finish(end_ns)?;
    Ok(dir)
}

/// A RAPL package counter read every 10 ms, in whole microjoules.
fn write_package(w: &mut TraceWriter, profile: &NodeProfile, end_ns: i64) {
    let rows = (0..=end_ns / 10_000_000)
        .map(|k| {
            let ts_ns = k * 10_000_000;
            CpuRow {
                ts_ns,
                domain: "package-0".into(),
                source: "powercap",
                energy_uj: Some((profile.energy_j(0, ts_ns as f64 / S) * 1e6).floor() as u64),
                energy_changed: Some(true),
                util_pct: None,
            }
        })
        .collect();
    w.append(Rows::Cpu(rows));
}

fn step_row(k: u64, pid: u32, s: RankStep, sync_ns: Option<i64>) -> StepRow {
    StepRow {
        step: k,
        begin_ns: s.begin_ns,
        end_ns: s.end_ns,
        pid,
        samples: Some(8),
        tokens: Some(8 * 512),
        loss: Some(1.0 / (k + 1) as f64),
        lr: None,
        epoch: None,
        source: "uprobe",
        counts: [None; 4],
        sync_ns,
        phase: None,
    }
}
