//! Loading the eBPF programs (built by build.rs from `../probe-ebpf`) and reading what
//! they record: marker events from the ring buffer, and per-process on-CPU time of the
//! recorded tree from `sched_switch`.

use std::collections::HashMap as StdHashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::programs::uprobe::UProbeScope;
use aya::programs::{TracePoint, UProbe};
use eco2ai_marker::wire::Event;
use eco2ai_probe_common::{
    CONFIG_COUNTERS, CONFIG_FORK_CHILD_PID_OFFSET, COUNTER_READ_FAILED, COUNTER_RINGBUF_FULL,
    MARKER_EVENT_LEN, MAX_STEP_COUNTERS, RING_EVENT_LEN,
};
use eco2ai_trace::{CpuRow, ProcRow};
use thiserror::Error;

use crate::batcher::Batcher;
use crate::clock::{monotonic_ns, sleep_until};
use crate::markers::{Counts, Pairing};
use crate::samplers::errors::ErrorCounts;

#[derive(Debug, Error)]
pub enum EbpfError {
    #[error(
        "this probe was built without its eBPF programs (bpf-linker was missing at build time)"
    )]
    NotBuilt,
    #[error("loading eBPF programs needs root (or CAP_BPF and CAP_PERFMON)")]
    NotRoot,
    #[error("{what}: {reason}")]
    Load { what: String, reason: String },
}

fn load_err(what: impl Into<String>, e: impl std::fmt::Display) -> EbpfError {
    EbpfError::Load {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// The object built by build.rs, when it was built.
fn embedded() -> Option<&'static [u8]> {
    #[cfg(eco2ai_ebpf)]
    {
        Some(aya::include_bytes_aligned!(concat!(
            env!("OUT_DIR"),
            "/eco2ai-probe-ebpf"
        )))
    }
    #[cfg(not(eco2ai_ebpf))]
    {
        None
    }
}

pub fn is_built() -> bool {
    embedded().is_some()
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// The byte offset of `child_pid` in sched_process_fork's record, from tracefs.
fn fork_child_offset() -> Result<u32, EbpfError> {
    ensure_tracefs()?;
    let format =
        std::fs::read_to_string(Path::new(TRACEFS).join("events/sched/sched_process_fork/format"))
            .map_err(|e| load_err("reading sched_process_fork's format", e))?;
    fork_child_pid_offset(&format)
        .ok_or_else(|| load_err("sched_process_fork format", "no child_pid field"))
}

/// Attaches the `--uprobe` counters, the marker uprobes on `lib` (sync and phases
/// optional, for older libraries) and the scheduler tracepoints.
fn attach_all(
    ebpf: &mut Ebpf,
    lib: &Path,
    step_counters: &[(String, String)],
) -> Result<(), EbpfError> {
    for (slot, (target, symbol)) in step_counters.iter().enumerate() {
        attach_uprobe(ebpf, &format!("count{slot}"), symbol, Path::new(target))?;
    }
    attach_uprobe(ebpf, "step_begin", "eco2ai_step_begin", lib)?;
    attach_uprobe(ebpf, "step_end", "eco2ai_step_end", lib)?;
    attach_uprobe(ebpf, "eval_bits", "eco2ai_eval_bits", lib)?;
    attach_uprobe(ebpf, "step_log_bits", "eco2ai_step_log_bits", lib)?;
    // An older marker library has no eco2ai_step_sync: its steps lack sync_ns only.
    if let Err(e) = attach_uprobe(ebpf, "step_sync", "eco2ai_step_sync", lib) {
        eprintln!("eco2ai-probe: {e}; steps will have no sync_ns");
    }
    // Likewise a library from before phases: every step is then `train`.
    if let Err(e) = attach_uprobe(ebpf, "phase_bits", "eco2ai_phase_bits", lib) {
        eprintln!("eco2ai-probe: {e}; no phases will be recorded");
    }
    attach_tracepoint(ebpf, "sched_switch", "sched")?;
    attach_tracepoint(ebpf, "sched_process_fork", "sched")?;
    Ok(())
}

/// Tracepoints need tracefs, which these machines do not mount at boot.
fn ensure_tracefs() -> Result<(), EbpfError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    let (src, target, fstype) = (c"nodev", c"/sys/kernel/tracing", c"tracefs");
    // SAFETY: NUL-terminated strings and no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(load_err(
            "mounting tracefs",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Loads the object without the kernel's BTF: the programs use no CO-RE relocations.
/// aya 0.14's `EbpfLoader::new` parses /sys/kernel/btf/vmlinux whatever it is later
/// told (several MB of peak memory, for nothing), so the loader is made on a short-lived
/// thread in a mount namespace of its own where that file is hidden; where that cannot
/// be set up (no CAP_SYS_ADMIN) it loads as before.
fn load_object(bytes: &[u8]) -> Result<Ebpf, aya::EbpfError> {
    let hidden = std::thread::scope(|s| {
        s.spawn(|| hide_kernel_btf().then(|| aya::EbpfLoader::new().btf(None).load(bytes)))
            .join()
            .ok()
            .flatten()
    });
    match hidden {
        Some(r) => r,
        None => aya::EbpfLoader::new().btf(None).load(bytes),
    }
}

/// On the calling thread only: a private copy of the mount namespace with an empty
/// directory over /sys/kernel/btf. True when done.
fn hide_kernel_btf() -> bool {
    let btf = c"/sys/kernel/btf";
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return true;
    }
    // SAFETY: unshare affects only this thread's view of mounts (CLONE_NEWNS implies
    // CLONE_FS: the thread stops sharing cwd/root with the others, which it never changes).
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return false;
    }
    // SAFETY: NUL-terminated strings, null data; makes this namespace's mounts private so
    // that the next mount does not propagate back to the host.
    let private = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    // SAFETY: as above; an empty tmpfs over the BTF directory, in this namespace only.
    private == 0
        && unsafe {
            libc::mount(
                c"none".as_ptr(),
                btf.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_RDONLY,
                std::ptr::null(),
            )
        } == 0
}

/// Offset of `child_pid` in the sched_process_fork record, from its format file.
pub fn fork_child_pid_offset(format: &str) -> Option<u32> {
    let line = format.lines().find(|l| l.contains(" child_pid;"))?;
    let off = line.split("offset:").nth(1)?.split(';').next()?;
    off.trim().parse().ok()
}

/// The processes the programs follow; the main thread adds the recorded command.
pub struct Tracked(HashMap<MapData, u32, u8>);

impl Tracked {
    pub fn add(&mut self, pid: u32) -> Result<(), EbpfError> {
        self.0
            .insert(pid, 1, 0)
            .map_err(|e| load_err("adding the command to the tracked set", e))
    }
}

/// Everything the reader thread needs; owns the programs and their links.
pub struct EbpfProbe {
    _ebpf: Ebpf,
    ring: RingBuf<MapData>,
    oncpu: PerCpuHashMap<MapData, u32, u64>,
    comm: HashMap<MapData, u32, [u8; 16]>,
    counters: PerCpuArray<MapData, u64>,
    /// How many functions are counted per step.
    step_counters: usize,
    /// Where the pairing notes each stepping process's rank (a job's recording).
    pub ranks: Option<crate::job::RankBook>,
}

fn take<T: TryFrom<aya::maps::Map>>(ebpf: &mut Ebpf, name: &str) -> Result<T, EbpfError>
where
    T::Error: std::fmt::Display,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| load_err(name, "map missing from the object"))?;
    T::try_from(map).map_err(|e| load_err(name, e))
}

/// The program `prog` of the object, as its kind `T`.
fn program<'a, T>(ebpf: &'a mut Ebpf, prog: &str) -> Result<&'a mut T, EbpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(prog)
        .ok_or_else(|| load_err(prog, "program missing"))?
        .try_into()
        .map_err(|e| load_err(prog, e))
}

fn attach_uprobe(ebpf: &mut Ebpf, prog: &str, symbol: &str, lib: &Path) -> Result<(), EbpfError> {
    let p: &mut UProbe = program(ebpf, prog)?;
    p.load()
        .map_err(|e| load_err(format!("loading {prog}"), e))?;
    p.attach(symbol, lib, UProbeScope::AllProcesses)
        .map_err(|e| load_err(format!("attaching {prog} to {}:{symbol}", lib.display()), e))?;
    Ok(())
}

fn attach_tracepoint(ebpf: &mut Ebpf, prog: &str, category: &str) -> Result<(), EbpfError> {
    let p: &mut TracePoint = program(ebpf, prog)?;
    p.load()
        .map_err(|e| load_err(format!("loading {prog}"), e))?;
    p.attach(category, prog)
        .map_err(|e| load_err(format!("attaching {category}:{prog}"), e))?;
    Ok(())
}

impl EbpfProbe {
    /// Loads and attaches everything: uprobes on the marker library at `lib` (its real
    /// path: a uprobe fires only for the file a process maps), sched_switch and
    /// sched_process_fork.
    /// `step_counters`: (library, symbol) of each function whose calls are counted per
    /// step (`record --uprobe`).
    pub fn load(
        lib: &Path,
        step_counters: &[(String, String)],
    ) -> Result<(EbpfProbe, Tracked), EbpfError> {
        if step_counters.len() > MAX_STEP_COUNTERS {
            return Err(load_err(
                "--uprobe",
                format!("at most {MAX_STEP_COUNTERS} functions can be counted"),
            ));
        }
        let bytes = embedded().ok_or(EbpfError::NotBuilt)?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(EbpfError::NotRoot);
        }
        let lib = lib
            .canonicalize()
            .map_err(|e| load_err(format!("marker library {}", lib.display()), e))?;
        let child_off = fork_child_offset()?;

        let mut ebpf = load_object(bytes).map_err(|e| load_err("loading the eBPF object", e))?;
        let mut config: Array<MapData, u32> = take(&mut ebpf, "CONFIG")?;
        for (slot, value) in [
            (CONFIG_FORK_CHILD_PID_OFFSET, child_off),
            (CONFIG_COUNTERS, step_counters.len() as u32),
        ] {
            config
                .set(slot, value, 0)
                .map_err(|e| load_err("CONFIG", e))?;
        }
        attach_all(&mut ebpf, &lib, step_counters)?;
        let tracked = Tracked(take(&mut ebpf, "TRACKED")?);
        let probe = EbpfProbe {
            ring: take(&mut ebpf, "EVENTS")?,
            oncpu: take(&mut ebpf, "ONCPU_NS")?,
            comm: take(&mut ebpf, "COMM")?,
            counters: take(&mut ebpf, "COUNTERS")?,
            step_counters: step_counters.len(),
            ranks: None,
            _ebpf: ebpf,
        };
        Ok((probe, tracked))
    }

    /// For the marker benchmark: only the empty uprobe program, attached to `symbols`
    /// of `lib`, to measure what the bare uprobe trap costs on the same functions.
    #[cfg(feature = "bench-hooks")]
    pub fn attach_empty(lib: &Path, symbols: &[&str]) -> Result<Ebpf, EbpfError> {
        let bytes = embedded().ok_or(EbpfError::NotBuilt)?;
        let lib = lib
            .canonicalize()
            .map_err(|e| load_err(format!("{}", lib.display()), e))?;
        let mut ebpf = load_object(bytes).map_err(|e| load_err("loading the eBPF object", e))?;
        let p: &mut UProbe = program(&mut ebpf, "empty")?;
        p.load().map_err(|e| load_err("loading empty", e))?;
        for symbol in symbols {
            p.attach(*symbol, &lib, UProbeScope::AllProcesses)
                .map_err(|e| load_err(format!("attaching empty to {symbol}"), e))?;
        }
        Ok(ebpf)
    }

    fn drain(&mut self, pairing: &mut Pairing, b: &mut Batcher, errors: &ErrorCounts) {
        let with_counts = self.step_counters > 0;
        while let Some(item) = self.ring.next() {
            let ev = (item.len() == RING_EVENT_LEN)
                .then(|| Event::decode_native(&item[..MARKER_EVENT_LEN]))
                .flatten();
            match ev {
                Some(ev) => {
                    let mut counts: Counts = [0; 4];
                    for (i, c) in counts.iter_mut().enumerate() {
                        let at = MARKER_EVENT_LEN + 8 * i;
                        let mut w = [0u8; 8];
                        w.copy_from_slice(&item[at..at + 8]);
                        *c = u64::from_ne_bytes(w);
                    }
                    pairing.handle(ev, with_counts.then_some(counts), b, errors)
                }
                None => errors.add_n("ebpf:malformed_event", 1),
            }
        }
    }

    fn counter(&self, slot: u32) -> u64 {
        self.counters
            .get(&slot, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }
}

/// Per-process on-CPU time deltas from the ONCPU_NS map.
struct OnCpu {
    last: StdHashMap<u32, u64>,
    comm: StdHashMap<u32, String>,
    last_ts: Option<i64>,
    cpus: u32,
}

impl OnCpu {
    fn poll(&mut self, probe: &EbpfProbe, ts_ns: i64, b: &mut Batcher) {
        let mut sum_ns = 0u64;
        for (pid, values) in probe.oncpu.iter().flatten() {
            let total: u64 = values.iter().sum();
            let delta = total.saturating_sub(self.last.insert(pid, total).unwrap_or(0));
            let comm = self.comm.entry(pid).or_insert_with(|| {
                let raw = probe.comm.get(&pid, 0).unwrap_or_default();
                let end = raw.iter().position(|c| *c == 0).unwrap_or(raw.len());
                String::from_utf8_lossy(&raw[..end]).into_owned()
            });
            sum_ns += delta;
            b.procs.push(ProcRow {
                ts_ns,
                pid,
                comm: comm.clone(),
                oncpu_ns: delta,
                source: "ebpf",
            });
        }
        if let Some(prev) = self.last_ts.replace(ts_ns) {
            let util = 100.0 * sum_ns as f32 / ((ts_ns - prev).max(1) as f32 * self.cpus as f32);
            b.cpu.push(CpuRow {
                ts_ns,
                domain: "job".into(),
                source: "ebpf",
                energy_uj: None,
                energy_changed: None,
                util_pct: Some(util.min(100.0)),
            });
        }
    }
}

/// The reader thread: drains the ring every 20 ms and the on-CPU map every `procs_ns`,
/// then once more after `stop`.
pub fn read_loop(
    mut probe: EbpfProbe,
    mut b: Batcher,
    stop: Arc<AtomicBool>,
    errors: ErrorCounts,
    procs_ns: i64,
) {
    let mut pairing = Pairing::new("uprobe", probe.step_counters).with_ranks(probe.ranks.clone());
    let mut oncpu = OnCpu {
        last: StdHashMap::new(),
        comm: StdHashMap::new(),
        last_ts: None,
        cpus: crate::samplers::procfs::cpu_count(),
    };
    let mut seen = [0u64; 2];
    let mut next_procs = monotonic_ns();
    let mut next = monotonic_ns();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let now = monotonic_ns();
        probe.drain(&mut pairing, &mut b, &errors);
        if now >= next_procs || stopping {
            next_procs = now + procs_ns;
            oncpu.poll(&probe, now, &mut b);
            for (i, (slot, key)) in [
                (COUNTER_RINGBUF_FULL, "ebpf:lost_events"),
                (COUNTER_READ_FAILED, "ebpf:read_failed"),
            ]
            .into_iter()
            .enumerate()
            {
                let total = probe.counter(slot);
                if total > seen[i] {
                    errors.add_n(key, total - seen[i]);
                    seen[i] = total;
                }
            }
        }
        pairing.release(now, stopping, &mut b);
        b.maybe_send(now, stopping);
        if stopping {
            break;
        }
        next += 20_000_000;
        sleep_until(next.max(monotonic_ns()));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_child_pid_offset() {
        let new = "\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        let old = "\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(super::fork_child_pid_offset(new), Some(20));
        assert_eq!(super::fork_child_pid_offset(old), Some(44));
        assert_eq!(super::fork_child_pid_offset("nothing"), None);
    }
}
