//! RAPL through the perf `power` PMU (`/sys/bus/event_source/devices/power`): one
//! counting event per domain and package, read with `read(2)`; the count times the
//! event's `.scale` is Joules. Needs root or perf_event_paranoid <= 0.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use eco2ai_trace::SensorStatus;

use super::{Domain, EnergyReader};
use crate::samplers::errors::SensorError;

pub const DEFAULT_PMU: &str = "/sys/bus/event_source/devices/power";

/// The first 64 bytes of `struct perf_event_attr` (PERF_ATTR_SIZE_VER0); the kernel
/// accepts this size and zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttrV0 {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const _: () = assert!(std::mem::size_of::<PerfEventAttrV0>() == 64);

pub struct PerfReader {
    domain: Domain,
    fd: OwnedFd,
    uj_per_count: f64,
}

impl EnergyReader for PerfReader {
    fn domain(&self) -> &Domain {
        &self.domain
    }

    fn read_uj(&mut self) -> Result<u64, SensorError> {
        let mut count = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64 from an fd this reader owns.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        if n != 8 {
            let e = std::io::Error::last_os_error();
            return Err(SensorError::from_io(
                &e,
                &format!("perf {}", self.domain.name),
            ));
        }
        Ok((count as f64 * self.uj_per_count) as u64)
    }
}

/// Trace domain name for a perf event name.
fn domain_base(event: &str) -> Option<&'static str> {
    Some(match event {
        "energy-pkg" => "package",
        "energy-cores" => "core",
        "energy-gpu" => "uncore",
        "energy-ram" => "dram",
        "energy-psys" => "psys",
        _ => return None,
    })
}

/// `0,8-9` into [0, 8, 9].
pub fn parse_cpu_list(s: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<i32>().ok()),
        }
    }
    out
}

/// `event=0x02` into 2.
fn parse_event_config(s: &str) -> Option<u64> {
    let v = s.trim().strip_prefix("event=")?;
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn open_event(pmu_type: u32, config: u64, cpu: i32) -> Result<OwnedFd, std::io::Error> {
    let attr = PerfEventAttrV0 {
        type_: pmu_type,
        size: std::mem::size_of::<PerfEventAttrV0>() as u32,
        config,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr prefix whose `size` says how much the
    // kernel may read; pid -1 with a cpu is a system-wide counter; no group fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttrV0,
            -1i32,
            cpu,
            -1i32,
            0u64,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub fn discover(pmu: &Path) -> (Vec<Box<dyn EnergyReader>>, Vec<SensorStatus>) {
    let mut readers: Vec<Box<dyn EnergyReader>> = Vec::new();
    let mut status = Vec::new();
    let missing = |note: String| SensorStatus {
        kind: "perf".into(),
        name: "power".into(),
        used: false,
        note,
    };
    let Some(pmu_type) = fs::read_to_string(pmu.join("type"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
    else {
        status.push(missing(format!("no perf power PMU at {}", pmu.display())));
        return (readers, status);
    };
    let cpus = fs::read_to_string(pmu.join("cpumask"))
        .map(|s| parse_cpu_list(&s))
        .unwrap_or_default();
    let mut events: Vec<String> = fs::read_dir(pmu.join("events"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    events.retain(|e| !e.contains('.'));
    events.sort();
    for event in events {
        let Some(base) = domain_base(&event) else {
            continue;
        };
        let read =
            |suffix: &str| fs::read_to_string(pmu.join("events").join(format!("{event}{suffix}")));
        let config = read("").ok().and_then(|s| parse_event_config(&s));
        let scale_j = read(".scale")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok());
        let (Some(config), Some(scale_j)) = (config, scale_j) else {
            status.push(missing(format!("{event}: unreadable event or scale")));
            continue;
        };
        for (socket, cpu) in cpus.iter().enumerate() {
            let name = if base == "psys" {
                base.to_string()
            } else {
                format!("{base}-{socket}")
            };
            match open_event(pmu_type, config, *cpu) {
                Ok(fd) => readers.push(Box::new(PerfReader {
                    domain: Domain { name: Arc::from(name.as_str()), source: "perf", max_range_uj: None },
                    fd,
                    uj_per_count: scale_j * 1e6,
                })),
                Err(e) => status.push(SensorStatus {
                    kind: "perf".into(),
                    name,
                    used: false,
                    note: format!("perf_event_open({event}, cpu {cpu}): {e} (needs root or perf_event_paranoid <= 0)"),
                }),
            }
            if base == "psys" {
                break;
            }
        }
    }
    (readers, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists_and_event_configs() {
        assert_eq!(parse_cpu_list("0"), vec![0]);
        assert_eq!(parse_cpu_list("0,8-10\n"), vec![0, 8, 9, 10]);
        assert_eq!(parse_event_config("event=0x05\n"), Some(5));
        assert_eq!(parse_event_config("event=17"), Some(17));
        assert_eq!(parse_event_config("umask=1"), None);
    }
}
