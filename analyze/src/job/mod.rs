//! `eco2ai-analyze job DIR`: every node's run of one multi-node job (`OUT/job=<id>/
//! node=<node>/<run_id>/`) on one aligned time axis. Each node's steps table (small) is
//! read once for the step ends that give the clock offsets, again for every rank's
//! arrival on the aligned clock (each step's straggler), and a third time beside the
//! node's energy curves, one node at a time, for per-step job energy, per-rank and wait
//! energy: no two nodes' step rows or curves are held at once.

pub mod align;
pub mod cmd;
pub mod figure;
pub mod load;
pub mod output;
pub mod report;
pub mod steps;
pub mod straggler;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use eco2ai_trace::TraceError;
use eco2ai_trace::pricing::PriceArgs;

pub use report::JobReport;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("reading {0}")]
    Trace(PathBuf, #[source] TraceError),
    #[error(
        "no node=<name>/ directories with runs in {0}: give a job's directory, OUT/job=<id> (the probe's --out, then job=<id>)"
    )]
    NoNodes(PathBuf),
    #[error("{0} has no job in its meta.json (recorded outside a job): not a node of a job")]
    NotAJobRun(PathBuf),
    #[error("runs of more than one job mixed in one directory: expected job {job_id}, but {}", .others.join("; "))]
    MixedJobs { job_id: String, others: Vec<String> },
    #[error("node name {node} is claimed by {} runs: {}; keep one run per node (move the others away)", .dirs.len(), .dirs.join(", "))]
    DuplicateNode { node: String, dirs: Vec<String> },
    #[error("no node of the job recorded a step: nothing to align or attribute")]
    NoSteps,
    #[error(transparent)]
    Price(#[from] eco2ai_trace::pricing::PriceError),
}

/// Analyses the job in `dir` with the grid, price and budget flags of `prices`.
pub fn analyse(dir: &Path, prices: &PriceArgs) -> Result<JobReport, JobError> {
    analyse_with(dir, prices, &mut |_| {})
}

/// [`analyse`], telling `stage` what it is doing.
pub fn analyse_with(
    dir: &Path,
    prices: &PriceArgs,
    stage: &mut dyn FnMut(&str),
) -> Result<JobReport, JobError> {
    prices.check()?;
    stage("finding the job's node runs");
    let runs = load::find(dir)?;
    let names: Vec<String> = runs.nodes.iter().map(|n| n.node.clone()).collect();
    let (summaries, ends) = step_ends(&runs, stage)?;
    if summaries.iter().all(|s| s.steps == 0) {
        return Err(JobError::NoSteps);
    }
    stage("clock alignment");
    let alignment = align::align(&names, &ends);
    drop(ends);
    let shifts: Vec<i64> = runs
        .nodes
        .iter()
        .map(|n| {
            n.meta.mono_to_unix_ns
                - alignment
                    .clock_offsets_ns
                    .get(&n.node)
                    .copied()
                    .unwrap_or(0)
        })
        .collect();
    // The steps again, node by node: every rank's arrival on the aligned clock.
    let mut finder = straggler::Finder::new(&summaries);
    for (i, n) in runs.nodes.iter().enumerate() {
        stage(&format!("arrivals of node {}/{}", i + 1, runs.nodes.len()));
        finder.add(i, &load::node_steps(n)?, shifts[i]);
    }
    let strag = finder.finish();
    let (sums, energies) = energy_pass(&runs, &strag, &shifts, stage)?;
    stage("report");
    let parts = report::Parts {
        dir,
        runs: &runs,
        nodes: &summaries,
        alignment,
        stragglers: &strag,
        sums,
        energies,
    };
    report::build(parts, prices)
}

/// A node's step -> its ranks' median end, Unix ns.
type StepEnds = BTreeMap<u64, i64>;

/// Pass 1: each node's steps in turn, kept only as a summary and the step ends that
/// align the clocks.
fn step_ends(
    runs: &load::JobRuns,
    stage: &mut dyn FnMut(&str),
) -> Result<(Vec<load::NodeSummary>, Vec<StepEnds>), JobError> {
    let mut summaries = Vec::with_capacity(runs.nodes.len());
    let mut ends: Vec<StepEnds> = Vec::with_capacity(runs.nodes.len());
    for (i, n) in runs.nodes.iter().enumerate() {
        stage(&format!("steps of node {}/{}", i + 1, runs.nodes.len()));
        let s = load::node_steps(n)?;
        ends.push(median_ends(&s, n.meta.mono_to_unix_ns));
        summaries.push(s.summary());
    }
    Ok((summaries, ends))
}

/// Pass 3: each node's energy curves beside its steps, one node at a time, summed into
/// per-step job, per-rank and wait energy.
fn energy_pass(
    runs: &load::JobRuns,
    strag: &straggler::Stragglers,
    shifts: &[i64],
    stage: &mut dyn FnMut(&str),
) -> Result<(steps::Sums, Vec<steps::NodeEnergy>), JobError> {
    let step_index: BTreeMap<u64, usize> = strag
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.step, i))
        .collect();
    let rank_index: BTreeMap<(usize, usize), usize> = strag
        .ranks
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.node, r.slot), i))
        .collect();
    let mut sums = steps::Sums::new(strag.steps.len(), strag.ranks.len());
    let mut energies = Vec::with_capacity(runs.nodes.len());
    for (i, n) in runs.nodes.iter().enumerate() {
        stage(&format!(
            "energy of node {}/{} ({})",
            i + 1,
            runs.nodes.len(),
            n.node
        ));
        let cx = steps::Ctx {
            node: i,
            shift_ns: shifts[i],
            stragglers: strag,
            step_index: &step_index,
            rank_index: &rank_index,
        };
        energies.push(steps::node_pass(n, &load::node_steps(n)?, &cx, &mut sums)?);
    }
    Ok((sums, energies))
}

/// Each step's end on a node in Unix ns: the median over the node's ranks.
fn median_ends(s: &load::NodeSteps, mono_to_unix_ns: i64) -> BTreeMap<u64, i64> {
    let mut ends = Vec::new();
    s.steps
        .iter()
        .filter_map(|(k, cells)| {
            ends.clear();
            ends.extend(cells.iter().flatten().map(|c| c.end_ns));
            ends.sort_unstable();
            let m = *ends.get(ends.len() / 2)?;
            Some((*k, m.saturating_add(mono_to_unix_ns)))
        })
        .collect()
}
