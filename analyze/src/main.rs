mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

/// hf-eco2ai analyzer: energy, cost and CO2 of recorded runs.
#[derive(Parser)]
#[command(name = "eco2ai-analyze", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// What a planned run will use and emit: GPU-hours x watts x PUE, times the grid.
    #[command(
        after_help = "Example:\n  eco2ai-analyze footprint --gpu-hours 64 --watts 700 --pue 1.2 --country FR"
    )]
    Footprint(FootprintArgs),
    /// Replay a run into Prometheus: OpenMetrics for backfill, remote_write, or a
    /// /metrics server playing it back.
    Replay(cli::replay::ReplayArgs),
    /// A run's energy per device and per step, samples/kWh, CO2, cost, budget and
    /// efficiency, as a table, JSON, or a directory of files (--out).
    #[command(
        after_help = "Example:\n  eco2ai-analyze report runs/demo-20261203-120000-42 --country FR --price-per-kwh 0.18 --out reports"
    )]
    Report(cli::report::ReportArgs),
    /// A multi-node job's runs (OUT/job=<id>/node=<node>/<run>/) on one aligned clock:
    /// per-step job energy, per node and rank, stragglers and wait energy, CO2 and cost.
    #[command(after_help = "Example:\n  eco2ai-analyze job /shared/runs/job=4242 --out job-report")]
    Job(eco2ai_analyze::job::cmd::JobArgs),
    /// Write a synthetic multi-node job with known truth (clock offsets, a straggler).
    SynthJob(eco2ai_analyze::job::cmd::SynthJobArgs),
    /// Which of two runs is more efficient, and by how much.
    #[command(
        after_help = "Example:\n  eco2ai-analyze compare runs/bert-bf16 runs/bert-fp32 --country FR"
    )]
    Compare(cli::report::CompareArgs),
    /// Write a synthetic run with a known power function (to try the analyzer, and for
    /// tests and benchmarks); prints the run directory.
    #[command(
        after_help = "Example:\n  eco2ai-analyze synth /tmp/synth --gpus 8 --duration-s 600 && eco2ai-analyze report /tmp/synth"
    )]
    Synth(SynthArgs),
    /// Whole-run energy per device, duration, and whether the run was cut off.
    #[command(
        after_help = "Example:\n  eco2ai-analyze summary runs/demo-20261203-120000-42 --json"
    )]
    Summary {
        run: PathBuf,
        /// JSON on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
}

// `footprint`'s flags (a plain comment: a doc comment would change its --help).
#[derive(Args)]
struct FootprintArgs {
    /// GPU-hours the run will take (GPUs x hours), e.g. 64.
    #[arg(long)]
    gpu_hours: f64,
    /// Average power of one GPU in watts, e.g. 700.
    #[arg(long)]
    watts: f64,
    /// Power usage effectiveness (facility / IT energy, >= 1), e.g. 1.2.
    #[arg(long, default_value_t = 1.0)]
    pue: f64,
    /// ISO 3166 alpha-2 country whose grid intensity (gCO2/kWh) applies, e.g. FR.
    #[arg(long)]
    country: Option<String>,
    /// Cloud region as provider:region, e.g. gcp:europe-west1.
    #[arg(long)]
    region: Option<String>,
    /// A fixed grid intensity in gCO2 per kWh.
    #[arg(long)]
    gco2_per_kwh: Option<f64>,
    /// table or json
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(Args)]
struct SynthArgs {
    /// Run directory to create.
    out: PathBuf,
    /// Seed of the random power function (same seed, same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Length of the run in seconds.
    #[arg(long, default_value_t = 120.0)]
    duration_s: f64,
    /// Number of GPUs.
    #[arg(long, default_value_t = 2)]
    gpus: u32,
    /// Length of one step in milliseconds.
    #[arg(long, default_value_t = 100.0)]
    step_ms: f64,
    /// Pause between steps in milliseconds.
    #[arg(long, default_value_t = 10.0)]
    gap_ms: f64,
    /// Also write each step's true GPU energy (CSV step,gpu_j) to this file.
    #[arg(long)]
    truth: Option<PathBuf>,
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Footprint(a) => footprint(a)?,
        Cmd::Replay(a) => cli::replay::run(a)?,
        Cmd::Report(a) => cli::report::run_report(a)?,
        Cmd::Compare(a) => cli::report::run_compare(a)?,
        Cmd::Job(a) => eco2ai_analyze::job::cmd::run(a)?,
        Cmd::SynthJob(a) => eco2ai_analyze::job::cmd::synth_job(a)?,
        Cmd::Synth(a) => synth(a)?,
        Cmd::Summary { run, json } => {
            cli::report::must_exist(&run)?;
            let s = eco2ai_analyze::summary::summarise(&run)
                .with_context(|| format!("reading run {}", run.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", s.to_table());
            }
        }
    }
    Ok(())
}

fn footprint(a: FootprintArgs) -> Result<()> {
    let f = eco2ai_analyze::footprint::footprint(
        a.gpu_hours,
        a.watts,
        a.pue,
        a.country.as_deref(),
        a.region.as_deref(),
        a.gco2_per_kwh,
    )?;
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&f)?),
        "table" => println!(
            "{:.1} GPU-hours x {:.0} W x PUE {:.2} = {:.3} kWh; at {:.1} gCO2/kWh: {:.3} kg CO2",
            f.gpu_hours, f.watts, f.pue, f.energy_kwh, f.gco2_per_kwh, f.co2_kg
        ),
        other => anyhow::bail!("--format must be table or json, got '{other}'"),
    }
    Ok(())
}

fn synth(a: SynthArgs) -> Result<()> {
    // Finite ranges: a year at most, steps and gaps of an hour at most.
    let in_range = |v: f64, lo: f64, hi: f64| v.is_finite() && v > lo && v <= hi;
    if !(in_range(a.duration_s, 1.0, 3.2e7)
        && in_range(a.step_ms, 0.0, 3.6e6)
        && in_range(a.gap_ms, -1e-9, 3.6e6))
    {
        anyhow::bail!(
            "--duration-s must be over 1 s and at most a year, --step-ms over 0 and --gap-ms from 0, both at most an hour"
        );
    }
    if !(1..=64).contains(&a.gpus) {
        anyhow::bail!("--gpus must be 1 to 64, got {}", a.gpus);
    }
    let spec = eco2ai_analyze::synth::Spec {
        seed: a.seed,
        duration_s: a.duration_s,
        gpus: a.gpus,
        step_ms: a.step_ms,
        gap_ms: a.gap_ms,
        ..Default::default()
    };
    let t = eco2ai_analyze::synth::generate(&a.out, &spec)
        .with_context(|| format!("writing {}", a.out.display()))?;
    if let Some(f) = a.truth {
        std::fs::write(&f, t.steps_csv()).with_context(|| format!("writing {}", f.display()))?;
    }
    println!("{}", a.out.display());
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eco2ai-analyze: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
