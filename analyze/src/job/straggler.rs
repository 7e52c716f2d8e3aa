//! Stragglers: after alignment, the straggler of step k is the rank with the latest
//! arrival (its sync mark, else its step end); its lag is the latest minus the median
//! arrival. A rank waits from its own arrival to the latest. Without any sync mark in the
//! job the arrivals are the step ends, which a synchronous step's collective makes
//! coincide: no straggler is named then.

use std::collections::BTreeMap;

use super::load::NodeSteps;

/// A rank of the job: which node and which slot of that node's steps.
#[derive(Debug, Clone)]
pub struct JobRank {
    pub node: usize,
    pub slot: usize,
    pub rank: Option<u32>,
    pub local_rank: Option<u32>,
    pub pid: u32,
}

/// One step of the job across its nodes.
#[derive(Debug, Clone)]
pub struct JobStep {
    pub step: u64,
    /// The latest arrival, on the reference node's clock (Unix ns).
    pub latest_unix_ns: i64,
    pub straggler: Option<usize>,
    pub lag_ns: i64,
    /// Ranks that recorded the step.
    pub ranks: usize,
}

#[derive(Debug, Clone)]
pub struct Stragglers {
    pub ranks: Vec<JobRank>,
    pub steps: Vec<JobStep>,
    /// Whether any rank marked sync: only then are stragglers told apart.
    pub identifiable: bool,
}

/// A node's shift from its CLOCK_MONOTONIC to the reference clock: `mono_to_unix_ns`
/// less its offset.
pub type Shift = i64;

pub fn find(nodes: &[NodeSteps], shifts: &[Shift]) -> Stragglers {
    let mut ranks: Vec<JobRank> = nodes
        .iter()
        .enumerate()
        .flat_map(|(n, s)| {
            s.ranks.iter().enumerate().map(move |(slot, r)| JobRank {
                node: n,
                slot,
                rank: r.info.map(|i| i.rank),
                local_rank: r.info.and_then(|i| i.local_rank),
                pid: r.pid,
            })
        })
        .collect();
    ranks.sort_by_key(|r| (r.rank.is_none(), r.rank, r.node, r.slot));
    let index: BTreeMap<(usize, usize), usize> = ranks
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.node, r.slot), i))
        .collect();
    let identifiable = nodes
        .iter()
        .any(|n| n.steps.values().flatten().flatten().any(|c| c.synced));
    let mut numbers: Vec<u64> = nodes.iter().flat_map(|n| n.steps.keys().copied()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    let mut steps = Vec::with_capacity(numbers.len());
    let mut arrivals: Vec<(i64, usize)> = Vec::new();
    for k in numbers {
        arrivals.clear();
        for (n, node) in nodes.iter().enumerate() {
            let Some(cells) = node.steps.get(&k) else {
                continue;
            };
            for (slot, c) in cells.iter().enumerate() {
                if let (Some(c), Some(&i)) = (c, index.get(&(n, slot))) {
                    arrivals.push((c.arrival_ns.saturating_add(shifts[n]), i));
                }
            }
        }
        let Some(&(latest, who)) = arrivals
            .iter()
            .max_by_key(|a| (a.0, std::cmp::Reverse(a.1)))
        else {
            continue;
        };
        let mut times: Vec<i64> = arrivals.iter().map(|a| a.0).collect();
        times.sort_unstable();
        let median = times[times.len() / 2];
        let named = identifiable && arrivals.len() > 1;
        steps.push(JobStep {
            step: k,
            latest_unix_ns: latest,
            straggler: named.then_some(who),
            lag_ns: if named { latest - median } else { 0 },
            ranks: arrivals.len(),
        });
    }
    Stragglers {
        ranks,
        steps,
        identifiable,
    }
}

impl JobRank {
    pub fn label(&self, node_names: &[String]) -> String {
        let node = node_names.get(self.node).map_or("?", String::as_str);
        match self.rank {
            Some(r) => format!("rank {r} ({node})"),
            None => format!("{node} pid {}", self.pid),
        }
    }
}
