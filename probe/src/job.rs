//! The probe's side of a multi-node job (`eco2ai_trace::job`): which rank each process
//! that sends steps runs as, read once from its environment (`/proc/PID/environ`) when
//! it sends its first step, and kept for `meta.json` (`job.ranks`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use eco2ai_trace::job::{JobInfo, RankInfo, rank_from_environ};
use eco2ai_trace::{Meta, RunIdError};

use crate::recorder::StepSource;
use crate::samplers::errors::{ErrorCounts, SensorError};

/// This node's job from `--job-id` or the environment (`eco2ai_trace::job::detect`): the
/// node is SLURMD_NODENAME, else this host's name (its UTS namespace's).
pub fn detect(flag: Option<&str>) -> Result<Option<JobInfo>, RunIdError> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = match host.trim() {
        "" => "localhost",
        h => h,
    };
    eco2ai_trace::job::detect(flag, host, |k| std::env::var(k).ok())
}

/// One line about the job for `info` and the start of `record`.
pub fn describe(job: Option<&JobInfo>) -> String {
    let Some(j) = job else {
        return "none (no --job-id, SLURM_JOB_ID or TORCHELASTIC_RUN_ID): runs go in OUT/<run id>"
            .into();
    };
    let of = |v: Option<u32>| v.map_or_else(|| "?".to_string(), |n| n.to_string());
    format!(
        "{} (from {}), node {} (node rank {} of {} nodes, world size {}): runs go in OUT/job={}/node={}/",
        j.job_id,
        j.id_source,
        j.node,
        of(j.node_rank),
        of(j.num_nodes),
        of(j.world_size),
        j.job_id,
        j.node
    )
}

/// `OUT/<run id>`, or `OUT/job=<id>/node=<node>/<run id>` for a node of a job.
pub fn run_dir(out: &Path, meta: &Meta) -> Result<PathBuf, RunIdError> {
    Ok(match &meta.job {
        Some(job) => {
            // Checked in the config already; again here, where they are joined to a path.
            eco2ai_trace::validate_run_id(&job.job_id)?;
            eco2ai_trace::validate_run_id(&job.node)?;
            eco2ai_trace::job::node_dir(out, job).join(&meta.run_id)
        }
        None => out.join(&meta.run_id),
    })
}

/// The book the pairing notes ranks in, when this is a job's recording.
pub fn steps_ranks(steps: &StepSource) -> Option<RankBook> {
    match steps {
        StepSource::Ebpf(p) => p.ranks.clone(),
        StepSource::Socket(s) => s.ranks.clone(),
    }
}

/// Largest environment block read (the kernel caps argv + envp near this by default;
/// anything beyond is not read, and a rank variable past it is missed, not an error).
pub const MAX_ENVIRON_BYTES: u64 = 256 * 1024;
/// Processes remembered: beyond this, new pids are not looked up (a flood of forged
/// pids on the socket must not grow the map without end).
pub const MAX_PIDS: usize = 4096;

/// The rank of each pid seen sending steps (None: looked up, no rank in its
/// environment or unreadable), shared between the pairing thread and the writer.
#[derive(Debug, Clone, Default)]
pub struct RankBook {
    seen: Arc<Mutex<BTreeMap<u32, Option<RankInfo>>>>,
    proc_root: Option<PathBuf>,
}

impl RankBook {
    /// A book that reads environments under `proc_root` instead of /proc (tests).
    pub fn with_proc_root(proc_root: &Path) -> RankBook {
        RankBook {
            proc_root: Some(proc_root.to_path_buf()),
            ..RankBook::default()
        }
    }

    /// Looks `pid` up the first time it is seen; later calls cost a map lookup.
    /// A failed read is counted (`job:environ`), never fatal.
    pub fn note(&self, pid: u32, errors: &ErrorCounts) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.contains_key(&pid) {
            return;
        }
        if seen.len() >= MAX_PIDS {
            errors.add_n("job:ranks_full", 1);
            return;
        }
        let root = self.proc_root.as_deref().unwrap_or(Path::new("/proc"));
        let rank = match read_environ(&root.join(pid.to_string()).join("environ")) {
            Ok(env) => rank_from_environ(&env),
            Err(e) => {
                errors.add("job:environ", &SensorError::from_io(&e, "environ"));
                None
            }
        };
        seen.insert(pid, rank);
    }

    /// pid -> rank of every process whose environment named one.
    pub fn ranks(&self) -> BTreeMap<u32, RankInfo> {
        let Ok(seen) = self.seen.lock() else {
            return BTreeMap::new();
        };
        seen.iter()
            .filter_map(|(pid, r)| r.map(|r| (*pid, r)))
            .collect()
    }
}

/// A process's environment block, at most `MAX_ENVIRON_BYTES`.
fn read_environ(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_ENVIRON_BYTES)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_read_once_per_pid_and_failures_counted() {
        let tmp = tempfile::tempdir().unwrap();
        for (pid, env) in [
            (10u32, &b"A=1\0RANK=3\0LOCAL_RANK=1\0"[..]),
            (11, b"PATH=/bin\0"),
        ] {
            let dir = tmp.path().join(pid.to_string());
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("environ"), env).unwrap();
        }
        let book = RankBook::with_proc_root(tmp.path());
        let errors = ErrorCounts::default();
        for pid in [10, 11, 12, 10, 12] {
            book.note(pid, &errors);
        }
        let ranks = book.ranks();
        assert_eq!(ranks.len(), 1);
        assert_eq!(
            ranks[&10],
            RankInfo {
                rank: 3,
                local_rank: Some(1)
            }
        );
        // pid 12 has no /proc entry: counted once, not looked up again.
        let n: u64 = errors
            .snapshot()
            .iter()
            .filter(|(k, _)| k.starts_with("job:environ"))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(n, 1);
        // The rank change of a pid after its first step is not followed (read once).
        std::fs::write(tmp.path().join("10/environ"), b"RANK=9\0").unwrap();
        book.note(10, &errors);
        assert_eq!(book.ranks()[&10].rank, 3);
    }

    #[test]
    fn a_huge_environment_is_read_only_to_its_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("7");
        std::fs::create_dir(&dir).unwrap();
        let mut env = vec![b'x'; MAX_ENVIRON_BYTES as usize + 10];
        env.extend_from_slice(b"\0RANK=1\0");
        std::fs::write(dir.join("environ"), env).unwrap();
        let book = RankBook::with_proc_root(tmp.path());
        book.note(7, &ErrorCounts::default());
        assert!(book.ranks().is_empty(), "RANK past the cap is not read");
    }
}
