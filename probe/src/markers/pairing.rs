//! Pairs each process's begin/end events into step rows. Events come from a socket or
//! from uprobes in processes the probe does not control, so every value is checked
//! before it is used: timestamps inside the recording, counts bounded, the open-step
//! map and the held rows capped. A refused event is counted, never a panic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use eco2ai_marker::wire::{Event, EventKind};
use eco2ai_trace::{EvalRow, StepRow};

use super::phases::Phases;
use crate::batcher::Batcher;
use crate::clock::monotonic_ns;
use crate::job::RankBook;
use crate::samplers::errors::{ErrorCounts, SensorError};

/// How long an ended step waits for a loss logged after its end.
pub const HOLD_NS: i64 = 1_000_000_000;
/// How far past the probe's clock an event may be stamped (it is stamped before it is
/// read, so anything later is forged or from another clock).
pub const FUTURE_SLACK_NS: i64 = 1_000_000_000;
/// Largest `samples` or `tokens` of one step: 2^40 is ~10^12, beyond any real batch.
pub const MAX_EVENT_COUNT: u64 = 1 << 40;
/// Processes with a step open at once; beyond this the oldest open step is dropped.
pub const MAX_OPEN_STEPS: usize = 4096;
/// Ended steps waiting for a late loss; beyond this the oldest is handed on early.
pub const MAX_HELD_STEPS: usize = 1 << 17;

static PROBE_START_NS: OnceLock<i64> = OnceLock::new();

/// Notes when the recording started (first call wins): events stamped earlier are
/// refused. `record` calls it first thing; otherwise the first pairing sets it.
pub fn mark_probe_start() -> i64 {
    *PROBE_START_NS.get_or_init(monotonic_ns)
}

/// Cumulative calls of each counted function.
pub type Counts = [u64; 4];

struct Open {
    step: u64,
    begin_ns: i64,
    counts: Option<Counts>,
    /// Position in `Pairing::order`.
    seq: u64,
    /// The last `eco2ai_step_sync` mark since the begin.
    sync_ns: Option<i64>,
    /// The pid's innermost open phase at the begin (None: train).
    phase: Option<Arc<str>>,
}

/// Pairs begin and end events per process.
pub struct Pairing {
    open: HashMap<u32, Open>,
    /// seq -> pid of each open step, oldest first: what to evict at the cap.
    order: BTreeMap<u64, u32>,
    next_seq: u64,
    /// Ended steps kept for `HOLD_NS` in case their loss is logged after the end.
    held: VecDeque<StepRow>,
    /// `uprobe` or `socket`: the `source` of the rows.
    source: &'static str,
    counters: usize,
    /// Events stamped before this are refused.
    valid_from_ns: i64,
    /// Where the rank of each pid that begins a step is noted (a job's `ranks`).
    ranks: Option<RankBook>,
    /// The open phase spans of each process.
    phases: Phases,
}

/// A float the caller marked unknown (NaN), or one no step can have (±inf).
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

pub(super) fn refuse(errors: &ErrorCounts, kind: &str, why: &str) {
    errors.add(kind, &SensorError::Transient(why.into()));
}

impl Pairing {
    /// `counters`: how many counted functions the events carry (0 on the socket path).
    pub fn new(source: &'static str, counters: usize) -> Pairing {
        Pairing {
            open: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            held: VecDeque::new(),
            source,
            counters: counters.min(4),
            valid_from_ns: mark_probe_start(),
            ranks: None,
            phases: Phases::new(source),
        }
    }

    /// Notes the rank of each process the first time it begins a step.
    pub fn with_ranks(mut self, ranks: Option<RankBook>) -> Pairing {
        self.ranks = ranks;
        self
    }

    /// Processes with a step open now.
    pub fn open_steps(&self) -> usize {
        self.open.len()
    }

    /// Processes with a phase span open now.
    pub fn open_phase_pids(&self) -> usize {
        self.phases.open_pids()
    }

    /// Hands on the steps that ended more than `HOLD_NS` before `now_ns` (all of them
    /// when `all`: the recording stops, and the phase spans still open end now).
    pub fn release(&mut self, now_ns: i64, all: bool, b: &mut Batcher) {
        if all {
            self.phases.close_all(monotonic_ns().max(now_ns), b);
        }
        while let Some(front) = self.held.front() {
            if !all && front.end_ns.saturating_add(HOLD_NS) > now_ns {
                break;
            }
            b.steps.extend(self.held.pop_front());
        }
    }

    /// Whether an event may be used: stamped inside the recording, counts bounded.
    fn valid(&self, ev: &Event, now_ns: i64, errors: &ErrorCounts) -> bool {
        if ev.ts_ns < self.valid_from_ns || ev.ts_ns > now_ns.saturating_add(FUTURE_SLACK_NS) {
            refuse(
                errors,
                "marker:invalid_ts",
                "event stamped outside the recording",
            );
            return false;
        }
        // A phase event's samples and tokens words hold its name, checked by `Phases`.
        if !ev.kind.is_phase() && (ev.samples > MAX_EVENT_COUNT || ev.tokens > MAX_EVENT_COUNT) {
            refuse(
                errors,
                "marker:invalid_count",
                "samples or tokens over 2^40",
            );
            return false;
        }
        true
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
                r.loss = finite(ev.loss).or(r.loss);
                r.lr = finite(ev.lr).or(r.lr);
            }
            None => refuse(
                errors,
                "marker:log_without_step",
                "loss logged for no recent step",
            ),
        }
    }

    fn begin(&mut self, ev: &Event, counts: Option<Counts>, errors: &ErrorCounts) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let open = Open {
            step: ev.step,
            begin_ns: ev.ts_ns,
            counts,
            seq,
            sync_ns: None,
            phase: self.phases.current(ev.pid),
        };
        if let Some(book) = &self.ranks {
            book.note(ev.pid, errors);
        }
        if let Some(old) = self.open.insert(ev.pid, open) {
            self.order.remove(&old.seq);
            refuse(errors, "marker:begin_without_end", "step begun twice");
        }
        self.order.insert(seq, ev.pid);
        // A flood of begins from many pids (forged or a leak) must not grow without end.
        while self.open.len() > MAX_OPEN_STEPS {
            let Some((_, pid)) = self.order.pop_first() else {
                break;
            };
            self.open.remove(&pid);
            refuse(errors, "marker:open_steps_evicted", "too many open steps");
        }
    }

    fn end(&mut self, ev: &Event, counts: Option<Counts>, errors: &ErrorCounts) {
        let open = self.open.remove(&ev.pid);
        if let Some(o) = &open {
            self.order.remove(&o.seq);
        }
        let (begin_ns, begin_counts, sync_ns, phase) = match open {
            Some(o) if o.step == ev.step => (o.begin_ns, o.counts, o.sync_ns, o.phase),
            _ => {
                refuse(errors, "marker:end_without_begin", "step ended unbegun");
                (ev.ts_ns, None, None, self.phases.current(ev.pid))
            }
        };
        if begin_ns > ev.ts_ns {
            refuse(
                errors,
                "marker:end_before_begin",
                "step ended before it began",
            );
            return;
        }
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
            loss: finite(ev.loss),
            lr: finite(ev.lr),
            epoch: finite(ev.epoch),
            source: self.source,
            counts: step_counts,
            sync_ns: sync_ns.filter(|s| (begin_ns..=ev.ts_ns).contains(s)),
            phase,
        });
    }

    /// The rank's compute of its open step ended: the last mark inside the step counts.
    fn sync(&mut self, ev: &Event, errors: &ErrorCounts) {
        match self.open.get_mut(&ev.pid) {
            Some(o) if ev.ts_ns >= o.begin_ns => {
                o.sync_ns = Some(o.sync_ns.map_or(ev.ts_ns, |s| s.max(ev.ts_ns)));
            }
            _ => refuse(errors, "marker:sync_without_step", "sync outside a step"),
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
        if !self.valid(&ev, monotonic_ns(), errors) {
            return;
        }
        match ev.kind {
            EventKind::Begin => self.begin(&ev, counts, errors),
            EventKind::End => self.end(&ev, counts, errors),
            EventKind::Eval => b.evals.push(EvalRow {
                ts_ns: ev.ts_ns,
                step: ev.step,
                pid: ev.pid,
                eval_loss: finite(ev.loss),
            }),
            EventKind::Log => self.log(&ev, errors),
            EventKind::Sync => self.sync(&ev, errors),
            EventKind::PhaseBegin | EventKind::PhaseEnd => self.phases.handle(&ev, b, errors),
        }
        // Bounded even when steps end faster than HOLD_NS lets them go: hand the oldest
        // on early (its late loss, if any, is then counted as log_without_step).
        while self.held.len() > MAX_HELD_STEPS {
            b.steps.extend(self.held.pop_front());
        }
    }
}

#[cfg(test)]
#[path = "pairing_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "phases_tests.rs"]
mod phases_tests;
