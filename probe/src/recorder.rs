//! The recording pipeline: sampler threads -> one bounded channel -> the writer
//! thread, which owns the trace and keeps meta.json current.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use eco2ai_trace::{CpuRow, Live, Meta, Rows, TraceError, TraceWriter, cpu_total_j};

use crate::batcher::Batcher;
use crate::clock::{monotonic_ns, sleep_until_or_stop};
use crate::ebpf::{self, EbpfProbe};
use crate::markers::{self, MarkerSocket};
use crate::samplers::errors::ErrorCounts;
use crate::samplers::estimate::Estimator;
use crate::samplers::gpu::live::LiveGpuEnergy;
use crate::samplers::gpu::{GpuEnergySampler, GpuPowerSampler};
use crate::samplers::procfs::{MachineUtil, TreeSampler};
use crate::samplers::rapl::RaplSampler;
use crate::samplers::tick::{Task, run_tasks};
use crate::sensors::Sensors;
use eco2ai_metrics::MetricsState;

#[derive(Debug, Clone)]
pub struct Intervals {
    pub nvml_ns: i64,
    pub nvml_energy_ns: i64,
    pub rapl_ns: i64,
    pub cpu_ns: i64,
    pub procs_ns: i64,
    pub flush_ns: i64,
    pub segment_ns: i64,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            nvml_ns: 20_000_000,
            nvml_energy_ns: 30_000_000_000,
            rapl_ns: 1_000_000,
            cpu_ns: 100_000_000,
            procs_ns: 1_000_000_000,
            flush_ns: 1_000_000_000,
            segment_ns: 60_000_000_000,
        }
    }
}

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
                self.samples = v
                    .iter()
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
    samplers: Vec<JoinHandle<()>>,
    writer: JoinHandle<Result<Finished, TraceError>>,
}

pub struct Finished {
    pub meta: Meta,
    pub totals: Totals,
    pub dir: PathBuf,
}

/// Runs `tick` every `interval_ns` on absolute deadlines until `stop`; a late tick is
/// not made up for (the next deadline moves past now). One last tick at the stop closes
/// the interval the run ended in, so a run shorter than one interval still has energy.
fn run_every(interval_ns: i64, stop: &AtomicBool, mut tick: impl FnMut(i64)) {
    let mut next = monotonic_ns();
    while !stop.load(Ordering::Relaxed) {
        let now = monotonic_ns();
        tick(now);
        next += interval_ns;
        if next < now {
            next = now + interval_ns;
        }
        sleep_until_or_stop(next, stop);
    }
    tick(monotonic_ns());
}

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
        let batch_ns = 100_000_000;
        let mut samplers = Vec::new();
        let mut spawn = |name: &str, f: Box<dyn FnOnce(Batcher) + Send>| -> std::io::Result<()> {
            let b = Batcher::new(tx.clone(), dropped.clone(), batch_ns);
            samplers.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || f(b))?,
            );
            Ok(())
        };

        // RAPL, NVML power and the CPU poll share one thread and one wake-up per tick
        // (fastest first); the energy counter (~4 ms of CPU per GPU on Hopper) has a
        // thread of its own so that it never delays a tick.
        let mut tasks: Vec<Task> = Vec::new();
        if !sensors.rapl.is_empty() {
            let mut rapl = RaplSampler::new(sensors.rapl, errors.clone());
            tasks.push(Task::new(
                iv.rapl_ns,
                Box::new(move |t, b| rapl.poll(t, &mut b.cpu)),
            ));
        }
        if let Some(backend) = sensors
            .gpu_backend
            .clone()
            .filter(|_| !sensors.gpus.is_empty())
        {
            let ids: Vec<u32> = sensors.gpus.iter().map(|g| g.index).collect();
            let aux_every = (100_000_000 / iv.nvml_ns.max(1)).max(1) as u32;
            let mut power =
                GpuPowerSampler::new(backend.clone(), ids.clone(), aux_every, errors.clone());
            tasks.push(Task::new(
                iv.nvml_ns,
                Box::new(move |t, b| power.poll(t, &mut b.gpu)),
            ));
            let mut energy = GpuEnergySampler::new(backend, ids, errors.clone());
            let (s, n) = (stop.clone(), iv.nvml_energy_ns);
            spawn(
                "nvml-energy",
                Box::new(move |mut b| {
                    run_every(n, &s, |t| {
                        energy.poll(t, &mut b.gpu);
                        b.maybe_send(t, false)
                    })
                }),
            )?;
        }
        let tree_from_procfs = !matches!(steps, StepSource::Ebpf(_));
        let (s, e) = (stop.clone(), errors.clone());
        match steps {
            StepSource::Socket(sock) => {
                spawn("markers", Box::new(move |b| markers::listen(sock, b, s, e)))?
            }
            StepSource::Ebpf(probe) => {
                let procs_ns = iv.procs_ns;
                spawn(
                    "ebpf",
                    Box::new(move |b| ebpf::read_loop(*probe, b, s, e, procs_ns)),
                )?
            }
        }
        let estimate = sensors
            .estimate_tdp_w
            .map(|w| Estimator::new(w, sensors.cpu_sockets));
        let tree_pid = if tree_from_procfs {
            job_pid.clone()
        } else {
            Arc::new(AtomicU32::new(0))
        };
        let mut cpu = CpuLoop::new(estimate, tree_pid, iv.procs_ns);
        tasks.push(Task::new(iv.cpu_ns, Box::new(move |t, b| cpu.tick(t, b))));
        tasks.sort_by_key(|t| t.every_ns);
        let s = stop.clone();
        spawn(
            "sampler",
            Box::new(move |mut b| run_tasks(tasks, &s, &mut b)),
        )?;
        drop(tx);

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

    /// Stops the samplers, lets the writer drain the channel, and closes the run.
    pub fn stop(self) -> Result<Finished, TraceError> {
        self.stop.store(true, Ordering::Relaxed);
        // A sampler sleeping towards a long period's deadline wakes now.
        for t in &self.samplers {
            t.thread().unpark();
        }
        for t in self.samplers {
            let _ = t.join();
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

/// Machine utilisation every tick (and the CPU estimate when there is no RAPL); the
/// job's process tree every `procs_ns`.
struct CpuLoop {
    machine: MachineUtil,
    estimate: Option<Estimator>,
    job_pid: Arc<AtomicU32>,
    tree: Option<TreeSampler>,
    procs_ns: i64,
    last_ts: Option<i64>,
    last_tree_ts: i64,
}

impl CpuLoop {
    fn new(estimate: Option<Estimator>, job_pid: Arc<AtomicU32>, procs_ns: i64) -> CpuLoop {
        let machine = MachineUtil::new(std::path::Path::new("/proc"));
        CpuLoop {
            machine,
            estimate,
            job_pid,
            tree: None,
            procs_ns,
            last_ts: None,
            last_tree_ts: 0,
        }
    }

    fn tick(&mut self, ts_ns: i64, b: &mut Batcher) {
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
                    .get_or_insert_with(|| TreeSampler::new(std::path::Path::new("/proc"), pid));
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
