//! Steps and evaluations from the marker library through the Unix-socket fallback:
//! the probe binds an abstract datagram socket, names it to the recorded command in
//! `ECO2AI_MARKER_SOCKET`, and pairs each process's begin/end events into step rows.

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eco2ai_marker::wire::{EVENT_LEN, Event, EventKind};
use eco2ai_trace::{EvalRow, StepRow};

use crate::batcher::Batcher;
use crate::samplers::errors::{ErrorCounts, SensorError};

pub const ENV_MARKER_LIB: &str = "ECO2AI_MARKER_LIB";
/// How long an ended step waits for a loss logged after its end.
pub const HOLD_NS: i64 = 1_000_000_000;
pub const LIB_NAME: &str = "libeco2ai_marker.so";

/// The marker library this probe ships: `--marker-lib`, else next to the executable,
/// else in `../lib` beside it.
pub fn find_marker_lib(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(LIB_NAME), dir.join("../lib").join(LIB_NAME)]
        .into_iter()
        .find(|p| p.is_file())
}

/// The marker functions of a loaded `libeco2ai_marker.so`, as a user's training loop
/// loads them (the demo workload and the marker benchmark use this).
pub struct MarkerFns {
    pub begin: extern "C" fn(u64),
    pub end: unsafe extern "C" fn(*const eco2ai_marker::Eco2aiStep),
    pub eval: extern "C" fn(u64, f64),
    pub lost: extern "C" fn() -> u64,
}

fn sym(lib: *mut std::ffi::c_void, name: &std::ffi::CStr) -> Option<*mut std::ffi::c_void> {
    // SAFETY: `lib` is a live handle from dlopen and `name` is NUL-terminated.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

impl MarkerFns {
    /// dlopen()s the library at `path`; None if it or a symbol is missing.
    pub fn load(path: &str) -> Option<MarkerFns> {
        let path = std::ffi::CString::new(path).ok()?;
        // SAFETY: dlopen with a NUL-terminated path; the handle is never closed, so the
        // symbols stay valid for the life of the process.
        let lib = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
        if lib.is_null() {
            return None;
        }
        let (b, e) = (
            sym(lib, c"eco2ai_step_begin")?,
            sym(lib, c"eco2ai_step_end")?,
        );
        let (v, l) = (sym(lib, c"eco2ai_eval")?, sym(lib, c"eco2ai_marker_lost")?);
        type End = unsafe extern "C" fn(*const eco2ai_marker::Eco2aiStep);
        // SAFETY: these symbols have exactly these C signatures (marker/include/eco2ai_marker.h).
        unsafe {
            Some(MarkerFns {
                begin: std::mem::transmute::<*mut std::ffi::c_void, extern "C" fn(u64)>(b),
                end: std::mem::transmute::<*mut std::ffi::c_void, End>(e),
                eval: std::mem::transmute::<*mut std::ffi::c_void, extern "C" fn(u64, f64)>(v),
                lost: std::mem::transmute::<*mut std::ffi::c_void, extern "C" fn() -> u64>(l),
            })
        }
    }
}

pub struct MarkerSocket {
    /// The value of ECO2AI_MARKER_SOCKET: `@` + the abstract name.
    pub env_value: String,
    sock: UnixDatagram,
}

impl MarkerSocket {
    pub fn bind() -> std::io::Result<MarkerSocket> {
        let name = format!(
            "eco2ai-{}-{}",
            std::process::id(),
            crate::clock::monotonic_ns()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        let sock = UnixDatagram::bind_addr(&addr)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(MarkerSocket {
            env_value: format!("@{name}"),
            sock,
        })
    }
}

fn nan_none(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

/// Pairs begin and end events per process.
pub struct Pairing {
    /// pid -> (step, begin ts, counts at begin)
    open: HashMap<u32, (u64, i64, Option<Counts>)>,
    /// Ended steps kept for `HOLD_NS` in case their loss is logged after the end.
    held: VecDeque<StepRow>,
    /// `uprobe` or `socket`: the `source` of the rows.
    source: &'static str,
    counters: usize,
}

/// Cumulative calls of each counted function.
pub type Counts = [u64; 4];

impl Pairing {
    /// `counters`: how many counted functions the events carry (0 on the socket path).
    pub fn new(source: &'static str, counters: usize) -> Pairing {
        Pairing {
            open: HashMap::new(),
            held: VecDeque::new(),
            source,
            counters: counters.min(4),
        }
    }

    /// Hands on the steps that ended more than `HOLD_NS` before `now_ns` (all of them
    /// when `all`).
    pub fn release(&mut self, now_ns: i64, all: bool, b: &mut Batcher) {
        while let Some(front) = self.held.front() {
            if !all && front.end_ns + HOLD_NS > now_ns {
                break;
            }
            b.steps.extend(self.held.pop_front());
        }
    }

    /// A step's loss and learning rate, logged after its end (NaN: unknown).
    fn log(&mut self, ev: &Event, errors: &ErrorCounts) {
        let row = self
            .held
            .iter_mut()
            .rev()
            .find(|r| r.pid == ev.pid && r.step == ev.step);
        match row {
            Some(r) => {
                r.loss = nan_none(ev.loss).or(r.loss);
                r.lr = nan_none(ev.lr).or(r.lr);
            }
            None => errors.add(
                "marker:log_without_step",
                &SensorError::Transient("loss logged for no recent step".into()),
            ),
        }
    }

    /// `counts`: the process's cumulative calls of each counted function at the event
    /// (eBPF path with `--uprobe`), for per-step deltas.
    pub fn handle(
        &mut self,
        ev: Event,
        counts: Option<Counts>,
        b: &mut Batcher,
        errors: &ErrorCounts,
    ) {
        match ev.kind {
            EventKind::Begin => {
                if self
                    .open
                    .insert(ev.pid, (ev.step, ev.ts_ns, counts))
                    .is_some()
                {
                    errors.add(
                        "marker:begin_without_end",
                        &SensorError::Transient("step begun twice".into()),
                    );
                }
            }
            EventKind::End => {
                let (begin_ns, begin_counts) = match self.open.remove(&ev.pid) {
                    Some((step, ts, c)) if step == ev.step => (ts, c),
                    _ => {
                        errors.add(
                            "marker:end_without_begin",
                            &SensorError::Transient("step ended unbegun".into()),
                        );
                        (ev.ts_ns, None)
                    }
                };
                let mut step_counts = [None; 4];
                if let (Some(a), Some(z)) = (begin_counts, counts) {
                    for i in 0..self.counters {
                        step_counts[i] = Some(z[i].saturating_sub(a[i]));
                    }
                }
                self.held.push_back(StepRow {
                    step: ev.step,
                    begin_ns,
                    end_ns: ev.ts_ns,
                    pid: ev.pid,
                    samples: (ev.samples > 0).then_some(ev.samples),
                    tokens: (ev.tokens > 0).then_some(ev.tokens),
                    loss: nan_none(ev.loss),
                    lr: nan_none(ev.lr),
                    epoch: nan_none(ev.epoch),
                    source: self.source,
                    counts: step_counts,
                });
            }
            EventKind::Eval => b.evals.push(EvalRow {
                ts_ns: ev.ts_ns,
                step: ev.step,
                pid: ev.pid,
                eval_loss: nan_none(ev.loss),
            }),
            EventKind::Log => self.log(&ev, errors),
        }
    }
}

/// Receives until `stop`, then drains what is still queued.
pub fn listen(sock: MarkerSocket, mut b: Batcher, stop: Arc<AtomicBool>, errors: ErrorCounts) {
    let mut pairing = Pairing::new("socket", 0);
    let mut buf = [0u8; 2 * EVENT_LEN];
    let mut draining = false;
    loop {
        match sock.sock.recv(&mut buf) {
            Ok(n) => match Event::decode(&buf[..n]) {
                Some(ev) => pairing.handle(ev, None, &mut b, &errors),
                None => errors.add(
                    "marker:socket",
                    &SensorError::Transient("malformed event".into()),
                ),
            },
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if draining {
                    pairing.release(0, true, &mut b);
                    break;
                }
            }
            Err(e) => errors.add("marker:socket", &SensorError::from_io(&e, "recv")),
        }
        let now = crate::clock::monotonic_ns();
        pairing.release(now, false, &mut b);
        b.maybe_send(now, false);
        if stop.load(Ordering::Relaxed) && !draining {
            draining = true;
            let _ = sock.sock.set_nonblocking(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::mpsc::sync_channel;

    use eco2ai_trace::Rows;

    use super::*;

    fn ev(kind: EventKind, pid: u32, step: u64, ts_ns: i64, loss: f64) -> Event {
        Event {
            kind,
            pid,
            ts_ns,
            step,
            loss,
            lr: f64::NAN,
            epoch: f64::NAN,
            ..Event::default()
        }
    }

    #[test]
    fn a_loss_logged_after_the_end_fills_the_held_step() {
        let (tx, rx) = sync_channel(16);
        let mut b = Batcher::new(tx, Arc::new(AtomicU64::new(0)), 0);
        let errors = ErrorCounts::default();
        let mut p = Pairing::new("socket", 0);
        for (pid, step) in [(1, 7), (2, 7)] {
            p.handle(
                ev(EventKind::Begin, pid, step, 100, f64::NAN),
                None,
                &mut b,
                &errors,
            );
            p.handle(
                ev(EventKind::End, pid, step, 200, f64::NAN),
                None,
                &mut b,
                &errors,
            );
        }
        let mut log = ev(EventKind::Log, 2, 7, 300, 0.25);
        log.lr = 1e-3;
        p.handle(log, None, &mut b, &errors);
        p.handle(ev(EventKind::Log, 2, 99, 300, 0.5), None, &mut b, &errors);
        p.release(500, false, &mut b);
        assert!(b.steps.is_empty(), "held for a second");
        p.release(200 + HOLD_NS, false, &mut b);
        b.maybe_send(1, true);
        let Ok(Rows::Steps(rows)) = rx.try_recv() else {
            panic!("no steps sent")
        };
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].pid, rows[0].loss), (1, None));
        assert_eq!(
            (rows[1].pid, rows[1].loss, rows[1].lr),
            (2, Some(0.25), Some(1e-3))
        );
        assert_eq!((rows[1].begin_ns, rows[1].end_ns), (100, 200));
        assert_eq!(
            errors.snapshot().get("marker:log_without_step:transient"),
            Some(&1)
        );
    }
}
