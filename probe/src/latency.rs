//! network_latency_ms: TCP connect time to each `--latency-target`, every 10 s, into the
//! live metrics. An unreachable target drops its sample (absent, as Prometheus expects
//! of an unknown value) and counts a `network:unreachable` error.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eco2ai_metrics::MetricsState;

use crate::samplers::errors::ErrorCounts;

const EVERY: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(2);

fn connect_ms(target: &str) -> Option<f64> {
    let addr = target.to_socket_addrs().ok()?.next()?;
    let t = Instant::now();
    TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
    Some(t.elapsed().as_secs_f64() * 1e3)
}

/// The measuring thread; stopped and joined on drop.
pub struct Latency {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Latency {
    pub fn start(
        targets: Vec<String>,
        state: Arc<Mutex<MetricsState>>,
        errors: ErrorCounts,
    ) -> std::io::Result<Latency> {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("latency".into())
            .spawn(move || {
                while !s2.load(Ordering::Relaxed) {
                    for t in &targets {
                        let ms = connect_ms(t);
                        if ms.is_none() {
                            errors.add_n("network:unreachable", 1);
                        }
                        if let Ok(mut s) = state.lock() {
                            match ms {
                                Some(ms) => s.latency_ms.insert(t.clone(), ms),
                                None => s.latency_ms.remove(t),
                            };
                        }
                    }
                    let next = Instant::now() + EVERY;
                    while !s2.load(Ordering::Relaxed) && Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })?;
        Ok(Latency {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Latency {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
