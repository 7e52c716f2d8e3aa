use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// hf-eco2ai analyzer: energy, cost and CO2 of recorded runs.
#[derive(Parser)]
#[command(name = "eco2ai-analyze", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay a run into Prometheus: an OpenMetrics file with timestamps for
    /// `promtool tsdb create-blocks-from openmetrics FILE DIR`.
    Replay {
        run: PathBuf,
        /// Where to write the OpenMetrics text.
        #[arg(long)]
        openmetrics: PathBuf,
        /// Seconds between replayed points.
        #[arg(long, default_value_t = 1.0)]
        every_s: f64,
    },
    /// Whole-run energy per device, duration, and whether the run was cut off.
    Summary {
        run: PathBuf,
        /// JSON on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Replay {
            run,
            openmetrics,
            every_s,
        } => {
            if !(every_s > 0.0 && every_s.is_finite()) {
                anyhow::bail!("--every-s must be a positive number of seconds, got {every_s}");
            }
            let text = eco2ai_analyze::replay::openmetrics(&run, every_s)
                .with_context(|| format!("reading run {}", run.display()))?;
            std::fs::write(&openmetrics, text)
                .with_context(|| format!("writing {}", openmetrics.display()))?;
            println!("{}", openmetrics.display());
        }
        Cmd::Summary { run, json } => {
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
