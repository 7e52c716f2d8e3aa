//! `live.json`: the running totals of a run being recorded, rewritten atomically at
//! every flush (about once a second), for whoever watches the run while it trains (the
//! Trainer callback's carbon budget, for one).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TraceError;

pub const LIVE_FILE: &str = "live.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Live {
    /// CLOCK_MONOTONIC of the last update (add meta.json's mono_to_unix_ns for Unix).
    pub ts_ns: i64,
    pub elapsed_s: f64,
    pub gpu_energy_j: f64,
    pub cpu_energy_j: f64,
    pub energy_j: f64,
    /// Energy per device and method, e.g. `gpu0` or `package-0 (powercap)`.
    pub devices_j: BTreeMap<String, f64>,
    pub steps: u64,
    pub last_step: Option<u64>,
    pub samples: u64,
    /// The recorder finished; no further updates.
    pub done: bool,
}

impl Live {
    pub fn write(&self, dir: &Path) -> Result<(), TraceError> {
        crate::meta::write_json_atomic(dir, LIVE_FILE, self)
    }

    pub fn read(dir: &Path) -> Result<Live, TraceError> {
        let path = dir.join(LIVE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| TraceError::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| TraceError::Meta {
            path,
            reason: e.to_string(),
        })
    }
}

/// CPU energy without double counting, from (domain, joules) pairs: packages (which
/// contain core and uncore) plus DRAM; psys alone only where there is no package
/// counter. Estimated `package` rows count as a package.
pub fn cpu_total_j<'a>(domains: impl IntoIterator<Item = (&'a str, f64)> + Clone) -> f64 {
    let is =
        |d: &str, p: &str| d == p || d.strip_prefix(p).is_some_and(|rest| rest.starts_with('-'));
    let has_package = domains.clone().into_iter().any(|(d, _)| is(d, "package"));
    domains
        .into_iter()
        .filter(|(d, _)| {
            if has_package {
                is(d, "package") || is(d, "dram")
            } else {
                is(d, "psys")
            }
        })
        .map(|(_, j)| j)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_total_does_not_double_count() {
        let all = [
            ("package-0", 100.0),
            ("core-0", 60.0),
            ("dram-0", 10.0),
            ("psys", 200.0),
            ("package-1", 1.0),
        ];
        assert_eq!(cpu_total_j(all), 111.0);
        assert_eq!(cpu_total_j([("psys", 200.0), ("packagex", 5.0)]), 200.0);
        assert_eq!(cpu_total_j([("package", 7.0)]), 7.0);
    }

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let l = Live {
            steps: 3,
            energy_j: 1.5,
            ..Live::default()
        };
        l.write(dir.path()).unwrap();
        assert_eq!(Live::read(dir.path()).unwrap(), l);
    }
}
