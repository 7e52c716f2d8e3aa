//! Step markers for hf-eco2ai: `libeco2ai_marker.so`, C ABI (see
//! `include/eco2ai_marker.h`). The probe's uprobes attach to these symbols; where eBPF
//! cannot load, the probe sets `ECO2AI_MARKER_SOCKET` and each call also sends a
//! 64-byte event over that Unix datagram socket.
//!
//! Floats never travel in registers the uprobes read: `eco2ai_step_end` takes a
//! pointer to a `#[repr(C)]` struct and `eco2ai_eval` hands its loss on as bits to
//! `eco2ai_eval_bits`, which is the symbol the eval uprobe attaches to.

pub mod wire;

use std::os::unix::net::UnixDatagram;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use wire::{Eco2aiStep, Event, EventKind};

/// Environment variable naming the probe's socket: a path (the probe binds one in a
/// private directory and checks each sender); `@name` (abstract namespace) is still
/// accepted for older probes.
pub const ENV_SOCKET: &str = "ECO2AI_MARKER_SOCKET";

/// The probe's socket, looked up from the environment at the first call after load or
/// after `eco2ai_marker_reconnect` (a process may record several runs in turn).
static SOCKET: RwLock<Option<UnixDatagram>> = RwLock::new(None);
static LOOKED_UP: AtomicBool = AtomicBool::new(false);
/// Whether SOCKET holds one: the fast path of every call outside a socket recording.
static HAS_SOCKET: AtomicBool = AtomicBool::new(false);
static LOST: AtomicU64 = AtomicU64::new(0);

fn connect(spec: &str) -> Option<UnixDatagram> {
    let sock = UnixDatagram::unbound().ok()?;
    let ok = match spec.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
            sock.connect_addr(&addr).is_ok()
        }
        None => sock.connect(spec).is_ok(),
    };
    ok.then_some(sock)
}

/// Whether events go to a socket; looks the socket up first if needed.
fn has_socket() -> bool {
    if !LOOKED_UP.load(Ordering::Acquire) {
        let sock = std::env::var(ENV_SOCKET).ok().and_then(|s| connect(&s));
        HAS_SOCKET.store(sock.is_some(), Ordering::Release);
        if let Ok(mut slot) = SOCKET.write() {
            *slot = sock;
        }
        LOOKED_UP.store(true, Ordering::Release);
    }
    HAS_SOCKET.load(Ordering::Acquire)
}

fn send(ev: Event) {
    let Ok(slot) = SOCKET.read() else { return };
    if let Some(sock) = slot.as_ref() {
        // Blocking send: in the fallback path losing a step is worse than waiting for
        // the probe to drain its queue.
        if sock.send(&ev.encode()).is_err() {
            LOST.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Looks `ECO2AI_MARKER_SOCKET` up again at the next call: for a process that starts
/// a new recording after loading the library.
#[unsafe(no_mangle)]
pub extern "C" fn eco2ai_marker_reconnect() {
    LOOKED_UP.store(false, Ordering::Release);
}

fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn event(kind: EventKind, step: u64) -> Event {
    Event {
        kind,
        // SAFETY: getpid has no preconditions.
        pid: unsafe { libc::getpid() } as u32,
        ts_ns: monotonic_ns(),
        step,
        ..Event::default()
    }
}

/// Marks the start of optimizer step `step`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn eco2ai_step_begin(step: u64) {
    if has_socket() {
        send(event(EventKind::Begin, step));
    }
}

/// Marks the end of a step. A null pointer is ignored.
///
/// # Safety
/// `s` is null or points to a valid `struct eco2ai_step`.
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn eco2ai_step_end(s: *const Eco2aiStep) {
    if s.is_null() || !has_socket() {
        return;
    }
    // SAFETY: the caller passes a valid, aligned eco2ai_step (checked non-null above).
    let st = unsafe { *s };
    let mut ev = event(EventKind::End, st.step);
    ev.samples = st.samples;
    ev.tokens = st.tokens;
    ev.loss = st.loss;
    ev.lr = st.lr;
    ev.epoch = st.epoch;
    send(ev);
}

/// Marks an evaluation after step `step`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn eco2ai_eval(step: u64, eval_loss: f64) {
    eco2ai_eval_bits(step, eval_loss.to_bits());
}

/// `eco2ai_eval` with the loss as integer bits: the symbol the eval uprobe reads.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn eco2ai_eval_bits(step: u64, eval_loss_bits: u64) {
    if has_socket() {
        let mut ev = event(EventKind::Eval, step);
        ev.loss = f64::from_bits(eval_loss_bits);
        send(ev);
    }
}

/// The loss and learning rate of step `step` as the training loop logged them, which
/// may come after `eco2ai_step_end` (Hugging Face Trainer logs after the step's end).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn eco2ai_step_log(step: u64, loss: f64, lr: f64) {
    eco2ai_step_log_bits(step, loss.to_bits(), lr.to_bits());
}

/// `eco2ai_step_log` with floats as bits: the symbol the uprobe reads.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn eco2ai_step_log_bits(step: u64, loss_bits: u64, lr_bits: u64) {
    if has_socket() {
        let mut ev = event(EventKind::Log, step);
        ev.loss = f64::from_bits(loss_bits);
        ev.lr = f64::from_bits(lr_bits);
        send(ev);
    }
}

/// Marks that this rank's own compute of its current step ended and it now waits on
/// the step's collective (gradient all-reduce): the probe keeps the last such mark
/// inside the step as its `sync_ns`, from which the analyzer tells stragglers apart.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn eco2ai_step_sync() {
    if has_socket() {
        send(event(EventKind::Sync, 0));
    }
}

/// Events this process could not hand to the probe.
#[unsafe(no_mangle)]
pub extern "C" fn eco2ai_marker_lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}
