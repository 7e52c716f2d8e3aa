//! `cargo xtask bench-job`: `eco2ai-analyze job` on generated multi-node jobs (default 4,
//! 16 and 64 nodes x 8 GPUs x 30 min, power polled every 20 ms, a step row per rank per
//! step) next to DuckDB computing the same per-step job energy from the same
//! hive-partitioned files, in one run. Wall time and peak RSS of each come from wait4(2);
//! each one's per-step energies are checked against the generator's truth, and the
//! analyzer's clock offsets against the injected ones.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::bench::Usage;
use crate::bench_report::{best, dir_bytes, timed};
use crate::python;
use crate::util::{cargo, root};

/// The wall-clock error the generator gives every odd node, ms.
const ODD_NODE_OFFSET_MS: f64 = 25.0;

struct Flags {
    nodes: Vec<u32>,
    gpus: u32,
    seconds: u64,
    rounds: usize,
    /// The release profile (as bench-report measures) instead of the suite's dev build.
    release: bool,
}

fn flags(args: &[String]) -> Result<Flags> {
    let mut f = Flags {
        nodes: vec![4, 16, 64],
        gpus: 8,
        seconds: 1800,
        rounds: 1,
        release: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| -> Result<&String> {
            it.next().with_context(|| format!("{name} needs a value"))
        };
        let num = |s: &str, name: &str| -> Result<u64> {
            s.parse()
                .with_context(|| format!("{name} needs a whole number, got '{s}'"))
        };
        match a.as_str() {
            "--nodes" => {
                let v = val("--nodes")?;
                f.nodes = v
                    .split(',')
                    .map(|n| num(n, "--nodes").map(|n| n as u32))
                    .collect::<Result<_>>()?;
            }
            "--gpus" => f.gpus = num(val("--gpus")?, "--gpus")? as u32,
            "--seconds" => f.seconds = num(val("--seconds")?, "--seconds")?,
            "--rounds" => f.rounds = num(val("--rounds")?, "--rounds")?.max(1) as usize,
            "--release" => f.release = true,
            other => bail!("unknown bench-job flag '{other}'"),
        }
    }
    Ok(f)
}

/// Generates the job once (the truth file is written last: a job beside it is whole).
fn generate(
    bin: &Path,
    base: &Path,
    nodes: u32,
    f: &Flags,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let tag = format!("{nodes}n-{}g-{}s", f.gpus, f.seconds);
    let (out, truth) = (
        base.join(format!("job-{tag}")),
        base.join(format!("truth-{tag}.csv")),
    );
    let job = out.join("job=bench");
    if truth.exists() {
        return Ok((job, truth));
    }
    let _ = std::fs::remove_dir_all(&out);
    eprintln!(
        "xtask: generating {nodes} nodes x {} GPUs x {} s into {}",
        f.gpus,
        f.seconds,
        out.display()
    );
    let started = Instant::now();
    let status = Command::new(bin)
        .args([
            "synth-job",
            "--job-id",
            "bench",
            "--nodes",
            &nodes.to_string(),
        ])
        .args([
            "--gpus",
            &f.gpus.to_string(),
            "--duration-s",
            &f.seconds.to_string(),
        ])
        .args([
            "--odd-node-offset-ms",
            &ODD_NODE_OFFSET_MS.to_string(),
            "--truth",
        ])
        .arg(&truth)
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .context("running eco2ai-analyze synth-job")?;
    if !status.success() {
        let _ = std::fs::remove_file(&truth);
        bail!("eco2ai-analyze synth-job failed ({status})");
    }
    eprintln!(
        "xtask: generated in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok((job, truth))
}

/// The largest node's trace on disk, bytes.
fn largest_node(job: &Path) -> u64 {
    std::fs::read_dir(job)
        .map(|d| d.flatten().map(|e| dir_bytes(&e.path())).max().unwrap_or(0))
        .unwrap_or(0)
}

pub fn bench_job(args: &[String]) -> Result<()> {
    let f = flags(args)?;
    // By default the dev profile the suite builds (dependencies at opt-level 1, ours
    // unoptimised), with -p: the suite's feature set, so nothing is rebuilt;
    // --release for the figure that compares with DuckDB's optimised build.
    let profile = if f.release { "release" } else { "debug" };
    let mut build = vec!["build", "-p", "eco2ai-analyze", "--bin", "eco2ai-analyze"];
    if f.release {
        build.push("--release");
    }
    cargo(&build)?;
    let sides = Sides {
        bin: root().join("target").join(profile).join("eco2ai-analyze"),
        py: python::ensure_venv()?,
        script: root().join("scripts/bench_job_duckdb.py"),
        base: root().join("target/bench-job"),
    };
    std::fs::create_dir_all(&sides.base)?;
    let mut lines = Vec::new();
    for &nodes in &f.nodes {
        lines.push(bench_nodes(&sides, nodes, &f)?);
    }
    println!(
        "bench-job: {} GPUs/node x {} s, power polled every 20 ms; {} profile; {} cores",
        f.gpus,
        f.seconds,
        if f.release { "release" } else { "dev" },
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "nodes  power rows  step rows  trace MB (largest node)  ours s / MB     DuckDB s / MB     time ratio  mem ratio  per-step error ours p99/max, DuckDB p99/max  clock offset error"
    );
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// The two sides measured and where they write.
struct Sides {
    /// eco2ai-analyze.
    bin: PathBuf,
    /// The venv's python with DuckDB, and its script.
    py: PathBuf,
    script: PathBuf,
    base: PathBuf,
}

/// One job of `nodes` nodes: generated, analysed by both sides `f.rounds` times, their
/// per-step energies compared with the truth; its table line.
fn bench_nodes(x: &Sides, nodes: u32, f: &Flags) -> Result<String> {
    let (job, truth) = generate(&x.bin, &x.base, nodes, f)?;
    let (ours_out, duck_csv) = (
        x.base.join(format!("ours-{nodes}")),
        x.base.join(format!("duckdb-{nodes}.csv")),
    );
    let (mut ours, mut duck): (Vec<Usage>, Vec<Usage>) = (Vec::new(), Vec::new());
    for round in 1..=f.rounds {
        eprintln!(
            "xtask: {nodes} nodes, round {round}/{}: eco2ai-analyze job",
            f.rounds
        );
        let mut cmd = Command::new(&x.bin);
        cmd.args(["job", "--format", "json", "--out"])
            .arg(&ours_out)
            .arg(&job);
        ours.push(timed(&mut cmd, &x.base.join(format!("ours-{nodes}.json")))?);
        eprintln!("xtask: {nodes} nodes, round {round}/{}: DuckDB", f.rounds);
        let mut cmd = Command::new(&x.py);
        cmd.arg(&x.script).arg("query").arg(&job).arg(&duck_csv);
        duck.push(timed(
            &mut cmd,
            &x.base.join(format!("duckdb-{nodes}.json")),
        )?);
    }
    let out = Command::new(&x.py)
        .arg(&x.script)
        .arg("compare")
        .args([&ours_out.join("steps.csv"), &duck_csv, &truth])
        .output()
        .context("comparing per-step energies")?;
    if !out.status.success() {
        bail!("compare failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let errors: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        x.base.join(format!("ours-{nodes}.json")),
    )?)?;
    Ok(line(nodes, f, &job, (&ours, &duck), &report, &errors))
}

fn line(
    nodes: u32,
    f: &Flags,
    job: &Path,
    (ours, duck): (&[Usage], &[Usage]),
    report: &serde_json::Value,
    errors: &serde_json::Value,
) -> String {
    let ((ow, orss), (dw, drss)) = (best(ours), best(duck));
    let pct = |k: &str| {
        errors[k]
            .as_f64()
            .map_or("-".into(), |v| format!("{:.3}%", v * 100.0))
    };
    // Every odd node's clock was set off by ODD_NODE_OFFSET_MS; the rest are exact.
    let offset_err_ms = report["clock_offsets_ns"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, v)| {
                    let n: u32 = name.trim_start_matches("node").parse().unwrap_or(0);
                    let want = if n % 2 == 1 { ODD_NODE_OFFSET_MS } else { 0.0 };
                    (v.as_f64().unwrap_or(f64::NAN) / 1e6 - want).abs()
                })
                .fold(0.0, f64::max)
        })
        .unwrap_or(f64::NAN);
    let step_rows: u64 = report["ranks"].as_array().map_or(0, |r| {
        r.iter().map(|x| x["steps"].as_u64().unwrap_or(0)).sum()
    });
    format!(
        "{nodes:>5}  {:>10}  {step_rows:>9}  {:>8.0} ({:>5.1})        {ow:>6.1} / {orss:>5.0}   {dw:>6.1} / {drss:>6.0}   {:>9.2}x  {:>8.2}x  {} / {}, {} / {}   {offset_err_ms:.4} ms",
        u64::from(nodes) * u64::from(f.gpus) * f.seconds * 50,
        dir_bytes(job) as f64 / 1e6,
        largest_node(job) as f64 / 1e6,
        ow / dw,
        orss / drss,
        pct("ours_p99"),
        pct("ours_max"),
        pct("duckdb_p99"),
        pct("duckdb_max"),
    )
}
