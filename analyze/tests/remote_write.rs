//! remote_write into real receivers (Debian's prometheus with its remote-write receiver,
//! Debian's victoria-metrics), each stopped mid-replay and restarted on the same storage:
//! every sample arrives, once. Skips with a reason where a receiver is missing (unless
//! ECO2AI_REQUIRE_STACK=1, as `cargo xtask test` sets it for root).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Killed, Made, free_port, get, have, query, wait_for, write_run};

/// 40 minutes ending 5 minutes ago (inside Prometheus' head block), replayed every second.
const LEN_S: i64 = 2400;

fn stop(mut c: Killed) {
    // SIGTERM, so the receiver shuts down as an operator would restart it.
    // SAFETY: kill(2) on the pid of a child we own and have not waited for.
    unsafe { libc::kill(c.0.id() as i32, libc::SIGTERM) };
    let _ = c.0.wait();
}

/// Replays `run` to `url` while `start` receivers come and go; returns the samples sent
/// and the receiver running at the end.
fn replay_through_a_restart(
    run: &Path,
    url: &str,
    start: &dyn Fn() -> Child,
    ready: &dyn Fn(),
) -> (u64, Killed) {
    let receiver = Killed(start());
    ready();
    let mut replay = Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args(["replay", run.to_str().unwrap(), "--remote-write", url])
        .args([
            "--batch-samples",
            "2000",
            "--max-samples-per-s",
            "20000",
            "--retry-for-s",
            "120",
        ])
        .args(["--gco2-per-kwh", "50", "--price-per-kwh", "0.3"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        replay.try_wait().unwrap().is_none(),
        "the replay ended before the restart"
    );
    stop(receiver);
    std::thread::sleep(Duration::from_millis(1500));
    let receiver = Killed(start());
    ready();
    let o = replay.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("{err}");
    assert!(o.status.success(), "{err}");
    // "N samples in R requests (T retries, ...)"
    let line = err
        .lines()
        .find(|l| l.contains(" samples in "))
        .expect(&err);
    let retries: u64 = line
        .split('(')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retries > 0, "the receiver's restart was never seen: {line}");
    let sent = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    (sent, receiver)
}

fn prometheus(dir: &Path, port: u16) -> Child {
    Command::new("/usr/bin/prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn remote_write_into_prometheus_survives_a_restart() {
    if !have(&["/usr/bin/prometheus"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let Made {
        kwh,
        steps,
        end_unix,
    } = write_run(&run, LEN_S, 5 * 60);
    std::fs::write(
        tmp.path().join("prometheus.yml"),
        "global: {scrape_interval: 1m}\n",
    )
    .unwrap();
    let port = free_port();
    let dir = tmp.path().to_path_buf();
    let (sent, _receiver) = replay_through_a_restart(
        &run,
        &format!("http://127.0.0.1:{port}/api/v1/write"),
        &|| prometheus(&dir, port),
        &|| wait_for(port, "/-/ready", "Ready"),
    );
    // Every sample once: the raw samples stored equal the samples sent, and the energy
    // counter has one point per replayed second.
    let raw = get(
        port,
        &format!(
            "/api/v1/query?query={}&time={end_unix:.3}",
            common::encode("{__name__=~\"hf_training_.+\"}[2h]")
        ),
    )
    .expect("raw samples");
    let v: serde_json::Value = serde_json::from_str(&raw).expect(&raw);
    let mut stored = 0u64;
    for series in v["data"]["result"].as_array().expect(&raw) {
        let ts: Vec<f64> = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_f64().unwrap())
            .collect();
        assert!(
            ts.windows(2).all(|w| w[0] < w[1]),
            "a sample twice in {}",
            series["metric"]
        );
        stored += ts.len() as u64;
    }
    assert_eq!(stored, sent, "stored vs sent");
    let points = query(
        port,
        "count_over_time(hf_training_energy_kwh_total[2h])",
        end_unix,
    );
    assert_eq!(points as i64, LEN_S + 1);
    let got = query(port, "hf_training_energy_kwh_total", end_unix);
    assert!((got - kwh).abs() < 1e-9, "{got} vs {kwh}");
    assert_eq!(
        query(port, "hf_training_step_count", end_unix) as u64,
        steps
    );
    let co2 = query(port, "hf_training_co2_kg_total", end_unix);
    assert!((co2 - kwh * 0.05).abs() < 1e-9, "{co2}");
}

#[test]
fn remote_write_into_victoriametrics_survives_a_restart() {
    if !have(&["/usr/bin/victoria-metrics"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let Made { kwh, end_unix, .. } = write_run(&run, LEN_S, 5 * 60);
    let port = free_port();
    let data = tmp.path().join("vm");
    let start = || {
        Command::new("/usr/bin/victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", data.display()))
            .arg("-retentionPeriod=100y")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (sent, _receiver) = replay_through_a_restart(
        &run,
        &format!("http://127.0.0.1:{port}/api/v1/write"),
        &start,
        &|| wait_for(port, "/health", "OK"),
    );
    get(port, "/internal/force_flush").expect("flush");
    // The raw samples, series by series: no timestamp twice, and as many as were sent.
    let export = get(
        port,
        "/api/v1/export?match[]=%7B__name__%3D~%22hf_training_.%2B%22%7D",
    )
    .expect("export");
    let mut stored = 0u64;
    for line in export.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        let ts: Vec<i64> = v["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap())
            .collect();
        let mut unique = ts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            ts.len(),
            "a sample arrived twice in {}",
            v["metric"]
        );
        stored += ts.len() as u64;
    }
    assert_eq!(stored, sent, "stored vs sent");
    let got = query(port, "hf_training_energy_kwh_total", end_unix);
    assert!((got - kwh).abs() < 1e-9, "{got} vs {kwh}");
}
