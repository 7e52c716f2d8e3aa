//! hf-eco2ai eBPF programs: uprobes on the step markers into a ring buffer, and
//! per-process on-CPU time of the recorded tree from `sched_switch`.
#![no_std]
#![no_main]
// Atomic add on a map value: the bpf target has no 64-bit atomics in core::sync.
#![feature(core_intrinsics)]
#![allow(internal_features)]

use aya_ebpf::bindings::BPF_RB_NO_WAKEUP;
use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user};
use aya_ebpf::macros::{map, tracepoint, uprobe};
use aya_ebpf::maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf};
use aya_ebpf::programs::{ProbeContext, TracePointContext};
use core::intrinsics::AtomicOrdering;
use eco2ai_probe_common::{
    CONFIG_COUNTERS, CONFIG_FORK_CHILD_PID_OFFSET, CONFIG_LEN, COUNTER_READ_FAILED, COUNTER_RINGBUF_FULL, COUNTERS_LEN,
    KIND_BEGIN, KIND_END, KIND_EVAL, KIND_LOG, KIND_PHASE_BEGIN, KIND_PHASE_END, KIND_SYNC, MAX_STEP_COUNTERS, MAX_TRACKED, MarkerEvent, RING_BYTES, RingEvent, StepArgs,
    count_key,
};

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Processes (tgids) of the recorded tree; the probe adds the command, forks add the rest.
#[map]
static TRACKED: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TRACKED, 0);

/// Cumulative on-CPU ns per tracked tgid, per CPU (the probe sums the CPUs), so that
/// no atomic is needed when threads of one process run on several CPUs.
#[map]
static ONCPU_NS: PerCpuHashMap<u32, u64> = PerCpuHashMap::with_max_entries(MAX_TRACKED, 0);

/// Command name of each tgid seen on CPU, kept for processes that exit before the probe
/// reads /proc.
#[map]
static COMM: HashMap<u32, [u8; 16]> = HashMap::with_max_entries(MAX_TRACKED, 0);

/// Per CPU: when the running task was switched in.
#[map]
static SWITCHED_IN_NS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Calls of each counted function per process (key: `count_key(tgid, slot)`), added
/// to atomically since threads of one process call from several CPUs at once.
#[map]
static COUNTS: HashMap<u64, u64> = HashMap::with_max_entries(MAX_TRACKED * MAX_STEP_COUNTERS as u32, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

#[map]
static CONFIG: Array<u32> = Array::with_max_entries(CONFIG_LEN, 0);

#[inline(always)]
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

#[inline(always)]
fn tracked(tgid: u32) -> bool {
    // SAFETY: the value is only tested for presence, never kept.
    unsafe { TRACKED.get(&tgid).is_some() }
}

#[inline(always)]
fn count(slot: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot: no other program writes it concurrently.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn config(slot: u32) -> u32 {
    CONFIG.get(slot).copied().unwrap_or(0)
}

/// The process's total calls of counted function `slot`.
#[inline(always)]
fn total_count(tgid: u32, slot: u32) -> u64 {
    // SAFETY: the value is copied out at once.
    unsafe { COUNTS.get(&count_key(tgid, slot)).copied().unwrap_or(0) }
}

#[inline(always)]
fn emit(ev: &MarkerEvent) {
    let mut rec = RingEvent { ev: *ev, counts: [0; MAX_STEP_COUNTERS] };
    let n = config(CONFIG_COUNTERS);
    for slot in 0..MAX_STEP_COUNTERS as u32 {
        if slot < n {
            rec.counts[slot as usize] = total_count(ev.pid, slot);
        }
    }
    // No wake-up: the probe drains the ring on its own schedule, which keeps the cost
    // of a marker call near that of the bare uprobe trap.
    if EVENTS.output::<RingEvent>(&rec, BPF_RB_NO_WAKEUP as u64).is_err() {
        count(COUNTER_RINGBUF_FULL);
    }
}

#[inline(always)]
fn count_call(slot: u32) -> u32 {
    let tgid = current_tgid();
    if !tracked(tgid) {
        return 0;
    }
    let key = count_key(tgid, slot);
    match COUNTS.get_ptr_mut(&key) {
        // SAFETY: a live map value; the add is atomic (BPF_ATOMIC add).
        Some(p) => unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, 1);
        },
        None => {
            // BPF_NOEXIST: if another CPU created it first, add to that one instead.
            if COUNTS.insert(&key, &1u64, 1).is_err() {
                if let Some(p) = COUNTS.get_ptr_mut(&key) {
                    // SAFETY: as above.
                    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, 1) };
                }
            }
        }
    }
    0
}

/// `record --uprobe LIB:SYMBOL`: one program per counter slot.
#[uprobe]
pub fn count0(_ctx: ProbeContext) -> u32 {
    count_call(0)
}

#[uprobe]
pub fn count1(_ctx: ProbeContext) -> u32 {
    count_call(1)
}

#[uprobe]
pub fn count2(_ctx: ProbeContext) -> u32 {
    count_call(2)
}

#[uprobe]
pub fn count3(_ctx: ProbeContext) -> u32 {
    count_call(3)
}

#[inline(always)]
fn base_event(kind: u32) -> Option<MarkerEvent> {
    let tgid = current_tgid();
    if !tracked(tgid) {
        return None;
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    Some(MarkerEvent { kind, pid: tgid, ts_ns, ..MarkerEvent::default() })
}

#[uprobe]
pub fn step_begin(ctx: ProbeContext) -> u32 {
    if let Some(mut ev) = base_event(KIND_BEGIN) {
        ev.step = ctx.arg::<u64>(0).unwrap_or(0);
        emit(&ev);
    }
    0
}

#[uprobe]
pub fn step_end(ctx: ProbeContext) -> u32 {
    let Some(mut ev) = base_event(KIND_END) else { return 0 };
    let Some(ptr) = ctx.arg::<*const StepArgs>(0) else { return 0 };
    // SAFETY: reads user memory through the helper, which fails cleanly on a bad pointer.
    match unsafe { bpf_probe_read_user(ptr) } {
        Ok(s) => {
            ev.step = s.step;
            ev.samples = s.samples;
            ev.tokens = s.tokens;
            ev.loss_bits = s.loss_bits;
            ev.lr_bits = s.lr_bits;
            ev.epoch_bits = s.epoch_bits;
            emit(&ev);
        }
        Err(_) => count(COUNTER_READ_FAILED),
    }
    0
}

#[uprobe]
pub fn eval_bits(ctx: ProbeContext) -> u32 {
    if let Some(mut ev) = base_event(KIND_EVAL) {
        ev.step = ctx.arg::<u64>(0).unwrap_or(0);
        ev.loss_bits = ctx.arg::<u64>(1).unwrap_or(0);
        emit(&ev);
    }
    0
}

#[uprobe]
pub fn step_log_bits(ctx: ProbeContext) -> u32 {
    if let Some(mut ev) = base_event(KIND_LOG) {
        ev.step = ctx.arg::<u64>(0).unwrap_or(0);
        ev.loss_bits = ctx.arg::<u64>(1).unwrap_or(0);
        ev.lr_bits = ctx.arg::<u64>(2).unwrap_or(0);
        emit(&ev);
    }
    0
}

/// `eco2ai_step_sync()`: no arguments, the pairing gives it the pid's open step.
#[uprobe]
pub fn step_sync(_ctx: ProbeContext) -> u32 {
    if let Some(ev) = base_event(KIND_SYNC) {
        emit(&ev);
    }
    0
}

/// `eco2ai_phase_bits(kind, w0, w1, w2, w3)`: the packed phase name arrives as four
/// register words, stored in order over samples..lr (`offsets::PHASE_NAME`), so no
/// string is read from user memory. Kinds other than 6 and 7 are dropped here; the
/// probe checks the name.
#[uprobe]
pub fn phase_bits(ctx: ProbeContext) -> u32 {
    let kind = ctx.arg::<u64>(0).unwrap_or(0);
    if kind != KIND_PHASE_BEGIN as u64 && kind != KIND_PHASE_END as u64 {
        return 0;
    }
    if let Some(mut ev) = base_event(kind as u32) {
        ev.samples = ctx.arg::<u64>(1).unwrap_or(0);
        ev.tokens = ctx.arg::<u64>(2).unwrap_or(0);
        ev.loss_bits = ctx.arg::<u64>(3).unwrap_or(0);
        ev.lr_bits = ctx.arg::<u64>(4).unwrap_or(0);
        emit(&ev);
    }
    0
}

/// Does nothing: the benchmark's measure of the bare uprobe trap.
#[uprobe]
pub fn empty(_ctx: ProbeContext) -> u32 {
    0
}

/// Charges the interval since the last switch on this CPU to the task leaving it
/// (the current task), when it belongs to the recorded tree.
#[tracepoint]
pub fn sched_switch(_ctx: TracePointContext) -> u32 {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(slot) = SWITCHED_IN_NS.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's own slot; programs on one CPU do not run concurrently here.
    let since = unsafe { core::ptr::replace(slot, now) };
    let tgid = current_tgid();
    if since == 0 || !tracked(tgid) {
        return 0;
    }
    let delta = now.saturating_sub(since);
    match ONCPU_NS.get_ptr_mut(&tgid) {
        // SAFETY: this CPU's own copy of the value.
        Some(p) => unsafe { *p += delta },
        None => {
            let _ = ONCPU_NS.insert(&tgid, &delta, 0);
            if let Ok(comm) = bpf_get_current_comm() {
                let _ = COMM.insert(&tgid, &comm, 0);
            }
        }
    }
    0
}

/// Adds a new process forked by a tracked one (its offset of `child_pid` comes from
/// the tracepoint's format file, through CONFIG).
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    if !tracked(current_tgid()) {
        return 0;
    }
    let Some(off) = CONFIG.get(CONFIG_FORK_CHILD_PID_OFFSET) else { return 0 };
    // SAFETY: reads tracepoint data at an offset taken from its own format file.
    if let Ok(child) = unsafe { ctx.read_at::<u32>(*off as usize) } {
        let _ = TRACKED.insert(&child, &1u8, 0);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
