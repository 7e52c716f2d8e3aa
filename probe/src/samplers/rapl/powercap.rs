//! RAPL through the powercap sysfs tree (`/sys/class/powercap/intel-rapl:*`).
//! Files stay open and are re-read with `pread` so a 1 kHz loop costs one syscall per
//! domain per tick.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eco2ai_trace::SensorStatus;

use super::{Domain, EnergyReader};
use crate::samplers::errors::SensorError;

pub const DEFAULT_ROOT: &str = "/sys/class/powercap";

pub struct PowercapReader {
    domain: Domain,
    path: PathBuf,
    file: File,
    buf: [u8; 32],
    reads: u32,
}

/// Every this many reads, check that the zone still exists: sysfs answers ENODEV once
/// a zone is unregistered, but a file kept open elsewhere (a fake tree) would not.
const RECHECK_EVERY: u32 = 256;

impl EnergyReader for PowercapReader {
    fn domain(&self) -> &Domain {
        &self.domain
    }

    fn read_uj(&mut self) -> Result<u64, SensorError> {
        self.reads = self.reads.wrapping_add(1);
        if self.reads.is_multiple_of(RECHECK_EVERY) && !self.path.exists() {
            return Err(SensorError::Gone(format!(
                "{} removed",
                self.path.display()
            )));
        }
        let n = self
            .file
            .read_at(&mut self.buf, 0)
            .map_err(|e| SensorError::from_io(&e, &self.path.display().to_string()))?;
        parse_u64(&self.buf[..n])
            .ok_or_else(|| SensorError::Transient(format!("{}: not a number", self.path.display())))
    }
}

/// Decimal digits up to the first non-digit (sysfs ends values with a newline);
/// hand-rolled because this runs 5,000 times a second.
fn parse_u64(bytes: &[u8]) -> Option<u64> {
    let mut seen = false;
    let mut v: u64 = 0;
    for &b in bytes.iter().skip_while(|b| b.is_ascii_whitespace()) {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        seen = true;
    }
    seen.then_some(v)
}

/// Opens without updating the access time where allowed (a fake tree on a real file
/// system would otherwise pay an inode update per read); sysfs ignores the flag.
fn open_noatime(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
        .or_else(|_| File::open(path))
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Zone directories: `intel-rapl:0`, `intel-rapl:0:1`, ... (the `intel-rapl` control
/// type directory itself, and `intel-rapl-mmio`, hold no counters of their own).
fn zone_dirs(root: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut zones: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_zone = name.starts_with("intel-rapl:") || name.starts_with("amd-rapl:");
            is_zone.then(|| (name, e.path()))
        })
        .collect();
    zones.sort();
    zones
}

/// Domain name in the trace: top-level zones keep their name (`package-0`, `psys`),
/// sub-zones get their package's index (`core-0`, `dram-1`).
fn domain_name(zone: &str, raw_name: &str) -> String {
    let parts: Vec<&str> = zone.split(':').collect();
    if parts.len() >= 3 && !raw_name.contains('-') {
        format!("{raw_name}-{}", parts[1])
    } else {
        raw_name.to_string()
    }
}

/// Finds every powercap RAPL zone under `root`; one status line per zone, and one
/// when there is no tree at all.
pub fn discover(root: &Path) -> (Vec<Box<dyn EnergyReader>>, Vec<SensorStatus>) {
    let mut readers: Vec<Box<dyn EnergyReader>> = Vec::new();
    let mut status = Vec::new();
    let zones = zone_dirs(root);
    if zones.is_empty() {
        status.push(SensorStatus {
            kind: "powercap".into(),
            name: "rapl".into(),
            used: false,
            note: format!(
                "no RAPL zones under {} (no powercap driver: VM or non-Intel/AMD CPU)",
                root.display()
            ),
        });
    }
    for (zone, dir) in zones {
        let raw_name = read_trimmed(&dir.join("name")).unwrap_or_else(|| zone.clone());
        let name = domain_name(&zone, &raw_name);
        let path = dir.join("energy_uj");
        let max_range_uj =
            read_trimmed(&dir.join("max_energy_range_uj")).and_then(|s| s.parse().ok());
        match open_noatime(&path) {
            Ok(file) => readers.push(Box::new(PowercapReader {
                domain: Domain {
                    name: Arc::from(name.as_str()),
                    source: "powercap",
                    max_range_uj,
                },
                path,
                file,
                buf: [0; 32],
                reads: 0,
            })),
            Err(e) => {
                let note = match SensorError::from_io(&e, &path.display().to_string()) {
                    SensorError::PermissionDenied(m) => {
                        format!(
                            "{m} (energy_uj is root-only since Linux 5.10; run the probe as root)"
                        )
                    }
                    other => other.to_string(),
                };
                status.push(SensorStatus {
                    kind: "powercap".into(),
                    name,
                    used: false,
                    note,
                });
            }
        }
    }
    (readers, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysfs_numbers() {
        assert_eq!(parse_u64(b"12345\n"), Some(12345));
        assert_eq!(parse_u64(b"00000000000000000042\n"), Some(42));
        assert_eq!(parse_u64(b"\n"), None);
        assert_eq!(parse_u64(b"abc"), None);
        assert_eq!(parse_u64(b"99999999999999999999999"), None);
    }

    #[test]
    fn names_sub_zones_by_their_package() {
        assert_eq!(domain_name("intel-rapl:0", "package-0"), "package-0");
        assert_eq!(domain_name("intel-rapl:1:0", "core"), "core-1");
        assert_eq!(domain_name("intel-rapl:0:2", "dram"), "dram-0");
        assert_eq!(domain_name("intel-rapl:1", "psys"), "psys");
    }
}
