//! Real Prometheus servers (Debian's packages) for the monitoring tests: started on
//! loopback with the repository's files from monitoring/, queried over HTTP.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
pub const PROMTOOL: &str = "/usr/bin/promtool";
pub const AMTOOL: &str = "/usr/bin/amtool";

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn monitoring(file: &str) -> String {
    std::fs::read_to_string(repo().join("monitoring").join(file)).unwrap()
}

/// The first of `bins` that is not installed; with ECO2AI_REQUIRE_STACK=1 a missing
/// one fails the test instead of skipping it.
pub fn missing(bins: &[&'static str]) -> Option<&'static str> {
    let b = bins.iter().copied().find(|b| !Path::new(b).exists())?;
    eprintln!("SKIPPED: {b} not installed (cargo xtask setup)");
    assert!(
        std::env::var("ECO2AI_REQUIRE_STACK").is_err(),
        "{b} missing"
    );
    Some(b)
}

/// `text` with `from` replaced, which must be there (a config edited away from what
/// the test expects fails loudly instead of testing nothing).
pub fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not found in:\n{text}");
    text.replace(from, to)
}

pub fn prometheus(dir: &Path, config: &str, port: u16) -> Killed {
    Killed(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", dir.join(config).display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join(format!("tsdb-{port}")).display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A demo recording serving its metrics on `port`.
pub fn probe(dir: &Path, port: u16, project: &str, extra: &[&str]) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
            .args([
                "record",
                "--demo",
                "--duration",
                "60s",
                "--project",
                project,
            ])
            .args([
                "--country",
                "FR",
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .args(["--out", dir.join(format!("runs-{port}")).to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// GET `path` from 127.0.0.1:`port`: (status code, body); None when nothing answers.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query: Prometheus' JSON answer (status "success" or "error").
pub fn query(port: u16, promql: &str) -> serde_json::Value {
    let (_, body) = get(port, &format!("/api/v1/query?query={}", encode(promql)))
        .unwrap_or_else(|| panic!("Prometheus on {port} does not answer"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The result vector of a query; None while Prometheus does not answer yet.
pub fn try_vector(port: u16, promql: &str) -> Option<Vec<serde_json::Value>> {
    let (_, body) = get(port, &format!("/api/v1/query?query={}", encode(promql)))?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"].as_array().cloned()
}

/// The result vector of a query that must succeed.
pub fn vector(port: u16, promql: &str) -> Vec<serde_json::Value> {
    let v = query(port, promql);
    assert_eq!(v["status"], "success", "{promql}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Polls `f` until it is Some, for at most `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            eprintln!("{what} after {:.1} s", start.elapsed().as_secs_f64());
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
