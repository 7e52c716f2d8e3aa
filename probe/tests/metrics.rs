//! The live /metrics endpoint while a run records.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

fn value(body: &str, series_prefix: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(series_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series_prefix} missing from\n{body}"))
}

#[test]
fn serves_the_hf_training_metrics_while_recording() {
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
        .args([
            "record",
            "--demo",
            "--duration",
            "4s",
            "--fake-gpus",
            "2",
            "--project",
            "p1",
            "--model",
            "m1",
        ])
        .args([
            "--country",
            "FR",
            "--carbon-budget-kg",
            "0.5",
            "--price-per-kwh",
            "0.2",
            "--gpu-hour-usd",
            "2",
        ])
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--out",
            out.path().to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for steps to show up (the demo marks ~10 per second, held a second).
    let start = Instant::now();
    let body = loop {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(b) = scrape(port).filter(|b| {
            b.contains("hf_training_step_count") && value(b, "hf_training_step_count{") > 5.0
        }) {
            break b;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no steps on /metrics"
        );
    };
    let families = [
        "co2_kg_total",
        "co2_rate_kg_per_hour",
        "grid_carbon_intensity_g_per_kwh",
        "carbon_budget_kg",
        "carbon_budget_remaining_kg",
        "energy_kwh_total",
        "energy_rate_kwh_per_hour",
        "gpu_power_watts",
        "cpu_power_watts",
        "samples_per_kwh",
        "loss",
        "learning_rate",
        "step_count",
        "epoch_count",
        "samples_per_second",
        "gpu_temperature_celsius",
        "gpu_memory_usage_bytes",
        "gpu_memory_total_bytes",
        "gpu_memory_usage_percent",
        "gpu_utilization_percent",
        "gpu_count",
        "estimated_cost_usd",
        "cost_rate_usd_per_hour",
        "energy_cost_usd",
        "compute_cost_usd",
        "last_update_timestamp",
        "plugin_info",
        "monitoring_errors_total",
    ];
    for f in families {
        assert!(
            body.contains(&format!("# TYPE hf_training_{f} ")),
            "{f} missing:\n{body}"
        );
    }
    assert!(body.contains("# TYPE hf_training_co2_kg_total counter"));
    assert!(body.contains("hf_training_co2_kg_total{project_name=\"p1\",model_name=\"m1\"}"));
    let gpu0 = value(&body, "hf_training_gpu_power_watts{gpu_id=\"0\"");
    assert!((300.0..=700.0).contains(&gpu0), "{gpu0}");
    let kwh = value(&body, "hf_training_energy_kwh_total{");
    let co2 = value(&body, "hf_training_co2_kg_total{");
    assert!(
        (co2 - kwh * 41.44 / 1000.0).abs() < 1e-9 * kwh.max(1.0),
        "{co2} vs {kwh}"
    );
    assert!((value(&body, "hf_training_carbon_budget_remaining_kg{") - (0.5 - co2)).abs() < 1e-9);
    assert_eq!(value(&body, "hf_training_gpu_count{"), 2.0);
    let loss = value(&body, "hf_training_loss{");
    assert!(loss > 0.4 && loss < 5.0, "{loss}");

    if let Ok(promtool) = which("promtool") {
        let mut p = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let o = p.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        // Lint notes about the contract's names are expected; a parse error is not.
        assert!(
            !text.contains("error while linting") && !text.contains("parsing error"),
            "{text}"
        );
        eprintln!("promtool check metrics:\n{text}");
    } else {
        eprintln!("promtool not installed: exposition format not cross-checked");
    }
    assert!(child.wait().unwrap().success());
    assert!(scrape(port).is_none(), "the endpoint closes with the run");
}

fn which(p: &str) -> Result<std::path::PathBuf, ()> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(p))
        .find(|f| f.is_file())
        .ok_or(())
}

#[test]
fn a_busy_address_is_a_warning_not_a_failed_recording() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
        .args([
            "record",
            "--duration",
            "500ms",
            "--metrics-addr",
            &addr,
            "--out",
            out.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("live metrics not served"));
}

/// 100 scrapes a second for 30 s while recording: every scrape parses and is served,
/// and the trace misses no sample (the GPU power loop's rows arrive at its rate).
#[test]
fn scraping_100_times_a_second_loses_nothing() {
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
        .args([
            "record",
            "--duration",
            "31s",
            "--fake-gpus",
            "1",
            "--run-id",
            "scraped",
        ])
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--out",
            out.path().to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while scrape(port).is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = Instant::now();
    let (mut ok, mut latencies) = (0u32, Vec::new());
    let mut next = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let t = Instant::now();
        let body = scrape(port).expect("a scrape failed");
        latencies.push(t.elapsed());
        assert!(
            body.contains("# TYPE hf_training_gpu_power_watts gauge"),
            "{body}"
        );
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                value.parse::<f64>().is_ok(),
                "unparsable sample line {line:?}"
            );
        }
        ok += 1;
        next += Duration::from_millis(10);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{ok} scrapes in 30 s; latency p50 {:?} p99 {:?} max {:?}",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    assert!(ok >= 2_400, "only {ok} scrapes");
    let run = eco2ai_trace::Run::open(&out.path().join("scraped")).unwrap();
    assert_eq!(run.meta().dropped_rows, 0);
    let secs = (run.meta().end_ns.unwrap() - run.meta().start_ns) as f64 / 1e9;
    // 20 ms power polls plus 1 s energy polls for one GPU; on a loaded 2-vCPU machine the
    // polls drift by a few percent, so what shows a lost sample is a gap, not the count.
    let expected = secs * (50.0 + 1.0);
    let got = run.meta().rows["gpu"] as f64;
    assert!(
        got > expected * 0.93,
        "{got} gpu rows in {secs:.1} s, expected about {expected:.0}"
    );
    let mut ts: Vec<i64> = Vec::new();
    for b in run.read_table(eco2ai_trace::Table::Gpu).unwrap().batches {
        for r in eco2ai_trace::from_batch::gpu_rows(&b) {
            if r.power_mw.is_some() {
                ts.push(r.ts_ns);
            }
        }
    }
    ts.sort_unstable();
    let gap = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        gap < 200_000_000,
        "a {} ms gap between power samples",
        gap / 1_000_000
    );
}
