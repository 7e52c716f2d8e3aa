//! Stragglers: after alignment, the straggler of step k is the rank with the latest
//! arrival (its sync mark, else its step end); its lag is the latest minus the median
//! of the other ranks' arrivals (with two ranks, the other one's: a median over all
//! arrivals would be the straggler's own there, and every lag 0). A rank waits from its own arrival to the latest. Without any sync mark in the
//! job the arrivals are the step ends, which a synchronous step's collective makes
//! coincide: no straggler is named then.

use std::collections::BTreeMap;

use super::load::{NodeSteps, NodeSummary};

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

/// The arrivals of one step so far, on the reference clock.
#[derive(Debug, Clone, Default)]
struct StepAcc {
    times: Vec<i64>,
    latest: i64,
    who: usize,
}

/// Stragglers gathered one node at a time, so that only the arrivals (8 bytes a
/// rank-step), never every node's step rows, are held at once.
pub struct Finder {
    ranks: Vec<JobRank>,
    index: BTreeMap<(usize, usize), usize>,
    identifiable: bool,
    by_step: BTreeMap<u64, StepAcc>,
}

impl Finder {
    pub fn new(nodes: &[NodeSummary]) -> Finder {
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
        let index = ranks
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.node, r.slot), i))
            .collect();
        Finder {
            ranks,
            index,
            identifiable: nodes.iter().any(|n| n.synced),
            by_step: BTreeMap::new(),
        }
    }

    /// Adds node `n`'s arrivals, moved to the reference clock by `shift`.
    pub fn add(&mut self, n: usize, node: &NodeSteps, shift: Shift) {
        for (k, cells) in &node.steps {
            for (slot, c) in cells.iter().enumerate() {
                let (Some(c), Some(&i)) = (c, self.index.get(&(n, slot))) else {
                    continue;
                };
                let t = c.arrival_ns.saturating_add(shift);
                let acc = self.by_step.entry(*k).or_insert_with(|| StepAcc {
                    latest: i64::MIN,
                    ..StepAcc::default()
                });
                acc.times.push(t);
                // Ties go to the lower job rank, whatever the order nodes come in.
                if t > acc.latest || (t == acc.latest && i < acc.who) {
                    (acc.latest, acc.who) = (t, i);
                }
            }
        }
    }

    pub fn finish(self) -> Stragglers {
        let identifiable = self.identifiable;
        let steps = self
            .by_step
            .into_iter()
            .filter(|(_, a)| !a.times.is_empty())
            .map(|(k, mut a)| {
                a.times.sort_unstable();
                let named = identifiable && a.times.len() > 1;
                let others = &a.times[..a.times.len() - 1];
                JobStep {
                    step: k,
                    latest_unix_ns: a.latest,
                    straggler: named.then_some(a.who),
                    lag_ns: if named {
                        a.latest.saturating_sub(median(others))
                    } else {
                        0
                    },
                    ranks: a.times.len(),
                }
            })
            .collect();
        Stragglers {
            ranks: self.ranks,
            steps,
            identifiable,
        }
    }
}

/// The median of sorted, non-empty `t` (the mean of the middle two for an even count).
fn median(t: &[i64]) -> i64 {
    let m = t.len() / 2;
    if t.len() % 2 == 1 {
        t[m]
    } else {
        // Halved first: two arrivals near i64::MAX must not overflow.
        t[m - 1] / 2 + t[m] / 2 + (t[m - 1] % 2 + t[m] % 2) / 2
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_median_of_the_others() {
        assert_eq!(super::median(&[5]), 5);
        assert_eq!(super::median(&[1, 3]), 2);
        assert_eq!(super::median(&[1, 3, 10]), 3);
        assert_eq!(super::median(&[i64::MAX - 1, i64::MAX - 1]), i64::MAX - 1);
    }
}
