//! `cargo xtask bench-report`: the analyzer's `report` on a generated trace of 100 M
//! power rows (8 GPUs polled every 20 ms for 69.4 h) and 1 M steps, next to DuckDB
//! computing the same per-step energies and totals from the same files in the same run.
//! Wall time and peak RSS of each come from wait4(2); each one's per-step energies are
//! then checked against the generator's truth.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::bench::{Usage, wait_usage};
use crate::python;
use crate::util::{cargo, root};

struct Flags {
    gpus: u32,
    seconds: u64,
    rounds: usize,
}

fn flags(args: &[String]) -> Result<Flags> {
    let mut f = Flags {
        gpus: 8,
        seconds: 250_000,
        rounds: 2,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64> {
            it.next()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("{name} needs a whole number"))
        };
        match a.as_str() {
            "--gpus" => f.gpus = num("--gpus")? as u32,
            "--seconds" => f.seconds = num("--seconds")?,
            "--rounds" => f.rounds = num("--rounds")?.max(1) as usize,
            other => bail!("unknown bench-report flag '{other}'"),
        }
    }
    Ok(f)
}

/// Runs `cmd`, stdout into `out`, stderr shown; its exit must be 0.
pub(crate) fn timed(cmd: &mut Command, out: &Path) -> Result<Usage> {
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();
    let child = cmd
        .stdout(file)
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let (code, usage) = wait_usage(child, started)?;
    if code != 0 {
        bail!("{cmd:?} exited with {code}");
    }
    Ok(usage)
}

fn generate(bin: &Path, run: &Path, truth: &Path, f: &Flags) -> Result<()> {
    if truth.exists() {
        return Ok(()); // written last: the trace beside it is whole
    }
    let _ = std::fs::remove_dir_all(run);
    eprintln!(
        "xtask: generating {} GPUs x {} s (20 ms power polls, 230 ms steps + 20 ms gaps) into {}",
        f.gpus,
        f.seconds,
        run.display()
    );
    let started = Instant::now();
    let status = Command::new(bin)
        .args(["synth", "--gpus", &f.gpus.to_string()])
        .args(["--duration-s", &f.seconds.to_string()])
        .args(["--step-ms", "230", "--gap-ms", "20", "--truth"])
        .arg(truth)
        .arg(run)
        .stdout(Stdio::null())
        .status()
        .context("running eco2ai-analyze synth")?;
    if !status.success() {
        let _ = std::fs::remove_file(truth);
        bail!("eco2ai-analyze synth failed ({status})");
    }
    eprintln!(
        "xtask: generated in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub(crate) fn best(runs: &[Usage]) -> (f64, f64) {
    let wall = runs.iter().map(|u| u.wall_s).fold(f64::INFINITY, f64::min);
    let rss = runs.iter().map(|u| u.max_rss_mb).fold(0.0, f64::max);
    (wall, rss)
}

pub fn bench_report(args: &[String]) -> Result<()> {
    let f = flags(args)?;
    cargo(&["build", "--release", "--bin", "eco2ai-analyze"])?;
    let bin = root().join("target/release/eco2ai-analyze");
    let base = root().join("target/bench-report");
    std::fs::create_dir_all(&base)?;
    let tag = format!("{}gpu-{}s", f.gpus, f.seconds);
    let (run, truth) = (
        base.join(format!("run-{tag}")),
        base.join(format!("truth-{tag}.csv")),
    );
    generate(&bin, &run, &truth, &f)?;
    let py = python::ensure_venv()?;
    let script = root().join("scripts/bench_report_duckdb.py");
    let (ours_out, duck_csv) = (base.join("ours"), base.join("duckdb_steps.csv"));
    let (mut ours, mut duck) = (Vec::new(), Vec::new());
    for round in 1..=f.rounds {
        eprintln!("xtask: round {round}/{}: eco2ai-analyze report", f.rounds);
        let mut cmd = Command::new(&bin);
        cmd.args(["report", "--format", "json", "--out"])
            .arg(&ours_out)
            .arg(&run);
        ours.push(timed(&mut cmd, &base.join("ours.json"))?);
        eprintln!("xtask: round {round}/{}: DuckDB", f.rounds);
        let mut cmd = Command::new(&py);
        cmd.arg(&script).arg("query").arg(&run).arg(&duck_csv);
        duck.push(timed(&mut cmd, &base.join("duckdb.json"))?);
    }
    let ours_steps = ours_out.join("synthetic/steps.csv");
    let out = Command::new(&py)
        .arg(&script)
        .arg("compare")
        .args([&ours_steps, &duck_csv, &truth])
        .output()
        .context("comparing per-step energies")?;
    if !out.status.success() {
        bail!("compare failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let errors: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("ours.json"))?)?;
    let duckdb: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("duckdb.json"))?)?;
    print_table(&f, &run, (&ours, &duck), &report, &duckdb, &errors);
    Ok(())
}

fn print_table(
    f: &Flags,
    run: &Path,
    (ours, duck): (&[Usage], &[Usage]),
    report: &serde_json::Value,
    duckdb: &serde_json::Value,
    errors: &serde_json::Value,
) {
    let ((ow, orss), (dw, drss)) = (best(ours), best(duck));
    let pct = |k: &str| {
        errors[k]
            .as_f64()
            .map_or("-".into(), |v| format!("{:.3}%", v * 100.0))
    };
    println!(
        "bench-report: {} GPUs x {} s, {} power rows, {} steps, trace {:.0} MB on disk; {} cores",
        f.gpus,
        f.seconds,
        u64::from(f.gpus) * f.seconds * 50,
        report["steps"]["count"],
        dir_bytes(run) as f64 / 1e6,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "                          wall (best of {})   peak RSS   GPU energy        per-step error p50 / p99 / max",
        f.rounds
    );
    println!(
        "eco2ai-analyze report     {ow:>8.2} s          {orss:>6.0} MB  {:>10.3} kWh   {} / {} / {}",
        report["gpu_energy_kwh"].as_f64().unwrap_or(f64::NAN),
        pct("ours_p50"),
        pct("ours_p99"),
        pct("ours_max")
    );
    println!(
        "DuckDB (trapezoid+ASOF)   {dw:>8.2} s          {drss:>6.0} MB  {:>10.3} kWh   {} / {} / {}",
        duckdb["gpu_energy_j_power_integral"]
            .as_f64()
            .unwrap_or(f64::NAN)
            / 3.6e6,
        pct("duckdb_p50"),
        pct("duckdb_p99"),
        pct("duckdb_max")
    );
    println!(
        "ratio (ours / DuckDB)     {:>8.2}x           {:>6.2}x   (counter total {:.3} kWh)",
        ow / dw,
        orss / drss,
        duckdb["gpu_energy_j_counter"].as_f64().unwrap_or(f64::NAN) / 3.6e6
    );
}
