//! The main job (`cargo xtask run` with no arguments): build what the demo needs (both
//! binaries and the marker library, in the dev profile the test suite builds), record
//! the built-in demo with steps, summarise it and write its report. The test suite's
//! smoke run calls this same code and checks what it printed.
//!
//! Why the dev profile: the workspace's dev profile compiles dependencies at opt-level 1
//! (Cargo.toml), so the test suite and the main job share one build (a clean target takes
//! ~15 min on 2 cores, docs/benchmarks.md; a release build takes longer). The figures are honest in it:
//! energy comes from the sensors, not from the probe's speed, and the probe's own cost is
//! measured by `cargo xtask bench`. `--release` builds the release profile instead.
//!
//! Why every target: the test suite builds `--workspace --all-targets`; building anything
//! less selects other features of shared dependencies (dev-dependencies unify too) and
//! compiles arrow, parquet and reqwest a second time. One invocation for both keeps `xtask run`
//! after `xtask test` (and the suite's smoke run) free of rebuilds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::util::root;

/// What the demo needs, as cargo built it (paths from cargo's artifact messages, so a
/// missing piece is an error here rather than a silent 0-step demo).
pub struct Built {
    pub probe: PathBuf,
    pub analyze: PathBuf,
    pub marker_lib: PathBuf,
}

/// Builds the workspace as the test suite does; returns the probe, the analyzer and the
/// marker cdylib among what cargo reports.
pub fn build(release: bool) -> Result<Built> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec![
        "build",
        "--message-format=json-render-diagnostics",
        "--workspace",
        "--all-targets",
    ];
    if release {
        args.push("--release");
    }
    let mut child = Command::new(&cargo)
        .args(&args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cargo}"))?;
    let (mut probe, mut analyze, mut marker_lib) = (None, None, None);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let Ok(msg) = serde_json::from_str::<Value>(&line?) else {
                continue;
            };
            if msg["reason"] != "compiler-artifact" {
                continue;
            }
            match msg["executable"].as_str() {
                Some(p) if p.ends_with("/eco2ai-probe") => probe = Some(PathBuf::from(p)),
                Some(p) if p.ends_with("/eco2ai-analyze") => analyze = Some(PathBuf::from(p)),
                _ => {}
            }
            let files = msg["filenames"].as_array().into_iter().flatten();
            for f in files.filter_map(Value::as_str) {
                if f.ends_with("/libeco2ai_marker.so") {
                    marker_lib = Some(PathBuf::from(f));
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(Built {
        probe: probe.context("cargo built no eco2ai-probe binary")?,
        analyze: analyze.context("cargo built no eco2ai-analyze binary")?,
        marker_lib: marker_lib.context("cargo built no libeco2ai_marker.so")?,
    })
}

/// Where the demo's run and report go, and how long it records.
pub struct DemoPlan {
    pub out: PathBuf,
    pub reports: PathBuf,
    /// `None`: the probe's default (15 s).
    pub duration: Option<String>,
    /// Prefix the probe with `sudo -E` (not root, password-less sudo there).
    pub sudo: bool,
}

/// What the demo left: its run directory, the report's JSON and report.html.
pub struct DemoResult {
    pub run_dir: PathBuf,
    pub report: Value,
    pub html: PathBuf,
}

/// Records the demo, prints its summary and report table, and checks the report shows
/// per-step energy: steps, p50/p95, samples/kWh and the efficiency score.
pub fn record_demo(built: &Built, plan: &DemoPlan) -> Result<DemoResult> {
    let mut cmd: Vec<String> = Vec::new();
    if plan.sudo {
        cmd.extend(["sudo".into(), "-E".into()]);
    }
    cmd.push(built.probe.display().to_string());
    for a in [
        "record",
        "--demo",
        "--project",
        "demo",
        "--model",
        "synthetic",
    ] {
        cmd.push(a.into());
    }
    cmd.extend(["--country".into(), "FR".into()]);
    cmd.extend([
        "--marker-lib".into(),
        built.marker_lib.display().to_string(),
    ]);
    cmd.extend(["--out".into(), plan.out.display().to_string()]);
    if let Some(d) = &plan.duration {
        cmd.extend(["--duration".into(), d.clone()]);
    }
    let printed = crate::util::run_capture(&cmd)?;
    let run_dir = PathBuf::from(printed.lines().last().unwrap_or_default().trim());
    if run_dir.as_os_str().is_empty() {
        bail!("the probe printed no run directory");
    }
    let analyze = built.analyze.display().to_string();
    crate::util::run_inherit(&[analyze.clone(), "summary".into(), path_arg(&run_dir)])?;
    crate::util::run_inherit(&[
        analyze,
        "report".into(),
        path_arg(&run_dir),
        "--price-per-kwh".into(),
        "0.18".into(),
        "--gpu-hour-usd".into(),
        "2.5".into(),
        "--out".into(),
        path_arg(&plan.reports),
    ])?;
    let run_id = run_dir
        .file_name()
        .context("the run directory has no name")?;
    let dir = plan.reports.join(run_id);
    let json = std::fs::read_to_string(dir.join("report.json"))
        .with_context(|| format!("reading {}", dir.join("report.json").display()))?;
    let report: Value = serde_json::from_str(&json).context("report.json is not JSON")?;
    check_report(&report)?;
    check_phases(&run_dir)?;
    Ok(DemoResult {
        run_dir,
        report,
        html: dir.join("report.html"),
    })
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// The demo's report must show what the product is for: energy per step.
pub fn check_report(r: &Value) -> Result<()> {
    let steps = r["steps"]["count"].as_u64().unwrap_or(0);
    if steps == 0 {
        bail!(
            "the demo recorded no steps: the report cannot show per-step energy (see the probe's 'steps' line above)"
        );
    }
    let present = |v: &Value| v.as_f64().is_some_and(|x| x.is_finite() && x > 0.0);
    for (what, v) in [
        ("per-step energy p50", &r["steps"]["energy_j_p50"]),
        ("per-step energy p95", &r["steps"]["energy_j_p95"]),
        ("samples/kWh", &r["samples_per_kwh"]),
        ("efficiency score", &r["efficiency"]["score"]),
        ("CO2", &r["co2_kg"]),
    ] {
        if !present(v) {
            bail!("the demo's report has no {what} ({steps} steps): {v}");
        }
    }
    Ok(())
}

/// The demo marks its evaluation pass and its checkpoint save as phase spans: the run
/// must hold an `eval` and a `checkpoint` row, each with a positive length.
pub fn check_phases(run_dir: &Path) -> Result<()> {
    use eco2ai_trace::phase::{CHECKPOINT, EVAL};
    let run = eco2ai_trace::Run::open(run_dir)
        .with_context(|| format!("opening {}", run_dir.display()))?;
    let table = run
        .read_table(eco2ai_trace::Table::Phases)
        .context("reading the phases table")?;
    let rows: Vec<_> = table
        .batches
        .iter()
        .flat_map(eco2ai_trace::from_batch::phase_rows)
        .collect();
    for name in [EVAL, CHECKPOINT] {
        if !rows
            .iter()
            .any(|r| &*r.name == name && r.end_ns > r.begin_ns)
        {
            bail!(
                "the demo's run has no {name} phase row ({} phase rows): the demo marks its {name} span",
                rows.len()
            );
        }
    }
    Ok(())
}

/// The last lines of the main job: where the report is, as a path a person can open.
pub fn print_where(res: &DemoResult) -> Result<()> {
    let html = std::fs::canonicalize(&res.html)
        .with_context(|| format!("report.html missing at {}", res.html.display()))?;
    let r = &res.report;
    eprintln!();
    eprintln!(
        "demo: {} steps, {:.2} J per step (p50), {} samples/kWh, efficiency {:.2}",
        r["steps"]["count"],
        r["steps"]["energy_j_p50"].as_f64().unwrap_or(f64::NAN),
        r["samples_per_kwh"]
            .as_f64()
            .map_or("-".into(), eco2ai_trace::numfmt::thousands),
        r["efficiency"]["score"].as_f64().unwrap_or(f64::NAN)
    );
    eprintln!("run:    {}", res.run_dir.display());
    eprintln!("report: {}", html.display());
    eprintln!("        file://{}", html.display());
    Ok(())
}

/// Opens report.html in a browser where one exists; says so where none does.
pub fn open(html: &Path) {
    let browser = std::env::var("BROWSER").ok();
    let candidates = browser
        .iter()
        .map(String::as_str)
        .chain(["xdg-open", "chromium", "firefox"]);
    for b in candidates {
        let started = Command::new(b)
            .arg(html)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if started.is_ok() {
            eprintln!("xtask: opened {} with {b}", html.display());
            return;
        }
    }
    eprintln!(
        "xtask: --open: no browser found ($BROWSER, xdg-open, chromium, firefox); open the path above"
    );
}
