//! remote_write of a replayed run: requests of about `batch_samples` samples, in time
//! order (Prometheus refuses out-of-order samples), each retried with backoff until it is
//! accepted. A retried request is the same request, and re-sending a sample with its
//! timestamp and value is a no-op for Prometheus and VictoriaMetrics, so a retry neither
//! loses nor duplicates. A request the receiver refuses (4xx other than 429) stops the
//! replay with the receiver's reason. The requests share one kept-alive connection
//! (`http::Client`), opened again when the receiver drops it.

use std::time::{Duration, Instant};

use std::path::PathBuf;

use base64::Engine;

use super::Replay;
use super::http::{Client, PostError, Target};
use eco2ai_metrics::proto::WriteRequestSink;

#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("{0}")]
    BadUrl(String),
    #[error("the receiver refused a request with HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("{0}")]
    Permanent(String),
    #[error("gave up after {attempts} attempts over {secs:.0} s; last error: {last}")]
    GaveUp {
        attempts: u32,
        secs: f64,
        last: String,
    },
}

#[derive(Debug, Clone)]
pub struct Options {
    pub batch_samples: usize,
    /// Pace the replay (samples per second), to spare a busy receiver.
    pub max_samples_per_s: Option<f64>,
    /// How long one request may keep being retried.
    pub retry_for: Duration,
    pub timeout: Duration,
    pub bearer_token: Option<String>,
    /// Basic auth (user, password); a URL's `user:pass@` is used when this is None.
    pub basic_auth: Option<(String, String)>,
    /// A PEM file of CA certificates trusted for an https receiver, beside the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch_samples: 5_000,
            max_samples_per_s: None,
            retry_for: Duration::from_secs(600),
            timeout: Duration::from_secs(30),
            bearer_token: None,
            basic_auth: None,
            ca_file: None,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub samples: u64,
    pub requests: u64,
    pub retries: u64,
    pub bytes: u64,
    pub secs: f64,
}

/// The Authorization header: a bearer token, or basic auth from the options or the URL.
fn authorization(t: &Target, o: &Options) -> Result<Option<String>, RemoteWriteError> {
    let basic = o.basic_auth.as_ref().or(t.userinfo.as_ref());
    match (&o.bearer_token, basic) {
        (Some(_), Some(_)) => Err(RemoteWriteError::BadUrl(
            "both a bearer token and basic auth were given; use one".into(),
        )),
        (Some(k), None) => Ok(Some(format!("Bearer {k}"))),
        (None, Some((user, pass))) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            Ok(Some(format!("Basic {b64}")))
        }
        (None, None) => Ok(None),
    }
}

fn send(
    client: &Client,
    auth: Option<&str>,
    body: &[u8],
    o: &Options,
    stats: &mut Stats,
) -> Result<(), RemoteWriteError> {
    let mut headers = vec![
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ("User-Agent", "eco2ai-analyze"),
    ];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    let first = Instant::now();
    let mut wait = Duration::from_millis(100);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let last = match client.post(&headers, body) {
            Ok(a) if (200..300).contains(&a.status) => {
                stats.requests += 1;
                stats.bytes += body.len() as u64;
                return Ok(());
            }
            Ok(a) if a.status == 429 || a.status >= 500 => format!("HTTP {}: {}", a.status, a.body),
            Ok(a) => {
                return Err(RemoteWriteError::Refused {
                    status: a.status,
                    body: a.body,
                });
            }
            Err(PostError::Permanent(e)) => return Err(RemoteWriteError::Permanent(e)),
            Err(PostError::Transient(e)) => e,
        };
        if first.elapsed() + wait > o.retry_for {
            return Err(RemoteWriteError::GaveUp {
                attempts: attempt,
                secs: first.elapsed().as_secs_f64(),
                last,
            });
        }
        stats.retries += 1;
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Replays the run every `every_ns` to `url`; `progress` is told the samples sent so far.
pub fn replay(
    replay: &mut Replay,
    every_ns: i64,
    url: &str,
    o: &Options,
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, RemoteWriteError> {
    let target = super::http::parse_url(url).map_err(RemoteWriteError::BadUrl)?;
    let client =
        Client::new(&target, o.ca_file.as_deref(), o.timeout).map_err(RemoteWriteError::BadUrl)?;
    let auth = authorization(&target, o)?;
    let mut stats = Stats::default();
    let mut sink = WriteRequestSink::default();
    let mut enc = snap::raw::Encoder::new();
    let start = Instant::now();
    let ticks: Vec<i64> = replay.ticks(every_ns).collect();
    let last = ticks.len().saturating_sub(1);
    for (k, t) in ticks.into_iter().enumerate() {
        replay.advance_to(t);
        sink.ts_ms = replay.unix_ms(t);
        replay.render_at(t, &mut sink);
        if sink.samples < o.batch_samples.max(1) && k < last {
            continue;
        }
        let n = sink.samples as u64;
        let body = enc
            .compress_vec(&sink.take_request())
            .map_err(|e| RemoteWriteError::BadUrl(format!("snappy: {e}")))?;
        send(&client, auth.as_deref(), &body, o, &mut stats)?;
        stats.samples += n;
        progress(stats.samples);
        if let Some(rate) = o.max_samples_per_s.filter(|r| *r > 0.0) {
            let due =
                Duration::try_from_secs_f64(stats.samples as f64 / rate).unwrap_or(Duration::MAX);
            std::thread::sleep(due.saturating_sub(start.elapsed()));
        }
    }
    stats.secs = start.elapsed().as_secs_f64();
    Ok(stats)
}
