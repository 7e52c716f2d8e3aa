//! A /metrics server that plays runs back in time-lapse: each scrape sees every run as it
//! was `speed` times the wall time since the server started, counted from the earliest
//! run's start (runs keep their real relative timing). A run's label sets disappear
//! `stale_after_ns` of run time after its end, as a finished job's would.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eco2ai_metrics::MetricsServer;
use eco2ai_metrics::server::{Body, OnError};

use super::Replay;
use super::openmetrics::{Format, OpenMetricsSink};

/// Parses `60x`, `60` or `0.5x`.
pub fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches(['x', 'X'])
        .parse()
        .map_err(|_| format!("--speed '{s}': expected a factor such as 60x"))?;
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(format!("--speed '{s}': must be a positive factor"))
    }
}

/// The serving replay; dropping it stops the server.
pub struct Served {
    pub server: MetricsServer,
    /// Wall time from the first start to the last end at this speed.
    pub duration: Duration,
}

/// The exposition of every run visible at Unix ns `now`.
fn render(runs: &mut [Replay], now: i64, stale_after_ns: i64) -> String {
    let mut sink = OpenMetricsSink::new(Format::Text);
    for r in runs.iter_mut() {
        if now < r.start_unix_ns() || now > r.end_unix_ns().saturating_add(stale_after_ns) {
            continue;
        }
        let t = r.mono_at_unix(now).min(r.end_ns());
        r.advance_to(t);
        r.render_at(t, &mut sink);
    }
    sink.into_text()
}

pub fn serve(
    runs: Vec<Replay>,
    addr: &str,
    speed: f64,
    stale_after_ns: i64,
) -> std::io::Result<Served> {
    let first = runs.iter().map(Replay::start_unix_ns).min().unwrap_or(0);
    let last = runs.iter().map(Replay::end_unix_ns).max().unwrap_or(first);
    let began = Instant::now();
    let runs = Arc::new(Mutex::new(runs));
    let body: Body = Arc::new(move || {
        let now = first + (began.elapsed().as_nanos() as f64 * speed) as i64;
        match runs.lock() {
            Ok(mut r) => render(&mut r, now, stale_after_ns),
            Err(_) => String::new(),
        }
    });
    let on_error: OnError = Arc::new(|_| {});
    let server = MetricsServer::start(addr, body, on_error)?;
    Ok(Served {
        server,
        duration: Duration::from_secs_f64((last - first).max(0) as f64 / 1e9 / speed),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn speeds() {
        assert_eq!(super::parse_speed("60x"), Ok(60.0));
        assert_eq!(super::parse_speed("2"), Ok(2.0));
        assert!(super::parse_speed("0x").is_err());
        assert!(super::parse_speed("fast").is_err());
    }
}
