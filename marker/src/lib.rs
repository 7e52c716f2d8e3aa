//! Step markers for hf-eco2ai: `libeco2ai_marker.so`, C ABI (see
//! `include/eco2ai_marker.h`). The probe's uprobes attach to these symbols; where eBPF
//! cannot load, the probe sets `ECO2AI_MARKER_SOCKET` and each call also sends a
//! 64-byte event over that Unix datagram socket.
//!
//! Floats never travel in registers the uprobes read: `eco2ai_step_end` takes a
//! pointer to a `#[repr(C)]` struct and `eco2ai_eval` hands its loss on as bits to
//! `eco2ai_eval_bits`, which is the symbol the eval uprobe attaches to.
//!
//! Strings never travel either: `eco2ai_phase_begin/end` clean the name (the rule of
//! `eco2ai_trace::phase::clean_name`), pack it into 32 bytes and hand it on as four
//! integer words to `eco2ai_phase_bits`, so the phase uprobe reads registers only.

pub mod wire;

use std::os::unix::net::UnixDatagram;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use wire::{Eco2aiStep, Event, EventKind, PHASE_NAME_LEN};

use eco2ai_probe_common::{KIND_PHASE_BEGIN, KIND_PHASE_END};

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

/// Whether a byte may stay in a phase name (`eco2ai_trace::phase::valid_name`).
fn phase_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

/// `raw` cleaned to a phase name and packed, NUL-padded: other bytes become `_`, cut
/// at 32 bytes (`eco2ai_trace::phase::clean_name` + `pack`, which this crate does not
/// link; a probe test checks the two agree byte by byte). None when `raw` is empty.
pub fn clean_phase_name(raw: &[u8]) -> Option<[u8; PHASE_NAME_LEN]> {
    if raw.is_empty() {
        return None;
    }
    let mut out = [0u8; PHASE_NAME_LEN];
    for (o, &b) in out.iter_mut().zip(raw) {
        *o = if phase_name_byte(b) { b } else { b'_' };
    }
    Some(out)
}

/// The first bytes of a NUL-terminated string, up to its NUL or `PHASE_NAME_LEN`,
/// cleaned and packed. Never reads past either bound. None for NULL or "".
///
/// # Safety
/// `name` is null or points to a NUL-terminated string.
unsafe fn read_phase_name(name: *const libc::c_char) -> Option<[u8; PHASE_NAME_LEN]> {
    if name.is_null() {
        return None;
    }
    let mut raw = [0u8; PHASE_NAME_LEN];
    let mut n = 0;
    while n < PHASE_NAME_LEN {
        // SAFETY: the string is NUL-terminated and no NUL came before index n, so
        // byte n is still inside it.
        let b = unsafe { *name.add(n) } as u8;
        if b == 0 {
            break;
        }
        raw[n] = b;
        n += 1;
    }
    clean_phase_name(&raw[..n])
}

/// The packed name as the four native-endian words `eco2ai_phase_bits` takes.
fn phase_words(name: &[u8; PHASE_NAME_LEN]) -> [u64; 4] {
    let mut words = [0u64; 4];
    for (w, chunk) in words.iter_mut().zip(name.chunks_exact(8)) {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        *w = u64::from_ne_bytes(a);
    }
    words
}

/// # Safety
/// `name` is null or points to a NUL-terminated string.
unsafe fn phase(kind: u32, name: *const libc::c_char) {
    // SAFETY: passed on from the caller's contract.
    match unsafe { read_phase_name(name) } {
        Some(packed) => {
            let [w0, w1, w2, w3] = phase_words(&packed);
            eco2ai_phase_bits(u64::from(kind), w0, w1, w2, w3);
        }
        // A NULL or empty name marks nothing; it is counted with the events this
        // process could not hand on, the one count the caller can read.
        None => {
            LOST.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Marks that this process enters the named phase (`eval`, `checkpoint`, or the
/// caller's own). The name is cleaned to `[A-Za-z0-9_.:-]`, at most 32 bytes; NULL or
/// "" is ignored and counted in `eco2ai_marker_lost`. Spans nest.
///
/// # Safety
/// `name` is null or points to a NUL-terminated string.
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn eco2ai_phase_begin(name: *const libc::c_char) {
    // SAFETY: passed on from the caller's contract.
    unsafe { phase(KIND_PHASE_BEGIN, name) }
}

/// Marks that the innermost open span of the named phase ends (same name rule).
///
/// # Safety
/// `name` is null or points to a NUL-terminated string.
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn eco2ai_phase_end(name: *const libc::c_char) {
    // SAFETY: passed on from the caller's contract.
    unsafe { phase(KIND_PHASE_END, name) }
}

/// `eco2ai_phase_begin/end` with the kind (6 or 7) and the packed name as four
/// native-endian words: the symbol the phase uprobe reads. Another kind is ignored and
/// counted lost.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn eco2ai_phase_bits(kind: u64, w0: u64, w1: u64, w2: u64, w3: u64) {
    if !has_socket() {
        return;
    }
    let kind = match kind {
        k if k == u64::from(KIND_PHASE_BEGIN) => EventKind::PhaseBegin,
        k if k == u64::from(KIND_PHASE_END) => EventKind::PhaseEnd,
        _ => {
            LOST.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut name = [0u8; PHASE_NAME_LEN];
    for (chunk, w) in name.chunks_exact_mut(8).zip([w0, w1, w2, w3]) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    let mut ev = event(kind, 0);
    ev.set_phase_name(&name);
    send(ev);
}

/// Events this process could not hand to the probe.
#[unsafe(no_mangle)]
pub extern "C" fn eco2ai_marker_lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(sock: &UnixDatagram) -> Option<Event> {
        let mut buf = [0u8; 128];
        let n = sock.recv(&mut buf).ok()?;
        Event::decode(&buf[..n])
    }

    #[test]
    fn phase_marks_send_the_cleaned_name_and_count_what_they_cannot_send() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        // SAFETY: no other test in this binary reads or writes the environment.
        unsafe { std::env::set_var(ENV_SOCKET, &path) };
        eco2ai_marker_reconnect();

        // SAFETY: NUL-terminated literals.
        unsafe { eco2ai_phase_begin(c"eval".as_ptr()) };
        let e = recv(&sock).unwrap();
        assert_eq!(e.kind, EventKind::PhaseBegin);
        assert_eq!(e.pid, std::process::id());
        assert_eq!(&e.phase_name()[..5], b"eval\0");

        let long = std::ffi::CString::new(format!("data loader/{}", "x".repeat(40))).unwrap();
        // SAFETY: a CString is NUL-terminated.
        unsafe { eco2ai_phase_end(long.as_ptr()) };
        let e = recv(&sock).unwrap();
        assert_eq!(e.kind, EventKind::PhaseEnd);
        assert_eq!(&e.phase_name()[..12], b"data_loader_");
        assert!(e.phase_name().iter().all(|&b| b != 0), "cut at 32 bytes");

        let lost = eco2ai_marker_lost();
        // SAFETY: null and an empty string are both allowed.
        unsafe {
            eco2ai_phase_begin(std::ptr::null());
            eco2ai_phase_end(c"".as_ptr());
        }
        eco2ai_phase_bits(3, 0, 0, 0, 0);
        assert_eq!(eco2ai_marker_lost(), lost + 3);
        sock.set_nonblocking(true).unwrap();
        assert!(recv(&sock).is_none(), "nothing sent for them");
    }

    #[test]
    fn cleaning_follows_the_name_rule() {
        assert_eq!(clean_phase_name(b""), None);
        let c = clean_phase_name("év al:1".as_bytes()).unwrap();
        assert_eq!(&c[..9], b"__v_al:1\0");
    }
}
