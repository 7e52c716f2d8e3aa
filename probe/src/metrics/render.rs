//! The hf_training_* metrics in the Prometheus text format (0.0.4). Names, types and
//! labels are the users' contract (dashboards and alerts use them as they are).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::state::MetricsState;

const J_PER_KWH: f64 = 3.6e6;

struct Out(String);

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(
            self.0,
            "# HELP hf_training_{name} {help}\n# TYPE hf_training_{name} {kind}"
        );
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(self.0, "hf_training_{name}{{{}}} {value}", l.join(","));
    }

    /// One family with one sample, skipped when the value is unknown.
    fn one(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: Option<f64>,
    ) {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.family(name, kind, help);
            self.sample(name, labels, v);
        }
    }
}

pub fn render(s: &MetricsState, errors: &BTreeMap<String, u64>, now_unix_s: f64) -> String {
    let mut o = Out(String::with_capacity(4096));
    let i = &s.info;
    let (p, pm) = (
        [("project_name", i.project.as_str())],
        [
            ("project_name", i.project.as_str()),
            ("model_name", i.model.as_str()),
        ],
    );
    let kwh = s.energy_j() / J_PER_KWH;
    let rate_kwh_h = s
        .window()
        .filter(|w| w.0 > 0.0)
        .map(|(secs, j, _)| j / J_PER_KWH * 3600.0 / secs);
    let g_per_kwh = i.intensity_g_per_kwh;
    let co2 = g_per_kwh.map(|g| kwh * g / 1000.0);

    o.one(
        "co2_kg_total",
        "counter",
        "CO2 emitted by the run so far, kg",
        &pm,
        co2,
    );
    o.one(
        "co2_rate_kg_per_hour",
        "gauge",
        "CO2 emission rate over the last minute",
        &p,
        rate_kwh_h.zip(g_per_kwh).map(|(r, g)| r * g / 1000.0),
    );
    o.one(
        "grid_carbon_intensity_g_per_kwh",
        "gauge",
        "Grid carbon intensity used",
        &[("country", &i.country), ("region", &i.region)],
        g_per_kwh,
    );
    o.one(
        "carbon_budget_kg",
        "gauge",
        "Carbon budget of the run",
        &p,
        i.carbon_budget_kg,
    );
    o.one(
        "carbon_budget_remaining_kg",
        "gauge",
        "Budget minus CO2 so far (negative: exceeded)",
        &p,
        i.carbon_budget_kg.zip(co2).map(|(b, c)| b - c),
    );
    o.one(
        "energy_kwh_total",
        "counter",
        "Energy used by the run so far (GPU + CPU, PUE applied), kWh",
        &pm,
        Some(kwh),
    );
    o.one(
        "energy_rate_kwh_per_hour",
        "gauge",
        "Energy rate over the last minute",
        &p,
        rate_kwh_h,
    );
    gpus(&mut o, s);
    o.one(
        "cpu_power_watts",
        "gauge",
        "CPU power over the last second",
        &[("instance", &i.instance)],
        s.cpu_power_w(),
    );
    o.one(
        "samples_per_kwh",
        "gauge",
        "Training samples per kWh over the run",
        &p,
        (kwh > 0.0 && s.samples > 0).then(|| s.samples as f64 / kwh),
    );
    training(&mut o, s);
    cost(&mut o, s, kwh, rate_kwh_h, now_unix_s);
    o.one(
        "last_update_timestamp",
        "gauge",
        "Unix time of the newest sample",
        &[("instance", &i.instance)],
        Some((s.last_ts_ns + i.mono_to_unix_ns) as f64 / 1e9),
    );
    o.one(
        "plugin_version",
        "gauge",
        "Version of the recorder",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", option_env!("ECO2AI_COMMIT").unwrap_or("unknown")),
        ],
        Some(1.0),
    );
    o.family(
        "monitoring_errors_total",
        "counter",
        "Sensor and event errors by type",
    );
    for (k, n) in errors {
        o.sample("monitoring_errors_total", &[("error_type", k)], *n as f64);
    }
    o.0
}

fn gpus(o: &mut Out, s: &MetricsState) {
    type Get = fn(&super::state::GpuLive) -> Option<f64>;
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
        o.family(name, "gauge", help);
        for (id, g) in &s.gpus {
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
    o.one(
        "gpu_count",
        "gauge",
        "GPUs recorded",
        &[("instance", &s.info.instance)],
        Some(s.gpus.len() as f64),
    );
}

fn training(o: &mut Out, s: &MetricsState) {
    let i = &s.info;
    let p = [("project_name", i.project.as_str())];
    let pm = [
        ("project_name", i.project.as_str()),
        ("model_name", i.model.as_str()),
    ];
    o.one(
        "loss",
        "gauge",
        "Training loss of the latest step",
        &pm,
        s.loss,
    );
    o.one(
        "eval_loss",
        "gauge",
        "Latest evaluation loss",
        &pm,
        s.eval_loss,
    );
    o.one(
        "learning_rate",
        "gauge",
        "Learning rate of the latest step",
        &p,
        s.lr,
    );
    o.one(
        "step_count",
        "counter",
        "Training steps recorded",
        &p,
        Some(s.steps as f64),
    );
    o.one(
        "epoch_count",
        "counter",
        "Epochs completed (fractional)",
        &p,
        s.epoch,
    );
    o.one(
        "samples_per_second",
        "gauge",
        "Samples per second over the last minute",
        &p,
        s.window()
            .filter(|w| w.0 > 0.0)
            .map(|(secs, _, n)| n as f64 / secs),
    );
    o.one(
        "efficiency_score",
        "gauge",
        "Samples per kWh over the last minute relative to the run's best minute (0-1)",
        &p,
        s.efficiency_score(),
    );
}

fn cost(o: &mut Out, s: &MetricsState, kwh: f64, rate_kwh_h: Option<f64>, now_unix_s: f64) {
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
    o.one(
        "estimated_cost_usd",
        "gauge",
        "Energy plus compute cost so far",
        &[("project_name", &i.project), ("currency", "USD")],
        total,
    );
    o.one(
        "cost_rate_usd_per_hour",
        "gauge",
        "Cost rate now",
        &p,
        total.map(|_| rate),
    );
    o.one(
        "energy_cost_usd",
        "gauge",
        "Energy cost so far",
        &p,
        energy_usd,
    );
    o.one(
        "compute_cost_usd",
        "gauge",
        "Compute (GPU-hour) cost so far",
        &p,
        compute_usd,
    );
}
