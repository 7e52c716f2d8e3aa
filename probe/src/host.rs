//! Facts about the machine for meta.json.

use std::collections::BTreeSet;
use std::fs;

#[derive(Debug, Clone, Default)]
pub struct Host {
    pub hostname: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpu_sockets: u32,
    pub cpu_threads: u32,
}

fn first_line(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Model name and socket count from /proc/cpuinfo text.
pub fn parse_cpuinfo(text: &str) -> (String, u32) {
    let mut model = String::new();
    let mut sockets = BTreeSet::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "model name" if model.is_empty() => model = v.trim().to_string(),
            "physical id" => {
                sockets.insert(v.trim().to_string());
            }
            _ => {}
        }
    }
    (model, sockets.len().max(1) as u32)
}

pub fn detect() -> Host {
    let (cpu_model, cpu_sockets) =
        parse_cpuinfo(&fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
    Host {
        hostname: first_line("/proc/sys/kernel/hostname"),
        kernel: first_line("/proc/sys/kernel/osrelease"),
        cpu_model,
        cpu_sockets,
        cpu_threads: crate::samplers::procfs::cpu_count(),
    }
}

/// This process's CPU time (user + system, ns) and peak RSS (kB, VmHWM).
pub fn self_usage() -> (Option<u64>, Option<u64>) {
    // SAFETY: rusage is plain data; getrusage fills it for RUSAGE_SELF.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local rusage.
    let cpu_ns = (unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0).then(|| {
        let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    });
    let hwm = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    });
    (cpu_ns, hwm)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_sockets() {
        let t = "processor\t: 0\nmodel name\t: Xeon X\nphysical id\t: 0\n\nprocessor\t: 1\nmodel name\t: Xeon X\nphysical id\t: 1\n";
        assert_eq!(super::parse_cpuinfo(t), ("Xeon X".to_string(), 2));
        assert_eq!(super::parse_cpuinfo(""), (String::new(), 1));
    }
}
