//! The load around `cargo xtask bench`'s probe: a recorded process tree of 64 threads,
//! a /metrics scrape every 15 s, and the probe's CPU per thread, sampled from
//! /proc/PID/task/*/schedstat (ns on CPU) while it runs.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The recorded command: 64 Python threads that each wake every 50 ms and do a little
/// work (a PyTorch data loader's shape), for `seconds`.
pub fn workload_argv(seconds: u64) -> Vec<String> {
    let script = format!(
        "import threading, time\n\
         end = time.monotonic() + {seconds}\n\
         def w():\n\
         \x20   while time.monotonic() < end:\n\
         \x20       sum(range(200)); time.sleep(0.05)\n\
         ts = [threading.Thread(target=w) for _ in range(63)]\n\
         [t.start() for t in ts]\n\
         w()\n\
         [t.join() for t in ts]\n"
    );
    vec!["python3".into(), "-c".into(), script]
}

/// Samples the probe's threads until stopped; `finish` returns ns on CPU per thread
/// name (threads of one name summed), the last value seen of each thread.
pub struct ThreadCpu {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<BTreeMap<i32, (String, u64)>>,
}

impl ThreadCpu {
    pub fn start(pid: u32) -> ThreadCpu {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen: BTreeMap<i32, (String, u64)> = BTreeMap::new();
            while !s.load(Ordering::Relaxed) {
                let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                    break;
                };
                for e in dir.flatten() {
                    let Some(tid) = e.file_name().to_str().and_then(|t| t.parse().ok()) else {
                        continue;
                    };
                    if let Some(v) = read_thread(pid, tid) {
                        seen.insert(tid, v);
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            seen
        });
        ThreadCpu { stop, handle }
    }

    pub fn finish(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.handle.join().unwrap_or_default();
        let mut by_name = BTreeMap::new();
        for (name, ns) in seen.into_values() {
            *by_name.entry(name).or_insert(0) += ns;
        }
        by_name
    }
}

/// (name, ns on CPU) of one thread: schedstat's first field, else stat's utime+stime.
fn read_thread(pid: u32, tid: i32) -> Option<(String, u64)> {
    let base = format!("/proc/{pid}/task/{tid}");
    let name = std::fs::read_to_string(format!("{base}/comm"))
        .ok()?
        .trim()
        .to_string();
    let sched = std::fs::read_to_string(format!("{base}/schedstat")).ok();
    let ns = match sched.and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok()) {
        Some(ns) => ns,
        None => {
            let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15, i.e. 11 and 12 after the comm.
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            ticks * 10_000_000
        }
    };
    Some((name, ns))
}

/// Scrapes `addr`/metrics every `every` until stopped; returns (scrapes, bytes).
pub struct Scraper {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(u64, u64)>,
}

impl Scraper {
    pub fn start(addr: String, every: Duration) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut n, mut bytes) = (0u64, 0u64);
            // The first scrape once the probe listens.
            let mut next = Instant::now() + Duration::from_secs(2);
            while !s.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    next += every;
                    if let Some(b) = scrape(&addr) {
                        n += 1;
                        bytes += b;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (n, bytes)
        });
        Scraper { stop, handle }
    }

    pub fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or((0, 0))
    }
}

fn scrape(addr: &str) -> Option<u64> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).ok()?;
    Some(body.len() as u64)
}
