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

/// Slowest and fastest playback; a factor beyond them is a typo (at 1e-300x one second of
/// a run would last longer than a `Duration` can hold).
pub const MIN_SPEED: f64 = 1e-3;
pub const MAX_SPEED: f64 = 1e9;

/// Parses `60x`, `60` or `0.5x`, from [`MIN_SPEED`] to [`MAX_SPEED`].
pub fn parse_speed(s: &str) -> Result<f64, String> {
    let num = s.trim().trim_end_matches(['x', 'X']);
    eco2ai_trace::parse::parse_number(num, MIN_SPEED, MAX_SPEED).map_err(|_| {
        format!("expected a playback factor such as 60x, from {MIN_SPEED}x to {MAX_SPEED}x")
    })
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
    web: Option<Arc<eco2ai_metrics::WebConfig>>,
) -> std::io::Result<Served> {
    let first = runs.iter().map(Replay::start_unix_ns).min().unwrap_or(0);
    let last = runs.iter().map(Replay::end_unix_ns).max().unwrap_or(first);
    let began = Instant::now();
    let runs = Arc::new(Mutex::new(runs));
    let body: Body = Arc::new(move || {
        // `as` saturates; the add must too (a hostile meta.json's clocks).
        let now = first.saturating_add((began.elapsed().as_nanos() as f64 * speed) as i64);
        match runs.lock() {
            Ok(mut r) => render(&mut r, now, stale_after_ns),
            Err(_) => String::new(),
        }
    });
    let span_s = last.saturating_sub(first).max(0) as f64 / 1e9 / speed;
    let duration = Duration::try_from_secs_f64(span_s)
        .ok()
        .filter(|d| *d <= eco2ai_trace::parse::MAX_DURATION)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "the runs span {span_s:.3e} s of wall time at {speed}x: more than a year; raise --speed"
            ))
        })?;
    let on_error: OnError = Arc::new(|_| {});
    let server = MetricsServer::start_with(addr, body, on_error, web)?;
    Ok(Served { server, duration })
}

#[cfg(test)]
mod tests {
    #[test]
    fn speeds() {
        assert_eq!(super::parse_speed("60x"), Ok(60.0));
        assert_eq!(super::parse_speed("2"), Ok(2.0));
        assert!(super::parse_speed("0x").is_err());
        assert!(super::parse_speed("fast").is_err());
        for bad in ["1e-300x", "infx", "NaN", "1e300x", "-2x"] {
            assert!(super::parse_speed(bad).is_err(), "{bad}");
        }
    }
}
