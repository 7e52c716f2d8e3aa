//! Finding a job's node runs (`DIR/node=<name>/<run_id>/`), refusing what cannot be one
//! job (runs of two jobs, two runs claiming one node), and naming what is missing or cut
//! off; then each node's steps, by rank (the light first pass: no power rows read).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use eco2ai_trace::job::RankInfo;
use eco2ai_trace::{Meta, Run, RunStatus, StepRow, Table};

use super::JobError;

/// One node's run of the job.
#[derive(Debug, Clone)]
pub struct NodeRun {
    pub node: String,
    pub node_rank: Option<u32>,
    pub dir: PathBuf,
    pub meta: Meta,
}

impl NodeRun {
    /// Still `recording` (the probe was killed) or recovered as `truncated`.
    pub fn cut_off(&self) -> bool {
        self.meta.status != RunStatus::Complete
    }
}

/// The job's runs, sorted by node rank then name, and what the metadata says is absent.
#[derive(Debug, Clone)]
pub struct JobRuns {
    pub job_id: String,
    pub nodes: Vec<NodeRun>,
    /// Nodes the job's metadata counts but no run was found for, in words.
    pub missing: Vec<String>,
}

/// Directories under `dir` whose name starts with `prefix`, sorted.
fn children(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, JobError> {
    let io = |e| JobError::Io(dir.to_path_buf(), e);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && !name.starts_with('.') && entry.path().is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Every node run under `dir` (`OUT/job=<id>`), checked to be one job.
pub fn find(dir: &Path) -> Result<JobRuns, JobError> {
    let node_dirs = children(dir, "node=")?;
    if node_dirs.is_empty() {
        return Err(JobError::NoNodes(dir.to_path_buf()));
    }
    let dir_job = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("job="))
        .map(str::to_string);
    let mut nodes: Vec<NodeRun> = Vec::new();
    let mut empty = Vec::new();
    for nd in node_dirs {
        let before = nodes.len();
        for run_dir in children(&nd, "")? {
            if !run_dir.join("meta.json").exists() {
                continue;
            }
            let meta = Run::open(&run_dir)
                .map_err(|e| JobError::Trace(run_dir.clone(), e))?
                .meta()
                .clone();
            let job = meta
                .job
                .clone()
                .ok_or_else(|| JobError::NotAJobRun(run_dir.clone()))?;
            nodes.push(NodeRun {
                node: job.node.clone(),
                node_rank: job.node_rank,
                dir: run_dir,
                meta,
            });
        }
        if nodes.len() == before {
            empty.push(format!("{} holds no run (no meta.json)", nd.display()));
        }
    }
    let job_id = one_job(dir, dir_job, &nodes)?;
    let mut by_node: BTreeMap<&str, Vec<&Path>> = BTreeMap::new();
    for n in &nodes {
        by_node.entry(&n.node).or_default().push(&n.dir);
    }
    if let Some((node, dirs)) = by_node.iter().find(|(_, d)| d.len() > 1) {
        return Err(JobError::DuplicateNode {
            node: node.to_string(),
            dirs: dirs.iter().map(|d| d.display().to_string()).collect(),
        });
    }
    nodes.sort_by(|a, b| (a.node_rank, &a.node).cmp(&(b.node_rank, &b.node)));
    let mut missing = missing(&nodes);
    missing.extend(empty);
    Ok(JobRuns {
        job_id,
        nodes,
        missing,
    })
}

/// The one job id of every run (and of the directory's `job=<id>` name).
fn one_job(dir: &Path, dir_job: Option<String>, nodes: &[NodeRun]) -> Result<String, JobError> {
    let Some(first) = nodes.first() else {
        return Err(JobError::NoNodes(dir.to_path_buf()));
    };
    let want = dir_job.unwrap_or_else(|| job_of(first).to_string());
    let others: Vec<String> = nodes
        .iter()
        .filter(|n| job_of(n) != want)
        .map(|n| format!("{} is job {}", n.dir.display(), job_of(n)))
        .collect();
    if !others.is_empty() {
        return Err(JobError::MixedJobs {
            job_id: want,
            others,
        });
    }
    Ok(want)
}

fn job_of(n: &NodeRun) -> &str {
    n.meta.job.as_ref().map_or("", |j| j.job_id.as_str())
}

/// Nodes and ranks the metadata counts (num_nodes, world_size) that no run stands for.
fn missing(nodes: &[NodeRun]) -> Vec<String> {
    let mut out = Vec::new();
    let jobs = || nodes.iter().filter_map(|n| n.meta.job.as_ref());
    if let Some(num) = jobs().filter_map(|j| j.num_nodes).max() {
        let seen: BTreeSet<u32> = nodes.iter().filter_map(|n| n.node_rank).collect();
        let absent: Vec<String> = (0..num)
            .filter(|r| !seen.contains(r))
            .map(|r| r.to_string())
            .collect();
        if nodes.len() < num as usize || !absent.is_empty() {
            out.push(format!(
                "{} of {num} nodes found; no run for node rank {}",
                nodes.len(),
                if absent.is_empty() {
                    "(unknown)".into()
                } else {
                    absent.join(", ")
                }
            ));
        }
    }
    if let Some(world) = jobs().filter_map(|j| j.world_size).max() {
        let seen: BTreeSet<u32> = jobs()
            .flat_map(|j| j.ranks.values().map(|r| r.rank))
            .collect();
        let absent: Vec<String> = (0..world)
            .filter(|r| !seen.contains(r))
            .map(|r| r.to_string())
            .collect();
        // Ranks are recorded when they send steps: a run with none recorded says nothing.
        if !seen.is_empty() && !absent.is_empty() {
            out.push(format!(
                "{} of {world} ranks recorded; missing rank {}",
                seen.len(),
                absent.join(", ")
            ));
        }
    }
    out
}

/// One rank's step on its node's clock (CLOCK_MONOTONIC ns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankStep {
    pub begin_ns: i64,
    pub end_ns: i64,
    /// Where the rank's compute ended: its sync mark, else the step's end.
    pub arrival_ns: i64,
    pub synced: bool,
}

/// A rank of a node: its process, and its ranks when the node recorded them.
#[derive(Debug, Clone, PartialEq)]
pub struct RankId {
    pub pid: u32,
    pub info: Option<RankInfo>,
}

/// A node's steps: for each step number, one slot per rank.
#[derive(Debug, Clone, Default)]
pub struct NodeSteps {
    pub ranks: Vec<RankId>,
    pub steps: BTreeMap<u64, Vec<Option<RankStep>>>,
    /// Samples and tokens of each step, summed over the node's ranks (each rank counts
    /// its own batch).
    pub totals: BTreeMap<u64, (u64, u64)>,
    /// Step rows left out: outside the run's span, or a step number seen twice on a pid.
    pub dropped: usize,
}

/// What the report keeps of a node's steps once they are read.
#[derive(Debug, Clone, Default)]
pub struct NodeSummary {
    pub ranks: Vec<RankId>,
    pub steps: usize,
    pub first_step: Option<u64>,
    pub last_step: Option<u64>,
    pub dropped: usize,
    /// Whether any rank of the node marked sync.
    pub synced: bool,
}

impl NodeSteps {
    pub fn summary(&self) -> NodeSummary {
        NodeSummary {
            ranks: self.ranks.clone(),
            steps: self.steps.len(),
            first_step: self.steps.keys().next().copied(),
            last_step: self.steps.keys().next_back().copied(),
            dropped: self.dropped,
            synced: self.steps.values().flatten().flatten().any(|c| c.synced),
        }
    }
}

/// How far outside the run's span a step row may lie (as the per-run report allows).
const STEP_SLACK_NS: i64 = 60_000_000_000;

/// The processes that sent `rows`, with their rank from meta.json where it has one,
/// ordered by local rank, then rank, then pid.
fn rank_ids(m: &Meta, rows: &[StepRow]) -> Vec<RankId> {
    let pids: BTreeSet<u32> = rows.iter().map(|r| r.pid).collect();
    let known = m.job.as_ref().map(|j| &j.ranks);
    let mut ranks: Vec<RankId> = pids
        .iter()
        .map(|&pid| RankId {
            pid,
            info: known.and_then(|k| k.get(&pid)).copied(),
        })
        .collect();
    ranks.sort_by_key(|r| (r.info.map(|i| i.local_rank), r.info.map(|i| i.rank), r.pid));
    ranks
}

/// The node's steps by rank: every process that sent steps is a rank (meta.job.ranks
/// names its global and local rank when the probe read them).
pub fn node_steps(n: &NodeRun) -> Result<NodeSteps, JobError> {
    let run = Run::open(&n.dir).map_err(|e| JobError::Trace(n.dir.clone(), e))?;
    let data = run
        .read_table(Table::Steps)
        .map_err(|e| JobError::Trace(n.dir.clone(), e))?;
    let m = &n.meta;
    let lo = m.start_ns.saturating_sub(STEP_SLACK_NS);
    let hi = m
        .end_ns
        .map_or(i64::MAX / 4, |e| e.saturating_add(STEP_SLACK_NS));
    let mut rows = Vec::new();
    let mut out = NodeSteps::default();
    for b in &data.batches {
        for r in eco2ai_trace::from_batch::step_rows(b) {
            if r.end_ns < r.begin_ns || r.begin_ns < lo || r.end_ns > hi {
                out.dropped += 1;
                continue;
            }
            rows.push(r);
        }
    }
    out.ranks = rank_ids(m, &rows);
    let slot: BTreeMap<u32, usize> = out
        .ranks
        .iter()
        .enumerate()
        .map(|(i, r)| (r.pid, i))
        .collect();
    let width = out.ranks.len();
    for r in rows {
        let cells = out.steps.entry(r.step).or_insert_with(|| vec![None; width]);
        let cell = &mut cells[slot[&r.pid]];
        if cell.is_some() {
            out.dropped += 1;
            continue;
        }
        // A sync mark outside its step is not this step's: the step's end stands in.
        let sync = r.sync_ns.filter(|s| (r.begin_ns..=r.end_ns).contains(s));
        *cell = Some(RankStep {
            begin_ns: r.begin_ns,
            end_ns: r.end_ns,
            arrival_ns: sync.unwrap_or(r.end_ns),
            synced: sync.is_some(),
        });
        // Samples and tokens count training steps only (an eval step's are not trained on).
        let train = crate::energy::phases::is_train(&r);
        let t = out.totals.entry(r.step).or_default();
        t.0 = t.0.saturating_add(r.samples.filter(|_| train).unwrap_or(0));
        t.1 = t.1.saturating_add(r.tokens.filter(|_| train).unwrap_or(0));
    }
    Ok(out)
}
