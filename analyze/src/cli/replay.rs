//! `eco2ai-analyze replay`: flags and their checks, then one of the three outputs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use eco2ai_analyze::replay::redact::redact_url;
use eco2ai_analyze::replay::{Prices, Replay, fleet, openmetrics, remote_write, serve};

use eco2ai_trace::parse::{MAX_SECONDS, parse_number, parse_seconds};
use eco2ai_trace::pricing::PriceArgs;

// Every seconds, rate and speed flag goes through the shared range-checked parser, so a
// value like `inf` or `1e30` is a clap error (exit 2), never a panic in a Duration.

/// Seconds from 0 to a year.
fn seconds_arg(s: &str) -> Result<Duration, String> {
    parse_seconds(s, 0.0, MAX_SECONDS).map_err(|e| e.to_string())
}

fn seconds_f64_arg(s: &str) -> Result<f64, String> {
    parse_number(s, 0.0, MAX_SECONDS).map_err(|e| e.to_string())
}

/// A replay step: Prometheus keeps milliseconds, so 1 ms up to a year.
fn every_arg(s: &str) -> Result<f64, String> {
    parse_number(s, 0.001, MAX_SECONDS).map_err(|e| e.to_string())
}

fn rate_arg(s: &str) -> Result<f64, String> {
    parse_number(s, 0.001, 1e12).map_err(|e| e.to_string())
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("output").required(true).args(["openmetrics", "remote_write", "serve"])))]
pub struct ReplayArgs {
    /// Run directories (several: one per node or job, replayed together).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Label cardinality bound: runs of projects beyond this many are left out.
    #[arg(long, default_value_t = 100)]
    max_projects: usize,
    /// With --serve: a run's series disappear this long (run time) after its end.
    #[arg(long, default_value = "300", value_parser = seconds_f64_arg)]
    stale_after_s: f64,
    /// Write OpenMetrics with timestamps, for `promtool tsdb create-blocks-from openmetrics`.
    #[arg(long)]
    openmetrics: Option<PathBuf>,
    /// remote_write endpoint (Prometheus /api/v1/write, VictoriaMetrics, Thanos, Mimir).
    #[arg(long)]
    remote_write: Option<String>,
    /// Serve the run on this address's /metrics, played back at --speed.
    #[arg(long)]
    serve: Option<String>,
    /// With --serve: TLS and basic auth from a web-config file in node_exporter's format.
    #[arg(long, requires = "serve")]
    web_config_file: Option<PathBuf>,
    /// Playback speed for --serve, e.g. 60x (0.001x to 1e9x).
    #[arg(long, default_value = "1x", value_parser = serve::parse_speed)]
    speed: f64,
    /// After the end of the run, keep serving its final values this long.
    #[arg(long, default_value = "60", value_parser = seconds_arg)]
    linger_s: Duration,
    /// Seconds of the run between replayed points (OpenMetrics, remote_write).
    #[arg(long, default_value = "1", value_parser = every_arg)]
    every_s: f64,
    /// Samples per remote_write request.
    #[arg(long, default_value_t = 5000)]
    batch_samples: usize,
    /// Pace remote_write to at most this many samples a second.
    #[arg(long, value_parser = rate_arg)]
    max_samples_per_s: Option<f64>,
    /// Keep retrying one remote_write request this long before giving up.
    #[arg(long, default_value = "600", value_parser = seconds_arg)]
    retry_for_s: Duration,
    /// File holding a bearer token for the remote_write endpoint.
    #[arg(long)]
    bearer_token_file: Option<PathBuf>,
    /// Basic-auth user for the remote_write endpoint (with --basic-auth-password-file;
    /// `https://user:pass@host/...` works too, but shows the password to `ps`).
    #[arg(long, requires = "basic_auth_password_file")]
    basic_auth_user: Option<String>,
    /// File holding the basic-auth password (its first line).
    #[arg(long, requires = "basic_auth_user")]
    basic_auth_password_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust for an https:// receiver (a private CA),
    /// besides the system's.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    #[command(flatten)]
    prices: PriceArgs,
}

/// The shared price flags, checked, as the replay's prices: the flags' intensity (the
/// run's label otherwise, per run, in `Replay::open`).
fn prices(a: &ReplayArgs) -> Result<Prices> {
    let p = &a.prices;
    let intensity = p.check()?;
    Ok(Prices {
        intensity_g_per_kwh: intensity.map(|i| i.g_per_kwh),
        carbon_budget_kg: p.carbon_budget_kg,
        price_per_kwh: p.price_per_kwh,
        gpu_hour_usd: p.gpu_hour_usd,
        pue: p.pue,
    })
}

pub fn run(a: ReplayArgs) -> Result<()> {
    let prices = prices(&a)?;
    if a.max_projects == 0 {
        bail!("--max-projects must be at least 1");
    }
    let (mut runs, skipped) = fleet::open(&a.runs, &prices, a.max_projects)?;
    for r in runs.iter().filter(|r| r.rows_outside() > 0) {
        eprintln!(
            "eco2ai-analyze: {}: {} rows outside the run's time span left out",
            r.dir().display(),
            r.rows_outside()
        );
    }
    for s in &skipped {
        eprintln!(
            "eco2ai-analyze: skipping run {}: {}",
            s.dir.display(),
            s.reason
        );
    }
    let every_ns = (a.every_s * 1e9) as i64;
    if let Some(path) = &a.openmetrics {
        let n = openmetrics::write_file(&mut runs, every_ns, path)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("eco2ai-analyze: {n} samples written");
        println!("{}", path.display());
    } else if let Some(url) = &a.remote_write {
        for r in runs.iter_mut() {
            remote(r, every_ns, url, &a)?;
        }
    } else if let Some(addr) = &a.serve {
        let speed = a.speed;
        let stale_ns = (a.stale_after_s * 1e9) as i64;
        let web = match &a.web_config_file {
            Some(f) => Some(std::sync::Arc::new(eco2ai_metrics::WebConfig::load(f)?)),
            None => None,
        };
        let scheme = if web.as_ref().is_some_and(|w| w.tls.is_some()) {
            "https"
        } else {
            "http"
        };
        let served = serve::serve(runs, addr, speed, stale_ns, web)
            .with_context(|| format!("serving on {addr}"))?;
        eprintln!(
            "eco2ai-analyze: replaying {} run(s) at {speed}x on {scheme}://{}/metrics for {:.0} s",
            a.runs.len() - skipped.len(),
            served.server.addr,
            served.duration.as_secs_f64()
        );
        std::thread::sleep(served.duration);
        eprintln!(
            "eco2ai-analyze: end of the runs; serving their final values for {:.0} s",
            a.linger_s.as_secs_f64()
        );
        std::thread::sleep(a.linger_s);
    }
    Ok(())
}

/// The first line of a secret file, without its line end.
fn secret_line(flag: &str, path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {flag} {}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").trim_end().to_string())
}

/// The remote_write options from the flags; credentials are read here, before anything
/// is sent, so a missing file fails first.
fn remote_options(url: &str, a: &ReplayArgs) -> Result<remote_write::Options> {
    let bearer_token = match &a.bearer_token_file {
        Some(f) => Some(secret_line("--bearer-token-file", f)?),
        None => None,
    };
    let basic_auth = match (&a.basic_auth_user, &a.basic_auth_password_file) {
        (Some(u), Some(f)) => Some((u.clone(), secret_line("--basic-auth-password-file", f)?)),
        _ => None,
    };
    let https = url.starts_with("https://");
    if a.ca_file.is_some() && !https {
        bail!(
            "--ca-file is for an https:// receiver; {} is not one",
            redact_url(url)
        );
    }
    if !https && (bearer_token.is_some() || basic_auth.is_some() || url.contains('@')) {
        eprintln!(
            "eco2ai-analyze: warning: credentials go to {} over plain http, readable on the network",
            redact_url(url)
        );
    }
    Ok(remote_write::Options {
        batch_samples: a.batch_samples.max(1),
        max_samples_per_s: a.max_samples_per_s,
        retry_for: a.retry_for_s,
        bearer_token,
        basic_auth,
        ca_file: a.ca_file.clone(),
        ..Default::default()
    })
}

fn remote(replay: &mut Replay, every_ns: i64, url: &str, a: &ReplayArgs) -> Result<()> {
    let o = remote_options(url, a)?;
    let mut last_report = std::time::Instant::now();
    let accepted = std::cell::Cell::new(0u64);
    let mut progress = |n: u64| {
        accepted.set(n);
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!("eco2ai-analyze: {n} samples sent");
            last_report = std::time::Instant::now();
        }
    };
    let s = remote_write::replay(replay, every_ns, url, &o, &mut progress).with_context(|| {
        format!(
            "remote_write to {} (the first {} samples were accepted)",
            redact_url(url),
            accepted.get()
        )
    })?;
    eprintln!(
        "eco2ai-analyze: {} samples in {} requests ({} retries, {} bytes) in {:.2} s",
        s.samples, s.requests, s.retries, s.bytes, s.secs
    );
    Ok(())
}
