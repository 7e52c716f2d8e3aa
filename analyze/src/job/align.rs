//! Node clocks onto one axis. Each node stamps on its own CLOCK_MONOTONIC and converts to
//! Unix time with its own wall clock, so nodes disagree by their NTP error. Every rank
//! leaves a synchronous step's collective at nearly the same instant, so the step ends
//! of two nodes, in Unix time, differ by their clocks' offset plus a little jitter: the
//! median over common steps estimates the offset, and what is left after it is the
//! residual. Too few common steps, or an offset or residual out of bounds (steps that
//! are not synchronous), fall back to the plain wall clocks for that node.

use std::collections::BTreeMap;

use serde::Serialize;

/// Fewer common steps than this: the wall clock is kept.
pub const MIN_COMMON_STEPS: usize = 3;
/// An estimated offset larger than this is not an NTP error: kept at the wall clock.
pub const MAX_OFFSET_NS: i64 = 10_000_000_000;
/// Step ends that scatter more than this after alignment are not a synchronous
/// collective's: the estimate is not trusted.
pub const MAX_RESIDUAL_NS: i64 = 50_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct Alignment {
    /// `step_ends` when every node was aligned on them, `wall_clock` when none was,
    /// `mixed` when some fell back.
    pub method: &'static str,
    pub reference_node: String,
    /// Subtract from a node's Unix time (`ts_ns + mono_to_unix_ns`) to put it on the
    /// reference node's clock.
    pub clock_offsets_ns: BTreeMap<String, i64>,
    /// The largest, over nodes, median disagreement of step ends left after alignment.
    pub clock_residual_ns: i64,
    /// Nodes kept at their wall clock, and why.
    pub fallbacks: Vec<String>,
}

fn median(v: &mut [i64]) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        v[m - 1] + (v[m] - v[m - 1]) / 2
    })
}

/// A node's clock offset from the reference (`base`): the median difference of their
/// common steps' ends, and the median scatter left after it; why not, when there are
/// too few common steps or the offset or scatter is out of bounds.
fn offset(
    e: &BTreeMap<u64, i64>,
    base: &BTreeMap<u64, i64>,
    reference: &str,
) -> Result<(i64, i64), String> {
    let mut d: Vec<i64> = e
        .iter()
        .filter_map(|(k, t)| base.get(k).map(|b| t - b))
        .collect();
    let estimate = median(&mut d.clone()).filter(|_| d.len() >= MIN_COMMON_STEPS);
    let mut dev: Vec<i64> = estimate.map_or(Vec::new(), |o| {
        d.iter_mut().map(|x| (*x - o).abs()).collect()
    });
    let residual = median(&mut dev).unwrap_or(0);
    match estimate {
        None => Err(format!("{} steps in common with {reference}", d.len())),
        Some(o) if o.abs() > MAX_OFFSET_NS => Err(format!("offset {o} ns out of bounds")),
        Some(_) if residual > MAX_RESIDUAL_NS => Err(format!(
            "step ends scatter by {residual} ns after alignment (steps not synchronous?)"
        )),
        Some(o) => Ok((o, residual)),
    }
}

/// Offsets from each node's step ends in Unix ns (`ends[n]`: step -> its ranks' median
/// end). The reference is the first node with steps.
pub fn align(names: &[String], ends: &[BTreeMap<u64, i64>]) -> Alignment {
    let reference = ends.iter().position(|e| !e.is_empty()).unwrap_or(0);
    let mut a = Alignment {
        method: "step_ends",
        reference_node: names.get(reference).cloned().unwrap_or_default(),
        clock_offsets_ns: BTreeMap::new(),
        clock_residual_ns: 0,
        fallbacks: Vec::new(),
    };
    let empty = BTreeMap::new();
    let base = ends.get(reference).unwrap_or(&empty);
    let mut fell_back = 0;
    for (n, (name, e)) in names.iter().zip(ends).enumerate() {
        if n == reference {
            a.clock_offsets_ns.insert(name.clone(), 0);
            continue;
        }
        let estimate = offset(e, base, &a.reference_node);
        match estimate {
            Ok((o, residual)) => {
                a.clock_offsets_ns.insert(name.clone(), o);
                a.clock_residual_ns = a.clock_residual_ns.max(residual);
            }
            Err(why) => {
                fell_back += 1;
                a.clock_offsets_ns.insert(name.clone(), 0);
                a.fallbacks.push(format!("{name}: wall clock kept ({why})"));
            }
        }
    }
    let others = names.len().saturating_sub(1);
    if others > 0 && fell_back == others {
        a.method = "wall_clock";
    } else if fell_back > 0 {
        a.method = "mixed";
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_offset_is_recovered_and_a_lone_node_falls_back() {
        let base: BTreeMap<u64, i64> = (0..50).map(|k| (k, k as i64 * 1_000_000_000)).collect();
        let off: BTreeMap<u64, i64> = base
            .iter()
            .map(|(k, t)| (*k, t + 37_000_000 + (*k as i64 % 3) * 10_000))
            .collect();
        let few: BTreeMap<u64, i64> = base.iter().take(2).map(|(k, t)| (*k, *t)).collect();
        let names = ["a".to_string(), "b".to_string(), "c".to_string()];
        let a = align(&names, &[base, off, few]);
        assert_eq!(a.clock_offsets_ns["b"], 37_010_000);
        assert_eq!(a.clock_offsets_ns["c"], 0);
        assert_eq!(a.method, "mixed");
        assert!(a.clock_residual_ns <= 10_000, "{}", a.clock_residual_ns);
    }
}
