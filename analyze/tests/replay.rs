//! Backfill: a run replayed to OpenMetrics, turned into blocks by promtool, served by a
//! real Prometheus, queried through its HTTP API: the same energy and step count as the
//! trace. Needs Debian's prometheus; skips with a reason where it is missing (unless
//! ECO2AI_REQUIRE_STACK=1, as `cargo xtask test` sets it for root).

mod common;

use std::process::{Command, Stdio};

use common::{Killed, Made, free_port, get, have, query, wait_for, write_run};

#[test]
fn backfilled_blocks_give_the_traces_totals() {
    if !have(&["/usr/bin/promtool", "/usr/bin/prometheus"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let Made {
        kwh,
        steps,
        end_unix,
    } = write_run(&run, 600, 20 * 60);
    let om = tmp.path().join("run.om");
    let o = Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args([
            "replay",
            run.to_str().unwrap(),
            "--openmetrics",
            om.to_str().unwrap(),
            "--every-s",
            "5",
            "--gco2-per-kwh",
            "100",
            "--price-per-kwh",
            "0.2",
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

    let port = free_port();
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
    wait_for(port, "/-/ready", "Ready");
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
    // The families the live exporter has, replayed: CO2 and cost from the given prices.
    let co2 = query(port, "hf_training_co2_kg_total", end_unix);
    assert!((co2 - kwh * 0.1).abs() < 1e-9, "{co2}");
    let usd = query(port, "hf_training_energy_cost_usd", end_unix);
    assert!((usd - kwh * 0.2).abs() < 1e-9, "{usd}");
    assert_eq!(query(port, "hf_training_gpu_count", end_unix), 2.0);
    let spk = query(port, "hf_training_samples_per_kwh", end_unix);
    assert!((spk - 8.0 * steps as f64 / kwh).abs() < 1e-6 * spk, "{spk}");
}

/// `replay --serve` plays a 10-minute run back at 600x: early scrapes see part of it,
/// later ones all of it; the exposition parses with promtool where it is installed.
#[test]
fn serve_plays_the_run_back_in_time_lapse() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let Made { kwh, steps, .. } = write_run(&run, 600, 60);
    let port = free_port();
    let _server = Killed(
        Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
            .args(["replay", run.to_str().unwrap()])
            .args(["--serve", &format!("127.0.0.1:{port}"), "--speed", "300x"])
            .args(["--linger-s", "30"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port, "/metrics", "hf_training_step_count");
    let value = |body: &str, name: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{body}"))
    };
    let early = get(port, "/metrics").unwrap();
    let early_steps = value(&early, "hf_training_step_count");
    assert!(early_steps < steps as f64, "{early_steps}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let late = get(port, "/metrics").unwrap();
    assert_eq!(value(&late, "hf_training_step_count"), steps as f64);
    let got = value(&late, "hf_training_energy_kwh_total");
    assert!((got - kwh).abs() < 1e-9, "{got} vs {kwh}");
    if std::path::Path::new("/usr/bin/promtool").exists() {
        let mut c = Command::new("/usr/bin/promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        c.stdin.take().unwrap().write_all(late.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        // Lint notes about the contract's names (counters without _total) are expected;
        // a parse error is not.
        let text = String::from_utf8_lossy(&o.stderr);
        assert!(!text.contains("error while linting"), "{text}");
    }
}

fn analyze(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args(args)
        .output()
        .unwrap()
}

/// Several runs at once: two nodes of one project keep their series apart (instance),
/// a project over --max-projects is left out with a message, and two runs of one project
/// on one host at the same time are refused.
#[test]
fn several_runs_replay_together_within_the_project_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    common::write_run_as(std::path::Path::new(&p("a")), 600, 600, "p1", "node-a");
    common::write_run_as(std::path::Path::new(&p("b")), 600, 600, "p1", "node-b");
    common::write_run_as(std::path::Path::new(&p("c")), 300, 60, "p2", "node-a");
    let om = p("all.om");
    let o = analyze(&[
        "replay",
        &p("a"),
        &p("b"),
        &p("c"),
        "--openmetrics",
        &om,
        "--every-s",
        "60",
        "--max-projects",
        "1",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("skipping run") && err.contains("'p2'"),
        "{err}"
    );
    let text = std::fs::read_to_string(&om).unwrap();
    let energy: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("hf_training_energy_kwh_total{"))
        .collect();
    assert!(energy.iter().any(|l| l.contains("instance=\"node-a\"")));
    assert!(energy.iter().any(|l| l.contains("instance=\"node-b\"")));
    assert!(!text.contains("project_name=\"p2\""));
    // One HELP/TYPE per family even with several runs.
    assert_eq!(
        text.matches("# TYPE hf_training_energy_kwh counter")
            .count(),
        1
    );
    if std::path::Path::new("/usr/bin/promtool").exists() {
        let o = Command::new("/usr/bin/promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics", &om, &p("tsdb")])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    common::write_run_as(std::path::Path::new(&p("d")), 600, 700, "p1", "node-a");
    let o = analyze(&["replay", &p("a"), &p("d"), "--openmetrics", &p("x.om")]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("overlap"), "{err}");
    assert!(!std::path::Path::new(&p("x.om")).exists());
}

/// --serve with two runs in sequence: the first is served, then goes stale and leaves
/// the exposition, then the second appears.
#[test]
fn serve_drops_a_finished_runs_series_after_stale_after() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    common::write_run_as(&a, 300, 900, "pa", "node-a");
    common::write_run_as(&b, 600, 60, "pb", "node-b");
    let port = free_port();
    let _server = Killed(
        Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
            .args(["replay", a.to_str().unwrap(), b.to_str().unwrap()])
            .args(["--serve", &format!("127.0.0.1:{port}"), "--speed", "100x"])
            .args(["--stale-after-s", "30", "--linger-s", "30"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port, "/metrics", "project_name=\"pa\"");
    let first = get(port, "/metrics").unwrap();
    assert!(!first.contains("project_name=\"pb\""), "{first}");
    wait_for(port, "/metrics", "project_name=\"pb\"");
    let later = get(port, "/metrics").unwrap();
    assert!(!later.contains("project_name=\"pa\""), "{later}");
    assert_eq!(
        later
            .matches("# TYPE hf_training_step_count counter")
            .count(),
        1
    );
}
