//! The multi-node job a run belongs to: one run per node, laid out
//! `OUT/job=<job_id>/node=<node>/<run_id>/` (hive partitions, so DuckDB, Spark or Trino
//! read a fleet of jobs as it is). The identity comes from `--job-id`, else Slurm's
//! `SLURM_JOB_ID`, else torchrun's `TORCHELASTIC_RUN_ID`; a run without one is laid out
//! `OUT/<run_id>/` as before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::run_id::{RunIdError, validate_run_id};

/// The global and local rank of one recorded process (from its RANK / LOCAL_RANK, or
/// Slurm's SLURM_PROCID / SLURM_LOCALID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankInfo {
    pub rank: u32,
    pub local_rank: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JobInfo {
    /// The job's id, a safe path component (checked like a run id).
    pub job_id: String,
    /// Where the id came from: `flag`, `slurm` or `torchelastic`.
    pub id_source: String,
    /// The node's name in the job (Slurm's SLURMD_NODENAME, else the host name).
    pub node: String,
    /// The node's index in the job (SLURM_NODEID, else torchrun's GROUP_RANK/NODE_RANK).
    pub node_rank: Option<u32>,
    /// The job's number of nodes (SLURM_JOB_NUM_NODES / SLURM_NNODES), when known.
    pub num_nodes: Option<u32>,
    /// The job's world size (WORLD_SIZE, else SLURM_NTASKS), when known.
    pub world_size: Option<u32>,
    /// The ranks seen on this node, by pid of the process that sent steps.
    pub ranks: BTreeMap<u32, RankInfo>,
}

/// The job identity of a node: an explicit id wins, then Slurm's, then torchrun's.
/// `env` looks up an environment variable (a closure so that tests need no process env).
pub fn detect(
    flag: Option<&str>,
    host: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<JobInfo>, RunIdError> {
    let (job_id, source) = match (flag, env("SLURM_JOB_ID"), env("TORCHELASTIC_RUN_ID")) {
        (Some(f), _, _) => (f.to_string(), "flag"),
        (None, Some(s), _) if !s.is_empty() => (s, "slurm"),
        // torchrun's default run id without a rendezvous is "none": not a job identity.
        (None, _, Some(t)) if !t.is_empty() && t != "none" => (t, "torchelastic"),
        _ => return Ok(None),
    };
    validate_run_id(&job_id)?;
    let num = |k: &str| env(k).and_then(|v| v.trim().parse::<u32>().ok());
    let node = env("SLURMD_NODENAME")
        .filter(|n| validate_run_id(n).is_ok())
        .unwrap_or_else(|| host.to_string());
    validate_run_id(&node)?;
    Ok(Some(JobInfo {
        job_id,
        id_source: source.into(),
        node,
        node_rank: num("SLURM_NODEID")
            .or_else(|| num("GROUP_RANK"))
            .or_else(|| num("NODE_RANK")),
        num_nodes: num("SLURM_JOB_NUM_NODES").or_else(|| num("SLURM_NNODES")),
        world_size: num("WORLD_SIZE").or_else(|| num("SLURM_NTASKS")),
        ranks: BTreeMap::new(),
    }))
}

/// The rank a process runs as, from its environment (`/proc/PID/environ` as NUL-separated
/// `KEY=VALUE` entries): torch.distributed's RANK/LOCAL_RANK, else Slurm's task ids.
pub fn rank_from_environ(environ: &[u8]) -> Option<RankInfo> {
    let mut vars = BTreeMap::new();
    for entry in environ.split(|b| *b == 0) {
        let Ok(text) = std::str::from_utf8(entry) else {
            continue;
        };
        if let Some((k, v)) = text.split_once('=')
            && matches!(k, "RANK" | "LOCAL_RANK" | "SLURM_PROCID" | "SLURM_LOCALID")
        {
            vars.insert(k, v.trim().parse::<u32>().ok());
        }
    }
    let get = |k: &str| vars.get(k).copied().flatten();
    let rank = get("RANK").or_else(|| get("SLURM_PROCID"))?;
    Some(RankInfo {
        rank,
        local_rank: get("LOCAL_RANK").or_else(|| get("SLURM_LOCALID")),
    })
}

/// The directory a node's runs of `job` go in under `out`.
pub fn node_dir(out: &Path, job: &JobInfo) -> PathBuf {
    out.join(format!("job={}", job.job_id))
        .join(format!("node={}", job.node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_flag_wins_then_slurm_then_torchrun() {
        let env = env_of(&[
            ("SLURM_JOB_ID", "4242"),
            ("TORCHELASTIC_RUN_ID", "tr-1"),
            ("SLURMD_NODENAME", "n1"),
            ("SLURM_NODEID", "1"),
            ("SLURM_JOB_NUM_NODES", "2"),
        ]);
        let j = detect(Some("mine"), "h", &env).unwrap().unwrap();
        assert_eq!((j.job_id.as_str(), j.id_source.as_str()), ("mine", "flag"));
        let j = detect(None, "h", &env).unwrap().unwrap();
        assert_eq!((j.job_id.as_str(), j.node.as_str()), ("4242", "n1"));
        assert_eq!((j.node_rank, j.num_nodes), (Some(1), Some(2)));
        let env = env_of(&[("TORCHELASTIC_RUN_ID", "tr-1"), ("GROUP_RANK", "3")]);
        let j = detect(None, "host-a", &env).unwrap().unwrap();
        assert_eq!(
            (j.id_source.as_str(), j.node.as_str()),
            ("torchelastic", "host-a")
        );
        assert_eq!(j.node_rank, Some(3));
        assert_eq!(
            detect(None, "h", env_of(&[("TORCHELASTIC_RUN_ID", "none")])),
            Ok(None)
        );
        assert_eq!(detect(None, "h", env_of(&[])), Ok(None));
    }

    #[test]
    fn unsafe_ids_and_node_names_are_refused() {
        assert!(detect(Some("../x"), "h", env_of(&[])).is_err());
        assert!(detect(Some("j"), "a/b", env_of(&[])).is_err());
        // A hostile SLURMD_NODENAME falls back to the host name rather than escaping.
        let j = detect(Some("j"), "h", env_of(&[("SLURMD_NODENAME", "../../etc")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            node_dir(Path::new("/o"), &j),
            PathBuf::from("/o/job=j/node=h")
        );
    }

    #[test]
    fn ranks_come_from_the_environment_block() {
        let env = b"PATH=/bin\0RANK=5\0LOCAL_RANK=1\0X=y\0";
        let r = rank_from_environ(env).unwrap();
        assert_eq!((r.rank, r.local_rank), (5, Some(1)));
        let r = rank_from_environ(b"SLURM_PROCID=2\0SLURM_LOCALID=0\0").unwrap();
        assert_eq!((r.rank, r.local_rank), (2, Some(0)));
        assert_eq!(rank_from_environ(b"RANK=x\0\xff\xfe\0"), None);
        assert_eq!(rank_from_environ(b""), None);
    }
}
