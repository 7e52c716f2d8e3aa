//! The recording pipeline: sampler threads -> one bounded channel -> the writer
//! thread, which owns the trace and keeps meta.json current.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use eco2ai_trace::{Live, Meta, Rows, TraceError, TraceWriter, cpu_total_j};

use crate::clock::monotonic_ns;
use crate::config::Intervals;
use crate::ebpf::{self, EbpfProbe};
use crate::markers::{self, MarkerSocket};
use crate::samplers::cpu::CpuSampler;
use crate::samplers::errors::ErrorCounts;
use crate::samplers::estimate::Estimator;
use crate::samplers::gpu::live::LiveGpuEnergy;
use crate::samplers::gpu::{GpuEnergySampler, GpuPowerSampler};
use crate::samplers::rapl::RaplSampler;
use crate::samplers::spawn::{SamplerThread, Spawner};
use crate::sensors::Sensors;
use eco2ai_metrics::MetricsState;

/// Energy and steps seen so far, for live.json and the end-of-run summary.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// `gpu0` -> J from the energy counter.
    pub gpu_j: BTreeMap<String, f64>,
    /// Per GPU index: the counter plus the power since its last reading, for live.json.
    gpu_live: BTreeMap<u32, LiveGpuEnergy>,
    /// `package-0 (powercap)` -> J.
    pub cpu_j: BTreeMap<String, f64>,
    /// `package-0` -> J, for the CPU total.
    cpu_domain_j: BTreeMap<String, f64>,
    steps: u64,
    last_step: Option<u64>,
    samples: u64,
}

impl Totals {
    fn see(&mut self, rows: &Rows) {
        match rows {
            Rows::Gpu(v) => {
                for r in v {
                    let live = self.gpu_live.entry(r.gpu).or_default();
                    if let Some(p) = r.power_mw {
                        live.power(r.ts_ns, p);
                    }
                    if let Some(e) = r.energy_mj {
                        self.gpu_j.insert(format!("gpu{}", r.gpu), e as f64 / 1e3);
                        live.counter(r.ts_ns, e as f64 / 1e3);
                    }
                }
            }
            Rows::Cpu(v) => {
                for r in v {
                    if let Some(e) = r.energy_uj {
                        self.cpu_j
                            .insert(format!("{} ({})", r.domain, r.source), e as f64 / 1e6);
                        self.cpu_domain_j
                            .insert(r.domain.to_string(), e as f64 / 1e6);
                    }
                }
            }
            Rows::Steps(v) => {
                self.steps += v.len() as u64;
                // Saturating: counts come from other processes (the pairing bounds
                // them, but a sum must not be what panics the writer).
                // live.json's samples are training samples (samples/kWh): an eval
                // step's (phase set, not train) are left out.
                self.samples = v
                    .iter()
                    .filter(|r| {
                        r.phase
                            .as_deref()
                            .is_none_or(|p| p == eco2ai_trace::phase::TRAIN)
                    })
                    .filter_map(|r| r.samples)
                    .fold(self.samples, u64::saturating_add);
                self.last_step = v.last().map(|r| r.step).or(self.last_step);
            }
            _ => {}
        }
    }

    fn live(&self, start_ns: i64, done: bool) -> Live {
        let ts_ns = monotonic_ns();
        // Between counter reads (30 s) the power samples carry each GPU on.
        let gpu_j: BTreeMap<String, f64> = self
            .gpu_live
            .iter()
            .filter_map(|(g, l)| Some((format!("gpu{g}"), l.live_j()?)))
            .collect();
        // `+ 0.0`: an empty float sum is -0.0, which readers would print as "-0".
        let gpu = gpu_j.values().sum::<f64>() + 0.0;
        let cpu = cpu_total_j(self.cpu_domain_j.iter().map(|(d, j)| (d.as_str(), *j))) + 0.0;
        Live {
            ts_ns,
            elapsed_s: (ts_ns - start_ns) as f64 / 1e9,
            gpu_energy_j: gpu,
            cpu_energy_j: cpu,
            energy_j: gpu + cpu,
            devices_j: gpu_j
                .iter()
                .chain(self.cpu_j.iter())
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            steps: self.steps,
            last_step: self.last_step,
            samples: self.samples,
            done,
        }
    }
}

/// Where steps and per-process CPU time come from.
pub enum StepSource {
    /// uprobes and sched_switch.
    Ebpf(Box<EbpfProbe>),
    /// The marker library's datagrams; per-process CPU from /proc.
    Socket(MarkerSocket),
}

/// Facts the main thread learns during the run, copied into meta.json at each flush.
#[derive(Debug, Clone, Default)]
pub struct MetaPatch {
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    /// The ranks of the processes that sent steps (a job's recording).
    pub ranks: Option<crate::job::RankBook>,
}

pub struct Recorder {
    stop: Arc<AtomicBool>,
    pub patch: Arc<Mutex<MetaPatch>>,
    /// The recorded command's pid, 0 until it is known.
    pub job_pid: Arc<AtomicU32>,
    samplers: Vec<SamplerThread>,
    writer: JoinHandle<Result<Finished, TraceError>>,
}

pub struct Finished {
    pub meta: Meta,
    pub totals: Totals,
    pub dir: PathBuf,
}

/// Rows a sampler thread gathers before it hands them to the writer.
const BATCH_NS: i64 = 100_000_000;

impl Recorder {
    pub fn start(
        writer: TraceWriter,
        sensors: Sensors,
        steps: StepSource,
        metrics: Option<Arc<Mutex<MetricsState>>>,
        iv: Intervals,
        errors: ErrorCounts,
    ) -> std::io::Result<Recorder> {
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let job_pid = Arc::new(AtomicU32::new(0));
        let (tx, rx) = sync_channel::<Rows>(256);
        let mut spawner = Spawner::new(tx, dropped.clone(), stop.clone(), BATCH_NS);
        // With eBPF the process tree's CPU comes from sched_switch: /proc never sees a pid.
        let tree_pid = match steps {
            StepSource::Socket(_) => job_pid.clone(),
            StepSource::Ebpf(_) => Arc::new(AtomicU32::new(0)),
        };
        add_samplers(&mut spawner, sensors, &iv, &errors, tree_pid)?;
        add_step_source(&mut spawner, steps, &iv, &errors)?;
        let samplers = spawner.finish()?;

        let patch = Arc::new(Mutex::new(MetaPatch::default()));
        let shared = Shared {
            errors,
            dropped,
            stop: stop.clone(),
            patch: patch.clone(),
            metrics,
        };
        let writer = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || write_loop(writer, rx, iv, shared))?;
        Ok(Recorder {
            stop,
            patch,
            job_pid,
            samplers,
            writer,
        })
    }

    /// Each sampler thread's name and what it polls, fastest first.
    pub fn sampler_threads(&self) -> Vec<(&str, &[&'static str])> {
        self.samplers
            .iter()
            .map(|t| (t.name.as_str(), t.runs.as_slice()))
            .collect()
    }

    /// Stops the samplers, lets the writer drain the channel, and closes the run.
    pub fn stop(self) -> Result<Finished, TraceError> {
        self.stop.store(true, Ordering::Relaxed);
        // A sampler sleeping towards a long period's deadline wakes now.
        for t in &self.samplers {
            t.handle.thread().unpark();
        }
        for t in self.samplers {
            let _ = t.handle.join();
        }
        match self.writer.join() {
            Ok(r) => r,
            Err(_) => Err(TraceError::Meta {
                path: PathBuf::from("writer"),
                reason: "writer thread panicked".into(),
            }),
        }
    }
}

/// The periodic samplers of the sensors found. RAPL, NVML power and the CPU poll share
/// the tick thread, one wake-up per tick; the energy counter (~4 ms of CPU per GPU on
/// Hopper) has a thread of its own so that it never delays a tick.
fn add_samplers(
    spawner: &mut Spawner,
    sensors: Sensors,
    iv: &Intervals,
    errors: &ErrorCounts,
    tree_pid: Arc<AtomicU32>,
) -> std::io::Result<()> {
    if !sensors.rapl.is_empty() {
        let rapl = RaplSampler::new(sensors.rapl, iv.rapl_ns, errors.clone());
        spawner.tick(Box::new(rapl));
    }
    if let Some(backend) = sensors
        .gpu_backend
        .clone()
        .filter(|_| !sensors.gpus.is_empty())
    {
        let ids: Vec<u32> = sensors.gpus.iter().map(|g| g.index).collect();
        // Utilisation, memory, temperature and clock every ~100 ms.
        let aux_every = (100_000_000 / iv.nvml_ns.max(1)).max(1) as u32;
        let power = GpuPowerSampler::new(
            backend.clone(),
            ids.clone(),
            iv.nvml_ns,
            aux_every,
            errors.clone(),
        );
        spawner.tick(Box::new(power));
        let energy = GpuEnergySampler::new(backend, ids, iv.nvml_energy_ns, errors.clone());
        spawner.own_thread(Box::new(energy))?;
    }
    let estimate = sensors
        .estimate_tdp_w
        .map(|w| Estimator::new(w, sensors.cpu_sockets));
    let cpu = CpuSampler::new(iv.cpu_ns, estimate, tree_pid, iv.procs_ns);
    spawner.tick(Box::new(cpu));
    Ok(())
}

/// The steps' source: the marker socket, or the eBPF ring (which also brings the
/// per-process CPU time, polled every `procs_ns`).
fn add_step_source(
    spawner: &mut Spawner,
    steps: StepSource,
    iv: &Intervals,
    errors: &ErrorCounts,
) -> std::io::Result<()> {
    let e = errors.clone();
    match steps {
        StepSource::Socket(sock) => {
            spawner.source("markers", move |b, stop| markers::listen(sock, b, stop, e))
        }
        StepSource::Ebpf(probe) => {
            let procs_ns = iv.procs_ns;
            spawner.source("ebpf", move |b, stop| {
                ebpf::read_loop(*probe, b, stop, e, procs_ns)
            })
        }
    }
}

/// What the writer thread shares with the samplers and the main thread.
struct Shared {
    errors: ErrorCounts,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    patch: Arc<Mutex<MetaPatch>>,
    metrics: Option<Arc<Mutex<MetricsState>>>,
}

impl Shared {
    fn apply(&self, meta: &mut Meta) {
        meta.sensor_errors = self.errors.snapshot();
        meta.dropped_rows = self.dropped.load(Ordering::Relaxed);
        (meta.probe_cpu_ns, meta.probe_peak_rss_kb) = crate::host::self_usage();
        if let Ok(p) = self.patch.lock() {
            meta.pid = p.pid.or(meta.pid);
            meta.exit_code = p.exit_code.or(meta.exit_code);
            if let (Some(job), Some(book)) = (meta.job.as_mut(), &p.ranks) {
                job.ranks = book.ranks();
            }
        }
    }
}

fn write_loop(
    mut w: TraceWriter,
    rx: Receiver<Rows>,
    iv: Intervals,
    shared: Shared,
) -> Result<Finished, TraceError> {
    let mut totals = Totals::default();
    let mut next_flush = monotonic_ns() + iv.flush_ns;
    let mut next_segment = monotonic_ns() + iv.segment_ns;
    loop {
        let wait = (next_flush - monotonic_ns()).max(0) as u64;
        match rx.recv_timeout(Duration::from_nanos(wait)) {
            Ok(rows) => {
                totals.see(&rows);
                if let Some(Ok(mut m)) = shared.metrics.as_ref().map(|m| m.lock()) {
                    m.observe(&rows);
                }
                w.append(rows);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = monotonic_ns();
        if now >= next_flush {
            next_flush = now + iv.flush_ns;
            shared.apply(w.meta_mut());
            let r = if now >= next_segment {
                next_segment = now + iv.segment_ns;
                w.rotate()
            } else {
                w.flush()
            }
            .and_then(|()| totals.live(w.meta().start_ns, false).write(w.dir()));
            if let Err(e) = r {
                // Nothing more can be stored: stop the samplers rather than drop rows silently.
                shared.stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    // Compact first so that the recorder's peak memory includes the last compaction.
    w.rotate()?;
    shared.apply(w.meta_mut());
    let dir = w.dir().to_path_buf();
    let start_ns = w.meta().start_ns;
    let meta = w.finish(monotonic_ns())?;
    totals.live(start_ns, true).write(&dir)?;
    Ok(Finished { meta, totals, dir })
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
