//! A /metrics server that plays a run back in time-lapse: each scrape sees the run as it
//! was `speed` times the wall time since the server started, until the end of the run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eco2ai_metrics::server::{Body, OnError};
use eco2ai_metrics::{MetricsServer, TextSink};

use super::Replay;

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
    /// Wall time from the start to the end of the run at this speed.
    pub duration: Duration,
}

pub fn serve(replay: Replay, addr: &str, speed: f64) -> std::io::Result<Served> {
    let (start, end) = (replay.start_ns(), replay.end_ns());
    let began = Instant::now();
    let replay = Arc::new(Mutex::new(replay));
    let body: Body = Arc::new(move || {
        let t = start + (began.elapsed().as_nanos() as f64 * speed) as i64;
        let t = t.min(end);
        let mut out = TextSink::default();
        if let Ok(mut r) = replay.lock() {
            r.advance_to(t);
            r.render_at(t, &mut out);
        }
        out.0
    });
    let on_error: OnError = Arc::new(|_| {});
    let server = MetricsServer::start(addr, body, on_error)?;
    Ok(Served {
        server,
        duration: Duration::from_secs_f64((end - start).max(0) as f64 / 1e9 / speed),
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
