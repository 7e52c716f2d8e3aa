//! `cargo xtask bench-markers`: what a step marker costs a training loop, with the
//! probe's uprobes attached, next to an empty uprobe and to no probe at all; and
//! whether any event is lost at 100,000 markers per second. Needs root for the eBPF
//! rows; runs the rest anyway.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use eco2ai_marker::Eco2aiStep;
use eco2ai_probe::markers::{ENV_MARKER_LIB, MarkerFns};

use crate::util::{cargo, root};

/// The loop that runs as the measured process: `marker-loop time N` prints the ns per
/// marker call and per `eco2ai_marker_lost` call; `marker-loop paced RATE SECONDS`
/// calls begin/end at RATE markers per second and prints the steps it marked.
pub fn marker_loop(args: &[String]) -> Result<()> {
    let lib = std::env::var(ENV_MARKER_LIB).context("ECO2AI_MARKER_LIB not set")?;
    let m = MarkerFns::load(&lib).with_context(|| format!("loading {lib}"))?;
    let num = |i: usize| -> Result<u64> {
        args.get(i)
            .and_then(|s| s.parse().ok())
            .context("marker-loop: bad number")
    };
    let json = match args.first().map(String::as_str) {
        Some("time") => time_markers(&m, num(1)?),
        Some("paced") => paced_markers(&m, num(1)?, num(2)?),
        _ => bail!("marker-loop time N | paced RATE SECONDS"),
    };
    println!("{json}");
    Ok(())
}

/// The step a loop marks: a training step's usual fields.
fn bench_step(i: u64) -> Eco2aiStep {
    Eco2aiStep {
        step: i,
        samples: 8,
        tokens: 8 * 512,
        loss: 1.0,
        lr: 1e-4,
        epoch: 0.0,
    }
}

/// `n` steps as fast as they go, then `n` empty calls: ns per call of each.
fn time_markers(m: &MarkerFns, n: u64) -> String {
    let t = Instant::now();
    for i in 0..n {
        (m.begin)(i);
        let s = bench_step(i);
        // SAFETY: a valid step struct that outlives the call.
        unsafe { (m.end)(&s) };
    }
    let per_marker = t.elapsed().as_nanos() as f64 / (2 * n) as f64;
    let t = Instant::now();
    let mut acc = 0;
    for _ in 0..n {
        acc += (m.lost)();
    }
    let per_empty = t.elapsed().as_nanos() as f64 / n as f64;
    format!(
        "{{\"ns_per_marker\": {per_marker:.1}, \"ns_per_lost_call\": {per_empty:.1}, \"lost\": {acc}}}"
    )
}

/// Steps at `rate` markers per second for `secs` seconds: the steps marked, the rate
/// achieved.
fn paced_markers(m: &MarkerFns, rate: u64, secs: u64) -> String {
    let steps = rate * secs / 2;
    let period = Duration::from_secs_f64(2.0 / rate as f64);
    let start = Instant::now();
    for i in 0..steps {
        while start.elapsed() < period * i as u32 {
            std::hint::spin_loop();
        }
        (m.begin)(i);
        let s = bench_step(i);
        // SAFETY: a valid step struct that outlives the call.
        unsafe { (m.end)(&s) };
    }
    let achieved = 2.0 * steps as f64 / start.elapsed().as_secs_f64();
    format!(
        "{{\"steps\": {steps}, \"markers_per_s\": {achieved:.0}, \"lost\": {}}}",
        (m.lost)()
    )
}

fn json_out(cmd: &mut Command) -> Result<serde_json::Value> {
    let o = cmd.output().context("running the marker loop")?;
    if !o.status.success() {
        bail!("{:?} failed: {}", cmd, String::from_utf8_lossy(&o.stderr));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .context("no JSON from the marker loop")?;
    Ok(serde_json::from_str(line)?)
}

pub fn bench_markers(_args: &[String]) -> Result<()> {
    cargo(&[
        "build",
        "--release",
        "-p",
        "eco2ai-marker",
        "-p",
        "eco2ai-probe",
    ])?;
    let lib = root().join("target/release/libeco2ai_marker.so");
    let probe = root().join("target/release/eco2ai-probe");
    let me = std::env::current_exe()?;
    let n = 200_000u64;
    let lp = |args: &[&str]| {
        let mut c = Command::new(&me);
        c.arg("marker-loop").args(args).env(ENV_MARKER_LIB, &lib);
        c
    };
    let mut report = Vec::new();
    let bare = json_out(&mut lp(&["time", &n.to_string()]))?;
    report.push(format!(
        "no probe:        {} ns per marker call, {} ns per empty call",
        bare["ns_per_marker"], bare["ns_per_lost_call"]
    ));

    match eco2ai_probe::ebpf::EbpfProbe::attach_empty(
        &lib,
        &["eco2ai_step_begin", "eco2ai_step_end"],
    ) {
        Ok(_guard) => {
            let e = json_out(&mut lp(&["time", &n.to_string()]))?;
            report.push(format!("empty uprobe:    {} ns per marker call (an empty program on the same two functions)", e["ns_per_marker"]));
        }
        Err(e) => report.push(format!("empty uprobe:    not measured ({e})")),
    }
    let out = std::env::temp_dir().join(format!("eco2ai-bench-markers-{}", std::process::id()));
    let under_probe = |extra: &[&str]| -> Result<serde_json::Value> {
        let mut c = Command::new(&probe);
        c.args(["record", "--out"])
            .arg(&out)
            .arg("--marker-lib")
            .arg(&lib)
            .arg("--")
            .arg(&me)
            .arg("marker-loop")
            .args(extra);
        json_out(&mut c)
    };
    let p = under_probe(&["time", &n.to_string()])?;
    report.push(format!(
        "probe attached:  {} ns per marker call (uprobe + ring buffer event)",
        p["ns_per_marker"]
    ));
    let paced = under_probe(&["paced", "100000", "3"])?;
    report.push(paced_line(&out, &paced)?);
    let _ = std::fs::remove_dir_all(&out);
    let text = report.join("\n");
    println!("{text}");
    Ok(())
}

/// What the paced run recorded against what it marked, and where its steps came from.
fn paced_line(out: &std::path::Path, paced: &serde_json::Value) -> Result<String> {
    let run_dir = std::fs::read_dir(out)?
        .flatten()
        .map(|e| e.path())
        .max()
        .context("no run")?;
    let run = eco2ai_trace::Run::open(&run_dir)?;
    let steps = run.read_table(eco2ai_trace::Table::Steps)?.num_rows();
    let lost: u64 = run
        .meta()
        .sensor_errors
        .iter()
        .filter(|(k, _)| k.starts_with("ebpf"))
        .map(|(_, v)| v)
        .sum();
    let source = run
        .meta()
        .sensors
        .iter()
        .find(|s| s.kind == "markers")
        .map(|s| s.note.clone())
        .unwrap_or_default();
    Ok(format!(
        "paced:           {} markers/s achieved, {} steps marked, {steps} recorded, {lost} events lost ({source})",
        paced["markers_per_s"], paced["steps"]
    ))
}
