//! The shared fixture of the cluster tests: a namespace cluster (scripts/cluster/cluster.sh)
//! brought up once per test binary under a name and /24 of its own, torn down on drop;
//! the workspace's built binaries; a small HTTP client for Prometheus.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod raw;

pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Why this machine cannot run the cluster tests, if it cannot.
fn unmet() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces, a bridge and Slurm as root)".into());
    }
    for bin in [
        "/usr/sbin/slurmctld",
        "/usr/sbin/slurmd",
        "/usr/bin/srun",
        "/usr/sbin/munged",
        "/usr/bin/nsenter",
        "/usr/bin/unshare",
    ] {
        if !Path::new(bin).exists() {
            return Some(format!(
                "{bin} missing (cargo xtask setup: slurm-wlm, munge)"
            ));
        }
    }
    let ip = Command::new("ip").arg("-V").output();
    if !ip.is_ok_and(|o| o.status.success()) {
        return Some("ip (iproute2) missing".into());
    }
    None
}

/// True when the tests should run; prints why not otherwise. With
/// ECO2AI_REQUIRE_CLUSTER=1 (cargo xtask test as root) an unmet need fails instead.
pub fn runnable(extra: &[&str]) -> bool {
    let reason = unmet().or_else(|| {
        extra
            .iter()
            .find(|p| !Path::new(p).exists())
            .map(|p| format!("{p} missing"))
    });
    let Some(reason) = reason else { return true };
    assert!(
        std::env::var_os("ECO2AI_REQUIRE_CLUSTER").is_none(),
        "ECO2AI_REQUIRE_CLUSTER is set but: {reason}"
    );
    eprintln!("SKIPPED: the cluster tests need {reason}");
    false
}

/// The workspace's built binaries (`cargo build --workspace` puts them beside this test's
/// own directory: target/<profile>/).
pub struct Bins {
    pub probe: PathBuf,
    pub analyze: PathBuf,
    pub dir: PathBuf,
}

pub fn bins() -> Bins {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let b = Bins {
        probe: dir.join("eco2ai-probe"),
        analyze: dir.join("eco2ai-analyze"),
        dir,
    };
    for p in [&b.probe, &b.analyze] {
        assert!(
            p.exists(),
            "{} not built: cargo build --workspace first",
            p.display()
        );
    }
    b
}

pub struct Node {
    pub name: String,
    pub addr: String,
}

/// A cluster up for the life of this value.
pub struct Cluster {
    pub name: String,
    pub nodes: Vec<Node>,
    pub host_addr: String,
    pub slurm_conf: PathBuf,
    pub state: PathBuf,
}

fn subnets_in_use() -> Vec<u8> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("10.77."))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect()
}

impl Cluster {
    /// Brings up `n` nodes named `<prefix><pid>-n<i>`.
    pub fn up(prefix: &str, n: usize) -> Cluster {
        let pid = std::process::id();
        let name = format!("{prefix}{}", pid % 100_000);
        let subnet = eco2ai_cluster::pick_subnet(pid, &subnets_in_use()).unwrap();
        reap_stale(prefix);
        let _ = script(&["down", "--name", &name]).output();
        let out = script(&[
            "up",
            "--name",
            &name,
            "--nodes",
            &n.to_string(),
            "--subnet",
            &subnet,
        ])
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "cluster up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let state = PathBuf::from("/run/eco2ai-cluster").join(&name);
        let nodes = (0..n)
            .map(|i| Node {
                name: format!("{name}-n{i}"),
                addr: format!("{subnet}.{}", i + 1),
            })
            .collect();
        // Whose cluster this is: a later run reaps it if this process dies unwinding-less.
        std::fs::write(state.join("owner"), pid.to_string()).unwrap();
        Cluster {
            slurm_conf: state.join("slurm.conf"),
            host_addr: format!("{subnet}.254"),
            name,
            nodes,
            state,
        }
    }

    /// `cmd` run inside node `i` (its network and hostname; the machine's filesystem).
    pub fn exec(&self, i: usize, cmd: &[&str]) -> Command {
        let mut args = vec!["exec", "--name", &self.name, "NODE"];
        let node = i.to_string();
        args[3] = &node;
        args.extend_from_slice(cmd);
        script(&args)
    }

    /// The Slurm log files, for a failure's message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for e in std::fs::read_dir(self.state.join("log"))
            .into_iter()
            .flatten()
        {
            let p = e.unwrap().path();
            let body = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(15).collect();
            text += &format!("--- {}\n", p.display());
            for l in tail.iter().rev() {
                text += l;
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = script(&["down", "--name", &self.name])
            .stdout(Stdio::null())
            .status();
    }
}

/// Takes down the clusters of this test binary's earlier runs that were killed before
/// their teardown (their owner process is gone), so one failed run never breaks the next.
fn reap_stale(prefix: &str) {
    let Ok(entries) = std::fs::read_dir("/run/eco2ai-cluster") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with(prefix) {
            continue;
        }
        let owner = std::fs::read_to_string(e.path().join("owner")).unwrap_or_default();
        let alive = owner.trim().parse::<u32>().is_ok_and(running);
        if !alive {
            let _ = script(&["down", "--name", &name]).output();
        }
    }
}

/// Whether process `pid` exists and is not a zombie (a killed test waiting to be reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|st| {
            st.rsplit_once(") ")
                .map(|(_, rest)| rest.starts_with(['Z', 'X']))
        })
        .is_some_and(|dead| !dead)
}

fn script(args: &[&str]) -> Command {
    let mut c = Command::new("bash");
    c.arg(eco2ai_cluster::script()).args(args);
    c
}

/// Runs `cmd`, failing the test with its output when it fails.
pub fn ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `job=<id>` directories under `out`.
pub fn job_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("job="))
        .collect();
    dirs.sort();
    dirs
}

/// Each node's one run directory under `job`: `job=<id>/node=<n>/<run_id>/`, with its
/// meta.json parsed.
pub fn node_runs(job: &Path) -> Vec<(String, PathBuf, Value)> {
    let mut runs = Vec::new();
    for e in std::fs::read_dir(job).unwrap() {
        let node_dir = e.unwrap().path();
        let dir_name = node_dir.file_name().unwrap().to_string_lossy().to_string();
        let node = dir_name
            .strip_prefix("node=")
            .expect("node=<name>")
            .to_string();
        let inner: Vec<PathBuf> = std::fs::read_dir(&node_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("meta.json").is_file())
            .collect();
        assert_eq!(inner.len(), 1, "{}: {inner:?}", node_dir.display());
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(inner[0].join("meta.json")).unwrap())
                .unwrap();
        runs.push((node, inner[0].clone(), meta));
    }
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    runs
}

/// `eco2ai-analyze job DIR --format json`, parsed.
pub fn analyze_job(bins: &Bins, job: &Path) -> Value {
    let out = ok(
        Command::new(&bins.analyze).args(["job", job.to_str().unwrap(), "--format", "json"]),
        "eco2ai-analyze job",
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "eco2ai-analyze job --format json: {e}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Every string anywhere in `v` (to check that a report names something, whatever field
/// it is in).
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o
            .iter()
            .flat_map(|(k, v)| std::iter::once(k.clone()).chain(strings(v)))
            .collect(),
        _ => Vec::new(),
    }
}

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port free on `addr` now.
pub fn free_port(addr: &str) -> u16 {
    std::net::TcpListener::bind((addr, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` from `addr` (HOST:PORT): (status, body).
pub fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
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

/// An instant query's result vector, None while Prometheus is not answering.
pub fn try_vector(addr: &str, q: &str) -> Option<Vec<Value>> {
    let (code, body) = get(addr, &format!("/api/v1/query?query={}", encode(q)))?;
    if code != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"].as_array().cloned()
}

/// Polls `f` until it gives a value, failing after `limit` with `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn prometheus(dir: &Path, config: &str, listen: &str) -> Killed {
    let mut cmd = Command::new(PROMETHEUS);
    // SAFETY: prctl is async-signal-safe; the closure touches nothing else. The server
    // dies with this test even when it is killed before its teardown.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Killed(
        cmd.arg(format!("--config.file={}", dir.join(config).display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join(format!("tsdb-{config}")).display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `text` with `from` replaced, which must be there (a config edited away from what the
/// test expects fails loudly instead of testing nothing).
pub fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not found in:\n{text}");
    text.replace(from, to)
}

/// Runs each scenario, catching its failure so that the others still run and the cluster
/// is torn down once; fails at the end naming every failed scenario.
pub fn scenarios(list: &[(&str, &dyn Fn())]) {
    let mut failed = Vec::new();
    for (name, f) in list {
        eprintln!("cluster scenario: {name}");
        let t = Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(()) => eprintln!(
                "cluster scenario: {name} ok ({:.1} s)",
                t.elapsed().as_secs_f64()
            ),
            Err(_) => failed.push(*name),
        }
    }
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}
