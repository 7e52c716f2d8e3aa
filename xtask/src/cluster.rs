//! `cargo xtask cluster up [--nodes N] | down | status | exec NODE CMD...`: a cluster on
//! this one machine (network namespaces with their own hostnames on a bridge, munged,
//! slurmctld in node 0 and one slurmd per node), made and removed by
//! scripts/cluster/cluster.sh, which the cluster tests (cluster/tests/) use too.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::root;

/// Runs the harness script with `args` (its own flags: --nodes, --name, --subnet,
/// --no-slurm), its output shown.
pub fn cluster(args: &[String]) -> Result<()> {
    let Some(cmd) = args.first() else {
        bail!("usage: cargo xtask cluster up [--nodes N] | down | status | exec NODE CMD...");
    };
    if !matches!(cmd.as_str(), "up" | "down" | "status" | "env" | "exec") {
        bail!("unknown cluster command '{cmd}' (up, down, status, env, exec)");
    }
    let script = root().join("scripts/cluster/cluster.sh");
    let status = Command::new("bash")
        .arg(&script)
        .args(args)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("cluster {cmd} failed ({status})");
    }
    Ok(())
}
