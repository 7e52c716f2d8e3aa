//! A fake GPU library with a known power function, the 100 ms sensor refresh of real
//! NVML, a cumulative energy counter, and scripted failures and counter resets. Used
//! by the tests and by `record --fake-gpus N` (benchmarks on machines without GPUs).
//! With a [`CallCost`] each call also burns the CPU time the real call costs, so a
//! benchmark on a machine without GPUs sees the probe's real NVML cost.

use std::sync::Arc;

use eco2ai_trace::GpuInfo;

use super::{Aux, GpuBackend};
use crate::samplers::errors::SensorError;

pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Failures and resets, in ns relative to the fake's creation.
#[derive(Debug, Clone, Default)]
pub struct FakeScript {
    /// Power reads fail inside these windows.
    pub power_errors: Vec<(i64, i64)>,
    /// Energy reads fail inside these windows.
    pub energy_errors: Vec<(i64, i64)>,
    /// The energy counter restarts from zero at this time (a driver reload).
    pub energy_reset_at_ns: Option<i64>,
}

/// CPU time each NVML call costs, in ns of the calling thread's CPU clock.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallCost {
    pub energy_ns: i64,
    pub power_ns: i64,
    /// The instant power is a field-values call.
    pub power_instant_ns: i64,
    pub util_ns: i64,
    pub mem_ns: i64,
    pub temp_ns: i64,
    pub clock_ns: i64,
}

impl CallCost {
    /// Measured with pynvml on an NVIDIA H200 (driver 580, docs/benchmarks.md).
    pub const H200: CallCost = CallCost {
        energy_ns: 3_949_000,
        power_ns: 1_900,
        power_instant_ns: 5_700,
        util_ns: 1_700,
        mem_ns: 7_700,
        temp_ns: 1_900,
        clock_ns: 2_000,
    };

    /// `h200` or `none`: the value of ECO2AI_FAKE_NVML_COST.
    pub fn parse(s: &str) -> Option<CallCost> {
        match s.trim() {
            "h200" => Some(CallCost::H200),
            "none" | "" => Some(CallCost::default()),
            _ => None,
        }
    }
}

/// Spins on this thread's CPU clock until it has used `ns` more: the cost is CPU, as
/// NVML's is, not a sleep.
fn burn(ns: i64) {
    if ns <= 0 {
        return;
    }
    let start = thread_cpu_ns();
    while thread_cpu_ns() - start < ns {
        std::hint::spin_loop();
    }
}

fn thread_cpu_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        // Cannot happen on Linux; returning a huge value ends the spin.
        return i64::MAX / 2;
    }
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

pub struct FakeGpus {
    count: u32,
    clock: Clock,
    origin_ns: i64,
    script: FakeScript,
    cost: CallCost,
}

/// Sensor refresh period of the fake, as measured on an H100.
pub const UPDATE_NS: i64 = 100_000_000;
/// Power levels a fake GPU cycles through, one per update, in mW.
const LEVELS_MW: [u64; 5] = [300_000, 420_000, 550_000, 610_000, 480_000];
/// What the counter reads at creation: energy since an imagined driver load.
const COUNTER_START_MJ: u64 = 5_000_000_000;

impl FakeGpus {
    pub fn new(count: u32, clock: Clock, script: FakeScript) -> FakeGpus {
        let origin_ns = clock();
        FakeGpus {
            count,
            clock,
            origin_ns,
            script,
            cost: CallCost::default(),
        }
    }

    /// Each call burns what `cost` says.
    pub fn with_cost(mut self, cost: CallCost) -> FakeGpus {
        self.cost = cost;
        self
    }

    fn rel_now(&self) -> i64 {
        (self.clock)() - self.origin_ns
    }

    /// Power of `gpu` in the update window `k` (mW).
    pub fn level_mw(gpu: u32, k: i64) -> u64 {
        LEVELS_MW[(k as usize + gpu as usize) % LEVELS_MW.len()] + 10_000 * gpu as u64
    }

    /// Energy (mJ) of `gpu` over update windows `[0, k)`.
    fn energy_windows_mj(gpu: u32, k: i64) -> u64 {
        let cycle: u64 = (0..LEVELS_MW.len() as i64)
            .map(|i| Self::level_mw(gpu, i))
            .sum();
        let n = LEVELS_MW.len() as i64;
        let full = (k / n) as u64 * cycle;
        let rest: u64 = (0..k % n).map(|i| Self::level_mw(gpu, i)).sum();
        // mW x 100 ms = mJ / 10
        (full + rest) * (UPDATE_NS / 1_000_000) as u64 / 1000
    }

    /// Exact energy of `gpu` between two relative times (mJ), as the counter would
    /// show it if it updated continuously; tests compare against this.
    pub fn true_energy_mj(gpu: u32, from_ns: i64, to_ns: i64) -> f64 {
        let e = |t: i64| {
            let k = t / UPDATE_NS;
            let within = (t - k * UPDATE_NS) as f64 / 1e9;
            Self::energy_windows_mj(gpu, k) as f64 + Self::level_mw(gpu, k) as f64 * within
        };
        e(to_ns) - e(from_ns)
    }

    fn in_window(windows: &[(i64, i64)], t: i64) -> bool {
        windows.iter().any(|(a, b)| (*a..*b).contains(&t))
    }

    fn check(&self, gpu: u32) -> Result<(), SensorError> {
        if gpu < self.count {
            Ok(())
        } else {
            Err(SensorError::Gone(format!("fake gpu{gpu}")))
        }
    }
}

impl GpuBackend for FakeGpus {
    fn devices(&self) -> Result<Vec<GpuInfo>, SensorError> {
        Ok((0..self.count)
            .map(|i| GpuInfo {
                index: i,
                name: "Fake H100 80GB HBM3".into(),
                uuid: format!("GPU-fake-{i:04}"),
                power_limit_mw: Some(700_000),
            })
            .collect())
    }

    fn power_mw(&self, gpu: u32) -> Result<u32, SensorError> {
        burn(self.cost.power_ns);
        self.level(gpu)
    }

    fn power_instant_mw(&self, gpu: u32) -> Result<u32, SensorError> {
        burn(self.cost.power_instant_ns);
        self.level(gpu)
    }

    fn energy_mj(&self, gpu: u32) -> Result<u64, SensorError> {
        burn(self.cost.energy_ns);
        self.counter_mj(gpu)
    }

    fn aux(&self, gpu: u32, _on_error: &mut dyn FnMut(&'static str, SensorError)) -> Aux {
        let c = &self.cost;
        burn(c.util_ns + c.mem_ns + c.temp_ns + c.clock_ns);
        let k = self.rel_now() / UPDATE_NS;
        let level = Self::level_mw(gpu, k);
        Aux {
            util_gpu_pct: Some((level * 100 / 700_000) as u32),
            util_mem_pct: Some(40),
            mem_used_bytes: Some(60 << 30),
            mem_total_bytes: Some(80 << 30),
            temp_c: Some(40 + (level / 20_000) as u32),
            sm_clock_mhz: Some(1980),
        }
    }
}

impl FakeGpus {
    fn level(&self, gpu: u32) -> Result<u32, SensorError> {
        self.check(gpu)?;
        let t = self.rel_now();
        if Self::in_window(&self.script.power_errors, t) {
            return Err(SensorError::Transient("fake power read failure".into()));
        }
        Ok(Self::level_mw(gpu, t / UPDATE_NS) as u32)
    }

    fn counter_mj(&self, gpu: u32) -> Result<u64, SensorError> {
        self.check(gpu)?;
        let t = self.rel_now();
        if Self::in_window(&self.script.energy_errors, t) {
            return Err(SensorError::Transient("fake energy read failure".into()));
        }
        let k = t / UPDATE_NS;
        Ok(match self.script.energy_reset_at_ns {
            Some(r) if t >= r => {
                Self::energy_windows_mj(gpu, k) - Self::energy_windows_mj(gpu, r / UPDATE_NS)
            }
            _ => COUNTER_START_MJ + Self::energy_windows_mj(gpu, k),
        })
    }
}
