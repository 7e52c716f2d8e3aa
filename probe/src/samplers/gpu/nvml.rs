//! The real GPU backend: NVML through nvml-wrapper, loaded at run time so the probe
//! runs (without GPU rows) where there is no NVIDIA driver.

use eco2ai_trace::GpuInfo;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::{Device, Nvml};

use super::{Aux, GpuBackend};
use crate::samplers::errors::SensorError;

/// NVML_FI_DEV_POWER_INSTANT
const FI_POWER_INSTANT: u32 = 186;

pub struct NvmlBackend {
    /// One handle per GPU, looked up once: `nvmlDeviceGetHandleByIndex` on every read
    /// doubled the driver calls of the 20 ms power loop. The library lives as long as the
    /// process (leaked once), which the handles' lifetime needs.
    devices: Vec<Device<'static>>,
}

fn classify(e: NvmlError) -> SensorError {
    match e {
        NvmlError::NotSupported | NvmlError::FunctionNotFound => {
            SensorError::NotSupported(e.to_string())
        }
        NvmlError::GpuLost | NvmlError::NotFound => SensorError::Gone(e.to_string()),
        NvmlError::NoPermission => SensorError::PermissionDenied(e.to_string()),
        other => SensorError::Transient(other.to_string()),
    }
}

impl NvmlBackend {
    /// Loads libnvidia-ml and initialises it; the error says why there are no GPUs.
    pub fn load() -> Result<NvmlBackend, String> {
        match Nvml::init() {
            Ok(nvml) => {
                let nvml: &'static Nvml = Box::leak(Box::new(nvml));
                let n = nvml
                    .device_count()
                    .map_err(|e| format!("NVML device count: {e}"))?;
                let devices = (0..n)
                    .map(|i| nvml.device_by_index(i))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("NVML device handle: {e}"))?;
                Ok(NvmlBackend { devices })
            }
            Err(NvmlError::LibloadingError(e)) => Err(format!(
                "libnvidia-ml.so.1 not found (no NVIDIA driver installed): {e}"
            )),
            Err(NvmlError::DriverNotLoaded) => Err("NVIDIA driver not loaded".into()),
            Err(NvmlError::NoPermission) => {
                Err("no permission to talk to the NVIDIA driver".into())
            }
            Err(e) => Err(format!("NVML init failed: {e}")),
        }
    }

    fn device(&self, gpu: u32) -> Result<&Device<'static>, SensorError> {
        self.devices
            .get(gpu as usize)
            .ok_or_else(|| SensorError::Gone(format!("no GPU {gpu}")))
    }
}

impl GpuBackend for NvmlBackend {
    fn devices(&self) -> Result<Vec<GpuInfo>, SensorError> {
        let mut out = Vec::with_capacity(self.devices.len());
        for (index, d) in (0u32..).zip(&self.devices) {
            out.push(GpuInfo {
                index,
                name: d.name().unwrap_or_else(|_| "unknown".into()),
                uuid: d.uuid().unwrap_or_default(),
                power_limit_mw: d.enforced_power_limit().ok(),
            });
        }
        Ok(out)
    }

    fn power_mw(&self, gpu: u32) -> Result<u32, SensorError> {
        self.device(gpu)?.power_usage().map_err(classify)
    }

    fn power_instant_mw(&self, gpu: u32) -> Result<u32, SensorError> {
        let values = self
            .device(gpu)?
            .field_values_for(&[FieldId(FI_POWER_INSTANT)])
            .map_err(classify)?;
        let sample = values
            .into_iter()
            .next()
            .ok_or_else(|| SensorError::NotSupported("no instant power field".into()))?
            .map_err(classify)?;
        match sample.value.map_err(classify)? {
            SampleValue::U32(v) => Ok(v),
            SampleValue::U64(v) => Ok(v as u32),
            SampleValue::I64(v) => Ok(v.max(0) as u32),
            SampleValue::F64(v) => Ok(v.max(0.0) as u32),
        }
    }

    fn energy_mj(&self, gpu: u32) -> Result<u64, SensorError> {
        self.device(gpu)?
            .total_energy_consumption()
            .map_err(classify)
    }

    fn aux(&self, gpu: u32, on_error: &mut dyn FnMut(&'static str, SensorError)) -> Aux {
        let d = match self.device(gpu) {
            Ok(d) => d,
            Err(e) => {
                on_error("device", e);
                return Aux::default();
            }
        };
        let mut take = |field: &'static str, r: Result<u64, NvmlError>| match r {
            Ok(v) => Some(v),
            Err(e) => {
                on_error(field, classify(e));
                None
            }
        };
        let util = d.utilization_rates();
        let (ug, um) = match util {
            Ok(u) => (Some(u.gpu), Some(u.memory)),
            Err(e) => {
                take("utilization", Err(e));
                (None, None)
            }
        };
        let mem = d.memory_info();
        let (used, total) = match mem {
            Ok(m) => (Some(m.used), Some(m.total)),
            Err(e) => {
                take("memory", Err(e));
                (None, None)
            }
        };
        Aux {
            util_gpu_pct: ug,
            util_mem_pct: um,
            mem_used_bytes: used,
            mem_total_bytes: total,
            temp_c: take(
                "temperature",
                d.temperature(TemperatureSensor::Gpu).map(u64::from),
            )
            .map(|v| v as u32),
            sm_clock_mhz: take("sm_clock", d.clock_info(Clock::SM).map(u64::from))
                .map(|v| v as u32),
        }
    }
}
