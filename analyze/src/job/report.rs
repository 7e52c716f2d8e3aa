//! The job's report: per node (with its own grid intensity), per rank, per step, the
//! stragglers and wait energy, the clock alignment, and what is missing or cut off. The
//! JSON keys are the users' contract (docs/analysis.md, "Job").

use std::collections::BTreeMap;
use std::path::Path;

use eco2ai_trace::pricing::PriceArgs;
use serde::Serialize;

use super::JobError;
use super::align::Alignment;
use super::load::{JobRuns, NodeSummary};
use super::steps::{NodeEnergy, Sums};
use super::straggler::Stragglers;

const J_PER_KWH: f64 = 3.6e6;

#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub node: String,
    pub node_rank: Option<u32>,
    pub run_id: String,
    pub dir: String,
    /// `complete`, or `recording` / `truncated` for a node cut off.
    pub status: String,
    pub steps: usize,
    pub first_step: Option<u64>,
    pub last_step: Option<u64>,
    pub ranks: usize,
    pub gpus: usize,
    pub energy_kwh: f64,
    pub gpu_kwh: f64,
    pub cpu_kwh: f64,
    pub in_steps_kwh: f64,
    pub cpu_estimated: bool,
    pub gco2_per_kwh: Option<f64>,
    /// The node's PUE: --pue, else the one its probe recorded, else 1.
    pub pue: f64,
    pub intensity_source: Option<String>,
    pub co2_kg: Option<f64>,
    pub clock_offset_ns: i64,
    pub step_rows_dropped: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RankReport {
    pub rank: Option<u32>,
    pub local_rank: Option<u32>,
    pub node: String,
    pub pid: u32,
    pub label: String,
    pub steps: u64,
    /// The energy of the rank's device (its GPU, or its share of the CPU) in its steps.
    pub energy_j: f64,
    pub wait_s: f64,
    pub wait_j: f64,
    /// Steps in which this rank arrived last.
    pub straggler_steps: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: u64,
    /// Every node's GPUs and CPU over the node's span of the step, J.
    pub energy_j: f64,
    pub gpu_j: f64,
    pub cpu_j: f64,
    pub nodes: u32,
    pub ranks: usize,
    pub samples: u64,
    pub tokens: u64,
    pub straggler_rank: Option<u32>,
    pub straggler: Option<String>,
    pub lag_ms: f64,
    pub wait_j: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StragglerSummary {
    pub identifiable: bool,
    pub note: String,
    /// The rank that arrived last most often, and in how many steps.
    pub slowest: Option<String>,
    pub slowest_steps: u64,
    pub median_lag_ms: Option<f64>,
    pub wait_s: f64,
    pub wait_j: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job_id: String,
    pub dir: String,
    pub nodes: Vec<NodeReport>,
    pub missing: Vec<String>,
    pub warnings: Vec<String>,
    pub clock_offsets_ns: BTreeMap<String, i64>,
    pub clock_residual_ns: i64,
    pub clock: Alignment,
    pub energy_kwh: f64,
    pub gpu_kwh: f64,
    pub cpu_kwh: f64,
    pub in_steps_kwh: f64,
    pub samples: u64,
    pub tokens: u64,
    pub samples_per_kwh: Option<f64>,
    pub tokens_per_kwh: Option<f64>,
    pub pue: f64,
    pub co2_kg: Option<f64>,
    pub cost_usd: Option<f64>,
    pub carbon_budget_kg: Option<f64>,
    pub budget_exceeded: Option<bool>,
    pub stragglers: StragglerSummary,
    pub ranks: Vec<RankReport>,
    pub steps: Vec<StepReport>,
    /// The ranks x steps wait grid (binned), for the figure.
    #[serde(skip)]
    pub grid_wait_ns: Vec<Vec<f64>>,
    #[serde(skip)]
    pub grid_wait_j: Vec<Vec<f64>>,
    #[serde(skip)]
    pub grid_rank_labels: (String, String),
    #[serde(skip)]
    pub node_steps: Vec<(u32, u64, f64, f64)>,
}

pub struct Parts<'a> {
    pub dir: &'a Path,
    pub runs: &'a JobRuns,
    pub nodes: &'a [NodeSummary],
    pub alignment: Alignment,
    pub stragglers: &'a Stragglers,
    pub sums: Sums,
    pub energies: Vec<NodeEnergy>,
}

fn node_report(
    p: &Parts,
    i: usize,
    prices: &PriceArgs,
    warnings: &mut Vec<String>,
) -> Result<NodeReport, JobError> {
    let (n, s, e) = (&p.runs.nodes[i], &p.nodes[i], &p.energies[i]);
    let pue = prices.pue_for(&n.meta.labels);
    let grid = prices
        .intensity(&n.meta.labels)
        .map_err(eco2ai_trace::pricing::PriceError::from)?;
    let kwh = e.energy_j / J_PER_KWH;
    let status = format!("{:?}", n.meta.status).to_lowercase();
    node_warnings(p, i, &status, warnings);
    Ok(NodeReport {
        node: n.node.clone(),
        node_rank: n.node_rank,
        run_id: n.meta.run_id.clone(),
        dir: n.dir.display().to_string(),
        status,
        steps: s.steps,
        first_step: s.first_step,
        last_step: s.last_step,
        ranks: s.ranks.len(),
        gpus: e.gpus,
        energy_kwh: kwh,
        gpu_kwh: e.gpu_j / J_PER_KWH,
        cpu_kwh: e.cpu_j / J_PER_KWH,
        in_steps_kwh: e.in_steps_j / J_PER_KWH,
        cpu_estimated: e.cpu_estimated,
        gco2_per_kwh: grid.as_ref().map(|g| g.g_per_kwh),
        pue,
        co2_kg: grid.as_ref().map(|g| kwh * pue * g.g_per_kwh / 1e3),
        intensity_source: grid.map(|g| g.source),
        clock_offset_ns: p
            .alignment
            .clock_offsets_ns
            .get(&n.node)
            .copied()
            .unwrap_or(0),
        step_rows_dropped: s.dropped,
    })
}

/// What a reader should know about node `i`: no steps, cut off, stopped early, step
/// rows left out.
fn node_warnings(p: &Parts, i: usize, status: &str, warnings: &mut Vec<String>) {
    let (n, s) = (&p.runs.nodes[i], &p.nodes[i]);
    let last_job_step = p.stragglers.steps.last().map(|s| s.step);
    let last_step = s.last_step;
    if s.steps == 0 {
        warnings.push(format!(
            "node {} recorded no steps: its energy counts in the job's total, in no step",
            n.node
        ));
    } else if n.cut_off() {
        warnings.push(format!(
            "node {} was cut off (meta.json says {status}: its probe was killed or is still running); its last step is {}, the job's {}",
            n.node,
            last_step.unwrap_or(0),
            last_job_step.unwrap_or(0)
        ));
    } else if last_step < last_job_step {
        warnings.push(format!(
            "node {} stopped early: its last step is {}, the job's {}",
            n.node,
            last_step.unwrap_or(0),
            last_job_step.unwrap_or(0)
        ));
    }
    if s.dropped > 0 {
        warnings.push(format!(
            "node {}: {} step rows left out (outside the run, or a step number repeated by one process)",
            n.node, s.dropped
        ));
    }
}

/// GPU-hours of the job: each node's GPUs times its recorded span.
fn gpu_hours(p: &Parts, nodes: &[NodeReport]) -> f64 {
    p.runs
        .nodes
        .iter()
        .zip(nodes)
        .map(|(n, r)| {
            let end = n.meta.end_ns.unwrap_or(n.meta.start_ns);
            r.gpus as f64 * (end - n.meta.start_ns).max(0) as f64 / 3.6e12
        })
        .sum()
}

/// Every node's report, and the warnings: each node's, the nodes without a grid
/// intensity, the clock alignment's fallbacks.
fn node_reports(p: &Parts, prices: &PriceArgs) -> Result<(Vec<NodeReport>, Vec<String>), JobError> {
    let mut warnings = Vec::new();
    let nodes = (0..p.runs.nodes.len())
        .map(|i| node_report(p, i, prices, &mut warnings))
        .collect::<Result<Vec<_>, _>>()?;
    let no_grid: Vec<&str> = nodes
        .iter()
        .filter(|n| n.gco2_per_kwh.is_none())
        .map(|n| n.node.as_str())
        .collect();
    if !no_grid.is_empty() {
        warnings.push(format!(
            "no grid intensity for {} of {} nodes ({}): no country or region label; give --country, --region or --gco2-per-kwh",
            no_grid.len(),
            nodes.len(),
            list(&no_grid)
        ));
    }
    warnings.extend(p.alignment.fallbacks.iter().cloned());
    Ok((nodes, warnings))
}

pub fn build(p: Parts, prices: &PriceArgs) -> Result<JobReport, JobError> {
    let (nodes, warnings) = node_reports(&p, prices)?;
    let names: Vec<String> = p.runs.nodes.iter().map(|n| n.node.clone()).collect();
    let sum = |f: fn(&NodeReport) -> f64| nodes.iter().map(f).sum::<f64>();
    let energy_kwh = sum(|n| n.energy_kwh);
    let (samples, tokens) = (
        p.sums.step_samples.iter().sum::<u64>(),
        p.sums.step_tokens.iter().sum::<u64>(),
    );
    let per_kwh = |v: u64| (v > 0 && energy_kwh > 0.0).then(|| v as f64 / energy_kwh);
    let co2_kg = nodes.iter().map(|n| n.co2_kg).sum::<Option<f64>>();
    // Each node's energy at its own PUE (the flag's, else its recorded one).
    let facility_kwh = nodes.iter().map(|n| n.energy_kwh * n.pue).sum::<f64>();
    let cost_usd = match (prices.price_per_kwh, prices.gpu_hour_usd) {
        (None, None) => None,
        (e, g) => {
            Some(e.map_or(0.0, |r| r * facility_kwh) + g.map_or(0.0, |r| r * gpu_hours(&p, &nodes)))
        }
    };
    let s = p.stragglers;
    let ranks = rank_reports(&p, &names);
    let steps = step_reports(&p, &names);
    let stragglers = summary(s, &ranks, &steps);
    let budget = prices.carbon_budget_kg;
    Ok(JobReport {
        job_id: p.runs.job_id.clone(),
        dir: p.dir.display().to_string(),
        missing: p.runs.missing.clone(),
        warnings,
        clock_offsets_ns: p.alignment.clock_offsets_ns.clone(),
        clock_residual_ns: p.alignment.clock_residual_ns,
        clock: p.alignment.clone(),
        energy_kwh,
        gpu_kwh: sum(|n| n.gpu_kwh),
        cpu_kwh: sum(|n| n.cpu_kwh),
        in_steps_kwh: sum(|n| n.in_steps_kwh),
        samples,
        tokens,
        samples_per_kwh: per_kwh(samples),
        tokens_per_kwh: per_kwh(tokens),
        // The job's PUE: its facility energy over its IT energy.
        pue: if energy_kwh > 0.0 {
            facility_kwh / energy_kwh
        } else {
            prices.pue.unwrap_or(1.0)
        },
        co2_kg,
        cost_usd,
        carbon_budget_kg: budget,
        budget_exceeded: budget.zip(co2_kg).map(|(b, c)| c > b),
        stragglers,
        grid_rank_labels: grid_labels(&ranks),
        ranks,
        steps,
        nodes,
        grid_wait_ns: p.sums.grid_wait_ns,
        grid_wait_j: p.sums.grid_wait_j,
        node_steps: p.sums.node_steps,
    })
}

fn rank_reports(p: &Parts, names: &[String]) -> Vec<RankReport> {
    let s = p.stragglers;
    let mut straggler_steps = vec![0u64; s.ranks.len()];
    for st in &s.steps {
        if let Some(r) = st.straggler {
            straggler_steps[r] += 1;
        }
    }
    s.ranks
        .iter()
        .enumerate()
        .map(|(i, r)| RankReport {
            rank: r.rank,
            local_rank: r.local_rank,
            node: names[r.node].clone(),
            pid: r.pid,
            label: r.label(names),
            steps: p.sums.rank_steps[i],
            energy_j: p.sums.rank_j[i],
            wait_s: p.sums.rank_wait_ns[i] as f64 / 1e9,
            wait_j: p.sums.rank_wait_j[i],
            straggler_steps: straggler_steps[i],
        })
        .collect()
}

fn step_reports(p: &Parts, names: &[String]) -> Vec<StepReport> {
    let s = p.stragglers;
    s.steps
        .iter()
        .enumerate()
        .map(|(i, st)| StepReport {
            step: st.step,
            energy_j: p.sums.step_gpu_j[i] + p.sums.step_cpu_j[i],
            gpu_j: p.sums.step_gpu_j[i],
            cpu_j: p.sums.step_cpu_j[i],
            nodes: p.sums.step_nodes[i],
            ranks: st.ranks,
            samples: p.sums.step_samples[i],
            tokens: p.sums.step_tokens[i],
            straggler_rank: st.straggler.and_then(|r| s.ranks[r].rank),
            straggler: st.straggler.map(|r| s.ranks[r].label(names)),
            lag_ms: st.lag_ns as f64 / 1e6,
            wait_j: p.sums.step_wait_j[i],
        })
        .collect()
}

/// Names, the first eight of them and how many more.
fn list(names: &[&str]) -> String {
    match names.len() {
        n if n > 8 => format!("{}, and {} more", names[..8].join(", "), n - 8),
        _ => names.join(", "),
    }
}

fn grid_labels(ranks: &[RankReport]) -> (String, String) {
    let first = ranks.first().map_or(String::new(), |r| r.label.clone());
    let last = ranks.last().map_or(String::new(), |r| r.label.clone());
    (first, last)
}

fn summary(s: &Stragglers, ranks: &[RankReport], steps: &[StepReport]) -> StragglerSummary {
    let slowest = ranks
        .iter()
        .filter(|r| r.straggler_steps > 0)
        .max_by_key(|r| r.straggler_steps);
    let mut lags: Vec<f64> = steps
        .iter()
        .filter(|s| s.straggler.is_some())
        .map(|s| s.lag_ms)
        .collect();
    lags.sort_by(f64::total_cmp);
    let note = if s.identifiable {
        "arrivals are each rank's sync mark (eco2ai_step_sync), else its step end; the straggler of a step arrived last, its lag is the latest minus the median arrival".to_string()
    } else {
        "no rank marked sync (eco2ai_step_sync): arrivals are the step ends, which a synchronous step's collective makes coincide, so stragglers cannot be told apart and no wait energy is given".to_string()
    };
    StragglerSummary {
        identifiable: s.identifiable,
        note,
        slowest: slowest.map(|r| r.label.clone()),
        slowest_steps: slowest.map_or(0, |r| r.straggler_steps),
        median_lag_ms: lags.get(lags.len() / 2).copied(),
        wait_s: ranks.iter().map(|r| r.wait_s).sum(),
        wait_j: ranks.iter().map(|r| r.wait_j).sum(),
    }
}
