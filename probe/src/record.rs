//! `eco2ai-probe record` and `info`: wiring config, sensors, recorder and command.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use eco2ai_trace::{Meta, Sampling, SensorStatus, TraceWriter};

use crate::clock::{mono_to_unix_ns, monotonic_ns, unix_ns};
use crate::config::{RecordConfig, Workload};
use crate::ebpf::{EbpfProbe, Tracked};
use crate::host::{self, Host};
use crate::job::RankBook;
use crate::markers::{self, MarkerSocket};
use crate::recorder::{Finished, Recorder, StepSource};
use crate::runner::{self, SignalForwarder};
use crate::samplers::errors::ErrorCounts;
use crate::sensors::{self, Sensors};
use eco2ai_metrics::{MetricsServer, MetricsState, RunInfo, TextSink, render};
use std::sync::{Arc, Mutex};

/// Environment variables the recorded command receives.
pub const ENV_RUN_DIR: &str = "ECO2AI_RUN_DIR";
pub const ENV_PROBE_PID: &str = "ECO2AI_PROBE_PID";

/// `YYYYMMDD-HHMMSS` (UTC) of a Unix time in seconds.
pub fn utc_stamp(unix_s: i64) -> String {
    let secs = unix_s.rem_euclid(86_400);
    let (y, m, d) = eco2ai_trace::civil::from_days(unix_s.div_euclid(86_400));
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn build_meta(
    cfg: &RecordConfig,
    host: &Host,
    status: Vec<SensorStatus>,
    gpus: Vec<eco2ai_trace::GpuInfo>,
    tdp: Option<f64>,
) -> Meta {
    let run_id = cfg.run_id.clone().unwrap_or_else(|| {
        // The project is free text: keep only what is safe in one path component.
        let project = eco2ai_trace::run_id::sanitize_run_id_part(
            cfg.labels.project_name.as_deref().unwrap_or("run"),
            64,
            "run",
        );
        format!(
            "{project}-{}-{}",
            utc_stamp(unix_ns() / 1_000_000_000),
            std::process::id()
        )
    });
    let iv = &cfg.intervals;
    let mut meta = Meta::new(run_id);
    meta.host = host.hostname.clone();
    meta.kernel = host.kernel.clone();
    meta.cpu_model = host.cpu_model.clone();
    meta.cpu_sockets = host.cpu_sockets;
    meta.cpu_threads = host.cpu_threads;
    meta.cpu_tdp_w = tdp;
    meta.gpus = gpus;
    meta.sensors = status;
    meta.labels = cfg.labels.clone();
    meta.job = cfg.job.clone();
    meta.sampling = Sampling {
        nvml_interval_ns: iv.nvml_ns as u64,
        nvml_energy_interval_ns: iv.nvml_energy_ns as u64,
        rapl_interval_ns: iv.rapl_ns as u64,
        cpu_interval_ns: iv.cpu_ns as u64,
        procs_interval_ns: iv.procs_ns as u64,
        flush_interval_ns: iv.flush_ns as u64,
        segment_interval_ns: iv.segment_ns as u64,
    };
    meta.mono_to_unix_ns = mono_to_unix_ns();
    meta.start_ns = monotonic_ns();
    meta.step_counters = cfg
        .step_counters
        .iter()
        .map(|(l, s)| format!("{l}:{s}"))
        .collect();
    meta.command = match &cfg.workload {
        Workload::Command(c) => c.clone(),
        Workload::Demo(_) => vec!["<demo>".into()],
        Workload::Duration(_) => Vec::new(),
        Workload::Pid(pid) => vec![format!("<pid {pid}>")],
    };
    meta
}

/// The command line actually run for a workload (the demo is this binary).
fn argv(w: &Workload) -> Result<Option<Vec<String>>> {
    Ok(match w {
        Workload::Command(c) => Some(c.clone()),
        Workload::Demo(d) => {
            let exe = std::env::current_exe().context("locating this executable for the demo")?;
            Some(vec![
                exe.display().to_string(),
                "demo-workload".into(),
                "--duration".into(),
                format!("{}ms", d.as_millis()),
            ])
        }
        Workload::Duration(_) | Workload::Pid(_) => None,
    })
}

/// The result of `record`: the run and the recorded command's exit code.
pub struct Outcome {
    pub finished: Finished,
    pub exit_code: i32,
}

pub fn record(cfg: RecordConfig) -> Result<Outcome> {
    // Marker events stamped before this moment are refused as forged.
    markers::mark_probe_start();
    let argv = preflight(&cfg)?;
    let host = host::detect();
    let sensors = sensors::discover(&cfg.sensors, &host);
    sensors.check_requested_gpus(cfg.sensors.gpus.as_deref())?;
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("cannot create output directory {}", cfg.out.display()))?;
    let (steps, marker_env, marker_status, mut tracked) = marker_setup(&cfg)?;
    if let (Workload::Pid(pid), Some(t)) = (&cfg.workload, tracked.as_mut()) {
        track_tree(*pid, t);
    }
    let (writer, dir) = create_run(&cfg, &host, &sensors, marker_status, &marker_env)?;
    let signals = SignalForwarder::install()?;
    let errors = ErrorCounts::default();
    let (metrics, _server) = start_metrics(&cfg, writer.meta(), &host, errors.clone());
    let _latency = start_latency(&cfg, &metrics, &errors)?;
    let ranks = crate::job::steps_ranks(&steps);
    let recorder = Recorder::start(
        writer,
        sensors,
        steps,
        metrics,
        cfg.intervals.clone(),
        errors,
    )
    .context("starting sampler threads")?;
    if let Ok(mut p) = recorder.patch.lock() {
        p.ranks = ranks;
    }
    let launch = Launch {
        argv,
        dir: &dir,
        marker_env,
        tracked,
    };
    let exit_code = match run_workload(&cfg.workload, launch, &recorder, &signals) {
        Ok(code) => code,
        Err(e) => {
            let _ = recorder.stop();
            return Err(e);
        }
    };
    if let Ok(mut p) = recorder.patch.lock() {
        p.exit_code = Some(exit_code);
    }
    let finished = recorder
        .stop()
        .with_context(|| format!("writing the trace in {}", dir.display()))?;
    Ok(Outcome {
        finished,
        exit_code,
    })
}

/// The command line to run, resolved, or the process to join, alive: checked before
/// any side effect.
fn preflight(cfg: &RecordConfig) -> Result<Option<Vec<String>>> {
    let argv = argv(&cfg.workload)?;
    if let Some(a) = &argv {
        runner::resolve(&a[0])?;
    }
    if let Workload::Pid(pid) = cfg.workload
        && !alive(pid)
    {
        anyhow::bail!("no process with pid {pid} to join");
    }
    Ok(argv)
}

/// The run directory and its writer, meta.json naming the marker library and socket
/// the command is told about.
fn create_run(
    cfg: &RecordConfig,
    host: &Host,
    sensors: &Sensors,
    marker_status: Vec<SensorStatus>,
    marker_env: &[(String, String)],
) -> Result<(TraceWriter, PathBuf)> {
    let mut status = sensors.status.clone();
    status.extend(marker_status);
    let mut meta = build_meta(
        cfg,
        host,
        status,
        sensors.gpus.clone(),
        sensors.estimate_tdp_w,
    );
    for (k, v) in marker_env {
        match k.as_str() {
            markers::ENV_MARKER_LIB => meta.marker_lib = Some(v.clone()),
            eco2ai_marker::ENV_SOCKET => meta.marker_socket = Some(v.clone()),
            _ => {}
        }
    }
    // Checked in the config already; again here, where it is joined to a path.
    eco2ai_trace::validate_run_id(&meta.run_id)?;
    let dir = crate::job::run_dir(&cfg.out, &meta)?;
    let writer = TraceWriter::create(&dir, meta)
        .with_context(|| format!("cannot create run directory {}", dir.display()))?;
    Ok((writer, dir))
}

/// The network latency thread, when there are live metrics and targets to measure.
fn start_latency(
    cfg: &RecordConfig,
    metrics: &Option<Arc<Mutex<MetricsState>>>,
    errors: &ErrorCounts,
) -> Result<Option<crate::latency::Latency>> {
    Ok(match (metrics, &cfg.metrics) {
        (Some(state), Some(m)) if !m.latency_targets.is_empty() => Some(
            crate::latency::Latency::start(
                m.latency_targets.clone(),
                state.clone(),
                errors.clone(),
            )
            .context("starting the latency thread")?,
        ),
        _ => None,
    })
}

/// What running the recorded command needs beyond the recorder.
struct Launch<'a> {
    argv: Option<Vec<String>>,
    dir: &'a std::path::Path,
    marker_env: Vec<(String, String)>,
    tracked: Option<Tracked>,
}

/// Runs the command, joins the process or waits out the duration; the exit code.
fn run_workload(
    workload: &Workload,
    launch: Launch<'_>,
    recorder: &Recorder,
    signals: &SignalForwarder,
) -> Result<i32> {
    Ok(match (launch.argv, workload) {
        (Some(a), _) => run_command(
            &a,
            launch.dir,
            launch.marker_env,
            launch.tracked,
            recorder,
            signals,
        )?,
        (None, Workload::Pid(pid)) => {
            join_process(*pid, recorder, signals);
            0
        }
        (None, Workload::Duration(d)) => {
            signals.wait(*d);
            0
        }
        (None, _) => 0,
    })
}

type Metrics = (Option<Arc<Mutex<MetricsState>>>, Option<MetricsServer>);

/// Serves the live metrics; a busy address is a warning, not a failed recording.
fn start_metrics(cfg: &RecordConfig, meta: &Meta, host: &Host, errors: ErrorCounts) -> Metrics {
    let Some(m) = &cfg.metrics else {
        return (None, None);
    };
    let info = RunInfo {
        intensity_g_per_kwh: m.intensity_g_per_kwh,
        carbon_budget_kg: m.carbon_budget_kg,
        price_per_kwh: m.price_per_kwh,
        gpu_hour_usd: m.gpu_hour_usd,
        pue: m.pue,
        stale_after_ns: Some(m.stale_after_ns),
        ..RunInfo::from_meta(meta, &host.hostname)
    };
    let state = Arc::new(Mutex::new(MetricsState::new(info)));
    let (st, e2) = (state.clone(), errors.clone());
    let body: eco2ai_metrics::server::Body = Arc::new(move || {
        let now = crate::clock::unix_ns() as f64 / 1e9;
        let mut out = TextSink::default();
        if let Ok(s) = st.lock() {
            render(&s, &e2.snapshot(), now, &mut out);
        }
        out.0
    });
    let on_error: eco2ai_metrics::server::OnError = Arc::new(move |kind| errors.add_n(kind, 1));
    let web = match m
        .web_config_file
        .as_deref()
        .map(eco2ai_metrics::WebConfig::load)
    {
        None => None,
        Some(Ok(w)) => Some(Arc::new(w)),
        Some(Err(e)) => {
            // Checked at validation: the file changed since. Never serve it open instead.
            eprintln!("eco2ai-probe: live metrics not served: {e}");
            return (None, None);
        }
    };
    let scheme = if web.as_ref().is_some_and(|w| w.tls.is_some()) {
        "https"
    } else {
        "http"
    };
    match MetricsServer::start_with(&m.addr, body, on_error, web) {
        Ok(server) => {
            eprintln!(
                "eco2ai-probe: live metrics on {scheme}://{}/metrics",
                server.addr
            );
            (Some(state), Some(server))
        }
        Err(e) => {
            eprintln!("eco2ai-probe: live metrics not served: {}: {e}", m.addr);
            (None, None)
        }
    }
}

/// Where steps come from (eBPF uprobes, else the marker socket), the environment that
/// tells the command about it, a status line, and the tracked-process set for eBPF.
type MarkerSetup = (
    StepSource,
    Vec<(String, String)>,
    Vec<SensorStatus>,
    Option<Tracked>,
);

fn marker_setup(cfg: &RecordConfig) -> Result<MarkerSetup> {
    let mut env = Vec::new();
    let lib = markers::find_marker_lib(cfg.marker_lib.as_deref());
    if let Some(lib) = &lib {
        env.push((
            markers::ENV_MARKER_LIB.to_string(),
            lib.display().to_string(),
        ));
    }
    let lib_note = lib.as_ref().map_or_else(
        || format!("{} not found beside the probe", markers::LIB_NAME),
        |l| l.display().to_string(),
    );
    let why_not = match (&lib, cfg.no_ebpf) {
        (_, true) => "--no-ebpf".to_string(),
        (None, false) => format!("no marker library to attach to ({lib_note})"),
        (Some(lib), false) => match EbpfProbe::load(lib, &cfg.step_counters) {
            Ok((mut probe, tracked)) => {
                probe.ranks = cfg.job.as_ref().map(|_| RankBook::default());
                let note = format!("eBPF uprobes on {lib_note}; per-process CPU from sched_switch");
                eprintln!("eco2ai-probe: steps through eBPF uprobes on {lib_note}");
                return Ok((
                    StepSource::Ebpf(Box::new(probe)),
                    env,
                    markers_status(note),
                    Some(tracked),
                ));
            }
            Err(e) => e.to_string(),
        },
    };
    socket_setup(cfg, env, &lib_note, &why_not)
}

/// The marker socket, when eBPF is not used (`why_not`).
fn socket_setup(
    cfg: &RecordConfig,
    mut env: Vec<(String, String)>,
    lib_note: &str,
    why_not: &str,
) -> Result<MarkerSetup> {
    if !cfg.step_counters.is_empty() {
        eprintln!("eco2ai-probe: --uprobe counters need eBPF: not counted");
    }
    let joined_uid = match cfg.workload {
        Workload::Pid(pid) => process_uid(pid),
        _ => None,
    };
    let mut sock = MarkerSocket::bind(joined_uid).context("binding the marker socket")?;
    sock.ranks = cfg.job.as_ref().map(|_| RankBook::default());
    eprintln!(
        "eco2ai-probe: eBPF not used ({why_not}); steps through the marker socket {}",
        sock.env_value
    );
    env.push((
        eco2ai_marker::ENV_SOCKET.to_string(),
        sock.env_value.clone(),
    ));
    let note = format!(
        "Unix socket {} (eBPF not used: {why_not}); library {lib_note}; per-process CPU from /proc",
        sock.env_value
    );
    Ok((StepSource::Socket(sock), env, markers_status(note), None))
}

/// meta.json's line for the step source.
fn markers_status(note: String) -> Vec<SensorStatus> {
    vec![SensorStatus {
        kind: "markers".into(),
        name: "steps".into(),
        used: true,
        note,
    }]
}

fn run_command(
    argv: &[String],
    dir: &std::path::Path,
    marker_env: Vec<(String, String)>,
    tracked: Option<Tracked>,
    rec: &Recorder,
    sig: &SignalForwarder,
) -> Result<i32> {
    let mut env = vec![
        (ENV_RUN_DIR.to_string(), dir.display().to_string()),
        (ENV_PROBE_PID.to_string(), std::process::id().to_string()),
    ];
    env.extend(marker_env);
    let mut child = runner::spawn(argv, &env)?;
    sig.child_pid.store(child.id() as i32, Ordering::SeqCst);
    if let Some(mut t) = tracked {
        // Forks of the command are added by the kernel side from here on.
        if let Err(e) = t.add(child.id()) {
            eprintln!("eco2ai-probe: {e}; its steps and CPU time will be missing");
        }
    }
    rec.job_pid.store(child.id(), Ordering::SeqCst);
    if let Ok(mut p) = rec.patch.lock() {
        p.pid = Some(child.id());
    }
    let status = child.wait().context("waiting for the recorded command")?;
    Ok(runner::exit_code(status))
}

/// The real uid of a process: the one the kernel reports as a socket sender's.
fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The process exists and has not exited (a zombie waiting for its parent has).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Tracks a running process and its descendants: children forked before the probe
/// came are not seen by sched_process_fork (torchrun's ranks, for one). Done before
/// meta.json exists, since a joiner starts marking steps as soon as it sees that file.
fn track_tree(pid: u32, tracked: &mut Tracked) {
    for p in crate::samplers::procfs::process_tree(std::path::Path::new("/proc"), pid) {
        if let Err(e) = tracked.add(p) {
            eprintln!("eco2ai-probe: {e}; steps and CPU time of pid {p} will be missing");
        }
    }
}

/// Records a process that is already running until it exits or the probe is stopped.
fn join_process(pid: u32, rec: &Recorder, sig: &SignalForwarder) {
    rec.job_pid.store(pid, Ordering::SeqCst);
    if let Ok(mut p) = rec.patch.lock() {
        p.pid = Some(pid);
    }
    while alive(pid) && !sig.wait(Duration::from_millis(100)) {}
}

pub fn default_out() -> PathBuf {
    PathBuf::from("runs")
}
