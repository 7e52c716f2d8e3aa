//! The hf_training_* metrics in the Prometheus text format (0.0.4). Names, types and
//! labels are the users' contract (dashboards and alerts use them as they are).

use std::collections::BTreeMap;

use super::state::MetricsState;

const J_PER_KWH: f64 = 3.6e6;

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Where rendered families go. `name` is without the `hf_training_` prefix; a family's
/// samples follow its `family` call.
pub trait Sink {
    fn family(&mut self, name: &str, kind: Kind, help: &str);
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64);
}

/// One family with one sample, skipped when the value is unknown.
fn one<S: Sink + ?Sized>(
    o: &mut S,
    name: &str,
    kind: Kind,
    help: &str,
    labels: &[(&str, &str)],
    value: Option<f64>,
) {
    if let Some(v) = value.filter(|v| v.is_finite()) {
        o.family(name, kind, help);
        o.sample(name, labels, v);
    }
}

/// A sink that adds a job's `job_id` and `node` labels to every sample (a label the
/// sample already has is not repeated).
struct JobLabels<'a, S: ?Sized> {
    inner: &'a mut S,
    job: [(&'a str, &'a str); 2],
}

impl<S: Sink + ?Sized> Sink for JobLabels<'_, S> {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.inner.family(name, kind, help);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let mut all = Vec::with_capacity(labels.len() + self.job.len());
        all.extend_from_slice(labels);
        for (k, v) in self.job {
            if !v.is_empty() && !labels.iter().any(|(l, _)| *l == k) {
                all.push((k, v));
            }
        }
        self.inner.sample(name, &all, value);
    }
}

/// Renders every family the state can tell at `now_unix_s` (cost so far depends on it).
/// A node of a multi-node job labels every sample with `job_id` and `node`, so that a
/// job's nodes sum by `job_id` (dashboards, per-job alerts).
pub fn render<S: Sink + ?Sized>(
    s: &MetricsState,
    errors: &BTreeMap<String, u64>,
    now_unix_s: f64,
    o: &mut S,
) {
    let i = &s.info;
    if i.job_id.is_empty() {
        render_families(s, errors, now_unix_s, o);
    } else {
        let mut job = JobLabels {
            inner: o,
            job: [("job_id", i.job_id.as_str()), ("node", i.node.as_str())],
        };
        render_families(s, errors, now_unix_s, &mut job);
    }
}

fn render_families<S: Sink + ?Sized>(
    s: &MetricsState,
    errors: &BTreeMap<String, u64>,
    now_unix_s: f64,
    o: &mut S,
) {
    let i = &s.info;
    let p = [("project_name", i.project.as_str())];
    let kwh = s.energy_j() / J_PER_KWH;
    let rate_kwh_h = s
        .window()
        .filter(|w| w.0 > 0.0)
        .map(|(secs, j, _)| j / J_PER_KWH * 3600.0 / secs);
    carbon(o, s, kwh, rate_kwh_h);
    gpus(o, s);
    one(
        o,
        "cpu_power_watts",
        Kind::Gauge,
        "CPU power over the last second",
        &[("instance", &i.instance)],
        s.cpu_power_w(),
    );
    one(
        o,
        "samples_per_kwh",
        Kind::Gauge,
        "Training samples per kWh over the run",
        &p,
        (kwh > 0.0 && s.samples > 0).then(|| s.samples as f64 / kwh),
    );
    training(o, s);
    phases(o, s);
    cost(o, s, kwh, rate_kwh_h, now_unix_s);
    housekeeping(o, s, errors);
}

/// CO2, grid intensity, budget and energy: the run's footprint so far.
fn carbon<S: Sink + ?Sized>(o: &mut S, s: &MetricsState, kwh: f64, rate_kwh_h: Option<f64>) {
    let i = &s.info;
    let (p, pm) = (
        [("project_name", i.project.as_str())],
        [
            ("project_name", i.project.as_str()),
            ("model_name", i.model.as_str()),
        ],
    );
    let g_per_kwh = i.intensity_g_per_kwh;
    let co2 = g_per_kwh.map(|g| kwh * g / 1000.0);

    one(
        o,
        "co2_kg_total",
        Kind::Counter,
        "CO2 emitted by the run so far, kg",
        &pm,
        co2,
    );
    one(
        o,
        "co2_rate_kg_per_hour",
        Kind::Gauge,
        "CO2 emission rate over the last minute",
        &p,
        rate_kwh_h.zip(g_per_kwh).map(|(r, g)| r * g / 1000.0),
    );
    one(
        o,
        "grid_carbon_intensity_g_per_kwh",
        Kind::Gauge,
        "Grid carbon intensity used",
        &[("country", &i.country), ("region", &i.region)],
        g_per_kwh,
    );
    one(
        o,
        "carbon_budget_kg",
        Kind::Gauge,
        "Carbon budget of the run",
        &p,
        i.carbon_budget_kg,
    );
    one(
        o,
        "carbon_budget_remaining_kg",
        Kind::Gauge,
        "Budget minus CO2 so far (negative: exceeded)",
        &p,
        i.carbon_budget_kg.zip(co2).map(|(b, c)| b - c),
    );
    one(
        o,
        "energy_kwh_total",
        Kind::Counter,
        "Energy used by the run so far (GPU + CPU, PUE applied), kWh",
        &pm,
        Some(kwh),
    );
    one(
        o,
        "energy_rate_kwh_per_hour",
        Kind::Gauge,
        "Energy rate over the last minute",
        &p,
        rate_kwh_h,
    );
}

/// Freshness, version, error counts and network latency: the exporter's own state.
fn housekeeping<S: Sink + ?Sized>(o: &mut S, s: &MetricsState, errors: &BTreeMap<String, u64>) {
    let i = &s.info;
    one(
        o,
        "last_update_timestamp",
        Kind::Gauge,
        "Unix time of the newest sample",
        &[("instance", &i.instance)],
        Some((s.last_ts_ns + i.mono_to_unix_ns) as f64 / 1e9),
    );
    one(
        o,
        "plugin_info",
        Kind::Gauge,
        "Version and commit of the recorder (always 1: an info metric)",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            // metrics/build.rs sets it: the short commit, "unknown" outside a git tree.
            ("commit", option_env!("ECO2AI_COMMIT").unwrap_or("unknown")),
        ],
        Some(1.0),
    );
    o.family(
        "monitoring_errors_total",
        Kind::Counter,
        "Sensor and event errors by type",
    );
    for (k, n) in errors {
        o.sample("monitoring_errors_total", &[("error_type", k)], *n as f64);
    }
    if !s.latency_ms.is_empty() {
        o.family(
            "network_latency_ms",
            Kind::Gauge,
            "TCP connect time to a monitored target, ms",
        );
        for (target, ms) in &s.latency_ms {
            o.sample("network_latency_ms", &[("target", target)], *ms);
        }
    }
}

fn gpus<S: Sink + ?Sized>(o: &mut S, s: &MetricsState) {
    type Get = fn(&crate::state::GpuLive) -> Option<f64>;
    let families: [(&str, &str, Get); 6] = [
        ("gpu_power_watts", "GPU power (NVML average)", |g| g.power_w),
        ("gpu_temperature_celsius", "GPU temperature", |g| {
            g.temp_c.map(f64::from)
        }),
        ("gpu_memory_usage_bytes", "GPU memory used", |g| {
            g.mem_used.map(|v| v as f64)
        }),
        ("gpu_memory_total_bytes", "GPU memory total", |g| {
            g.mem_total.map(|v| v as f64)
        }),
        (
            "gpu_memory_usage_percent",
            "GPU memory used, percent",
            |g| {
                g.mem_used
                    .zip(g.mem_total)
                    .filter(|(_, t)| *t > 0)
                    .map(|(u, t)| 100.0 * u as f64 / t as f64)
            },
        ),
        ("gpu_utilization_percent", "GPU utilisation", |g| {
            g.util.map(f64::from)
        }),
    ];
    for (name, help, get) in families {
        o.family(name, Kind::Gauge, help);
        for (id, g) in s.live_gpus() {
            let model = s
                .info
                .gpu_models
                .get(id)
                .map(String::as_str)
                .unwrap_or("unknown");
            if let Some(v) = get(g) {
                o.sample(
                    name,
                    &[("gpu_id", &id.to_string()), ("gpu_model", model)],
                    v,
                );
            }
        }
    }
    one(
        o,
        "gpu_count",
        Kind::Gauge,
        "GPUs recorded",
        &[("instance", &s.info.instance)],
        Some(s.live_gpus().count() as f64),
    );
}

fn training<S: Sink + ?Sized>(o: &mut S, s: &MetricsState) {
    let i = &s.info;
    let p = [("project_name", i.project.as_str())];
    let pm = [
        ("project_name", i.project.as_str()),
        ("model_name", i.model.as_str()),
    ];
    one(
        o,
        "loss",
        Kind::Gauge,
        "Training loss of the latest step",
        &pm,
        s.loss,
    );
    one(
        o,
        "eval_loss",
        Kind::Gauge,
        "Latest evaluation loss",
        &pm,
        s.eval_loss,
    );
    one(
        o,
        "learning_rate",
        Kind::Gauge,
        "Learning rate of the latest step",
        &p,
        s.lr,
    );
    one(
        o,
        "step_count",
        Kind::Counter,
        "Training steps recorded",
        &p,
        Some(s.steps as f64),
    );
    one(
        o,
        "epoch_count",
        Kind::Counter,
        "Epochs completed (fractional)",
        &p,
        s.epoch,
    );
    one(
        o,
        "samples_per_second",
        Kind::Gauge,
        "Samples per second over the last minute",
        &p,
        s.window()
            .filter(|w| w.0 > 0.0)
            .map(|(secs, _, n)| n as f64 / secs),
    );
    one(
        o,
        "efficiency_score",
        Kind::Gauge,
        "Samples per kWh over the last minute relative to the run's best minute (0-1)",
        &p,
        s.efficiency_score(),
    );
}

/// Per named phase (eval, checkpoint, users' own; at most 16 names, then `other`):
/// span-seconds and the devices' energy while a span was open. Absent until a span
/// has ended; `train` is what lies outside the spans and is not a series here.
fn phases<S: Sink + ?Sized>(o: &mut S, s: &MetricsState) {
    let project = s.info.project.as_str();
    type Get = fn(&crate::PhaseTotals) -> f64;
    let families: [(&str, &str, Get); 2] = [
        (
            "phase_seconds_total",
            "Seconds spent in named phase spans (summed over processes)",
            |t| t.seconds,
        ),
        (
            "phase_energy_joules_total",
            "Energy of the run's devices while a named phase span was open (PUE applied), J",
            |t| t.energy_j,
        ),
    ];
    if s.phases.totals().next().is_none() {
        return;
    }
    for (name, help, get) in families {
        o.family(name, Kind::Counter, help);
        for (phase, t) in s.phases.totals() {
            o.sample(name, &[("project_name", project), ("phase", phase)], get(t));
        }
    }
}

fn cost<S: Sink + ?Sized>(
    o: &mut S,
    s: &MetricsState,
    kwh: f64,
    rate_kwh_h: Option<f64>,
    now_unix_s: f64,
) {
    let i = &s.info;
    let p = [("project_name", i.project.as_str())];
    let energy_usd = i.price_per_kwh.map(|c| c * kwh);
    let hours = ((now_unix_s - i.start_unix_s) / 3600.0).max(0.0);
    let gpus = s.gpus.len() as f64;
    let compute_usd = i.gpu_hour_usd.map(|c| c * gpus * hours);
    let total = match (energy_usd, compute_usd) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
    let rate = i
        .price_per_kwh
        .zip(rate_kwh_h)
        .map(|(c, r)| c * r)
        .unwrap_or(0.0)
        + i.gpu_hour_usd.map_or(0.0, |c| c * gpus);
    one(
        o,
        "estimated_cost_usd",
        Kind::Gauge,
        "Energy plus compute cost so far",
        &[("project_name", &i.project), ("currency", "USD")],
        total,
    );
    one(
        o,
        "cost_rate_usd_per_hour",
        Kind::Gauge,
        "Cost rate now",
        &p,
        total.map(|_| rate),
    );
    one(
        o,
        "energy_cost_usd",
        Kind::Gauge,
        "Energy cost so far",
        &p,
        energy_usd,
    );
    one(
        o,
        "compute_cost_usd",
        Kind::Gauge,
        "Compute (GPU-hour) cost so far",
        &p,
        compute_usd,
    );
}
