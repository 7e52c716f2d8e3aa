//! CPU utilisation from /proc: the machine's (`/proc/stat`) and the recorded process
//! tree's (`/proc/PID/stat` of every descendant, found through
//! `/proc/PID/task/TID/children`), plus per-process on-CPU time for the `procs` table.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use eco2ai_trace::ProcRow;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// Parses the aggregate `cpu` line of /proc/stat (in clock ticks).
pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is already in user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

/// Machine-wide utilisation between successive reads, in percent of all CPUs.
pub struct MachineUtil {
    path: PathBuf,
    last: Option<CpuTimes>,
}

impl MachineUtil {
    pub fn new(proc_root: &Path) -> MachineUtil {
        MachineUtil {
            path: proc_root.join("stat"),
            last: None,
        }
    }

    pub fn poll(&mut self) -> Option<f32> {
        let now = parse_stat(&fs::read_to_string(&self.path).ok()?)?;
        let last = self.last.replace(now)?;
        let dt = now.total.saturating_sub(last.total);
        (dt > 0).then(|| 100.0 * now.busy.saturating_sub(last.busy) as f32 / dt as f32)
    }
}

/// comm and utime+stime (ticks) from /proc/PID/stat; comm may hold spaces and parens.
pub fn parse_pid_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // After the comm: state(0) ppid(1) ... utime(11) stime(12)
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// The recorded process and all its descendants.
pub fn process_tree(proc_root: &Path, root_pid: u32) -> Vec<u32> {
    let mut out = vec![root_pid];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        i += 1;
        let Ok(tasks) = fs::read_dir(proc_root.join(pid.to_string()).join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            out.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    out
}

pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory effects; a failure returns -1.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

pub fn cpu_count() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Per-process on-CPU time of a process tree, as deltas between polls.
pub struct TreeSampler {
    proc_root: PathBuf,
    root_pid: u32,
    ns_per_tick: u64,
    cpus: u32,
    last: HashMap<u32, u64>,
    last_ts_ns: Option<i64>,
}

impl TreeSampler {
    pub fn new(proc_root: &Path, root_pid: u32) -> TreeSampler {
        TreeSampler {
            proc_root: proc_root.to_path_buf(),
            root_pid,
            ns_per_tick: 1_000_000_000 / ticks_per_second(),
            cpus: cpu_count(),
            last: HashMap::new(),
            last_ts_ns: None,
        }
    }

    /// Appends one row per live process and returns the tree's utilisation in percent
    /// of all CPUs over the interval (None on the first poll).
    pub fn poll(&mut self, ts_ns: i64, out: &mut Vec<ProcRow>) -> Option<f32> {
        let mut now = HashMap::new();
        let mut sum_ns = 0u64;
        for pid in process_tree(&self.proc_root, self.root_pid) {
            let Ok(text) = fs::read_to_string(self.proc_root.join(pid.to_string()).join("stat"))
            else {
                continue;
            };
            let Some((comm, ticks)) = parse_pid_stat(&text) else {
                continue;
            };
            now.insert(pid, ticks);
            let before = self.last.get(&pid).copied().unwrap_or(0);
            let oncpu_ns = ticks.saturating_sub(before) * self.ns_per_tick;
            sum_ns += oncpu_ns;
            out.push(ProcRow {
                ts_ns,
                pid,
                comm,
                oncpu_ns,
                source: "procfs",
            });
        }
        self.last = now;
        let prev = self.last_ts_ns.replace(ts_ns)?;
        let dt = (ts_ns - prev).max(1) as f32 * self.cpus as f32;
        Some((100.0 * sum_ns as f32 / dt).min(100.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines() {
        let s = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(
            parse_stat(s),
            Some(CpuTimes {
                busy: 161,
                total: 981
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        let p = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0";
        assert_eq!(parse_pid_stat(p), Some(("my (odd) proc".to_string(), 281)));
    }

    #[test]
    fn finds_this_process_and_its_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let tree = process_tree(Path::new("/proc"), std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(tree.contains(&child.id()), "{tree:?}");
    }
}
