//! Helpers shared by the analyzer's end-to-end tests: a synthetic run, child processes
//! killed on drop, a one-shot HTTP GET and Prometheus queries.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eco2ai_trace::{CpuRow, GpuRow, Meta, Rows, StepRow, TraceWriter};

pub struct Killed(pub Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Percent-encodes a query parameter.
pub fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn query(port: u16, q: &str, at: f64) -> f64 {
    let body = get(
        port,
        &format!("/api/v1/query?query={}&time={at:.3}", encode(q)),
    )
    .expect("query");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("{q}: {body}"))
        .parse()
        .unwrap()
}

/// What a synthetic run holds: kWh, steps, and the Unix time of its end.
pub struct Made {
    pub kwh: f64,
    pub steps: u64,
    pub end_unix: f64,
}

/// `len_s` seconds ending `ago_s` seconds ago: 2 GPUs at 300 W, a 100 W package, a step
/// a second with 8 samples.
pub fn write_run(dir: &Path, len_s: i64, ago_s: i64) -> Made {
    write_run_as(dir, len_s, ago_s, "bf", "node-a")
}

/// `write_run` with the project and host labels given.
pub fn write_run_as(dir: &Path, len_s: i64, ago_s: i64, project: &str, host: &str) -> Made {
    let now_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let start_ns = 1_000_000_000_000i64;
    let mut meta = Meta::new("replayed");
    meta.start_ns = start_ns;
    meta.mono_to_unix_ns = now_unix_ns - ago_s * 1_000_000_000 - (start_ns + len_s * 1_000_000_000);
    meta.labels.project_name = Some(project.into());
    meta.host = host.into();
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
            sync_ns: None,
            phase: None,
        });
    }
    w.append(Rows::Gpu(gpu));
    w.append(Rows::Cpu(cpu));
    w.append(Rows::Steps(steps));
    let end_ns = start_ns + len_s * 1_000_000_000;
    w.finish(end_ns).unwrap();
    Made {
        kwh: (2.0 * 300.0 + 100.0) * len_s as f64 / 3.6e6,
        steps: len_s as u64,
        end_unix: (end_ns + meta.mono_to_unix_ns) as f64 / 1e9,
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Skips (returns false) where a binary is missing, unless ECO2AI_REQUIRE_STACK is set.
pub fn have(bins: &[&str]) -> bool {
    if let Some(b) = bins.iter().find(|b| !Path::new(b).exists()) {
        eprintln!("SKIPPED: {b} not installed (cargo xtask setup)");
        assert!(
            std::env::var("ECO2AI_REQUIRE_STACK").is_err(),
            "{b} missing"
        );
        return false;
    }
    true
}

/// Waits until GET `path` answers with a body containing `want`.
pub fn wait_for(port: u16, path: &str, want: &str) {
    let start = Instant::now();
    while get(port, path).is_none_or(|b| !b.contains(want)) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "port {port} never answered {path}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
