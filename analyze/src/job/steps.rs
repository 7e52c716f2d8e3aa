//! The second pass, one node at a time: the node's energy curves (the per-run report's
//! devices), each job step's energy on the node over the node's span of it (its first
//! rank's begin to its last rank's end), each rank's energy in its own steps, and each
//! rank's wait energy. Results are added into job-wide sums and the node's curves are
//! dropped before the next node is read, so memory follows the largest node.

use std::collections::BTreeMap;

use eco2ai_trace::{Run, StepRow, cpu_total_j};
use serde::Serialize;

use super::JobError;
use super::load::{NodeRun, NodeSteps};
use super::straggler::Stragglers;
use crate::energy::{self, Device};

/// Rows and columns of the ranks x steps wait grid (ranks and steps binned to fit).
pub const GRID_ROWS: usize = 64;
pub const GRID_COLS: usize = 200;

/// Job-wide sums, indexed by job step and job rank.
#[derive(Debug, Clone, Default)]
pub struct Sums {
    pub step_gpu_j: Vec<f64>,
    pub step_cpu_j: Vec<f64>,
    pub step_wait_j: Vec<f64>,
    pub step_nodes: Vec<u32>,
    pub step_samples: Vec<u64>,
    pub step_tokens: Vec<u64>,
    pub rank_j: Vec<f64>,
    pub rank_steps: Vec<u64>,
    pub rank_wait_ns: Vec<i64>,
    pub rank_wait_j: Vec<f64>,
    /// (node index, step, GPU J, CPU J) of every node's steps.
    pub node_steps: Vec<(u32, u64, f64, f64)>,
    pub grid_wait_ns: Vec<Vec<f64>>,
    pub grid_wait_j: Vec<Vec<f64>>,
}

impl Sums {
    pub fn new(steps: usize, ranks: usize) -> Sums {
        let (rows, cols) = (ranks.clamp(1, GRID_ROWS), steps.clamp(1, GRID_COLS));
        Sums {
            step_gpu_j: vec![0.0; steps],
            step_cpu_j: vec![0.0; steps],
            step_wait_j: vec![0.0; steps],
            step_nodes: vec![0; steps],
            step_samples: vec![0; steps],
            step_tokens: vec![0; steps],
            rank_j: vec![0.0; ranks],
            rank_steps: vec![0; ranks],
            rank_wait_ns: vec![0; ranks],
            rank_wait_j: vec![0.0; ranks],
            node_steps: Vec::new(),
            grid_wait_ns: vec![vec![0.0; cols]; rows],
            grid_wait_j: vec![vec![0.0; cols]; rows],
        }
    }

    fn cell(&self, rank: usize, step: usize) -> (usize, usize) {
        let (rows, cols) = (self.grid_wait_ns.len(), self.grid_wait_ns[0].len());
        let nr = self.rank_j.len().max(1);
        let ns = self.step_gpu_j.len().max(1);
        (rank * rows / nr, step * cols / ns)
    }
}

/// A node's whole-run energy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeEnergy {
    pub energy_j: f64,
    pub gpu_j: f64,
    pub cpu_j: f64,
    pub in_steps_j: f64,
    pub gpus: usize,
    pub cpu_estimated: bool,
    pub quality: energy::Quality,
}

/// Where a rank's energy comes from: its GPU, or a share of the node's CPU packages.
enum Source<'a> {
    Gpu(&'a Device),
    Cpu(&'a [Device], f64),
}

impl Source<'_> {
    fn each_between(&self, spans: &[(i64, i64)]) -> Vec<f64> {
        match self {
            Source::Gpu(d) => d.curve.each_between(spans),
            Source::Cpu(cpus, share) => cpu_each_between(cpus, spans)
                .into_iter()
                .map(|j| j * share)
                .collect(),
        }
    }
}

fn cpu_each_between(cpus: &[Device], spans: &[(i64, i64)]) -> Vec<f64> {
    let per: Vec<Vec<f64>> = cpus.iter().map(|d| d.curve.each_between(spans)).collect();
    (0..spans.len())
        .map(|k| cpu_total_j(cpus.iter().zip(&per).map(|(d, v)| (d.name.as_str(), v[k]))))
        .collect()
}

fn span_row(step: u64, (begin_ns, end_ns): (i64, i64)) -> StepRow {
    StepRow {
        step,
        begin_ns,
        end_ns,
        pid: 0,
        samples: None,
        tokens: None,
        loss: None,
        lr: None,
        epoch: None,
        source: "job",
        counts: [None; 4],
        sync_ns: None,
        phase: None,
    }
}

/// What pass 2 needs of the whole job for one node.
pub struct Ctx<'a> {
    pub node: usize,
    pub shift_ns: i64,
    pub stragglers: &'a Stragglers,
    pub step_index: &'a BTreeMap<u64, usize>,
    pub rank_index: &'a BTreeMap<(usize, usize), usize>,
}

/// The node's energy; its steps, ranks and waits added into `sums`.
pub fn node_pass(
    n: &NodeRun,
    ns: &NodeSteps,
    cx: &Ctx,
    sums: &mut Sums,
) -> Result<NodeEnergy, JobError> {
    let run = Run::open(&n.dir).map_err(|e| JobError::Trace(n.dir.clone(), e))?;
    let (devices, quality, _) =
        energy::devices(&run).map_err(|e| JobError::Trace(n.dir.clone(), e))?;
    // GPUs come first, then CPU domains.
    let split = devices
        .iter()
        .position(|d| d.gpu.is_none())
        .unwrap_or(devices.len());
    let (gpus, cpus) = devices.split_at(split);
    let total = |d: &[Device]| d.iter().map(|d| d.curve.total()).sum::<f64>();
    let cpu_j = cpu_total_j(cpus.iter().map(|d| (d.name.as_str(), d.curve.total())));
    let mut out = NodeEnergy {
        gpu_j: total(gpus),
        cpu_j,
        energy_j: total(gpus) + cpu_j,
        gpus: gpus.len(),
        cpu_estimated: cpus.iter().any(|d| d.source == "estimated"),
        quality,
        ..NodeEnergy::default()
    };
    // The node's span of each step: first begin to last end over its ranks.
    let mut spans = Vec::with_capacity(ns.steps.len());
    let mut rows = Vec::with_capacity(ns.steps.len());
    for (k, cells) in &ns.steps {
        let live = cells.iter().flatten();
        let b = live.clone().map(|c| c.begin_ns).min();
        let e = live.map(|c| c.end_ns).max();
        if let (Some(b), Some(e), Some(&i)) = (b, e, cx.step_index.get(k)) {
            spans.push((i, (b, e)));
            rows.push(span_row(*k, (b, e)));
            let (samples, tokens) = ns.totals.get(k).copied().unwrap_or_default();
            sums.step_samples[i] += samples;
            sums.step_tokens[i] += tokens;
        }
    }
    let energies = energy::attribute(&devices, &rows);
    for (((i, _), row), e) in spans.iter().zip(&rows).zip(energies) {
        sums.step_gpu_j[*i] += e.gpu_j;
        sums.step_cpu_j[*i] += e.cpu_j;
        sums.step_nodes[*i] += 1;
        sums.node_steps
            .push((cx.node as u32, row.step, e.gpu_j, e.cpu_j));
    }
    out.in_steps_j = union_j(gpus, cpus, spans.iter().map(|s| s.1));
    ranks_pass(ns, cx, gpus, cpus, sums);
    Ok(out)
}

/// IT energy over the union of spans sorted by begin (each instant counted once).
fn union_j(gpus: &[Device], cpus: &[Device], spans: impl Iterator<Item = (i64, i64)>) -> f64 {
    let mut merged: Vec<(i64, i64)> = Vec::new();
    let mut sorted: Vec<(i64, i64)> = spans.collect();
    sorted.sort_unstable();
    for (b, e) in sorted {
        match merged.last_mut() {
            Some(last) if b <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((b, e)),
        }
    }
    let gpu: f64 = gpus
        .iter()
        .flat_map(|d| d.curve.each_between(&merged))
        .sum();
    gpu + cpu_each_between(cpus, &merged).iter().sum::<f64>()
}

/// Each rank's energy in its own steps and its wait energy, on its GPU (its local rank)
/// or, on a node without GPUs, an equal share of the node's CPU packages.
fn ranks_pass(ns: &NodeSteps, cx: &Ctx, gpus: &[Device], cpus: &[Device], sums: &mut Sums) {
    let share = 1.0 / ns.ranks.len().max(1) as f64;
    for (slot, r) in ns.ranks.iter().enumerate() {
        let Some(&ri) = cx.rank_index.get(&(cx.node, slot)) else {
            continue;
        };
        let local = r
            .info
            .and_then(|i| i.local_rank)
            .or((ns.ranks.len() == gpus.len()).then_some(slot as u32));
        let source = match local.and_then(|l| gpus.iter().find(|d| d.gpu == Some(l))) {
            Some(d) => Source::Gpu(d),
            None => Source::Cpu(cpus, share),
        };
        let (mut own, mut wait, mut at) = (Vec::new(), Vec::new(), Vec::new());
        for (k, cells) in &ns.steps {
            let (Some(c), Some(&i)) = (cells[slot], cx.step_index.get(k)) else {
                continue;
            };
            own.push((c.begin_ns, c.end_ns));
            let Some(js) = cx
                .stragglers
                .steps
                .get(i)
                .filter(|_| cx.stragglers.identifiable)
            else {
                continue;
            };
            let latest = js
                .latest_unix_ns
                .saturating_sub(cx.shift_ns)
                .max(c.arrival_ns);
            wait.push((c.arrival_ns, latest));
            at.push(i);
        }
        sums.rank_steps[ri] += own.len() as u64;
        sums.rank_j[ri] += source.each_between(&own).iter().sum::<f64>();
        for ((span, j), i) in wait.iter().zip(source.each_between(&wait)).zip(at) {
            let ns_wait = span.1 - span.0;
            sums.rank_wait_ns[ri] += ns_wait;
            sums.rank_wait_j[ri] += j;
            sums.step_wait_j[i] += j;
            let (row, col) = sums.cell(ri, i);
            sums.grid_wait_ns[row][col] += ns_wait as f64;
            sums.grid_wait_j[row][col] += j;
        }
    }
}
