//! Named-phase spans per process (`eco2ai_phase_begin/end`): a stack per pid, capped in
//! depth and in pids, whose top is the phase a step begun now belongs to. A span makes
//! a `PhaseRow` when it ends, or when the recording stops with it still open.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use eco2ai_marker::wire::{Event, EventKind};
use eco2ai_trace::{PhaseRow, phase};

use super::pairing::refuse;
use crate::batcher::Batcher;
use crate::samplers::errors::ErrorCounts;

/// Spans one process may have open at once (nested); a deeper begin is refused.
pub const MAX_PHASE_DEPTH: usize = 8;
/// Processes with a span open at once; beyond this the least recently marked process's
/// spans are dropped (counted), like `MAX_OPEN_STEPS`.
pub const MAX_PHASE_PIDS: usize = 4096;
/// Distinct names kept shared (`Arc<str>`); later names are allocated per span, so a
/// flood of forged names costs at most this much held memory.
const MAX_SHARED_NAMES: usize = 256;

struct Span {
    name: Arc<str>,
    begin_ns: i64,
}

struct Stack {
    spans: Vec<Span>,
    /// Position in `Phases::order`.
    seq: u64,
}

/// The open spans of every process.
pub struct Phases {
    open: HashMap<u32, Stack>,
    /// seq -> pid, least recently marked first: what to evict at the cap.
    order: BTreeMap<u64, u32>,
    next_seq: u64,
    names: HashMap<Box<str>, Arc<str>>,
    source: &'static str,
}

impl Phases {
    pub fn new(source: &'static str) -> Phases {
        Phases {
            open: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            names: HashMap::new(),
            source,
        }
    }

    /// The innermost open phase of `pid`: what a step it begins now belongs to
    /// (None: `train`).
    pub fn current(&self, pid: u32) -> Option<Arc<str>> {
        let top = self.open.get(&pid)?.spans.last()?;
        Some(top.name.clone())
    }

    /// Processes with a span open now.
    pub fn open_pids(&self) -> usize {
        self.open.len()
    }

    fn shared(&mut self, name: String) -> Arc<str> {
        if let Some(a) = self.names.get(name.as_str()) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(name.as_str());
        if self.names.len() < MAX_SHARED_NAMES {
            self.names.insert(name.into_boxed_str(), a.clone());
        }
        a
    }

    /// A phase begin or end (already checked for its timestamp).
    pub fn handle(&mut self, ev: &Event, b: &mut Batcher, errors: &ErrorCounts) {
        let Some(name) = phase::unpack(&ev.phase_name()) else {
            refuse(
                errors,
                "marker:invalid_phase",
                "phase name breaks the name rule",
            );
            return;
        };
        let name = self.shared(name);
        match ev.kind {
            EventKind::PhaseBegin => self.begin(ev.pid, name, ev.ts_ns, errors),
            EventKind::PhaseEnd => self.end(ev.pid, &name, ev.ts_ns, b, errors),
            _ => {}
        }
    }

    fn touch(&mut self, pid: u32) -> &mut Stack {
        let seq = self.next_seq;
        self.next_seq += 1;
        let stack = self.open.entry(pid).or_insert(Stack {
            spans: Vec::new(),
            seq,
        });
        self.order.remove(&stack.seq);
        stack.seq = seq;
        self.order.insert(seq, pid);
        stack
    }

    fn begin(&mut self, pid: u32, name: Arc<str>, ts_ns: i64, errors: &ErrorCounts) {
        if self
            .open
            .get(&pid)
            .is_some_and(|s| s.spans.len() >= MAX_PHASE_DEPTH)
        {
            refuse(errors, "marker:phase_too_deep", "phases nested over 8 deep");
            return;
        }
        self.touch(pid).spans.push(Span {
            name,
            begin_ns: ts_ns,
        });
        // Many pids leaving spans open (forged or leaked) must not grow without end.
        while self.open.len() > MAX_PHASE_PIDS {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            self.open.remove(&old);
            refuse(errors, "marker:open_phases_evicted", "too many open phases");
        }
    }

    fn end(&mut self, pid: u32, name: &str, ts_ns: i64, b: &mut Batcher, errors: &ErrorCounts) {
        let Some(stack) = self.open.get_mut(&pid) else {
            refuse(
                errors,
                "marker:phase_end_without_begin",
                "phase ended unbegun",
            );
            return;
        };
        let Some(i) = stack.spans.iter().rposition(|s| &*s.name == name) else {
            refuse(
                errors,
                "marker:phase_end_without_begin",
                "phase ended unbegun",
            );
            return;
        };
        let span = stack.spans.remove(i);
        if stack.spans.is_empty() {
            let seq = stack.seq;
            self.open.remove(&pid);
            self.order.remove(&seq);
        }
        if span.begin_ns > ts_ns {
            refuse(
                errors,
                "marker:phase_end_before_begin",
                "phase ended before it began",
            );
            return;
        }
        b.phases.push(self.row(pid, span, ts_ns));
    }

    fn row(&self, pid: u32, span: Span, end_ns: i64) -> PhaseRow {
        PhaseRow {
            pid,
            name: span.name,
            begin_ns: span.begin_ns,
            end_ns,
            source: self.source,
        }
    }

    /// The recording stops: every span still open ends at `stop_ns` (or at its begin,
    /// if that was stamped later).
    pub fn close_all(&mut self, stop_ns: i64, b: &mut Batcher) {
        self.order.clear();
        let mut open: Vec<(u32, Stack)> = self.open.drain().collect();
        open.sort_by_key(|(pid, _)| *pid);
        for (pid, stack) in open {
            for span in stack.spans.into_iter().rev() {
                let end_ns = stop_ns.max(span.begin_ns);
                b.phases.push(self.row(pid, span, end_ns));
            }
        }
    }
}
