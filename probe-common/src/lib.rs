//! `#[repr(C)]` events and map names shared by the eBPF programs (`probe-ebpf`) and the
//! probe. `no_std`: it is compiled for the BPF target too.
#![no_std]

/// One marker call as the uprobes see it. Same 64-byte layout as the marker library's
/// socket event (`eco2ai_marker::wire`), so one decoder serves both paths.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MarkerEvent {
    /// 1 = step begin, 2 = step end, 3 = eval, 4 = log (loss/lr after the end),
    /// 5 = sync (the rank's own compute of the step ended; it waits on the collective),
    /// 6 = phase begin, 7 = phase end (the name in the 32 bytes at `offsets::PHASE_NAME`).
    pub kind: u32,
    /// Thread-group id (the process) of the caller.
    pub pid: u32,
    /// `bpf_ktime_get_ns`: CLOCK_MONOTONIC.
    pub ts_ns: u64,
    pub step: u64,
    pub samples: u64,
    pub tokens: u64,
    /// f64 bits: the step's loss, or the eval loss.
    pub loss_bits: u64,
    pub lr_bits: u64,
    pub epoch_bits: u64,
}

pub const MARKER_EVENT_LEN: usize = 64;
const _: () = assert!(core::mem::size_of::<MarkerEvent>() == MARKER_EVENT_LEN);

/// Byte offsets of the marker event's fields: the one statement of the layout that the
/// eBPF programs, the ring decoder and the socket wire format (`eco2ai_marker::wire`,
/// little-endian) all follow. Checked against the struct below.
pub mod offsets {
    pub const KIND: usize = 0;
    pub const PID: usize = 4;
    pub const TS_NS: usize = 8;
    pub const STEP: usize = 16;
    pub const SAMPLES: usize = 24;
    pub const TOKENS: usize = 32;
    pub const LOSS: usize = 40;
    pub const LR: usize = 48;
    pub const EPOCH: usize = 56;
    /// A phase event's name (`eco2ai_trace::phase::pack`: NUL-padded) takes the 32 bytes
    /// of samples, tokens, loss and lr: a phase event has none of those.
    pub const PHASE_NAME: usize = 24;
    pub const PHASE_NAME_LEN: usize = 32;
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(MarkerEvent, kind) == offsets::KIND);
    assert!(offset_of!(MarkerEvent, pid) == offsets::PID);
    assert!(offset_of!(MarkerEvent, ts_ns) == offsets::TS_NS);
    assert!(offset_of!(MarkerEvent, step) == offsets::STEP);
    assert!(offset_of!(MarkerEvent, samples) == offsets::SAMPLES);
    assert!(offset_of!(MarkerEvent, tokens) == offsets::TOKENS);
    assert!(offset_of!(MarkerEvent, loss_bits) == offsets::LOSS);
    assert!(offset_of!(MarkerEvent, lr_bits) == offsets::LR);
    assert!(offset_of!(MarkerEvent, epoch_bits) == offsets::EPOCH);
    // The name is exactly the four words samples, tokens, loss_bits, lr_bits, which the
    // phase uprobe fills from its four register arguments.
    assert!(offset_of!(MarkerEvent, samples) == offsets::PHASE_NAME);
    assert!(offset_of!(MarkerEvent, lr_bits) + 8 == offsets::PHASE_NAME + offsets::PHASE_NAME_LEN);
    assert!(offsets::PHASE_NAME + offsets::PHASE_NAME_LEN == offsets::EPOCH);
};

/// Functions counted per step (`record --uprobe LIB:SYMBOL`, at most this many).
pub const MAX_STEP_COUNTERS: usize = 4;

/// What the ring buffer carries: the marker event, then the calling process's
/// cumulative call counts of each counted function at that moment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RingEvent {
    pub ev: MarkerEvent,
    pub counts: [u64; MAX_STEP_COUNTERS],
}

pub const RING_EVENT_LEN: usize = MARKER_EVENT_LEN + 8 * MAX_STEP_COUNTERS;
const _: () = assert!(core::mem::size_of::<RingEvent>() == RING_EVENT_LEN);

/// Key of the COUNTS map: process and counter slot.
pub const fn count_key(tgid: u32, slot: u32) -> u64 {
    ((tgid as u64) << 8) | slot as u64
}

/// `struct eco2ai_step` of the marker header, read from user memory by the uprobe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepArgs {
    pub step: u64,
    pub samples: u64,
    pub tokens: u64,
    pub loss_bits: u64,
    pub lr_bits: u64,
    pub epoch_bits: u64,
}

/// `struct eco2ai_step` of marker/include/eco2ai_marker.h, field by field (a test
/// compiles the header and compares; the marker library's `Eco2aiStep` and Python's
/// ctypes struct are checked against these too).
pub const STEP_ARGS_FIELDS: [(&str, usize); 6] = [
    ("step", 0),
    ("samples", 8),
    ("tokens", 16),
    ("loss", 24),
    ("lr", 32),
    ("epoch", 40),
];
pub const STEP_ARGS_LEN: usize = 48;

const _: () = {
    use core::mem::offset_of;
    assert!(core::mem::size_of::<StepArgs>() == STEP_ARGS_LEN);
    assert!(offset_of!(StepArgs, step) == STEP_ARGS_FIELDS[0].1);
    assert!(offset_of!(StepArgs, samples) == STEP_ARGS_FIELDS[1].1);
    assert!(offset_of!(StepArgs, tokens) == STEP_ARGS_FIELDS[2].1);
    assert!(offset_of!(StepArgs, loss_bits) == STEP_ARGS_FIELDS[3].1);
    assert!(offset_of!(StepArgs, lr_bits) == STEP_ARGS_FIELDS[4].1);
    assert!(offset_of!(StepArgs, epoch_bits) == STEP_ARGS_FIELDS[5].1);
};

pub const KIND_BEGIN: u32 = 1;
pub const KIND_END: u32 = 2;
pub const KIND_EVAL: u32 = 3;
pub const KIND_LOG: u32 = 4;
pub const KIND_SYNC: u32 = 5;
/// `eco2ai_phase_begin(name)`: a span of a named phase (`eco2ai_trace::phase`) begins.
pub const KIND_PHASE_BEGIN: u32 = 6;
/// `eco2ai_phase_end(name)`: the innermost open span of that name ends.
pub const KIND_PHASE_END: u32 = 7;

/// Slots of the `CONFIG` array map, written by the probe before attaching.
pub const CONFIG_FORK_CHILD_PID_OFFSET: u32 = 0;
/// How many counter slots are attached (0 = no counting).
pub const CONFIG_COUNTERS: u32 = 1;
pub const CONFIG_LEN: u32 = 4;

/// Slots of the per-CPU `COUNTERS` array.
pub const COUNTER_RINGBUF_FULL: u32 = 0;
pub const COUNTER_READ_FAILED: u32 = 1;
pub const COUNTERS_LEN: u32 = 4;

/// Maximum processes tracked in the recorded tree.
pub const MAX_TRACKED: u32 = 16_384;
/// Ring buffer size: 2 MiB holds ~20,000 events (96 bytes + an 8-byte header), 200 ms
/// at 100,000 markers/s against a drain every 20 ms. Its pages are mapped twice into
/// the probe and count in its resident memory, so bigger is not free.
pub const RING_BYTES: u32 = 2 << 20;
