//! The alerting files of monitoring/: promtool and amtool accept them, every runbook
//! link is absolute and built from the one base, the commented remote_write blocks are
//! valid once uncommented, and end to end: the demo recorded with a tiny carbon budget,
//! a real Prometheus (monitoring/prometheus.yml) scraping the probe with the
//! repository's alert rules, a real Alertmanager routing to a webhook inside the test:
//! CarbonBudgetExceeded must arrive with its absolute runbook link. Needs Debian's
//! prometheus and prometheus-alertmanager (`cargo xtask setup` installs them); says so
//! and skips where they are missing, unless ECO2AI_REQUIRE_STACK=1.

mod stack;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use stack::{ALERTMANAGER, AMTOOL, Killed, PROMETHEUS, PROMTOOL, free_port, missing, monitoring};

/// Collects the bodies POSTed to it.
fn webhook() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head.lines().find_map(|l| {
                        l.to_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    });
                    if len.is_none_or(|l| body.len() >= l) {
                        let _ = tx.send(body.to_string());
                        break;
                    }
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (port, rx)
}

/// The runbook base prometheus.yml sets (external label runbook_base_url).
fn runbook_base() -> String {
    let prom = monitoring("prometheus.yml");
    let line = prom
        .lines()
        .find_map(|l| l.trim().strip_prefix("runbook_base_url:"))
        .expect("prometheus.yml sets no runbook_base_url external label");
    line.trim().trim_matches('"').to_string()
}

#[test]
fn runbook_links_are_absolute_from_one_base() {
    let base = runbook_base();
    assert!(
        base.starts_with("https://") && !base.ends_with('/'),
        "{base}"
    );
    let rules = monitoring("alerts.yml");
    let runbook = monitoring("RUNBOOK.md");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    let links: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    assert_eq!(alerts.len(), links.len(), "an alert without runbook_url");
    for (alert, link) in alerts.iter().zip(&links) {
        let want = format!(
            "\"{{{{ $externalLabels.runbook_base_url }}}}/RUNBOOK.md#{}\"",
            alert.to_lowercase()
        );
        assert_eq!(*link, want, "{alert}");
        assert!(
            runbook.contains(&format!("\n## {alert}\n")),
            "RUNBOOK.md has no section {alert}"
        );
    }
    // The promtool tests check the rendered links: every group sets the base.
    let tests = monitoring("alerts_test.yml");
    let groups = tests.matches("\n  - interval:").count();
    let with_base = tests.matches("external_labels: {runbook_base_url:").count();
    assert!(
        groups >= 5 && groups == with_base,
        "{groups} groups, {with_base} with a base"
    );
    let template = monitoring("templates/hf-eco2ai.tmpl");
    assert!(
        template.contains(".Annotations.runbook_url"),
        "notifications drop the runbook link"
    );
}

fn tool(program: &str, args: &[&str], dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn promtool_and_amtool_accept_every_file() {
    if missing(&[PROMTOOL, AMTOOL]).is_some() {
        return;
    }
    let dir = stack::repo().join("monitoring");
    for (program, args) in [
        (PROMTOOL, &["check", "config", "prometheus.yml"][..]),
        (PROMTOOL, &["check", "config", "prometheus-global.yml"]),
        (PROMTOOL, &["check", "rules", "alerts.yml"]),
        (PROMTOOL, &["test", "rules", "alerts_test.yml"]),
        (AMTOOL, &["check-config", "alertmanager.yml"]),
    ] {
        let (ok, text) = tool(program, args, &dir);
        assert!(ok, "{program} {args:?}:\n{text}");
    }
}

/// The commented remote_write block of a config, uncommented.
fn uncommented(config: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in config.lines() {
        inside |= line == "#remote_write:";
        inside &= line.starts_with('#');
        match line.strip_prefix('#').filter(|_| inside) {
            Some(l) => out.push_str(l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn commented_remote_write_blocks_are_valid() {
    if missing(&[PROMTOOL]).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alerts.yml"), monitoring("alerts.yml")).unwrap();
    for file in ["prometheus.yml", "prometheus-global.yml"] {
        let text = uncommented(&monitoring(file));
        assert!(
            text.contains("\nremote_write:\n  - url: http://127.0.0.1:8428/api/v1/write\n"),
            "{file}: no VictoriaMetrics remote_write block:\n{text}"
        );
        std::fs::write(dir.path().join(file), &text).unwrap();
        let (ok, out) = tool(PROMTOOL, &["check", "config", file], dir.path());
        assert!(ok, "{file} with remote_write:\n{out}");
    }
}

#[test]
fn carbon_budget_exceeded_reaches_the_webhook() {
    if missing(&[PROMETHEUS, ALERTMANAGER]).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (hook_port, hook) = webhook();
    let (probe_port, prom_port, am_port) = (free_port(), free_port(), free_port());
    std::fs::write(d.join("alerts.yml"), monitoring("alerts.yml")).unwrap();
    // The shipped configuration, faster and on this test's ports.
    let prom = monitoring("prometheus.yml");
    let prom = stack::replaced(&prom, "scrape_interval: 5s", "scrape_interval: 1s");
    let prom = stack::replaced(&prom, "evaluation_interval: 5s", "evaluation_interval: 1s");
    let prom = stack::replaced(&prom, "127.0.0.1:9091", &format!("127.0.0.1:{probe_port}"));
    let prom = stack::replaced(&prom, "127.0.0.1:9093", &format!("127.0.0.1:{am_port}"));
    std::fs::write(d.join("prometheus.yml"), prom).unwrap();
    std::fs::write(
        d.join("alertmanager.yml"),
        format!(
            "route: {{receiver: hook, group_by: [alertname], group_wait: 1s, group_interval: 1s}}\n\
             receivers: [{{name: hook, webhook_configs: [{{url: 'http://127.0.0.1:{hook_port}/'}}]}}]\n"
        ),
    )
    .unwrap();
    let _probe = stack::probe(
        d,
        probe_port,
        "budget-test",
        &["--carbon-budget-kg", "0.000000001"],
    );
    let _am = Killed(
        Command::new(ALERTMANAGER)
            .arg(format!(
                "--config.file={}",
                d.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", d.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _prom = stack::prometheus(d, "prometheus.yml", prom_port);
    let start = Instant::now();
    let deadline = Duration::from_secs(50);
    let link = format!(
        "\"runbook_url\":\"{}/RUNBOOK.md#carbonbudgetexceeded\"",
        runbook_base()
    );
    loop {
        let left = deadline
            .checked_sub(start.elapsed())
            .expect("CarbonBudgetExceeded never reached the webhook");
        let body = hook
            .recv_timeout(left)
            .expect("CarbonBudgetExceeded never reached the webhook");
        if body.contains("\"alertname\":\"CarbonBudgetExceeded\"")
            && body.contains("\"status\":\"firing\"")
        {
            assert!(body.contains("\"project_name\":\"budget-test\""), "{body}");
            assert!(body.contains("\"severity\":\"critical\""), "{body}");
            assert!(body.contains(&link), "no {link} in {body}");
            eprintln!(
                "CarbonBudgetExceeded reached the webhook after {:.1} s",
                start.elapsed().as_secs_f64()
            );
            break;
        }
    }
}
