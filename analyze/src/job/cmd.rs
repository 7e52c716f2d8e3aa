//! The `job` subcommand's flags and its run.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use eco2ai_trace::pricing::PriceArgs;

use super::output;

#[derive(Args, Debug)]
pub struct JobArgs {
    /// The job's directory: the probe's --out, then job=<id> (OUT/job=<id>/node=<node>/<run>/).
    pub dir: PathBuf,
    #[command(flatten)]
    pub prices: PriceArgs,
    /// table or json
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Also write report.json, report.html, wait_time.svg, wait_energy.svg, steps.csv and
    /// node_steps.csv into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: JobArgs) -> Result<()> {
    if !["table", "json"].contains(&a.format.as_str()) {
        bail!("--format must be table or json, got '{}'", a.format);
    }
    if std::fs::symlink_metadata(&a.dir).is_err() {
        bail!("{} does not exist", a.dir.display());
    }
    let r = super::analyse(&a.dir, &a.prices)
        .with_context(|| format!("analysing job {}", a.dir.display()))?;
    if let Some(out) = &a.out {
        output::write_out(&r, out).with_context(|| format!("writing {}", out.display()))?;
    }
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&r)?),
        _ => print!("{}", output::table(&r)),
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct SynthJobArgs {
    /// Directory to write the job under (as OUT/job=<id>/node=<node>/<run>/).
    pub out: PathBuf,
    #[arg(long, default_value = "synthetic")]
    pub job_id: String,
    #[arg(long, default_value_t = 2)]
    pub nodes: u32,
    /// GPUs per node, one rank each.
    #[arg(long, default_value_t = 8)]
    pub gpus: u32,
    #[arg(long, default_value_t = 120.0)]
    pub duration_s: f64,
    /// Mean compute time of a step in milliseconds.
    #[arg(long, default_value_t = 500.0)]
    pub step_ms: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Wall-clock error of every odd node in milliseconds (even nodes are exact).
    #[arg(long, default_value_t = 25.0)]
    pub odd_node_offset_ms: f64,
    /// The global rank that finishes each step late, and by how many milliseconds.
    #[arg(long, default_value_t = 1)]
    pub straggler_rank: u32,
    #[arg(long, default_value_t = 40.0)]
    pub straggler_lag_ms: f64,
    /// Also write each step's true job energy (CSV step,job_j) to this file.
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

pub fn synth_job(a: SynthJobArgs) -> Result<()> {
    let ok = |v: f64, lo: f64, hi: f64| v.is_finite() && v > lo && v <= hi;
    if !(ok(a.duration_s, 2.0, 3.2e7)
        && ok(a.step_ms, 0.0, 3.6e6)
        && ok(a.odd_node_offset_ms.abs() + 1.0, 0.0, 1e4)
        && ok(a.straggler_lag_ms + 1.0, 0.0, 3.6e6))
    {
        bail!(
            "--duration-s over 2 s, --step-ms over 0, --odd-node-offset-ms within 10 s, --straggler-lag-ms from 0"
        );
    }
    if !(1..=1024).contains(&a.nodes) || !(1..=64).contains(&a.gpus) {
        bail!("--nodes must be 1 to 1024 and --gpus 1 to 64");
    }
    eco2ai_trace::validate_run_id(&a.job_id).context("--job-id")?;
    let spec = crate::synth_job::JobSpec {
        seed: a.seed,
        job_id: a.job_id,
        nodes: a.nodes,
        gpus: a.gpus,
        duration_s: a.duration_s,
        step_ms: a.step_ms,
        clock_offsets_ns: (0..a.nodes)
            .map(|n| {
                if n % 2 == 1 {
                    (a.odd_node_offset_ms * 1e6) as i64
                } else {
                    0
                }
            })
            .collect(),
        straggler: Some((a.straggler_rank, a.straggler_lag_ms)),
        ..Default::default()
    };
    let t = crate::synth_job::generate_job(&a.out, &spec)
        .with_context(|| format!("writing {}", a.out.display()))?;
    if let Some(f) = a.truth {
        let mut csv = String::from("step,job_j\n");
        for (k, j) in &t.step_j {
            csv.push_str(&format!("{k},{j:.6}\n"));
        }
        std::fs::write(&f, csv).with_context(|| format!("writing {}", f.display()))?;
    }
    println!("{}", t.job_dir.display());
    Ok(())
}
