//! GPU power and energy: a fast loop for power (the value NVML refreshes every
//! ~100 ms, so poll at <= 20 ms to see each change) with utilisation, memory,
//! temperature and clock every few ticks, and a slow loop of its own for the energy
//! counter (~4 ms of CPU a call on an H200, so it is read every 30 s: the analyzer
//! anchors there and the power samples carry the shape in between).

pub mod fake;
pub mod live;
pub mod nvml;

use std::sync::Arc;

use eco2ai_trace::{GpuInfo, GpuRow};

use super::counter::{CounterDiff, Jump};
use super::errors::{ErrorCounts, SensorError};
use super::tick::Sampler;
use crate::batcher::Batcher;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Aux {
    pub util_gpu_pct: Option<u32>,
    pub util_mem_pct: Option<u32>,
    pub mem_used_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    pub temp_c: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
}

/// What the samplers need of a GPU library; NVML in production, a fake in tests.
pub trait GpuBackend: Send + Sync {
    fn devices(&self) -> Result<Vec<GpuInfo>, SensorError>;
    fn power_mw(&self, gpu: u32) -> Result<u32, SensorError>;
    fn power_instant_mw(&self, gpu: u32) -> Result<u32, SensorError>;
    /// Total energy since the driver loaded, in millijoules.
    fn energy_mj(&self, gpu: u32) -> Result<u64, SensorError>;
    /// Auxiliary readings; a field the device cannot give is `None` and its error is
    /// counted through `on_error`.
    fn aux(&self, gpu: u32, on_error: &mut dyn FnMut(&'static str, SensorError)) -> Aux;
}

/// Which GPUs to record: `--gpus` (NVML indices) and CUDA_VISIBLE_DEVICES (indices or
/// UUID prefixes), both optional.
pub fn select_gpus(
    all: &[GpuInfo],
    flag: Option<&[u32]>,
    cuda_visible: Option<&str>,
) -> Vec<GpuInfo> {
    let mut out: Vec<GpuInfo> = all.to_vec();
    if let Some(want) = flag {
        out.retain(|g| want.contains(&g.index));
    }
    if let Some(cvd) = cuda_visible {
        let entries: Vec<&str> = cvd
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        out.retain(|g| {
            entries.iter().any(|e| match e.parse::<u32>() {
                Ok(i) => i == g.index,
                Err(_) => g.uuid.starts_with(e),
            })
        });
    }
    out
}

struct PowerState {
    power_mw: Option<u32>,
    instant_mw: Option<u32>,
    instant_supported: bool,
}

pub struct GpuPowerSampler {
    backend: Arc<dyn GpuBackend>,
    gpus: Vec<u32>,
    state: Vec<PowerState>,
    period_ns: i64,
    aux_every: u32,
    tick: u32,
    errors: ErrorCounts,
}

impl GpuPowerSampler {
    /// Polls every `period_ns` when spawned; `aux_every`: read the auxiliary values
    /// every this many power polls.
    pub fn new(
        backend: Arc<dyn GpuBackend>,
        gpus: Vec<u32>,
        period_ns: i64,
        aux_every: u32,
        errors: ErrorCounts,
    ) -> Self {
        let state = gpus
            .iter()
            .map(|_| PowerState {
                power_mw: None,
                instant_mw: None,
                instant_supported: true,
            })
            .collect();
        GpuPowerSampler {
            backend,
            gpus,
            state,
            period_ns,
            aux_every: aux_every.max(1),
            tick: 0,
            errors,
        }
    }

    /// One row per GPU, stamped `ts_ns`.
    pub fn read(&mut self, ts_ns: i64, out: &mut Vec<GpuRow>) {
        let with_aux = self.tick.is_multiple_of(self.aux_every);
        self.tick = self.tick.wrapping_add(1);
        for (gpu, st) in self.gpus.iter().copied().zip(self.state.iter_mut()) {
            let mut row = GpuRow {
                ts_ns,
                gpu,
                ..Default::default()
            };
            match self.backend.power_mw(gpu) {
                Ok(p) => {
                    row.power_mw = Some(p);
                    row.power_changed = Some(st.power_mw.is_some_and(|old| old != p));
                    st.power_mw = Some(p);
                }
                Err(e) => self.errors.add("nvml:power", &e),
            }
            if st.instant_supported {
                match self.backend.power_instant_mw(gpu) {
                    Ok(p) => {
                        row.power_instant_mw = Some(p);
                        st.instant_mw = Some(p);
                    }
                    // Older GPUs lack the field: stop asking rather than count forever.
                    Err(SensorError::NotSupported(_)) => st.instant_supported = false,
                    Err(e) => self.errors.add("nvml:power_instant", &e),
                }
            }
            if with_aux {
                let errors = &self.errors;
                let aux = self.backend.aux(gpu, &mut |field, e| {
                    errors.add(&format!("nvml:{field}"), &e)
                });
                row.util_gpu_pct = aux.util_gpu_pct;
                row.util_mem_pct = aux.util_mem_pct;
                row.mem_used_bytes = aux.mem_used_bytes;
                row.mem_total_bytes = aux.mem_total_bytes;
                row.temp_c = aux.temp_c;
                row.sm_clock_mhz = aux.sm_clock_mhz;
            }
            out.push(row);
        }
    }
}

pub struct GpuEnergySampler {
    backend: Arc<dyn GpuBackend>,
    gpus: Vec<u32>,
    counters: Vec<CounterDiff>,
    period_ns: i64,
    errors: ErrorCounts,
}

impl GpuEnergySampler {
    /// Reads the counters every `period_ns` when spawned.
    pub fn new(
        backend: Arc<dyn GpuBackend>,
        gpus: Vec<u32>,
        period_ns: i64,
        errors: ErrorCounts,
    ) -> Self {
        let counters = gpus.iter().map(|_| CounterDiff::new(None)).collect();
        GpuEnergySampler {
            backend,
            gpus,
            counters,
            period_ns,
            errors,
        }
    }

    /// One row per GPU with the run-relative energy (`energy_mj`, monotonic across
    /// counter resets) and whether the counter moved since the previous poll.
    pub fn read(&mut self, ts_ns: i64, out: &mut Vec<GpuRow>) {
        for (gpu, counter) in self.gpus.iter().copied().zip(self.counters.iter_mut()) {
            match self.backend.energy_mj(gpu) {
                Ok(raw) => {
                    let u = counter.update(raw);
                    if u.jump != Jump::None {
                        self.errors.add(
                            "nvml:energy",
                            &SensorError::Transient("counter reset".into()),
                        );
                    }
                    out.push(GpuRow {
                        ts_ns,
                        gpu,
                        energy_mj: Some(u.total),
                        energy_changed: Some(u.changed),
                        ..Default::default()
                    });
                }
                Err(e) => self.errors.add("nvml:energy", &e),
            }
        }
    }
}

impl Sampler for GpuPowerSampler {
    fn name(&self) -> &'static str {
        "nvml-power"
    }
    fn period_ns(&self) -> i64 {
        self.period_ns
    }
    fn poll(&mut self, now_ns: i64, b: &mut Batcher) {
        self.read(now_ns, &mut b.gpu)
    }
}

impl Sampler for GpuEnergySampler {
    fn name(&self) -> &'static str {
        "nvml-energy"
    }
    fn period_ns(&self) -> i64 {
        self.period_ns
    }
    fn poll(&mut self, now_ns: i64, b: &mut Batcher) {
        self.read(now_ns, &mut b.gpu)
    }
}

#[cfg(test)]
mod tests;
