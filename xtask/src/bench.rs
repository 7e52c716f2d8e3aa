//! `cargo xtask bench`: the probe's own cost at default rates, on a fake RAPL tree
//! driven at 1 kHz and 8 fake GPUs, next to CodeCarbon (measure_power_secs=1) run at
//! the same time on the same machine. CPU time and peak RSS come from wait4(2).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use eco2ai_probe::samplers::rapl::fake_tree::FakePowercap;

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

pub fn bench(args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut codecarbon = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .context("--seconds needs a number")?
            }
            "--no-codecarbon" => codecarbon = false,
            other => bail!("unknown bench flag '{other}'"),
        }
    }
    cargo(&["build", "--release", "--bin", "eco2ai-probe"])?;
    let py = if codecarbon {
        Some(python_with_codecarbon()?)
    } else {
        None
    };
    let out = root().join("bench-out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let tree = FakePowercap::intel_one_socket(&out.join("powercap"))?;
    let _driver = tree.spawn_driver(Duration::from_millis(1));

    let started = std::time::Instant::now();
    let probe = Command::new(root().join("target/release/eco2ai-probe"))
        .args(["record", "--out"])
        .arg(&out)
        .args([
            "--run-id",
            "bench",
            "--fake-gpus",
            "8",
            "--duration",
            &format!("{seconds}s"),
            "--powercap-root",
        ])
        .arg(&tree.root)
        .stdout(Stdio::null())
        .spawn()
        .context("starting the probe")?;
    let cc = match &py {
        Some(py) => Some(
            Command::new(py)
                .arg(root().join("xtask/codecarbon_bench.py"))
                .args(["--seconds", &seconds.to_string(), "--out"])
                .arg(out.join("codecarbon.json"))
                .spawn()
                .context("starting codecarbon")?,
        ),
        None => None,
    };
    let (code, probe_use) = wait_usage(probe, started)?;
    if code != 0 {
        bail!("the probe exited with {code}");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("bench/meta.json"))?)?;
    let rows: u64 = meta["rows"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    // wait4's peak RSS includes the parent's pages copied before exec; the probe's own
    // VmHWM (kept in meta.json) is the figure that counts.
    let own_rss_mb = meta["probe_peak_rss_kb"].as_f64().map(|kb| kb / 1024.0);
    let probe_use = Usage {
        max_rss_mb: own_rss_mb.unwrap_or(probe_use.max_rss_mb),
        ..probe_use
    };
    let mut report = vec![line(
        "eco2ai-probe (8 fake GPUs, RAPL 1 kHz)",
        probe_use,
        rows,
    )];
    report.push(format!(
        "  rows by table: {}; dropped {}",
        meta["rows"], meta["dropped_rows"]
    ));
    let floor = timer_floor(seconds.min(20))?;
    report.push(line("floor: an empty 1 kHz sleep loop", floor, 0));
    if let Some(cc) = cc {
        let (code, cc_use) = wait_usage(cc, started)?;
        if code != 0 {
            bail!("codecarbon exited with {code}");
        }
        let res: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("codecarbon.json"))?)?;
        let samples = res["measurements"].as_u64().unwrap_or(0);
        report.push(line("codecarbon (measure_power_secs=1)", cc_use, samples));
        report.push(format!(
            "  codecarbon: {}",
            res["note"].as_str().unwrap_or("")
        ));
    }
    let text = report.join("\n");
    println!("{text}");
    std::fs::write(out.join("bench.txt"), format!("{text}\n"))?;
    Ok(())
}

/// Runs `xtask timer-floor` as a child: what a bare 1 kHz sleep loop costs here.
fn timer_floor(seconds: u64) -> Result<Usage> {
    let exe = std::env::current_exe()?;
    let started = std::time::Instant::now();
    let child = Command::new(exe)
        .args(["timer-floor", &seconds.to_string()])
        .spawn()?;
    Ok(wait_usage(child, started)?.1)
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
