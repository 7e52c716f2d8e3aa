//! Finding the sensors of this machine, shared by `info` and `record`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use eco2ai_trace::{GpuInfo, SensorStatus};

use crate::host::{self, Host};
use crate::markers;
use crate::samplers::estimate::{self, DEFAULT_TDP_W};
use crate::samplers::gpu::fake::{CallCost, FakeGpus, FakeScript};
use crate::samplers::gpu::nvml::NvmlBackend;
use crate::samplers::gpu::{GpuBackend, select_gpus};
use crate::samplers::rapl::{self, EnergyReader, RaplConfig};

#[derive(Debug, Clone)]
pub struct SensorConfig {
    pub powercap_root: PathBuf,
    pub perf_pmu: PathBuf,
    pub gpus: Option<Vec<u32>>,
    /// Replace NVML by N fake GPUs (benchmarks and tests on machines without GPUs).
    pub fake_gpus: Option<u32>,
    pub cpu_tdp_w: Option<f64>,
    pub no_estimate: bool,
}

impl Default for SensorConfig {
    fn default() -> Self {
        let r = RaplConfig::default();
        SensorConfig {
            powercap_root: r.powercap_root,
            perf_pmu: r.perf_pmu,
            gpus: None,
            fake_gpus: None,
            cpu_tdp_w: None,
            no_estimate: false,
        }
    }
}

pub struct Sensors {
    pub gpu_backend: Option<Arc<dyn GpuBackend>>,
    pub gpus: Vec<GpuInfo>,
    pub rapl: Vec<Box<dyn EnergyReader>>,
    /// Watts at full load per socket, when CPU energy is estimated.
    pub estimate_tdp_w: Option<f64>,
    /// Sockets the estimate multiplies the TDP by.
    pub cpu_sockets: u32,
    pub status: Vec<SensorStatus>,
}

fn status(kind: &str, name: &str, used: bool, note: impl Into<String>) -> SensorStatus {
    SensorStatus {
        kind: kind.into(),
        name: name.into(),
        used,
        note: note.into(),
    }
}

/// The fake GPUs of `--fake-gpus`, else NVML; why not in `out` when there is none.
fn gpu_backend(cfg: &SensorConfig, out: &mut Vec<SensorStatus>) -> Option<Arc<dyn GpuBackend>> {
    match cfg.fake_gpus {
        Some(n) => {
            let clock = Arc::new(crate::clock::monotonic_ns);
            // Benchmarks make the fake cost what NVML costs (`h200`); see CallCost.
            let want = std::env::var("ECO2AI_FAKE_NVML_COST").unwrap_or_default();
            let cost = CallCost::parse(&want).unwrap_or_else(|| {
                out.push(status(
                    "fake-nvml",
                    "cost",
                    false,
                    format!(
                        "ECO2AI_FAKE_NVML_COST={want:?} is not h200 or none; calls cost nothing"
                    ),
                ));
                CallCost::default()
            });
            Some(Arc::new(
                FakeGpus::new(n, clock, FakeScript::default()).with_cost(cost),
            ))
        }
        None => match NvmlBackend::load() {
            Ok(b) => Some(Arc::new(b)),
            Err(why) => {
                out.push(status("nvml", "gpu", false, why));
                None
            }
        },
    }
}

fn discover_gpus(
    cfg: &SensorConfig,
    out: &mut Vec<SensorStatus>,
) -> (Option<Arc<dyn GpuBackend>>, Vec<GpuInfo>) {
    let Some(backend) = gpu_backend(cfg, out) else {
        return (None, Vec::new());
    };
    let all = match backend.devices() {
        Ok(all) => all,
        Err(e) => {
            out.push(status(
                "nvml",
                "gpu",
                false,
                format!("listing devices failed: {e}"),
            ));
            return (None, Vec::new());
        }
    };
    let cvd = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let chosen = select_gpus(&all, cfg.gpus.as_deref(), cvd.as_deref());
    let kind = if cfg.fake_gpus.is_some() {
        "fake-nvml"
    } else {
        "nvml"
    };
    for g in &all {
        let used = chosen.iter().any(|c| c.index == g.index);
        let note = if used {
            g.name.clone()
        } else {
            format!("{}: excluded by --gpus or CUDA_VISIBLE_DEVICES", g.name)
        };
        out.push(status(kind, &format!("gpu{}", g.index), used, note));
    }
    if all.is_empty() {
        out.push(status(kind, "gpu", false, "NVML found no devices"));
    }
    (Some(backend), chosen)
}

impl Sensors {
    /// Every GPU `--gpus` names must be one discovery found: a typo would otherwise
    /// record nothing from it without a word.
    pub fn check_requested_gpus(&self, asked: Option<&[u32]>) -> anyhow::Result<()> {
        // Every GPU discovery saw has a `gpuN` status line, chosen or not.
        let found: Vec<&str> = self
            .status
            .iter()
            .filter(|s| s.kind.contains("nvml"))
            .filter_map(|s| s.name.strip_prefix("gpu").filter(|n| !n.is_empty()))
            .collect();
        let nvml_note = self
            .status
            .iter()
            .find(|s| s.kind.contains("nvml") && s.name == "gpu")
            .map_or_else(String::new, |s| format!("; {}", s.note));
        for g in asked.unwrap_or_default() {
            if !self.gpus.iter().any(|s| s.index == *g) {
                let found = if found.is_empty() {
                    "none".into()
                } else {
                    found.join(", ")
                };
                anyhow::bail!(
                    "--gpus {g}: no such GPU to record (GPUs found: {found}; CUDA_VISIBLE_DEVICES applies too){nvml_note}"
                );
            }
        }
        Ok(())
    }
}

pub fn discover(cfg: &SensorConfig, host: &Host) -> Sensors {
    let mut st = Vec::new();
    let (gpu_backend, gpus) = discover_gpus(cfg, &mut st);
    let rcfg = RaplConfig {
        powercap_root: cfg.powercap_root.clone(),
        perf_pmu: cfg.perf_pmu.clone(),
        ..RaplConfig::default()
    };
    let (rapl, rapl_status) = rapl::discover(&rcfg);
    st.extend(rapl_status);

    let mut estimate_tdp_w = None;
    if rapl.is_empty() && !cfg.no_estimate {
        let (tdp, how) = match (cfg.cpu_tdp_w, estimate::lookup_tdp_w(&host.cpu_model)) {
            (Some(w), _) => (w, "--cpu-tdp-w".to_string()),
            (None, Some((name, w))) => (w, format!("TDP of {name} from datasets/cpu_tdp.csv")),
            (None, None) => (
                DEFAULT_TDP_W,
                format!("'{}' not in datasets/cpu_tdp.csv: default", host.cpu_model),
            ),
        };
        let note = format!(
            "no RAPL counter moves: estimated as {tdp} W ({how}) x {} socket(s) x {}",
            host.cpu_sockets,
            estimate::PowerModel::FITTED.describe()
        );
        st.push(status("estimate", "package", true, note));
        estimate_tdp_w = Some(tdp);
    }
    st.push(status(
        "procfs",
        "cpu-util",
        true,
        "/proc/stat (machine) and /proc/PID/stat (recorded process tree)",
    ));
    Sensors {
        gpu_backend,
        gpus,
        rapl,
        estimate_tdp_w,
        cpu_sockets: host.cpu_sockets,
        status: st,
    }
}
/// `eco2ai-probe info`: every sensor looked for, used or not and why.
pub fn info(cfg: &SensorConfig, job: Option<&eco2ai_trace::JobInfo>) -> String {
    let host = host::detect();
    let sensors = discover(cfg, &host);
    let mut s = String::new();
    let _ = writeln!(s, "host      {} (kernel {})", host.hostname, host.kernel);
    let _ = writeln!(s, "job       {}", crate::job::describe(job));
    let _ = writeln!(
        s,
        "cpu       {} x{} socket(s), {} threads",
        host.cpu_model, host.cpu_sockets, host.cpu_threads
    );
    let lib = markers::find_marker_lib(None);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ebpf = match (crate::ebpf::is_built(), root) {
        (false, _) => {
            "not built into this probe (bpf-linker was missing at build time): steps through the marker socket"
        }
        (true, false) => "built in, but loading needs root: steps through the marker socket",
        (true, true) => {
            "built in: steps through uprobes on the marker library, per-process CPU from sched_switch"
        }
    };
    let _ = writeln!(s, "ebpf      {ebpf}");
    let _ = writeln!(
        s,
        "markers   {}",
        lib.map_or_else(
            || format!("{} not found beside the probe", markers::LIB_NAME),
            |l| l.display().to_string()
        )
    );
    let _ = writeln!(s, "sensors:");
    for st in &sensors.status {
        let mark = if st.used { "used   " } else { "missing" };
        let _ = writeln!(s, "  {mark} {:<10} {:<12} {}", st.kind, st.name, st.note);
    }
    s
}
