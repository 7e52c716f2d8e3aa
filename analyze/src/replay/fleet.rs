//! Several runs replayed together (one per node or per job): label cardinality bounded by
//! a maximum number of projects, and runs whose series would collide refused.

use std::collections::BTreeSet;
use std::path::PathBuf;

use eco2ai_trace::TraceError;

use super::{Prices, Replay};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("reading run {}", .0.display())]
    Read(PathBuf, #[source] TraceError),
    #[error(
        "runs {} and {} overlap in time on host '{host}' with project '{project}': their series would collide; replay them separately",
        a.display(),
        b.display()
    )]
    Overlap {
        a: PathBuf,
        b: PathBuf,
        host: String,
        project: String,
    },
}

/// A run left out, and why.
#[derive(Debug)]
pub struct Skipped {
    pub dir: PathBuf,
    pub reason: String,
}

/// Opens the runs, ordered by start; runs of projects beyond the first `max_projects`
/// (in order of start) are skipped, each with its reason, to bound label cardinality.
pub fn open(
    dirs: &[PathBuf],
    prices: &Prices,
    max_projects: usize,
) -> Result<(Vec<Replay>, Vec<Skipped>), FleetError> {
    let mut runs = Vec::with_capacity(dirs.len());
    for d in dirs {
        runs.push(Replay::open(d, prices).map_err(|e| FleetError::Read(d.clone(), e))?);
    }
    runs.sort_by_key(Replay::start_unix_ns);
    let mut projects = BTreeSet::new();
    let (mut kept, mut skipped) = (Vec::new(), Vec::new());
    for r in runs {
        let p = r.project().to_string();
        if !projects.contains(&p) && projects.len() >= max_projects {
            skipped.push(Skipped {
                dir: r.dir().to_path_buf(),
                reason: format!("project '{p}' is over --max-projects {max_projects}"),
            });
            continue;
        }
        projects.insert(p);
        kept.push(r);
    }
    check_overlaps(&kept)?;
    Ok((kept, skipped))
}

/// Two runs of one project on one host at the same time would write the same series.
fn check_overlaps(runs: &[Replay]) -> Result<(), FleetError> {
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            if b.start_unix_ns() > a.end_unix_ns() {
                continue;
            }
            if a.host() == b.host() && a.project() == b.project() {
                return Err(FleetError::Overlap {
                    a: a.dir().to_path_buf(),
                    b: b.dir().to_path_buf(),
                    host: a.host().to_string(),
                    project: a.project().to_string(),
                });
            }
        }
    }
    Ok(())
}
