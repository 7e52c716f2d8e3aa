//! `cargo xtask bench`: the probe's own cost at default rates, on a fake RAPL tree
//! driven at 1 kHz and 8 fake GPUs whose calls burn the CPU real NVML costs on an H200,
//! recording a 64-thread process tree with /metrics scraped every 15 s, next to
//! CodeCarbon (measure_power_secs=1) run at the same time on the same machine. The
//! probe's CPU is its own (RUSAGE_SELF, kept in meta.json; wait4 would add the recorded
//! tree's), split by thread from /proc/PID/task/*/schedstat.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use eco2ai_probe::samplers::rapl::fake_tree::FakePowercap;

use crate::bench_load;
use crate::util::{cargo, root};

#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub cpu_s: f64,
    pub max_rss_mb: f64,
    pub wall_s: f64,
}

/// Waits for `child` with wait4 to get its own CPU time and peak RSS.
pub fn wait_usage(child: Child, started: std::time::Instant) -> Result<(i32, Usage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; the pid is our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to locals; waits for exactly this child.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let usage = Usage {
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_mb: ru.ru_maxrss as f64 / 1024.0,
        wall_s: started.elapsed().as_secs_f64(),
    };
    Ok((libc::WEXITSTATUS(status), usage))
}

fn python_with_codecarbon() -> Result<PathBuf> {
    let venv = root().join(".venv");
    let py = venv.join("bin/python");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import codecarbon"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has(&py) {
        eprintln!("xtask: installing codecarbon into {}", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?
            .success()
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "codecarbon"])
                .status()?
                .success();
        if !ok || !has(&py) {
            bail!("could not install codecarbon into {}", venv.display());
        }
    }
    Ok(py)
}

/// `cargo xtask bench`'s flags.
struct BenchArgs {
    seconds: u64,
    codecarbon: bool,
    nvml_cost: String,
    probe_args: Vec<String>,
    probe_bin: Option<PathBuf>,
}

impl BenchArgs {
    fn parse(args: &[String]) -> Result<BenchArgs> {
        let mut a = BenchArgs {
            seconds: 60,
            codecarbon: true,
            nvml_cost: "h200".to_string(),
            probe_args: Vec::new(),
            probe_bin: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--nvml-cost" => {
                    a.nvml_cost = it.next().context("--nvml-cost needs h200 or none")?.clone()
                }
                "--probe-bin" => {
                    a.probe_bin = Some(it.next().context("--probe-bin needs a path")?.into())
                }
                "--probe-arg" => a
                    .probe_args
                    .push(it.next().context("--probe-arg needs a value")?.clone()),
                "--seconds" => {
                    a.seconds = it
                        .next()
                        .and_then(|s| s.parse().ok())
                        .context("--seconds needs a number")?
                }
                "--no-codecarbon" => a.codecarbon = false,
                other => bail!("unknown bench flag '{other}'"),
            }
        }
        Ok(a)
    }
}

pub fn bench(args: &[String]) -> Result<()> {
    let a = BenchArgs::parse(args)?;
    let probe_bin = probe_bin(a.probe_bin.clone())?;
    let py = if a.codecarbon {
        Some(python_with_codecarbon()?)
    } else {
        None
    };
    let out = root().join("bench-out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let tree = FakePowercap::intel_one_socket(&out.join("powercap"))?;
    let _driver = tree.spawn_driver(Duration::from_millis(1));

    // A port of its own, so a probe another test runs on the default does not collide.
    let metrics_addr = format!("127.0.0.1:{}", 19_000 + std::process::id() % 1000);
    let started = std::time::Instant::now();
    let probe = start_probe(&probe_bin, &out, &tree.root, &metrics_addr, &a)?;
    let threads = bench_load::ThreadCpu::start(probe.id());
    // The floor runs at the same time, so both see the same load on the machine.
    let seconds = a.seconds;
    let floor = std::thread::spawn(move || timer_floor(seconds));
    let scraper = bench_load::Scraper::start(metrics_addr, Duration::from_secs(15));
    let cc = match &py {
        Some(py) => Some(start_codecarbon(py, a.seconds, &out)?),
        None => None,
    };
    let (code, probe_use) = wait_usage(probe, started)?;
    let by_thread = threads.finish();
    let scraped = scraper.finish();
    if code != 0 {
        bail!("the probe exited with {code}");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("bench/meta.json"))?)?;
    let mut report = probe_report(&meta, probe_use, &by_thread, scraped, &a);
    let floor = floor
        .join()
        .map_err(|_| anyhow::anyhow!("the floor thread panicked"))??;
    report.push(line(
        "floor: an empty 1 kHz sleep loop, same time",
        floor,
        0,
    ));
    if let Some(cc) = cc {
        report.extend(codecarbon_report(cc, started, &out)?);
    }
    let text = report.join("\n");
    println!("{text}");
    std::fs::write(out.join("bench.txt"), format!("{text}\n"))?;
    Ok(())
}

/// `--probe-bin`: another build (its marker library beside it), for before/after;
/// else this tree's, built in the release profile.
fn probe_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    Ok(match given {
        Some(p) => p,
        None => {
            cargo(&[
                "build",
                "--release",
                "-p",
                "eco2ai-probe",
                "-p",
                "eco2ai-marker",
            ])?;
            root().join("target/release/eco2ai-probe")
        }
    })
}

/// The probe recording the load with 8 fake GPUs at NVML's cost and the fake RAPL tree.
fn start_probe(
    bin: &Path,
    out: &Path,
    powercap: &Path,
    metrics_addr: &str,
    a: &BenchArgs,
) -> Result<Child> {
    Command::new(bin)
        .args(["record", "--out"])
        .arg(out)
        .args(["--run-id", "bench", "--fake-gpus", "8", "--powercap-root"])
        .arg(powercap)
        .args(["--metrics-addr", metrics_addr])
        .args(&a.probe_args)
        .arg("--")
        .args(bench_load::workload_argv(a.seconds))
        .env("ECO2AI_FAKE_NVML_COST", &a.nvml_cost)
        .stdout(Stdio::null())
        .spawn()
        .context("starting the probe")
}

fn start_codecarbon(py: &Path, seconds: u64, out: &Path) -> Result<Child> {
    Command::new(py)
        .arg(root().join("xtask/codecarbon_bench.py"))
        .args(["--seconds", &seconds.to_string(), "--out"])
        .arg(out.join("codecarbon.json"))
        .spawn()
        .context("starting codecarbon")
}

/// The probe's lines: its own CPU and peak RSS (from meta.json), rows, scrapes, and
/// each thread's CPU.
fn probe_report(
    meta: &serde_json::Value,
    probe_use: Usage,
    by_thread: &BTreeMap<String, u64>,
    (scrapes, scraped_bytes): (u64, u64),
    a: &BenchArgs,
) -> Vec<String> {
    let rows: u64 = meta["rows"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    // wait4's peak RSS includes the parent's pages copied before exec; the probe's own
    // VmHWM (kept in meta.json) is the figure that counts.
    let own_rss_mb = meta["probe_peak_rss_kb"].as_f64().map(|kb| kb / 1024.0);
    // wait4's CPU includes the recorded tree's (its reaped children); RUSAGE_SELF's
    // figure in meta.json is the probe's own.
    let own_cpu_s = meta["probe_cpu_ns"].as_f64().map(|ns| ns / 1e9);
    let probe_use = Usage {
        max_rss_mb: own_rss_mb.unwrap_or(probe_use.max_rss_mb),
        cpu_s: own_cpu_s.unwrap_or(probe_use.cpu_s),
        ..probe_use
    };
    let mut report = vec![line(
        &format!("eco2ai-probe (8 GPUs, nvml cost {})", a.nvml_cost),
        probe_use,
        rows,
    )];
    report.push(format!(
        "  rows by table: {}; dropped {}; errors {}; /metrics scraped {scrapes} times ({scraped_bytes} bytes)",
        meta["rows"], meta["dropped_rows"], meta["sensor_errors"]
    ));
    report.push(format!(
        "  probe args: {:?}; steps from: {}",
        a.probe_args,
        steps_note(meta)
    ));
    for (name, ns) in by_thread {
        report.push(format!(
            "  thread {name:<16} cpu {:>7.3} s ({:>6.3}% of one core)",
            *ns as f64 / 1e9,
            100.0 * *ns as f64 / 1e9 / probe_use.wall_s.max(1e-9)
        ));
    }
    report
}

/// codecarbon's lines, once it has ended.
fn codecarbon_report(cc: Child, started: std::time::Instant, out: &Path) -> Result<Vec<String>> {
    let (code, cc_use) = wait_usage(cc, started)?;
    if code != 0 {
        bail!("codecarbon exited with {code}");
    }
    let res: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("codecarbon.json"))?)?;
    let samples = res["measurements"].as_u64().unwrap_or(0);
    Ok(vec![
        line("codecarbon (measure_power_secs=1)", cc_use, samples),
        format!("  codecarbon: {}", res["note"].as_str().unwrap_or("")),
    ])
}

/// Where the run's steps and per-process CPU came from (eBPF or the socket).
fn steps_note(meta: &serde_json::Value) -> String {
    meta["sensors"]
        .as_array()
        .and_then(|v| v.iter().find(|s| s["kind"] == "markers"))
        .and_then(|s| s["note"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// What a bare 1 kHz sleep loop costs here, run on the calling thread, its CPU from
/// the thread's own clock (a child would need this executable, which a concurrent
/// build may replace).
fn timer_floor(seconds: u64) -> Result<Usage> {
    let started = std::time::Instant::now();
    timer_floor_loop(seconds);
    let cpu_s = thread_cpu_s();
    Ok(Usage {
        cpu_s,
        max_rss_mb: 0.0,
        wall_s: started.elapsed().as_secs_f64(),
    })
}

fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec; clock_gettime only writes into it.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The loop the floor measures: sleep to the next 1 ms deadline, nothing else.
pub fn timer_floor_loop(seconds: u64) {
    let start = std::time::Instant::now();
    let mut next = start;
    while start.elapsed() < Duration::from_secs(seconds) {
        next += Duration::from_millis(1);
        let now = std::time::Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
}

fn line(name: &str, u: Usage, samples: u64) -> String {
    format!(
        "{name:<42} wall {:>6.1} s  cpu {:>7.3} s ({:>6.3}% of one core)  peak RSS {:>6.1} MB  samples {:>9}  samples/cpu-s {:>10.0}",
        u.wall_s,
        u.cpu_s,
        100.0 * u.cpu_s / u.wall_s.max(1e-9),
        u.max_rss_mb,
        samples,
        samples as f64 / u.cpu_s.max(1e-9)
    )
}
