//! Command-line flags, parsed by clap into raw form and then validated into a
//! `RecordConfig` before any side effect.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use eco2ai_trace::{JobInfo, Labels};
use thiserror::Error;

use crate::sensors::SensorConfig;

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("--latency-target '{0}': expected HOST:PORT")]
    LatencyTarget(String),
    #[error(transparent)]
    Parse(#[from] eco2ai_trace::parse::ParseError),
    #[error("{flag} must be between {min} and {max}, got {got}")]
    Range {
        flag: &'static str,
        min: String,
        max: String,
        got: String,
    },
    #[error(
        "--carbon-budget-kg needs a grid intensity to turn energy into CO2: give --country, --region or --gco2-per-kwh"
    )]
    BudgetWithoutIntensity,
    #[error("nothing to record: give a command after '--', or --pid, --duration or --demo")]
    NothingToRecord,
    #[error("give one of a command, --pid, --duration/--demo, not both")]
    Both,
    #[error("invalid --country '{0}': expected an ISO 3166 alpha-2 code such as FR or US")]
    Country(String),
    #[error("invalid --gpus '{0}': expected distinct comma-separated GPU indices such as 0,1")]
    Gpus(String),
    #[error("invalid --metrics-addr '{0}': expected HOST:PORT such as 127.0.0.1:9091")]
    MetricsAddr(String),
    #[error("--web-config-file: {0}")]
    WebConfig(#[from] eco2ai_metrics::WebConfigError),
    #[error(transparent)]
    Grid(#[from] eco2ai_trace::grid::GridError),
    #[error(transparent)]
    Price(#[from] eco2ai_trace::pricing::PriceError),
    #[error(
        "invalid --uprobe '{0}': expected LIB:SYMBOL such as libcuda.so:cuLaunchKernel (at most 4)"
    )]
    Uprobe(String),
    #[error("--run-id: {0}")]
    RunId(#[from] eco2ai_trace::RunIdError),
    #[error(
        "job id or node name (from --job-id, SLURM_JOB_ID, TORCHELASTIC_RUN_ID, SLURMD_NODENAME or the host name): {0}"
    )]
    Job(eco2ai_trace::RunIdError),
}

/// Parses `500us`, `20ms`, `2s`, `1.5s`, `5m`, `1h`, up to a year (the shared parser:
/// the analyzer reads durations the same way).
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    Ok(eco2ai_trace::parse::parse_duration(s)?)
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// A duration where zero means nothing (how long to record, when a GPU is stale).
fn positive_duration_arg(s: &str) -> Result<Duration, String> {
    let d = eco2ai_trace::parse::parse_duration_in(
        s,
        Duration::from_millis(1),
        eco2ai_trace::parse::MAX_DURATION,
    );
    d.map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// Directory under which the run directory is created.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Name of the run directory (default: PROJECT-YYYYMMDD-HHMMSS-PID).
    #[arg(long)]
    pub run_id: Option<String>,
    /// The multi-node job this node's run belongs to (default: SLURM_JOB_ID, else
    /// TORCHELASTIC_RUN_ID, else none); the run then goes in OUT/job=ID/node=NODE/.
    #[arg(long)]
    pub job_id: Option<String>,
    /// Project label of the run (metrics, alerts, run id); the Python callback's default too.
    #[arg(long, default_value = "hf-training")]
    pub project: Option<String>,
    /// Model label of the run, e.g. bert-base.
    #[arg(long)]
    pub model: Option<String>,
    /// RAPL poll period.
    #[arg(long, value_parser = duration_arg, default_value = "1ms")]
    pub rapl_interval: Duration,
    /// NVML power poll period (sensors refresh every ~100 ms).
    #[arg(long, value_parser = duration_arg, default_value = "20ms")]
    pub nvml_interval: Duration,
    /// NVML energy-counter poll period. The call costs ~4 ms of CPU on an H200 (measured):
    /// 8 GPUs read every second cost 3% of a core. The analyzer anchors its curve at
    /// readings >= 30 s apart and the 20 ms power samples carry the shape in between, so
    /// 30 s attributes steps as well as 1 s (analyze/tests/anchor_interval.rs).
    #[arg(long, value_parser = duration_arg, default_value = "30s")]
    pub nvml_energy_interval: Duration,
    /// CPU utilisation poll period (and the CPU estimate's).
    #[arg(long, value_parser = duration_arg, default_value = "100ms")]
    pub cpu_interval: Duration,
    /// GPU indices to record (default: all, within CUDA_VISIBLE_DEVICES).
    #[arg(long)]
    pub gpus: Option<String>,
    /// Record for this long without a command (or the demo for this long).
    #[arg(long, value_parser = positive_duration_arg)]
    pub duration: Option<Duration>,
    /// Record the built-in demo workload.
    #[arg(long)]
    pub demo: bool,
    /// Join a process that is already running (and its children) until it exits or
    /// the probe is stopped (how the Trainer callback records its own process).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Do not load the eBPF probe (steps then come through the marker socket).
    #[arg(long)]
    pub no_ebpf: bool,
    /// Serve the live hf_training_* metrics here.
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub metrics_addr: String,
    /// Do not serve live metrics.
    #[arg(long)]
    pub no_metrics: bool,
    /// TLS and basic auth for /metrics from a web-config file in node_exporter's format
    /// (tls_server_config, basic_auth_users with bcrypt hashes).
    #[arg(long)]
    pub web_config_file: Option<std::path::PathBuf>,
    /// HOST:PORT whose TCP connect time to report as network_latency_ms (e.g. the
    /// Prometheus or remote_write endpoint); repeatable, measured every 10 s.
    #[arg(long = "latency-target")]
    pub latency_targets: Vec<String>,
    /// Stop exporting a GPU's series after this long without a sample (a lost GPU).
    #[arg(long, value_parser = positive_duration_arg, default_value = "60s")]
    pub stale_after: Duration,
    /// Grid intensity, PUE, prices and budget: the same flags as the analyzer's, for
    /// the live CO2, cost and budget metrics and the end-of-record summary.
    #[command(flatten)]
    pub prices: eco2ai_trace::pricing::PriceArgs,
    /// Count the calls of a function per step, e.g. libcuda.so:cuLaunchKernel
    /// (eBPF only; repeat for up to 4).
    #[arg(long = "uprobe", value_name = "LIB:SYMBOL")]
    pub uprobes: Vec<String>,
    /// Marker library to announce to the command (default: the one shipped beside
    /// this binary).
    #[arg(long)]
    pub marker_lib: Option<PathBuf>,
    /// CPU TDP in watts for the estimate where no RAPL counter moves.
    #[arg(long)]
    pub cpu_tdp_w: Option<f64>,
    /// Replace NVML by N fake GPUs (benchmarks on machines without GPUs).
    #[arg(long, hide = true)]
    pub fake_gpus: Option<u32>,
    /// Root of the powercap tree (a fake one in tests and benchmarks).
    #[arg(long, hide = true, default_value = "/sys/class/powercap")]
    pub powercap_root: PathBuf,
    /// The perf power PMU directory.
    #[arg(
        long,
        hide = true,
        default_value = "/sys/bus/event_source/devices/power"
    )]
    pub perf_pmu: PathBuf,
    #[arg(long, hide = true, value_parser = duration_arg, default_value = "1s")]
    pub flush_interval: Duration,
    #[arg(long, hide = true, value_parser = duration_arg, default_value = "60s")]
    pub segment_interval: Duration,
    /// The command to record, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    Command(Vec<String>),
    Duration(Duration),
    Demo(Duration),
    Pid(u32),
}

/// How often each sensor is polled and the trace flushed and rotated (ns): the
/// validated form of the interval flags.
#[derive(Debug, Clone)]
pub struct Intervals {
    pub nvml_ns: i64,
    pub nvml_energy_ns: i64,
    pub rapl_ns: i64,
    pub cpu_ns: i64,
    pub procs_ns: i64,
    pub flush_ns: i64,
    pub segment_ns: i64,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            nvml_ns: 20_000_000,
            nvml_energy_ns: 30_000_000_000,
            rapl_ns: 1_000_000,
            cpu_ns: 100_000_000,
            procs_ns: 1_000_000_000,
            flush_ns: 1_000_000_000,
            segment_ns: 60_000_000_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecordConfig {
    pub out: PathBuf,
    pub run_id: Option<String>,
    /// The job this run is one node of (`--job-id` or the environment).
    pub job: Option<JobInfo>,
    pub labels: Labels,
    pub intervals: Intervals,
    pub sensors: SensorConfig,
    pub workload: Workload,
    pub no_ebpf: bool,
    pub marker_lib: Option<PathBuf>,
    /// (library, symbol) counted per step.
    pub step_counters: Vec<(String, String)>,
    pub metrics: Option<MetricsConfig>,
}

/// What the live metrics need beyond the labels.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    pub addr: String,
    /// Checked at validation; loaded again when the server starts.
    pub web_config_file: Option<std::path::PathBuf>,
    pub latency_targets: Vec<String>,
    pub stale_after_ns: i64,
    pub intensity_g_per_kwh: Option<f64>,
    pub carbon_budget_kg: Option<f64>,
    pub price_per_kwh: Option<f64>,
    pub gpu_hour_usd: Option<f64>,
    pub pue: f64,
}

pub const DEMO_DURATION: Duration = Duration::from_secs(15);

fn check(
    flag: &'static str,
    d: Duration,
    min: Duration,
    max: Duration,
) -> Result<i64, ConfigError> {
    if d < min || d > max {
        return Err(ConfigError::Range {
            flag,
            min: format!("{min:?}"),
            max: format!("{max:?}"),
            got: format!("{d:?}"),
        });
    }
    Ok(d.as_nanos() as i64)
}

fn parse_gpus(s: &str) -> Result<Vec<u32>, ConfigError> {
    let gpus: Vec<u32> = s
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| ConfigError::Gpus(s.into()))
        })
        .collect::<Result<_, _>>()?;
    // A GPU named twice would be sampled twice and its energy counted twice.
    let mut seen = gpus.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != gpus.len() {
        return Err(ConfigError::Gpus(s.into()));
    }
    Ok(gpus)
}

impl RecordArgs {
    /// The grid intensity of --country, --region or --gco2-per-kwh, by the one rule every
    /// command uses (eco2ai_trace::grid::resolve: two are refused, unknown names are
    /// errors).
    pub fn intensity(&self) -> Result<Option<eco2ai_trace::grid::Intensity>, ConfigError> {
        Ok(self.prices.flag_intensity()?)
    }

    /// Grid intensity and prices, checked; None with --no-metrics.
    fn metrics_config(&self) -> Result<Option<MetricsConfig>, ConfigError> {
        let intensity = self.prices.check()?.map(|i| i.g_per_kwh);
        let p = &self.prices;
        if p.carbon_budget_kg.is_some() && intensity.is_none() {
            return Err(ConfigError::BudgetWithoutIntensity);
        }
        if !self.no_metrics {
            use std::net::ToSocketAddrs;
            if self.metrics_addr.to_socket_addrs().is_err() {
                return Err(ConfigError::MetricsAddr(self.metrics_addr.clone()));
            }
            if let Some(f) = &self.web_config_file {
                eco2ai_metrics::WebConfig::load(f)?;
            }
        }
        for t in &self.latency_targets {
            if !t
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Err(ConfigError::LatencyTarget(t.clone()));
            }
        }
        Ok((!self.no_metrics).then(|| MetricsConfig {
            addr: self.metrics_addr.clone(),
            web_config_file: self.web_config_file.clone(),
            latency_targets: self.latency_targets.clone(),
            stale_after_ns: self.stale_after.as_nanos().min(i64::MAX as u128) as i64,
            intensity_g_per_kwh: intensity,
            carbon_budget_kg: p.carbon_budget_kg,
            price_per_kwh: p.price_per_kwh,
            gpu_hour_usd: p.gpu_hour_usd,
            pue: p.pue.unwrap_or(1.0),
        }))
    }

    pub fn validate(self) -> Result<RecordConfig, ConfigError> {
        // The run id becomes OUT/<run id>: one safe path component, or nothing is written.
        if let Some(id) = &self.run_id {
            eco2ai_trace::validate_run_id(id)?;
        }
        // The job id and node name become OUT/job=<id>/node=<node>: checked the same way.
        let job = crate::job::detect(self.job_id.as_deref()).map_err(ConfigError::Job)?;
        if let Some(c) = &self.prices.country
            && (c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_alphabetic()))
        {
            return Err(ConfigError::Country(c.clone()));
        }
        let metrics = self.metrics_config()?;
        let intervals = self.intervals()?;
        let workload = workload(&self.command, self.demo, self.duration, self.pid)?;
        let sensors = self.sensor_config()?;
        let step_counters = self.step_counters()?;
        let labels = Labels {
            project_name: self.project,
            model_name: self.model,
            country: self.prices.country.map(|c| c.to_ascii_uppercase()),
            region: self.prices.region,
            gco2_per_kwh: self.prices.gco2_per_kwh,
            pue: self.prices.pue,
        };
        Ok(RecordConfig {
            out: self.out,
            run_id: self.run_id,
            job,
            labels,
            intervals,
            sensors,
            workload,
            no_ebpf: self.no_ebpf,
            marker_lib: self.marker_lib,
            step_counters,
            metrics,
        })
    }

    /// Each interval flag within its range.
    fn intervals(&self) -> Result<Intervals, ConfigError> {
        let ms = Duration::from_millis;
        Ok(Intervals {
            rapl_ns: check(
                "--rapl-interval",
                self.rapl_interval,
                Duration::from_micros(100),
                ms(10_000),
            )?,
            nvml_ns: check("--nvml-interval", self.nvml_interval, ms(1), ms(10_000))?,
            nvml_energy_ns: check(
                "--nvml-energy-interval",
                self.nvml_energy_interval,
                ms(10),
                ms(60_000),
            )?,
            cpu_ns: check("--cpu-interval", self.cpu_interval, ms(10), ms(60_000))?,
            procs_ns: 1_000_000_000,
            flush_ns: check("--flush-interval", self.flush_interval, ms(10), ms(10_000))?,
            segment_ns: check(
                "--segment-interval",
                self.segment_interval,
                self.flush_interval,
                Duration::from_secs(3600),
            )?,
        })
    }

    /// The sensor flags: the TDP in range, the GPU list parsed.
    fn sensor_config(&self) -> Result<SensorConfig, ConfigError> {
        if let Some(w) = self.cpu_tdp_w
            && !(w > 0.0 && w < 2000.0)
        {
            return Err(ConfigError::Range {
                flag: "--cpu-tdp-w",
                min: "0".into(),
                max: "2000".into(),
                got: w.to_string(),
            });
        }
        Ok(SensorConfig {
            powercap_root: self.powercap_root.clone(),
            perf_pmu: self.perf_pmu.clone(),
            gpus: self.gpus.as_deref().map(parse_gpus).transpose()?,
            fake_gpus: self.fake_gpus,
            cpu_tdp_w: self.cpu_tdp_w,
            no_estimate: false,
        })
    }

    /// `--uprobe LIB:SYMBOL`, at most four.
    fn step_counters(&self) -> Result<Vec<(String, String)>, ConfigError> {
        if self.uprobes.len() > 4 {
            return Err(ConfigError::Uprobe(self.uprobes.join(" ")));
        }
        self.uprobes
            .iter()
            .map(|u| match u.rsplit_once(':') {
                Some((lib, sym)) if !lib.is_empty() && !sym.is_empty() => {
                    Ok((lib.to_string(), sym.to_string()))
                }
                _ => Err(ConfigError::Uprobe(u.clone())),
            })
            .collect()
    }
}

/// What to record: a command, a running process, the demo or a plain duration; exactly
/// one of them.
fn workload(
    command: &[String],
    demo: bool,
    duration: Option<Duration>,
    pid: Option<u32>,
) -> Result<Workload, ConfigError> {
    Ok(match (command.is_empty(), demo, duration, pid) {
        (false, false, None, None) => Workload::Command(command.to_vec()),
        (true, false, None, Some(pid)) => Workload::Pid(pid),
        (false, _, _, _) | (_, _, _, Some(_)) => return Err(ConfigError::Both),
        (true, true, d, None) => Workload::Demo(d.unwrap_or(DEMO_DURATION)),
        (true, false, Some(d), None) => Workload::Duration(d),
        (true, false, None, None) => return Err(ConfigError::NothingToRecord),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["10", "ms", "10 parsecs", "", "1e3s", "-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        let err = parse_duration("99999999999999999999h").expect_err("past a year");
        assert!(err.to_string().contains("out of range"), "{err}");
        assert!(positive_duration_arg("0s").is_err());
        assert_eq!(positive_duration_arg("2s"), Ok(Duration::from_secs(2)));
    }
}
