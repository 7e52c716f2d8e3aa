//! RAPL through the perf `power` PMU (`/sys/bus/event_source/devices/power`): one
//! counting event per domain and package, the domains of a package opened as one perf
//! event group (PERF_FORMAT_GROUP) so that one `read(2)` a tick returns them all; the
//! count times the event's `.scale` is Joules. Needs root or perf_event_paranoid <= 0.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

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

/// `read_format` bit: one read returns every counter of the group.
const PERF_FORMAT_GROUP: u64 = 1 << 3;
/// Most events a group holds here (five RAPL domains).
const MAX_GROUP: usize = 8;

/// The counters of one package's group, read with one syscall a tick: the first domain
/// polled whose value was already taken reads the group again, and the others take
/// their values from that read (whichever domains are in use).
struct Group {
    leader: OwnedFd,
    /// Kept open: closing a member's fd would remove it from the group.
    members: Vec<OwnedFd>,
    last: Result<Vec<u64>, SensorError>,
    taken: Vec<bool>,
}

impl Group {
    fn read(&mut self) {
        let mut buf = [0u64; 1 + MAX_GROUP];
        // SAFETY: reads at most size_of_val(&buf) bytes into a live local array from an
        // fd this group owns.
        let n = unsafe {
            libc::read(
                self.leader.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                std::mem::size_of_val(&buf),
            )
        };
        self.last = if n < 8 {
            let e = std::io::Error::last_os_error();
            Err(SensorError::from_io(&e, "perf group"))
        } else {
            parse_group(&buf, n as usize / 8, 1 + self.members.len())
                .ok_or_else(|| SensorError::Transient("short perf group read".into()))
        };
    }
}

/// `nr` then `nr` values (PERF_FORMAT_GROUP without ids), `words` of them read.
fn parse_group(buf: &[u64], words: usize, want: usize) -> Option<Vec<u64>> {
    let nr = *buf.first()? as usize;
    (nr == want && words > nr).then(|| buf[1..=nr].to_vec())
}

pub struct PerfReader {
    domain: Domain,
    group: Arc<Mutex<Group>>,
    /// Position in the group (0: the leader).
    index: usize,
    uj_per_count: f64,
}

impl EnergyReader for PerfReader {
    fn domain(&self) -> &Domain {
        &self.domain
    }

    fn read_uj(&mut self) -> Result<u64, SensorError> {
        let mut g = self
            .group
            .lock()
            .map_err(|_| SensorError::Transient("perf group lock poisoned".into()))?;
        if g.taken.get(self.index).copied().unwrap_or(true) {
            g.read();
            g.taken.iter_mut().for_each(|t| *t = false);
        }
        if let Some(t) = g.taken.get_mut(self.index) {
            *t = true;
        }
        match &g.last {
            Ok(v) => v
                .get(self.index)
                .map(|count| (*count as f64 * self.uj_per_count) as u64)
                .ok_or_else(|| SensorError::Transient("perf group too short".into())),
            Err(e) => Err(e.clone()),
        }
    }
}

/// Opens `events` on `cpu` as one group and makes a reader per domain opened; a domain
/// that cannot join gets a status line.
fn open_group(
    pmu_type: u32,
    socket: usize,
    cpu: i32,
    events: &[&(String, &'static str, u64, f64)],
    readers: &mut Vec<Box<dyn EnergyReader>>,
    status: &mut Vec<SensorStatus>,
) {
    let mut leader: Option<OwnedFd> = None;
    let mut members = Vec::new();
    let mut domains = Vec::new();
    for (event, base, config, uj_per_count) in events.iter().map(|e| &**e) {
        let name = if *base == "psys" {
            base.to_string()
        } else {
            format!("{base}-{socket}")
        };
        match open_event(pmu_type, *config, cpu, leader.as_ref()) {
            Ok(fd) if leader.is_none() => leader = Some(fd),
            Ok(fd) if members.len() + 1 < MAX_GROUP => members.push(fd),
            Ok(_) => continue,
            Err(e) => {
                status.push(SensorStatus {
                    kind: "perf".into(),
                    name,
                    used: false,
                    note: format!("perf_event_open({event}, cpu {cpu}): {e} (needs root or perf_event_paranoid <= 0)"),
                });
                continue;
            }
        }
        domains.push((name, *uj_per_count));
    }
    let Some(leader) = leader else {
        return;
    };
    let group = Arc::new(Mutex::new(Group {
        leader,
        members,
        last: Ok(Vec::new()),
        taken: vec![true; domains.len()],
    }));
    for (index, (name, uj_per_count)) in domains.into_iter().enumerate() {
        readers.push(Box::new(PerfReader {
            domain: Domain {
                name: Arc::from(name.as_str()),
                source: "perf",
                max_range_uj: None,
            },
            group: group.clone(),
            index,
            uj_per_count,
        }));
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

/// Opens a counter on `cpu`: a group leader when `leader` is None, else a member.
fn open_event(
    pmu_type: u32,
    config: u64,
    cpu: i32,
    leader: Option<&OwnedFd>,
) -> Result<OwnedFd, std::io::Error> {
    let attr = PerfEventAttrV0 {
        type_: pmu_type,
        size: std::mem::size_of::<PerfEventAttrV0>() as u32,
        config,
        read_format: PERF_FORMAT_GROUP,
        ..Default::default()
    };
    let group_fd = leader.map_or(-1, |l| l.as_raw_fd());
    // SAFETY: `attr` is a valid perf_event_attr prefix whose `size` says how much the
    // kernel may read; pid -1 with a cpu is a system-wide counter; `group_fd` is -1 or
    // a leader fd this module owns.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttrV0,
            -1i32,
            cpu,
            group_fd,
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
    // (event, domain base, config, µJ per count) of every usable event.
    let mut usable = Vec::new();
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
        usable.push((event, base, config, scale_j * 1e6));
    }
    for (socket, cpu) in cpus.iter().enumerate() {
        // psys is one counter for the machine: in the first package's group.
        let events: Vec<_> = usable
            .iter()
            .filter(|u| socket == 0 || u.1 != "psys")
            .collect();
        open_group(pmu_type, socket, *cpu, &events, &mut readers, &mut status);
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

    #[test]
    fn parses_a_group_read() {
        let buf = [3u64, 10, 20, 30, 0, 0, 0, 0, 0];
        assert_eq!(parse_group(&buf, 4, 3), Some(vec![10, 20, 30]));
        // A group of another size, or a read cut short, is refused.
        assert_eq!(parse_group(&buf, 4, 2), None);
        assert_eq!(parse_group(&buf, 3, 3), None);
    }

    /// The group path on a PMU these VMs have: the `msr` PMU's tsc and smi counters
    /// (also system-wide, per-CPU counting events) dressed as a power PMU with two
    /// domains. One group, one read, both values; the tsc moves. Root only.
    #[test]
    fn a_two_event_group_reads_with_one_syscall() {
        let msr = Path::new("/sys/bus/event_source/devices/msr");
        let Ok(pmu_type) = fs::read_to_string(msr.join("type")) else {
            eprintln!("skipped: no msr PMU here");
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let events = tmp.path().join("events");
        fs::create_dir_all(&events).unwrap();
        fs::write(tmp.path().join("type"), pmu_type).unwrap();
        fs::write(tmp.path().join("cpumask"), "0\n").unwrap();
        for (name, config) in [("energy-pkg", "event=0x00"), ("energy-ram", "event=0x04")] {
            fs::write(events.join(name), config).unwrap();
            fs::write(events.join(format!("{name}.scale")), "1e-9").unwrap();
        }
        let (mut readers, status) = discover(tmp.path());
        if readers.is_empty() {
            eprintln!("skipped: cannot open msr events here ({status:?})");
            return;
        }
        let names: Vec<String> = readers
            .iter()
            .map(|r| r.domain().name.to_string())
            .collect();
        assert_eq!(names, ["package-0", "dram-0"]);
        let first = readers[0].read_uj().unwrap();
        readers[1].read_uj().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = readers[0].read_uj().unwrap();
        readers[1].read_uj().unwrap();
        assert!(second > first, "{first} -> {second}");
    }

    /// As root on a machine with a perf power PMU: the group opens and reads.
    #[test]
    fn the_power_pmu_reads_as_a_group_where_there_is_one() {
        let (mut readers, status) = discover(Path::new(DEFAULT_PMU));
        if readers.is_empty() {
            eprintln!("skipped: no perf power counters here ({status:?})");
            return;
        }
        for _ in 0..3 {
            for r in readers.iter_mut() {
                assert!(r.read_uj().is_ok(), "{}", r.domain().name);
            }
        }
    }
}
