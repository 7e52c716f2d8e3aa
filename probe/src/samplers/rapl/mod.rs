//! CPU energy counters (RAPL): the perf power PMU first, powercap sysfs as fallback.
//! At start every candidate is read twice across a short window; a counter that does
//! not move is not used (these VMs expose an `energy-psys` that always reads 0).

pub mod fake_tree;
pub mod perf;
pub mod powercap;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eco2ai_trace::{CpuRow, SensorStatus};

use super::counter::{CounterDiff, Jump};
use super::errors::{ErrorCounts, SensorError};
use super::tick::Sampler;
use crate::batcher::Batcher;

#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    /// `package-0`, `core-0`, `uncore-0`, `dram-0`, `psys`.
    pub name: Arc<str>,
    /// `perf` or `powercap`.
    pub source: &'static str,
    pub max_range_uj: Option<u64>,
}

pub trait EnergyReader: Send {
    fn domain(&self) -> &Domain;
    /// The raw counter in microjoules (may wrap at `max_range_uj`).
    fn read_uj(&mut self) -> Result<u64, SensorError>;
}

#[derive(Debug, Clone)]
pub struct RaplConfig {
    pub powercap_root: PathBuf,
    pub perf_pmu: PathBuf,
    /// How long to watch the counters before trusting them.
    pub check_window: Duration,
}

impl Default for RaplConfig {
    fn default() -> Self {
        RaplConfig {
            powercap_root: PathBuf::from(powercap::DEFAULT_ROOT),
            perf_pmu: PathBuf::from(perf::DEFAULT_PMU),
            check_window: Duration::from_millis(100),
        }
    }
}

/// Finds, checks and chooses the RAPL counters. Returns the chosen readers and a
/// status line for every candidate.
pub fn discover(cfg: &RaplConfig) -> (Vec<Box<dyn EnergyReader>>, Vec<SensorStatus>) {
    let (mut candidates, mut status) = perf::discover(&cfg.perf_pmu);
    let (pc, pc_status) = powercap::discover(&cfg.powercap_root);
    candidates.extend(pc);
    status.extend(pc_status);

    let before: Vec<Option<u64>> = candidates.iter_mut().map(|r| r.read_uj().ok()).collect();
    std::thread::sleep(cfg.check_window);
    let after: Vec<Option<u64>> = candidates.iter_mut().map(|r| r.read_uj().ok()).collect();

    // Energy each source saw per domain, for the cross-check.
    let mut seen: BTreeMap<Arc<str>, Vec<(&'static str, u64)>> = BTreeMap::new();
    let mut chosen: Vec<Box<dyn EnergyReader>> = Vec::new();
    for ((reader, b), a) in candidates.into_iter().zip(before).zip(after) {
        let d = reader.domain().clone();
        let (used, note) = match (b, a) {
            (Some(b), Some(a)) if a != b => {
                seen.entry(d.name.clone())
                    .or_default()
                    .push((d.source, a.wrapping_sub(b)));
                let taken = chosen.iter().any(|c| c.domain().name == d.name);
                (
                    !taken,
                    if taken {
                        "moving; the perf counter of this domain is used".into()
                    } else {
                        String::new()
                    },
                )
            }
            (Some(_), Some(_)) => (
                false,
                format!("counter not moving over {:?}", cfg.check_window),
            ),
            _ => (false, "read failed".into()),
        };
        status.push(SensorStatus {
            kind: d.source.into(),
            name: d.name.to_string(),
            used,
            note,
        });
        if used {
            chosen.push(reader);
        }
    }
    for (name, by_source) in seen {
        if let [(s1, e1), (s2, e2)] = by_source[..] {
            let diff_pct = 100.0 * (e1 as f64 - e2 as f64).abs() / (e1.max(e2) as f64);
            status.push(SensorStatus {
                kind: "rapl-check".into(),
                name: name.to_string(),
                used: diff_pct < 5.0,
                note: format!("{s1} and {s2} differ by {diff_pct:.1}% over the start-up window"),
            });
        }
    }
    (chosen, status)
}

struct Counter {
    reader: Box<dyn EnergyReader>,
    diff: CounterDiff,
    alive: bool,
}

/// Polls the chosen counters; each poll yields one row per live domain.
pub struct RaplSampler {
    counters: Vec<Counter>,
    period_ns: i64,
    errors: ErrorCounts,
}

impl RaplSampler {
    /// Reads `readers` every `period_ns` when spawned.
    pub fn new(
        readers: Vec<Box<dyn EnergyReader>>,
        period_ns: i64,
        errors: ErrorCounts,
    ) -> RaplSampler {
        let counters = readers
            .into_iter()
            .map(|reader| {
                let diff = CounterDiff::new(reader.domain().max_range_uj);
                Counter {
                    reader,
                    diff,
                    alive: true,
                }
            })
            .collect();
        RaplSampler {
            counters,
            period_ns,
            errors,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counters.iter().all(|c| !c.alive)
    }

    /// One row per live domain, stamped `ts_ns`.
    pub fn read(&mut self, ts_ns: i64, out: &mut Vec<CpuRow>) {
        for c in self.counters.iter_mut().filter(|c| c.alive) {
            let read = c.reader.read_uj();
            let d = c.reader.domain();
            match read {
                Ok(raw) => {
                    let u = c.diff.update(raw);
                    if u.jump == Jump::Reset {
                        self.errors.add(
                            &format!("{}:{}", d.source, d.name),
                            &SensorError::Transient("counter reset".into()),
                        );
                    }
                    out.push(CpuRow {
                        ts_ns,
                        domain: d.name.clone(),
                        source: d.source,
                        energy_uj: Some(u.total),
                        energy_changed: Some(u.changed),
                        util_pct: None,
                    });
                }
                Err(e) => {
                    self.errors.add(&format!("{}:{}", d.source, d.name), &e);
                    if matches!(e, SensorError::Gone(_)) {
                        c.alive = false;
                    }
                }
            }
        }
    }
}

impl Sampler for RaplSampler {
    fn name(&self) -> &'static str {
        "rapl"
    }
    fn period_ns(&self) -> i64 {
        self.period_ns
    }
    fn poll(&mut self, now_ns: i64, b: &mut Batcher) {
        self.read(now_ns, &mut b.cpu)
    }
}

#[cfg(test)]
mod tests;
