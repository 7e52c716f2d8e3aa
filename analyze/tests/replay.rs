//! Backfill: a run replayed to OpenMetrics, turned into blocks by promtool, served by a
//! real Prometheus, queried through its HTTP API: the same energy and step count as the
//! trace. Needs Debian's prometheus; skips with a reason where it is missing (unless
//! ECO2AI_REQUIRE_STACK=1, as `cargo xtask test` sets it for root).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eco2ai_trace::{CpuRow, GpuRow, Meta, Rows, StepRow, TraceWriter};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn query(port: u16, q: &str, at: f64) -> f64 {
    let body = get(port, &format!("/api/v1/query?query={q}&time={at:.3}")).expect("query");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("{q}: {body}"))
        .parse()
        .unwrap()
}

/// 10 minutes ending 20 minutes ago: 2 GPUs at 300 W, a 100 W package, a step a second.
fn write_run(dir: &Path) -> (f64, u64, f64) {
    let now_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let start_ns = 1_000_000_000_000i64;
    let len_s = 600i64;
    let mut meta = Meta::new("replayed");
    meta.start_ns = start_ns;
    meta.mono_to_unix_ns =
        now_unix_ns - 20 * 60 * 1_000_000_000 - (start_ns + len_s * 1_000_000_000);
    meta.labels.project_name = Some("bf".into());
    meta.labels.model_name = Some("m".into());
    let mut w = TraceWriter::create(dir, meta.clone()).unwrap();
    let (mut gpu, mut cpu, mut steps) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..=len_s * 10 {
        let ts = start_ns + k * 100_000_000;
        for g in 0..2 {
            gpu.push(GpuRow {
                ts_ns: ts,
                gpu: g,
                power_mw: Some(300_000),
                energy_mj: Some((k * 30_000) as u64),
                ..GpuRow::default()
            });
        }
        cpu.push(CpuRow {
            ts_ns: ts,
            domain: "package-0".into(),
            source: "powercap",
            energy_uj: Some((k * 10_000_000) as u64),
            energy_changed: Some(true),
            util_pct: None,
        });
    }
    for k in 0..len_s as u64 {
        let b = start_ns + k as i64 * 1_000_000_000;
        steps.push(StepRow {
            step: k,
            begin_ns: b,
            end_ns: b + 900_000_000,
            pid: 1,
            samples: Some(8),
            tokens: None,
            loss: Some(1.0 / (k + 1) as f64),
            lr: None,
            epoch: None,
            source: "uprobe",
            counts: [None; 4],
        });
    }
    w.append(Rows::Gpu(gpu));
    w.append(Rows::Cpu(cpu));
    w.append(Rows::Steps(steps));
    let end_ns = start_ns + len_s * 1_000_000_000;
    w.finish(end_ns).unwrap();
    let kwh = (2.0 * 300.0 + 100.0) * len_s as f64 / 3.6e6;
    (
        kwh,
        len_s as u64,
        (end_ns + meta.mono_to_unix_ns) as f64 / 1e9,
    )
}

#[test]
fn backfilled_blocks_give_the_traces_totals() {
    let missing = ["/usr/bin/promtool", "/usr/bin/prometheus"]
        .into_iter()
        .find(|b| !Path::new(b).exists());
    if let Some(b) = missing {
        eprintln!("SKIPPED: {b} not installed (cargo xtask setup)");
        assert!(
            std::env::var("ECO2AI_REQUIRE_STACK").is_err(),
            "{b} missing"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let (kwh, steps, end_unix) = write_run(&run);
    let om = tmp.path().join("run.om");
    let o = Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args([
            "replay",
            run.to_str().unwrap(),
            "--openmetrics",
            om.to_str().unwrap(),
            "--every-s",
            "5",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tsdb = tmp.path().join("tsdb");
    let o = Command::new("/usr/bin/promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&tsdb)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        tmp.path().join("prometheus.yml"),
        "global: {scrape_interval: 1m}\n",
    )
    .unwrap();
    let _prom = Killed(
        Command::new("/usr/bin/prometheus")
            .arg(format!(
                "--config.file={}",
                tmp.path().join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while get(port, "/-/ready").is_none_or(|b| !b.contains("Ready")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Prometheus not ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let got_kwh = query(port, "hf_training_energy_kwh_total", end_unix);
    eprintln!("Prometheus answers {got_kwh} kWh for the backfilled run (trace: {kwh})");
    assert!(
        (got_kwh - kwh).abs() < 1e-9 * kwh.max(1.0),
        "{got_kwh} vs {kwh}"
    );
    assert_eq!(
        query(port, "hf_training_step_count", end_unix) as u64,
        steps
    );
    assert!((query(port, "hf_training_loss", end_unix) - 1.0 / steps as f64).abs() < 1e-12);
    assert_eq!(
        query(port, "count(hf_training_gpu_power_watts)", end_unix),
        2.0
    );
}
