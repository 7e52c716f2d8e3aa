//! Project automation: `cargo xtask run | test | bench`. Sets up what a fresh machine
//! lacks, then builds and runs. Never needed by a plain `cargo build`.

mod bench;
mod bench_job;
mod bench_load;
mod bench_markers;
mod bench_report;
mod cluster;
mod fuzz;
mod main_job;
mod python;
mod setup;
mod stack;
mod util;

use std::process::ExitCode;

use anyhow::{Result, bail};

use util::{cargo, root, sh};

const USAGE: &str = "usage: cargo xtask <command>

  run [--release] [--open] [-- PROBE ARGS]
                        build the probe, the analyzer and the marker library, then record
                        the demo workload with its steps, summarise it and write its
                        report (runs/reports/<run>/report.html; --open opens it); with
                        PROBE ARGS, run eco2ai-probe with them instead
  setup                 install the eBPF toolchain (nightly rust-src, bpf-linker)
  test                  the whole test suite (what .ci/run runs)
  stack [--probe HOST:PORT] [--secrets DIR] [--global]
                        Prometheus (127.0.0.1:9090) and Alertmanager (127.0.0.1:9093)
                        with monitoring/, scraping the probe, until Ctrl-C; --global
                        adds a Prometheus (127.0.0.1:9095) federating the first
  bench [--seconds N] [--no-codecarbon] [--nvml-cost h200|none] [--probe-arg A]...
        [--probe-bin PATH]
                        probe CPU time (per thread) and peak RSS at default rates on a
                        fake RAPL tree (1 kHz) and 8 fake GPUs costing NVML's CPU,
                        recording 64 threads, /metrics scraped, next to CodeCarbon
  bench-markers         step-marker cost with the uprobes attached, an empty uprobe
                        and no probe; events lost at 100,000 markers/s
  bench-report [--gpus N] [--seconds S] [--rounds R]
                        `report` on a generated trace (default 8 GPUs x 250000 s:
                        100 M power rows, 1 M steps) next to DuckDB on the same files
  bench-job [--nodes 4,16,64] [--gpus N] [--seconds S] [--rounds R] [--release]
                        `job` on generated multi-node jobs (default 4, 16 and 64 nodes x
                        8 GPUs x 30 min) next to DuckDB on the same hive-partitioned files
  fuzz [--seconds N] [TARGET...] [--no-cmin]
                        the cargo-fuzz targets (default all, 600 s each) on fuzz/corpus/;
                        per target executions, exec/s, corpus size, crashes (exit 1 on one)
  cluster up [--nodes N] | down | status | exec NODE CMD...
                        (root) N nodes as network namespaces with their own hostnames on
                        a bridge (10.77.0.0/24), munged, slurmctld and one slurmd a node
                        (scripts/cluster/cluster.sh); down removes them
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
        Some("bench-job") => bench_job::bench_job(&args[1..]),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("cluster") => cluster::cluster(&args[1..]),
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

/// Flags of `cargo xtask run` before an optional `-- PROBE ARGS`.
struct RunFlags {
    release: bool,
    open: bool,
    probe_args: Vec<String>,
}

fn run_flags(args: &[String]) -> Result<RunFlags> {
    let mut f = RunFlags {
        release: false,
        open: false,
        probe_args: Vec::new(),
    };
    for (i, a) in args.iter().enumerate() {
        match a.as_str() {
            "--release" => f.release = true,
            "--open" => f.open = true,
            "--" => {
                f.probe_args = args[i + 1..].to_vec();
                break;
            }
            other => {
                bail!("unknown flag '{other}' for run (put probe arguments after --)\n{USAGE}")
            }
        }
    }
    Ok(f)
}

/// Builds the binaries and the marker library and records; with no probe arguments,
/// the demo, its summary and its report.
fn run(args: &[String]) -> Result<()> {
    let flags = run_flags(args)?;
    if let Err(e) = setup::setup() {
        eprintln!(
            "xtask: eBPF toolchain not set up ({e:#}); the probe will take steps through the marker socket"
        );
    }
    let built = main_job::build(flags.release)?;
    let sudo = !is_root() && sh("sudo", &["-n", "true"]).is_ok();
    if !is_root() && !sudo {
        eprintln!(
            "xtask: not root and no password-less sudo: RAPL (powercap, perf) and eBPF need root; recording without them (steps through the marker socket)"
        );
    }
    if !flags.probe_args.is_empty() {
        let mut cmd = Vec::new();
        if sudo {
            cmd.extend(["sudo".to_string(), "-E".to_string()]);
        }
        cmd.push(built.probe.display().to_string());
        cmd.extend(flags.probe_args);
        util::run_inherit(&cmd)?;
        return Ok(());
    }
    let plan = main_job::DemoPlan {
        out: root().join("runs"),
        reports: root().join("runs/reports"),
        duration: None,
        sudo,
    };
    let res = main_job::record_demo(&built, &plan)?;
    main_job::print_where(&res)?;
    if flags.open {
        main_job::open(&res.html);
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
            std::env::set_var("ECO2AI_REQUIRE_CLUSTER", "1");
        }
    }
    // Each phase's wall time is printed: CI's log then says what a clean target costs.
    let began = std::time::Instant::now();
    let lap = |what: &str, since: std::time::Instant| {
        println!("xtask: {what} took {:.0} s", since.elapsed().as_secs_f64());
    };
    // Before the Rust tests: the cluster tests run torchrun and the markers from .venv.
    python::ensure_venv()?;
    cargo(&["build", "--workspace", "--all-targets"])?;
    lap("the build (setup included)", began);
    let t2 = std::time::Instant::now();
    let (mut passed, mut failed) = util::cargo_test(&["test", "--workspace", "--no-fail-fast"])?;
    lap("cargo test", t2);
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
    lap("the whole suite", began);
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
    let checks: [(&str, &[&str]); 5] = [
        ("promtool", &["check", "config", "prometheus.yml"]),
        ("promtool", &["check", "config", "prometheus-global.yml"]),
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

/// The main job exactly as `cargo xtask run` runs it (its build, its demo, its checks of
/// the report), on a shorter demo, into a temporary directory.
fn smoke() -> Result<()> {
    let built = main_job::build(false)?;
    let out = std::env::temp_dir().join(format!("eco2ai-smoke-{}", std::process::id()));
    let plan = main_job::DemoPlan {
        out: out.clone(),
        reports: out.join("reports"),
        duration: Some("6s".into()),
        sudo: false,
    };
    let res = main_job::record_demo(&built, &plan);
    let checked = res.and_then(|r| {
        main_job::print_where(&r)?;
        smoke_checks(&r)
    });
    let _ = std::fs::remove_dir_all(&out);
    checked
}

/// What the smoke run asks beyond the main job's own checks: a complete run, with CPU
/// energy, steps through uprobes where eBPF is required, and report.html written.
fn smoke_checks(r: &main_job::DemoResult) -> Result<()> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.run_dir.join("meta.json"))?)?;
    if meta["status"] != "complete" {
        bail!("the demo run is not complete: {}", meta["status"]);
    }
    if !(r.report["cpu_energy_kwh"].as_f64().unwrap_or(0.0) > 0.0) {
        bail!("the demo's report has no CPU energy");
    }
    if !r.html.is_file() {
        bail!("no report.html at {}", r.html.display());
    }
    let steps = r.report["steps"]["count"].as_u64().unwrap_or(0);
    if steps < 10 {
        bail!("the demo recorded {steps} steps in 6 s (expected dozens)");
    }
    if std::env::var_os("ECO2AI_REQUIRE_EBPF").is_some() {
        let sensors = meta["sensors"].as_array().into_iter().flatten();
        let uprobes = sensors.filter(|s| s["kind"] == "markers").any(|s| {
            s["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("eBPF uprobes"))
        });
        if !uprobes {
            bail!("ECO2AI_REQUIRE_EBPF is set but the demo's steps did not come through uprobes");
        }
    }
    Ok(())
}
