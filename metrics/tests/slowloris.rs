//! /metrics stays answerable under attack: 1,000 idle connections (re-opened as the
//! server closes them) and a slowloris client sending one byte every 1.5 s. Each scrape
//! must be answered within 1 s (a liveness bound, not a speed target); the scrape latency
//! figures are printed (`cargo test -p eco2ai-metrics --test slowloris -- --nocapture`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common {
    pub mod hostile;
}

use common::hostile::{idle_clients, slowloris};
use eco2ai_metrics::MetricsServer;
use eco2ai_metrics::server::{Body, OnError};

const IDLE: usize = 1000;

/// Raises the open-file limit to fit the idle connections (both of their ends live in
/// this process); returns how many idle connections fit.
fn raise_nofile() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 100;
    }
    let want: libc::rlim_t = 8192;
    let fit = libc::rlimit {
        rlim_cur: want.max(lim.rlim_cur),
        rlim_max: want.max(lim.rlim_max),
    };
    // SAFETY: `fit` is a valid rlimit; raising the hard limit needs root and may fail.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &fit) } != 0 {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above; the soft limit up to the hard one is always allowed.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
    // SAFETY: as for the first getrlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let fds = lim.rlim_cur.min(1 << 20) as usize;
    IDLE.min(fds.saturating_sub(100) / 2)
}

fn server(errors: Arc<AtomicUsize>) -> MetricsServer {
    let body: Body = Arc::new(|| "# TYPE hf_test gauge\nhf_test 42\n".repeat(50));
    let on_error: OnError = Arc::new(move |_| {
        errors.fetch_add(1, Ordering::Relaxed);
    });
    MetricsServer::start("127.0.0.1:0", body, on_error).expect("start")
}

fn scrape(addr: SocketAddr) -> (Duration, String) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("answer");
    (t.elapsed(), out)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn scrapes_are_answered_under_slowloris_and_idle_connections() {
    let idle = raise_nofile();
    if idle < IDLE {
        println!("open-file limit too low for {IDLE} idle connections: using {idle}");
    }
    let errors = Arc::new(AtomicUsize::new(0));
    let srv = server(errors.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let idlers = idle_clients(srv.addr, idle, stop.clone());
    let loris = slowloris(srv.addr, stop.clone());
    // Let the idle connections pile up and the slowloris get going.
    std::thread::sleep(Duration::from_millis(1500));

    let mut lat = Vec::new();
    let began = Instant::now();
    // Several seconds: spans many head deadlines and re-opened idle connections.
    while began.elapsed() < Duration::from_secs(6) {
        let (took, out) = scrape(srv.addr);
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.contains("hf_test 42"), "{out}");
        assert!(took < Duration::from_secs(1), "a scrape took {took:?}");
        lat.push(took);
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    idlers.join().expect("idle clients");
    let connects = loris.join().expect("slowloris");
    lat.sort();
    println!(
        "scrape latency under {idle} idle connections + slowloris ({connects} connects): \
         n={} p50={:.2} ms p99={:.2} ms max={:.2} ms; server-side errors counted: {}",
        lat.len(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
        errors.load(Ordering::Relaxed)
    );
    // The slowloris connection was cut at its head deadline, not held.
    assert!(connects >= 2, "the slowloris kept one connection for 6 s");
}

#[test]
fn an_oversized_head_is_refused_at_once() {
    let errors = Arc::new(AtomicUsize::new(0));
    let kinds = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = kinds.clone();
    let body: Body = Arc::new(|| "hf_test 42\n".to_string());
    let on_error: OnError = Arc::new(move |k| {
        errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut v) = seen.lock() {
            v.push(k.to_string());
        }
    });
    let srv = MetricsServer::start("127.0.0.1:0", body, on_error).expect("start");
    let mut s = TcpStream::connect(srv.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let t = Instant::now();
    // No blank line ever: only the size cap can end this before the deadline.
    let line = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(16 * 1024));
    let _ = s.write_all(line.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        out.is_empty(),
        "answered: {}",
        String::from_utf8_lossy(&out)
    );
    // The size cap closed it, not the head deadline (whatever the machine's load).
    assert_eq!(
        *kinds.lock().unwrap(),
        vec!["metrics:head_too_large".to_string()],
        "closed after {:?}",
        t.elapsed()
    );
}
