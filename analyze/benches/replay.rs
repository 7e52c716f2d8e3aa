//! Replay throughput (`cargo xtask bench-replay`): OpenMetrics encoding and remote_write
//! into VictoriaMetrics (Debian's victoria-metrics, started here on a free port) over
//! http and, with a private CA from scripts/test-ca.sh, over https, on a generated run of
//! 8 GPUs for an hour. Prints figures; asserts nothing about speed.

use std::process::{Command, Stdio};
use std::time::Instant;

use eco2ai_analyze::replay::openmetrics::{OpenMetricsSink, render_run};
use eco2ai_analyze::replay::{Prices, Replay, remote_write};
use eco2ai_trace::{CpuRow, GpuRow, Meta, Rows, StepRow, TraceWriter};

const GPUS: u32 = 8;
const LEN_S: i64 = 3600;

fn write_run(dir: &std::path::Path) {
    let mut meta = Meta::new("bench");
    meta.start_ns = 0;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    meta.mono_to_unix_ns = now - (LEN_S + 600) * 1_000_000_000;
    meta.labels.project_name = Some("bench".into());
    meta.labels.country = Some("FR".into());
    let mut w = TraceWriter::create(dir, meta).expect("create run");
    for chunk in 0..LEN_S / 60 {
        let (mut gpu, mut cpu, mut steps) = (Vec::new(), Vec::new(), Vec::new());
        for k in chunk * 600..(chunk + 1) * 600 {
            let ts = k * 100_000_000;
            for g in 0..GPUS {
                gpu.push(GpuRow {
                    ts_ns: ts,
                    gpu: g,
                    power_mw: Some(300_000 + (k % 50) as u32 * 1000),
                    energy_mj: Some(k as u64 * 30_000),
                    util_gpu_pct: Some(90),
                    mem_used_bytes: Some(40 << 30),
                    mem_total_bytes: Some(80 << 30),
                    temp_c: Some(60),
                    ..GpuRow::default()
                });
            }
            cpu.push(CpuRow {
                ts_ns: ts,
                domain: "package-0".into(),
                source: "powercap",
                energy_uj: Some(k as u64 * 10_000_000),
                energy_changed: Some(true),
                util_pct: None,
            });
            if k % 10 == 0 {
                steps.push(StepRow {
                    step: k as u64 / 10,
                    begin_ns: ts,
                    end_ns: ts + 900_000_000,
                    pid: 1,
                    samples: Some(32),
                    tokens: None,
                    loss: Some(1.0 / (k + 1) as f64),
                    lr: Some(1e-4),
                    epoch: Some(k as f64 / 36_000.0),
                    source: "uprobe",
                    counts: [None; 4],
                    sync_ns: None,
                    phase: None,
                });
            }
        }
        w.append(Rows::Gpu(gpu));
        w.append(Rows::Cpu(cpu));
        w.append(Rows::Steps(steps));
    }
    w.finish(LEN_S * 1_000_000_000).expect("finish run");
}

fn prices() -> Prices {
    Prices {
        price_per_kwh: Some(0.2),
        gpu_hour_usd: Some(2.5),
        carbon_budget_kg: Some(50.0),
        ..Prices::default()
    }
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = tmp.path().join("run");
    write_run(&run);
    let t = Instant::now();
    let mut r = Replay::open(&run, &prices()).expect("open");
    println!(
        "read the run (8 GPUs x 1 h at 10 Hz): {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // Every 100 ms of the run: 36,001 instants.
    let t = Instant::now();
    let mut sink = OpenMetricsSink::default();
    let n = render_run(&mut r, 100_000_000, &mut sink);
    let mut out = Vec::new();
    sink.write_to(&mut out).expect("write");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "OpenMetrics: {n} samples, {:.1} MB in {secs:.2} s on one thread = {:.2} M samples/s",
        out.len() as f64 / 1e6,
        n as f64 / secs / 1e6
    );

    let vm = "/usr/bin/victoria-metrics";
    if !std::path::Path::new(vm).exists() {
        println!("remote_write: SKIPPED, {vm} not installed (cargo xtask setup)");
        return;
    }
    remote_write_into_vm(&run, tmp.path(), None);
    // https: what keep-alive saves is a TLS handshake a request.
    let certs = tmp.path().join("certs");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-ca.sh");
    let made = std::fs::create_dir_all(&certs).is_ok()
        && Command::new("bash")
            .arg(script)
            .arg(&certs)
            .status()
            .is_ok_and(|s| s.success());
    if made {
        remote_write_into_vm(&run, tmp.path(), Some(&certs));
    } else {
        println!("remote_write over https: SKIPPED, no certificates (openssl missing?)");
    }
}

/// Replays the run into a fresh VictoriaMetrics, over https when `certs` (from
/// scripts/test-ca.sh) is given; prints the throughput.
fn remote_write_into_vm(
    run: &std::path::Path,
    tmp: &std::path::Path,
    certs: Option<&std::path::Path>,
) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let scheme = if certs.is_some() { "https" } else { "http" };
    let mut vm = Command::new("/usr/bin/victoria-metrics");
    vm.arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!(
            "-storageDataPath={}",
            tmp.join(format!("vm-{scheme}")).display()
        ))
        .arg("-retentionPeriod=100y")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(c) = certs {
        vm.arg("-tls")
            .arg(format!("-tlsCertFile={}", c.join("server.pem").display()))
            .arg(format!("-tlsKeyFile={}", c.join("server.key").display()));
    }
    let mut child = vm.spawn().expect("start victoria-metrics");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed().as_secs() < 30, "victoria-metrics did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut r = Replay::open(run, &prices()).expect("open");
    let o = remote_write::Options {
        batch_samples: 20_000,
        ca_file: certs.map(|c| c.join("ca.pem")),
        ..Default::default()
    };
    let url = format!("{scheme}://127.0.0.1:{port}/api/v1/write");
    let s = remote_write::replay(&mut r, 100_000_000, &url, &o, &mut |_| {});
    let _ = child.kill();
    let _ = child.wait();
    match s {
        Ok(s) => println!(
            "remote_write into VictoriaMetrics over {scheme}: {} samples in {} requests ({:.1} MB snappy) in {:.2} s = {:.2} M samples/s",
            s.samples,
            s.requests,
            s.bytes as f64 / 1e6,
            s.secs,
            s.samples as f64 / s.secs / 1e6
        ),
        Err(e) => println!("remote_write over {scheme} failed: {e}"),
    }
}
