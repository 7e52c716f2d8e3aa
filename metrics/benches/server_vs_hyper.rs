//! The hand-written /metrics server (`server.rs`, a poll loop) against hyper 1 (http1
//! server, `header_read_timeout` 1 s, a tokio current-thread runtime, a limit of 4,096
//! connections) under the load of `tests/slowloris.rs`: 1,000 idle TCP connections
//! (re-opened as the server closes them) and a slowloris client, while a scraper asks
//! for /metrics every 20 ms. Each server runs in a child process of its own, so its RSS
//! and CPU are its own: RSS after start, then CPU and RSS over 10 s with the 1,000 idle
//! clients alone, then scrape latency p50/p99/max over 10 s with the slowloris too.
//! `cargo bench -p eco2ai-metrics --features bench-hyper --bench server_vs_hyper`
//! (ROUNDS=N for other than 3 rounds of both).

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[path = "../tests/common/hostile.rs"]
mod hostile;

use eco2ai_metrics::MetricsServer;
use eco2ai_metrics::server::{Body, HEAD_DEADLINE, MAX_HEAD_BYTES, MAX_PENDING, OnError};
use hostile::{idle_clients, slowloris};

const IDLE: usize = 1000;
const WINDOW: Duration = Duration::from_secs(10);

/// About a probe's scrape with 8 GPUs: ~300 samples, ~30 KB.
fn body() -> Body {
    let mut text = String::new();
    for family in 0..30 {
        text.push_str(&format!("# TYPE hf_training_family_{family} gauge\n"));
        for gpu in 0..10 {
            text.push_str(&format!(
                "hf_training_family_{family}{{project=\"bench\",host=\"node-a\",gpu=\"{gpu}\"}} {}\n",
                400.5 + f64::from(gpu)
            ));
        }
    }
    Arc::new(move || text.clone())
}

/// The child: serves with `kind` on a free loopback port, prints the address, and
/// serves until its stdin closes.
fn child(kind: &str) {
    let addr = match kind {
        "poll" => {
            let on_error: OnError = Arc::new(|_| {});
            let srv = MetricsServer::start("127.0.0.1:0", body(), on_error).expect("start");
            let addr = srv.addr;
            std::mem::forget(srv);
            addr
        }
        "hyper" => hyper_server::start(body()),
        other => panic!("no server {other}"),
    };
    println!("{addr}");
    let _ = std::io::stdout().flush();
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
}

mod hyper_server {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Response, header};
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tokio::sync::Semaphore;

    use super::{Body, HEAD_DEADLINE, MAX_HEAD_BYTES, MAX_PENDING};

    pub fn start(body: Body) -> SocketAddr {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        std_listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(serve(std_listener, body));
        });
        addr
    }

    async fn serve(std_listener: std::net::TcpListener, body: Body) {
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
        let limit = Arc::new(Semaphore::new(MAX_PENDING));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            // Over the limit: closed at once, as the poll loop does.
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let text = body();
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(text)))
                                .expect("response"),
                        )
                    }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_DEADLINE)
                    // The poll loop's head cap (8 KiB is hyper's least).
                    .max_buf_size(MAX_HEAD_BYTES)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), svc);
                let _ = conn.await;
                drop(permit);
            });
        }
    }
}

fn scrape(addr: SocketAddr) -> Option<Duration> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (out.starts_with("HTTP/1.1 200 OK") && out.contains("hf_training_family_29"))
        .then(|| t.elapsed())
}

/// The kernel's count of connections dropped because a listen queue was full (the
/// machine's, so other listeners count too; none other is busy during the bench).
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut rows = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// (RSS kB, peak RSS kB) from /proc/PID/status.
fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of PID, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12) // utime, stime: fields 14 and 15
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

fn measure(kind: &str) {
    let mut c: Child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--serve-child", kind])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child");
    let mut line = String::new();
    std::io::BufReader::new(c.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address");
    let addr: SocketAddr = line.trim().parse().expect("address");
    let pid = c.id();
    std::thread::sleep(Duration::from_millis(300));
    let (rss_start, _) = rss_kb(pid);

    let overflows = listen_overflows();
    let stop = Arc::new(AtomicBool::new(false));
    let idlers = idle_clients(addr, IDLE, stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(WINDOW);
    let idle_cpu_pct = (cpu_ticks(pid) - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    let (rss_idle, _) = rss_kb(pid);

    let loris = slowloris(addr, stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    let (mut lat, mut failed) = (Vec::new(), 0u32);
    let began = Instant::now();
    while began.elapsed() < WINDOW {
        match scrape(addr) {
            Some(d) => lat.push(d),
            None => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = idlers.join();
    let connects = loris.join().unwrap_or(0);
    let (_, rss_peak) = rss_kb(pid);
    let overflows = listen_overflows() - overflows;
    drop(c.stdin.take());
    let _ = c.wait();
    lat.sort();
    println!(
        "{kind:>5}: RSS {:.1} MB at start, {:.1} MB with {IDLE} idle clients (peak {:.1} MB); \
         CPU with {IDLE} idle clients {idle_cpu_pct:.1}% of a core; scrapes under idle + \
         slowloris ({connects} slowloris connects): n={} failed={failed} p50={:.2} ms \
         p99={:.2} ms max={:.2} ms; listen-queue overflows {overflows}",
        rss_start as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
}

/// Raises the open-file limit: both ends of every idle connection may be in this
/// process and the child.
fn raise_nofile() {
    let want = libc::rlimit {
        rlim_cur: 8192,
        rlim_max: 8192,
    };
    // SAFETY: `want` is a valid rlimit; failing (not root) leaves the limit as it was.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
        eprintln!("could not raise the open-file limit: idle connections may fall short");
    }
}

fn main() {
    raise_nofile();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-child") {
        child(args.get(i + 1).map(String::as_str).unwrap_or(""));
        return;
    }
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    for round in 1..=rounds {
        println!("round {round} of {rounds}");
        for kind in ["poll", "hyper"] {
            measure(kind);
        }
    }
}
