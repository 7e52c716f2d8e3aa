//! Project automation: `cargo xtask run | test | bench`. Sets up what a fresh machine
//! lacks, then builds and runs. Never needed by a plain `cargo build`.

mod bench;
mod bench_markers;
mod bench_report;
mod python;
mod setup;
mod stack;
mod util;

use std::process::ExitCode;

use anyhow::{Result, bail};

use util::{cargo, root, sh};

const USAGE: &str = "usage: cargo xtask <command>

  run [-- PROBE ARGS]   build the probe and run it (default: record the demo workload
                        and summarise it)
  setup                 install the eBPF toolchain (nightly rust-src, bpf-linker)
  test                  the whole test suite (what .ci/run runs)
  stack [--probe HOST:PORT] [--secrets DIR]
                        Prometheus (127.0.0.1:9090) and Alertmanager (127.0.0.1:9093)
                        with monitoring/, scraping the probe, until Ctrl-C
  bench [--seconds N] [--no-codecarbon]
                        probe CPU time and peak RSS at default rates on a fake RAPL
                        tree (1 kHz) and 8 fake GPUs, next to CodeCarbon
  bench-markers         step-marker cost with the uprobes attached, an empty uprobe
                        and no probe; events lost at 100,000 markers/s
  bench-report [--gpus N] [--seconds S] [--rounds R]
                        `report` on a generated trace (default 8 GPUs x 250000 s:
                        100 M power rows, 1 M steps) next to DuckDB on the same files
  bench-replay          replay throughput: OpenMetrics encoding, and remote_write into
                        VictoriaMetrics, of a generated run (8 GPUs, 1 h)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(),
        Some("setup") => setup::setup(),
        Some("stack") => stack::stack(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("bench-markers") => bench_markers::bench_markers(&args[1..]),
        Some("bench-report") => bench_report::bench_report(&args[1..]),
        Some("bench-replay") => cargo(&["bench", "-p", "eco2ai-analyze", "--bench", "replay"]),
        Some("marker-loop") => bench_markers::marker_loop(&args[1..]),
        Some("timer-floor") => {
            bench::timer_floor_loop(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10));
            Ok(())
        }
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command '{other}'\n{USAGE}"),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Builds both binaries and records; with no arguments, the demo then its summary.
fn run(args: &[String]) -> Result<()> {
    if let Err(e) = setup::setup() {
        eprintln!(
            "xtask: eBPF toolchain not set up ({e:#}); the probe will take steps through the marker socket"
        );
    }
    cargo(&["build", "--bin", "eco2ai-probe", "--bin", "eco2ai-analyze"])?;
    let bin = root().join("target/debug");
    let probe_args: Vec<String> = match args {
        [] => [
            "record",
            "--demo",
            "--project",
            "demo",
            "--model",
            "synthetic",
            "--country",
            "FR",
        ]
        .map(String::from)
        .to_vec(),
        [dashdash, rest @ ..] if dashdash == "--" => rest.to_vec(),
        other => other.to_vec(),
    };
    let mut cmd = vec![bin.join("eco2ai-probe").display().to_string()];
    if !is_root() {
        if sh("sudo", &["-n", "true"]).is_ok() {
            cmd.insert(0, "sudo".into());
            cmd.insert(1, "-E".into());
        } else {
            eprintln!(
                "xtask: not root and no password-less sudo: RAPL (powercap, perf) and eBPF need root; recording without them"
            );
        }
    }
    cmd.extend(probe_args);
    let out = util::run_capture(&cmd)?;
    if args.is_empty() {
        let run_dir = out.lines().last().unwrap_or_default().trim().to_string();
        if run_dir.is_empty() {
            bail!("the probe printed no run directory");
        }
        util::run_inherit(&[
            bin.join("eco2ai-analyze").display().to_string(),
            "summary".into(),
            run_dir.clone(),
        ])?;
        // The full report: per-step energy, CO2, cost, figures and report.html.
        let reports = root().join("runs/reports");
        util::run_inherit(&[
            bin.join("eco2ai-analyze").display().to_string(),
            "report".into(),
            run_dir,
            "--price-per-kwh".into(),
            "0.18".into(),
            "--gpu-hour-usd".into(),
            "2.5".into(),
            "--out".into(),
            reports.display().to_string(),
        ])?;
        eprintln!("xtask: report.html and figures under {}", reports.display());
    } else {
        print!("{out}");
    }
    Ok(())
}

/// The whole suite: everything `.ci/run` checks. Ends with one `N passed, N failed`
/// line totalling every test binary and the smoke run of the main job.
fn test() -> Result<()> {
    setup::setup()?;
    if is_root() {
        // As root (CI) the eBPF programs must build and their privileged tests must run.
        // SAFETY: single-threaded at this point; no other thread reads the environment.
        unsafe {
            std::env::set_var("ECO2AI_REQUIRE_EBPF", "1");
            std::env::set_var("ECO2AI_REQUIRE_STACK", "1");
        }
    }
    cargo(&["build", "--workspace", "--all-targets"])?;
    let (mut passed, mut failed) = util::cargo_test(&["test", "--workspace", "--no-fail-fast"])?;
    let (py_passed, py_failed) = python::pytest()?;
    passed += py_passed;
    failed += py_failed;
    let (mon_passed, mon_failed) = monitoring_checks();
    passed += mon_passed;
    failed += mon_failed;
    match smoke() {
        Ok(()) => passed += 1,
        Err(e) => {
            eprintln!("xtask: smoke run of the main job failed: {e:#}");
            failed += 1;
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} test(s) failed");
    }
    Ok(())
}

/// promtool and amtool on monitoring/: each check is one test.
fn monitoring_checks() -> (u64, u64) {
    let dir = root().join("monitoring");
    let stack_ok = stack::stack(&["--check".to_string()]);
    println!(
        "monitoring: cargo xtask stack --check ... {}",
        if stack_ok.is_ok() { "ok" } else { "FAILED" }
    );
    if let Err(e) = &stack_ok {
        eprintln!("xtask: {e:#}");
    }
    let (mut passed, mut failed) = if stack_ok.is_ok() { (1, 0) } else { (0, 1) };
    let checks: [(&str, &[&str]); 4] = [
        ("promtool", &["check", "config", "prometheus.yml"]),
        ("promtool", &["check", "rules", "alerts.yml"]),
        ("promtool", &["test", "rules", "alerts_test.yml"]),
        ("amtool", &["check-config", "alertmanager.yml"]),
    ];
    for (tool, args) in checks {
        let ok = std::process::Command::new(tool)
            .args(args)
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        println!(
            "monitoring: {tool} {} ... {}",
            args.join(" "),
            if ok { "ok" } else { "FAILED" }
        );
        if ok { passed += 1 } else { failed += 1 }
    }
    (passed, failed)
}

/// The main job on a short demo: record, then summarise and report the run it printed.
fn smoke() -> Result<()> {
    let bin = root().join("target/debug");
    let out = std::env::temp_dir().join(format!("eco2ai-smoke-{}", std::process::id()));
    let probe = bin.join("eco2ai-probe").display().to_string();
    let cmd = [
        probe,
        "record".into(),
        "--demo".into(),
        "--duration".into(),
        "3s".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    let printed = util::run_capture(&cmd)?;
    let run_dir = printed.lines().last().unwrap_or_default().to_string();
    let analyze = bin.join("eco2ai-analyze").display().to_string();
    let summary = util::run_capture(&[
        analyze.clone(),
        "summary".into(),
        "--json".into(),
        run_dir.clone(),
    ])?;
    let report = util::run_capture(&[
        analyze,
        "report".into(),
        run_dir,
        "--format".into(),
        "json".into(),
        "--country".into(),
        "FR".into(),
        "--out".into(),
        out.join("reports").display().to_string(),
    ]);
    let html = std::fs::read_dir(out.join("reports"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("report.html").exists());
    let _ = std::fs::remove_dir_all(&out);
    let report = report?;
    let v: serde_json::Value = serde_json::from_str(&summary)?;
    let ok = v["truncated"] == serde_json::Value::Bool(false)
        && v["cpu_energy_kwh"].as_f64().unwrap_or(0.0) > 0.0
        && v["steps"].as_u64().unwrap_or(0) > 10;
    if !ok {
        bail!("unexpected summary of the demo run: {summary}");
    }
    let r: serde_json::Value = serde_json::from_str(&report)?;
    if !(r["co2_kg"].as_f64().unwrap_or(0.0) > 0.0
        && r["steps"]["count"].as_u64().unwrap_or(0) > 10
        && html)
    {
        bail!("unexpected report of the demo run (report.html written: {html}): {report}");
    }
    Ok(())
}
