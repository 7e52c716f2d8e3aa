use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use eco2ai_probe::config::{RecordArgs, parse_duration};
use eco2ai_probe::demo::{self, DemoConfig};
use eco2ai_probe::end_summary::{self, Money};
use eco2ai_probe::record;
use eco2ai_probe::sensors::{self, SensorConfig};

/// hf-eco2ai recorder: per-step energy, power and carbon of training runs.
#[derive(Parser)]
#[command(name = "eco2ai-probe", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Record a command (after `--`), a fixed duration, or the demo workload.
    Record(Box<RecordArgs>),
    /// List the sensors found and, for each one missing, why.
    Info {
        #[arg(long, hide = true, default_value = "/sys/class/powercap")]
        powercap_root: PathBuf,
        #[arg(long, hide = true)]
        fake_gpus: Option<u32>,
        /// The job to show (default: SLURM_JOB_ID, else TORCHELASTIC_RUN_ID).
        #[arg(long)]
        job_id: Option<String>,
    },
    /// Compact the open segments of a run whose recorder was killed, marking it truncated.
    Recover { run: PathBuf },
    /// The built-in demo workload (what `record --demo` runs).
    #[command(hide = true)]
    DemoWorkload {
        #[arg(long, default_value = "15s")]
        duration: String,
        #[arg(long, default_value = "100ms")]
        step: String,
    },
}

fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::Record(args) => record_cmd(*args),
        Cmd::Info {
            powercap_root,
            fake_gpus,
            job_id,
        } => {
            let job = eco2ai_probe::job::detect(job_id.as_deref())
                .map_err(eco2ai_probe::config::ConfigError::Job)?;
            let cfg = SensorConfig {
                powercap_root,
                fake_gpus,
                ..SensorConfig::default()
            };
            print!("{}", sensors::info(&cfg, job.as_ref()));
            Ok(0)
        }
        Cmd::Recover { run } => {
            let r = eco2ai_trace::Run::recover(&run)
                .with_context(|| format!("recovering {}", run.display()))?;
            println!("{} ({:?})", r.dir().display(), r.meta().status);
            Ok(0)
        }
        Cmd::DemoWorkload { duration, step } => {
            let cfg = DemoConfig {
                duration: parse_duration(&duration)?,
                step: parse_duration(&step)?.max(Duration::from_millis(1)),
                threads: std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            };
            let steps = demo::run(&cfg);
            eprintln!("demo: {steps} steps");
            Ok(0)
        }
    }
}

/// `record`: the start-up line, the recording, then its summary and CO2 lines.
fn record_cmd(args: RecordArgs) -> Result<i32> {
    // Errors in these flags are reported by validate() below, with the others.
    let intensity = args.intensity().ok().flatten();
    let money = Money {
        price_per_kwh: args.prices.price_per_kwh,
        gpu_hour_usd: args.prices.gpu_hour_usd,
        carbon_budget_kg: args.prices.carbon_budget_kg,
        ..Money::new(intensity, args.prices.pue.unwrap_or(1.0))
    };
    let cfg = args.validate()?;
    eprintln!("{}", money.startup_line());
    if let Some(job) = &cfg.job {
        eprintln!(
            "eco2ai-probe: job {}",
            eco2ai_probe::job::describe(Some(job))
        );
    }
    let outcome = record::record(cfg)?;
    let f = &outcome.finished;
    eprint!("{}", end_summary::summary(f));
    match eco2ai_trace::Live::read(&f.dir) {
        Ok(live) => eprint!("{}", end_summary::lines(&live, f.meta.gpus.len(), &money)),
        Err(e) => eprintln!("co2       - (no final totals: {e})"),
    }
    println!("{}", outcome.finished.dir.display());
    Ok(outcome.exit_code)
}

/// Parses the command line; a command given without `--` gets a hint, since clap alone
/// says only "unexpected argument".
fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|e| {
        let _ = e.print();
        if e.kind() == clap::error::ErrorKind::UnknownArgument
            && std::env::args().nth(1).as_deref() == Some("record")
        {
            eprintln!(
                "hint: put the command to record after '--', e.g. eco2ai-probe record --project p -- python train.py"
            );
        }
        ExitCode::from(if e.use_stderr() { 2 } else { 0 })
    })
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("eco2ai-probe: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
