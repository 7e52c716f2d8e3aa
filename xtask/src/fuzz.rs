//! `cargo xtask fuzz`: the coverage-guided fuzz targets of fuzz/ (cargo-fuzz, libFuzzer),
//! each run for a fixed time on its corpus, which is kept in the repository and fed
//! through the same harnesses by plain `cargo test` (the fuzz_corpus tests), with the
//! inputs that once crashed (fuzz/crashes/<target>/).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::root;

/// Every target in fuzz/Cargo.toml, in the order they run.
pub const TARGETS: [&str; 6] = [
    "marker_wire",
    "trace_segment",
    "trace_meta",
    "parse_flags",
    "series",
    "remote_write",
];

/// Optimised, with overflow checks and debug assertions (an overflow on a hostile value
/// is a panic to find), no sanitizer (safe Rust: panics are what there is to find).
const BUILD_FLAGS: [&str; 4] = ["-O", "-a", "-s", "none"];

/// Bytes per input: Parquet segments need a few KB; longer inputs only run slower.
fn max_len_bytes(target: &str) -> u32 {
    match target {
        "trace_segment" => 16_384,
        "trace_meta" => 8_192,
        _ => 4_096,
    }
}

struct Opts {
    seconds: u64,
    targets: Vec<String>,
    cmin: bool,
}

fn parse_args(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        seconds: 600,
        targets: Vec::new(),
        cmin: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a value")?;
                o.seconds =
                    v.parse().ok().filter(|s| *s > 0).with_context(|| {
                        format!("--seconds {v}: expected a whole number above 0")
                    })?;
            }
            "--no-cmin" => o.cmin = false,
            t if TARGETS.contains(&t) => o.targets.push(t.to_string()),
            other => bail!(
                "unknown fuzz argument '{other}' (targets: {})",
                TARGETS.join(", ")
            ),
        }
    }
    if o.targets.is_empty() {
        o.targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    Ok(o)
}

/// A cargo for the nightly toolchain, without what the outer `cargo xtask` set.
fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly")
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .current_dir(root());
    c
}

fn ensure_tools() -> Result<()> {
    let has_nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_nightly {
        println!("fuzz: installing the nightly toolchain (libFuzzer's instrumentation needs it)");
        let ok = Command::new("rustup")
            .args(["toolchain", "install", "nightly", "--profile", "minimal"])
            .status()
            .context("running rustup")?
            .success();
        if !ok {
            bail!("rustup toolchain install nightly failed");
        }
    }
    let has_fuzz = nightly_cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_fuzz {
        println!("fuzz: installing cargo-fuzz");
        let ok = Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .env_remove("RUSTUP_TOOLCHAIN")
            .status()
            .context("running cargo install")?
            .success();
        if !ok {
            bail!("cargo install cargo-fuzz failed");
        }
    }
    Ok(())
}

/// What one run did, from libFuzzer's final stats and the corpus directory.
struct Outcome {
    target: String,
    seconds: f64,
    execs: u64,
    execs_per_s: u64,
    corpus_files: usize,
    crashed: bool,
    log: PathBuf,
}

fn stat(log: &str, key: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .filter_map(|rest| rest.trim_start_matches(':').trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().filter(|e| e.path().is_file()).count())
}

fn run_target(target: &str, seconds: u64, cmin: bool) -> Result<Outcome> {
    let corpus = root().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let crashes = root().join("fuzz/crashes").join(target);
    let logs = root().join("fuzz/target/logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log = logs.join(format!("{target}.log"));
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let t0 = Instant::now();
    let status = nightly_cargo()
        .args(["fuzz", "run"])
        .args(BUILD_FLAGS)
        .arg(target)
        .arg(&corpus)
        // Inputs that once crashed: seeds, kept apart so that cmin never drops them.
        .args(crashes.is_dir().then_some(&crashes))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={}", max_len_bytes(target)))
        // A single input past 10 s is a hang, reported like a crash.
        .args(["-timeout=10", "-print_final_stats=1"])
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .context("running cargo fuzz run")?;
    let elapsed_s = t0.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if status.success() && cmin {
        minimise(target, &corpus)?;
    }
    Ok(Outcome {
        target: target.to_string(),
        seconds: elapsed_s,
        execs: stat(&text, "stat::number_of_executed_units"),
        execs_per_s: stat(&text, "stat::average_exec_per_sec"),
        corpus_files: count_files(&corpus),
        crashed: !status.success(),
        log,
    })
}

/// Keeps a small corpus with the same edges (greedy set cover, hit counts ignored), so
/// the repository can hold it: a few hundred files where a plain merge keeps thousands.
fn minimise(target: &str, corpus: &Path) -> Result<()> {
    let ok = nightly_cargo()
        .args(["fuzz", "cmin"])
        .args(BUILD_FLAGS)
        .arg(target)
        .arg(corpus)
        .arg("--")
        .arg(format!("-max_len={}", max_len_bytes(target)))
        .args(["-set_cover_merge=1", "-use_counters=0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running cargo fuzz cmin")?
        .success();
    if !ok {
        bail!("cargo fuzz cmin {target} failed");
    }
    Ok(())
}

pub fn fuzz(args: &[String]) -> Result<()> {
    let o = parse_args(args)?;
    ensure_tools()?;
    println!(
        "fuzz: building {} targets (nightly, optimised, overflow checks, no sanitizer)",
        TARGETS.len()
    );
    let built = nightly_cargo()
        .args(["fuzz", "build"])
        .args(BUILD_FLAGS)
        .status()
        .context("running cargo fuzz build")?
        .success();
    if !built {
        bail!("cargo fuzz build failed");
    }
    let mut results = Vec::new();
    for t in &o.targets {
        println!("fuzz: {t} for {} s", o.seconds);
        let r = run_target(t, o.seconds, o.cmin)?;
        print_row(&r);
        results.push(r);
    }
    println!("\ntarget          seconds   executions     exec/s  corpus  crashes");
    for r in &results {
        print_row(r);
    }
    let crashed: Vec<&str> = results
        .iter()
        .filter(|r| r.crashed)
        .map(|r| r.target.as_str())
        .collect();
    if !crashed.is_empty() {
        for r in results.iter().filter(|r| r.crashed) {
            eprintln!(
                "fuzz: {} crashed: see {} and fuzz/artifacts/{}/",
                r.target,
                r.log.display(),
                r.target
            );
        }
        bail!("crashes in {}", crashed.join(", "));
    }
    Ok(())
}

fn print_row(r: &Outcome) {
    println!(
        "{:<15} {:>7.0} {:>12} {:>10} {:>7} {:>8}",
        r.target,
        r.seconds,
        r.execs,
        r.execs_per_s,
        r.corpus_files,
        u8::from(r.crashed)
    );
}
