//! The CPU poll: machine utilisation every tick (and the CPU energy estimate when
//! there is no RAPL), the recorded process tree every `procs_ns`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use eco2ai_trace::CpuRow;

use crate::batcher::Batcher;
use crate::samplers::estimate::Estimator;
use crate::samplers::procfs::{MachineUtil, TreeSampler};
use crate::samplers::tick::Sampler;

/// Machine utilisation every tick (and the CPU estimate when there is no RAPL); the
/// job's process tree every `procs_ns`.
pub struct CpuSampler {
    machine: MachineUtil,
    period_ns: i64,
    estimate: Option<Estimator>,
    job_pid: Arc<AtomicU32>,
    tree: Option<TreeSampler>,
    procs_ns: i64,
    last_ts: Option<i64>,
    last_tree_ts: i64,
}

impl CpuSampler {
    /// Polls every `period_ns` when spawned; the tree of `job_pid` (once it is not 0)
    /// every `procs_ns`.
    pub fn new(
        period_ns: i64,
        estimate: Option<Estimator>,
        job_pid: Arc<AtomicU32>,
        procs_ns: i64,
    ) -> CpuSampler {
        let machine = MachineUtil::new(Path::new("/proc"));
        CpuSampler {
            machine,
            period_ns,
            estimate,
            job_pid,
            tree: None,
            procs_ns,
            last_ts: None,
            last_tree_ts: 0,
        }
    }

    fn read(&mut self, ts_ns: i64, b: &mut Batcher) {
        let util = self.machine.poll();
        let dt = self.last_ts.replace(ts_ns).map(|l| ts_ns - l);
        if let Some(u) = util {
            b.cpu.push(CpuRow {
                ts_ns,
                domain: "machine".into(),
                source: "procfs",
                energy_uj: None,
                energy_changed: None,
                util_pct: Some(u),
            });
        }
        if let (Some(est), Some(u), Some(dt)) = (self.estimate.as_mut(), util, dt) {
            let energy_uj = est.add(u, dt);
            b.cpu.push(CpuRow {
                ts_ns,
                domain: "package".into(),
                source: "estimate",
                energy_uj: Some(energy_uj),
                energy_changed: Some(dt > 0), // the idle floor moves the estimate every tick
                util_pct: Some(u),
            });
        }
        if ts_ns - self.last_tree_ts >= self.procs_ns {
            self.last_tree_ts = ts_ns;
            let pid = self.job_pid.load(Ordering::Relaxed);
            if pid != 0 {
                let tree = self
                    .tree
                    .get_or_insert_with(|| TreeSampler::new(Path::new("/proc"), pid));
                if let Some(u) = tree.poll(ts_ns, &mut b.procs) {
                    b.cpu.push(CpuRow {
                        ts_ns,
                        domain: "job".into(),
                        source: "procfs",
                        energy_uj: None,
                        energy_changed: None,
                        util_pct: Some(u),
                    });
                }
            }
        }
    }
}

impl Sampler for CpuSampler {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn period_ns(&self) -> i64 {
        self.period_ns
    }
    fn poll(&mut self, now_ns: i64, b: &mut Batcher) {
        self.read(now_ns, b)
    }
}
