//! `cargo xtask stack`: Prometheus and Alertmanager (Debian's packages) on loopback with
//! the files in monitoring/, pointed at a running probe, until Ctrl-C (or, with
//! `--check`, until all answer ready, then stopped: what the test suite runs). With
//! `--global` (and always with `--check`) a second Prometheus federates the first, as
//! monitoring/prometheus-global.yml does for a fleet of clusters.

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

/// Copies monitoring/ into `dir`, pointing the scrape at `probe`, the alerts at
/// `alertmanager` and the secrets at `secrets`.
fn configs(dir: &Path, probe: &str, alertmanager: &str, secrets: Option<&str>) -> Result<()> {
    let src = root().join("monitoring");
    std::fs::create_dir_all(dir.join("templates"))?;
    let prom = std::fs::read_to_string(src.join("prometheus.yml"))?
        .replace("127.0.0.1:9091", probe)
        .replace("127.0.0.1:9093", alertmanager);
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

/// The global Prometheus' configuration, federating the cluster one at `cluster`.
fn global_config(dir: &Path, cluster: &str) -> Result<()> {
    let text = std::fs::read_to_string(root().join("monitoring/prometheus-global.yml"))?;
    if !text.contains("127.0.0.1:9090") {
        bail!("monitoring/prometheus-global.yml no longer federates 127.0.0.1:9090");
    }
    std::fs::write(
        dir.join("prometheus-global.yml"),
        text.replace("127.0.0.1:9090", cluster),
    )?;
    Ok(())
}

struct Flags {
    probe: String,
    secrets: Option<String>,
    check: bool,
    global: bool,
}

fn flags(args: &[String]) -> Result<Flags> {
    let mut f = Flags {
        probe: "127.0.0.1:9091".to_string(),
        secrets: None,
        check: false,
        global: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--probe" => f.probe = it.next().context("--probe needs HOST:PORT")?.clone(),
            "--secrets" => {
                f.secrets = Some(it.next().context("--secrets needs a directory")?.clone())
            }
            "--check" => f.check = true,
            "--global" => f.global = true,
            other => bail!(
                "unknown stack flag '{other}' (--probe HOST:PORT, --secrets DIR, --global, --check)"
            ),
        }
    }
    Ok(f)
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

/// The global Prometheus on `addr`, federating the cluster one at `cluster`.
fn spawn_global(dir: &Path, cluster: &str, addr: &str, quiet: bool) -> Result<(String, Child)> {
    global_config(dir, cluster)?;
    let d = |p: &str| dir.join(p).display().to_string();
    spawn(
        "global prometheus",
        "/usr/bin/prometheus",
        &[
            format!("--config.file={}", d("prometheus-global.yml")),
            format!("--storage.tsdb.path={}", d("prometheus-global-data")),
            format!("--web.listen-address={addr}"),
        ],
        quiet,
    )
}

/// Waits until every server at `addrs` answers /-/ready, for at most 30 s.
fn wait_ready(addrs: &[&str]) -> Result<()> {
    let start = Instant::now();
    while let Some(late) = addrs.iter().find(|a| !ready(a)) {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("{late} not ready after 30 s (of {})", addrs.join(", "));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Alertmanager and Prometheus on their addresses; a child started before a failure is
/// stopped with the returned (or dropped) `Stack`.
fn local_stack(dir: &Path, prom_addr: &str, am_addr: &str, quiet: bool) -> Result<Stack> {
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
        quiet,
    )?);
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
        quiet,
    )?);
    Ok(stack)
}

pub fn stack(args: &[String]) -> Result<()> {
    let Flags {
        probe,
        secrets,
        check,
        global,
    } = flags(args)?;
    let global = global || check;
    let dir: PathBuf = root().join("target/stack");
    let (prom_addr, am_addr, global_addr) = if check {
        ("127.0.0.1:19090", "127.0.0.1:19093", "127.0.0.1:19095")
    } else {
        ("127.0.0.1:9090", "127.0.0.1:9093", "127.0.0.1:9095")
    };
    configs(&dir, &probe, am_addr, secrets.as_deref())?;
    let mut stack = local_stack(&dir, prom_addr, am_addr, check)?;
    if global {
        stack
            .children
            .push(spawn_global(&dir, prom_addr, global_addr, check)?);
    }
    let mut addrs = vec![prom_addr, am_addr];
    if global {
        addrs.push(global_addr);
    }
    wait_ready(&addrs)?;
    eprintln!(
        "xtask: Prometheus on http://{prom_addr}, Alertmanager on http://{am_addr}, scraping {probe}"
    );
    if global {
        eprintln!("xtask: global Prometheus on http://{global_addr}, federating {prom_addr}");
    }
    if check {
        return Ok(());
    }
    eprintln!("xtask: Ctrl-C stops them");
    for (_, child) in &mut stack.children {
        let _ = child.wait();
    }
    Ok(())
}
