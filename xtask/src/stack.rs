//! `cargo xtask stack`: Prometheus and Alertmanager (Debian's packages) on loopback with
//! the files in monitoring/, pointed at a running probe, until Ctrl-C (or, with
//! `--check`, until both answer ready, then stopped: what the test suite runs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::root;

struct Stack {
    children: Vec<(String, Child)>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (name, child) in &mut self.children {
            // SAFETY: signalling a child we spawned; SIGTERM lets both flush and exit.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
            eprintln!("xtask: {name} stopped");
        }
    }
}

fn ready(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
}

/// Copies monitoring/ into `dir`, pointing the scrape at `probe` and the secrets at `secrets`.
fn configs(dir: &Path, probe: &str, secrets: Option<&str>) -> Result<()> {
    let src = root().join("monitoring");
    std::fs::create_dir_all(dir.join("templates"))?;
    let prom =
        std::fs::read_to_string(src.join("prometheus.yml"))?.replace("127.0.0.1:9091", probe);
    std::fs::write(dir.join("prometheus.yml"), prom)?;
    std::fs::copy(src.join("alerts.yml"), dir.join("alerts.yml"))?;
    let mut am = std::fs::read_to_string(src.join("alertmanager.yml"))?;
    if let Some(s) = secrets {
        am = am.replace("/etc/hf-eco2ai/secrets", s);
    }
    std::fs::write(dir.join("alertmanager.yml"), am)?;
    std::fs::copy(
        src.join("templates/hf-eco2ai.tmpl"),
        dir.join("templates/hf-eco2ai.tmpl"),
    )?;
    Ok(())
}

fn spawn(name: &str, program: &str, args: &[String], quiet: bool) -> Result<(String, Child)> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if quiet {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let child = cmd.spawn().with_context(|| format!("starting {program} (apt-get install prometheus prometheus-alertmanager, or cargo xtask setup)"))?;
    Ok((name.to_string(), child))
}

pub fn stack(args: &[String]) -> Result<()> {
    let (mut probe, mut secrets, mut check) = ("127.0.0.1:9091".to_string(), None, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--probe" => probe = it.next().context("--probe needs HOST:PORT")?.clone(),
            "--secrets" => {
                secrets = Some(it.next().context("--secrets needs a directory")?.clone())
            }
            "--check" => check = true,
            other => {
                bail!("unknown stack flag '{other}' (--probe HOST:PORT, --secrets DIR, --check)")
            }
        }
    }
    let dir: PathBuf = root().join("target/stack");
    configs(&dir, &probe, secrets.as_deref())?;
    let (prom_addr, am_addr) = if check {
        ("127.0.0.1:19090", "127.0.0.1:19093")
    } else {
        ("127.0.0.1:9090", "127.0.0.1:9093")
    };
    let d = |p: &str| dir.join(p).display().to_string();
    let mut stack = Stack {
        children: Vec::new(),
    };
    stack.children.push(spawn(
        "alertmanager",
        "/usr/bin/prometheus-alertmanager",
        &[
            format!("--config.file={}", d("alertmanager.yml")),
            format!("--storage.path={}", d("alertmanager-data")),
            format!("--web.listen-address={am_addr}"),
            "--cluster.listen-address=".into(),
        ],
        check,
    )?);
    let prom_cfg =
        std::fs::read_to_string(dir.join("prometheus.yml"))?.replace("127.0.0.1:9093", am_addr);
    std::fs::write(dir.join("prometheus.yml"), prom_cfg)?;
    stack.children.push(spawn(
        "prometheus",
        "/usr/bin/prometheus",
        &[
            format!("--config.file={}", d("prometheus.yml")),
            format!("--storage.tsdb.path={}", d("prometheus-data")),
            "--storage.tsdb.retention.time=90d".into(),
            "--storage.tsdb.retention.size=50GB".into(),
            format!("--web.listen-address={prom_addr}"),
        ],
        check,
    )?);
    let start = Instant::now();
    while !(ready(prom_addr) && ready(am_addr)) {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("Prometheus ({prom_addr}) and Alertmanager ({am_addr}) not ready after 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "xtask: Prometheus on http://{prom_addr}, Alertmanager on http://{am_addr}, scraping {probe}"
    );
    if check {
        return Ok(());
    }
    eprintln!("xtask: Ctrl-C stops both");
    for (_, child) in &mut stack.children {
        let _ = child.wait();
    }
    Ok(())
}
