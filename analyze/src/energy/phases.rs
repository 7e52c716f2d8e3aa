//! The run's time cut into classes (the phases contract, "Report partition"): a
//! named-phase span of any process (the latest-begun wins where they overlap), else a
//! train step, else a stall between the first train step's begin and the last one's end,
//! else idle. Every instant is in exactly one class, so the classes' energies sum to the
//! run's. The cut is sorted once; each device's curve is then walked once along it.

use std::collections::BTreeSet;
use std::sync::Arc;

use eco2ai_trace::{PhaseRow, Run, Table, TraceError, phase};

use super::{Device, Quality, SpanBounds, Step};

/// The class of time inside train steps.
pub const TRAIN: usize = 0;
/// Between train steps, outside named phases.
pub const STALL: usize = 1;
/// Before the first train step and after the last, outside named phases.
pub const IDLE: usize = 2;
const FIXED: [&str; 3] = [phase::TRAIN, "stall", "idle"];

/// Whether a step is a training step (no phase, or `train`): what samples/kWh counts.
pub fn is_train(s: &Step) -> bool {
    s.phase.as_deref().is_none_or(|p| p == phase::TRAIN)
}

/// The phase spans of every process, bounded like the steps: rows ending before they
/// begin or lying outside the run's span (plus a minute) are left out and counted.
pub fn spans(run: &Run, q: &mut Quality) -> Result<Vec<PhaseRow>, TraceError> {
    let bounds = SpanBounds::of(run.meta());
    let mut out = Vec::new();
    for b in run.read_table(Table::Phases)?.batches {
        for r in eco2ai_trace::from_batch::phase_rows(&b) {
            if !bounds.holds(r.begin_ns, r.end_ns) {
                q.phases_outside_run += 1;
                continue;
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// The classes of a run and where its time and energy went.
#[derive(Debug, Clone, Default)]
pub struct Partition {
    /// Class names: `train`, `stall`, `idle`, then named phases in order of first begin.
    pub names: Vec<Arc<str>>,
    pub seconds: Vec<f64>,
    /// J per class, per device (the devices' order).
    pub device_j: Vec<Vec<f64>>,
    /// Named-phase spans per class (after clipping to the run).
    pub spans: Vec<usize>,
    /// Steps whose phase is the class, and their samples and tokens (None when no step
    /// of the class counted any; sums saturate).
    pub steps: Vec<usize>,
    pub samples: Vec<Option<u64>>,
    pub tokens: Vec<Option<u64>>,
    /// Stretches of named phases and idle, in time order, for figures: (begin, end, class).
    pub bands: Vec<(i64, i64, usize)>,
}

impl Partition {
    /// The class of a phase name, added when new.
    fn class(&mut self, name: &str) -> usize {
        if let Some(k) = self.names.iter().position(|n| &**n == name) {
            return k;
        }
        self.names.push(Arc::from(name));
        self.seconds.push(0.0);
        self.spans.push(0);
        self.steps.push(0);
        self.samples.push(None);
        self.tokens.push(None);
        self.names.len() - 1
    }

    /// Counts a step in the class of its phase (a named phase without spans gets one).
    fn count_step(&mut self, s: &Step) {
        let k = match s.phase.as_deref() {
            Some(p) => self.class(p),
            None => TRAIN,
        };
        self.steps[k] += 1;
        let add = |sum: &mut Option<u64>, n: Option<u64>| {
            if let Some(n) = n {
                *sum = Some(sum.unwrap_or(0).saturating_add(n));
            }
        };
        add(&mut self.samples[k], s.samples);
        add(&mut self.tokens[k], s.tokens);
    }
}

/// Named spans clipped to [start, end], as disjoint pieces (begin, end, class), the
/// latest-begun span winning where spans overlap. One sort and a sweep.
fn named_pieces(
    p: &mut Partition,
    spans: &[PhaseRow],
    start: i64,
    end: i64,
) -> Vec<(i64, i64, usize)> {
    let mut clipped: Vec<(i64, i64, usize)> = Vec::with_capacity(spans.len());
    let mut sorted: Vec<&PhaseRow> = spans.iter().collect();
    sorted.sort_by_key(|r| r.begin_ns);
    for r in sorted {
        let (b, e) = (r.begin_ns.max(start), r.end_ns.min(end));
        if b < e {
            let k = p.class(&r.name);
            p.spans[k] += 1;
            clipped.push((b, e, k));
        }
    }
    // Events: (instant, is_begin, span); ends sort before begins at one instant.
    let mut events: Vec<(i64, bool, usize)> = Vec::with_capacity(clipped.len() * 2);
    for (i, &(b, e, _)) in clipped.iter().enumerate() {
        events.push((b, true, i));
        events.push((e, false, i));
    }
    events.sort_unstable();
    // Spans by (begin, index): the last is the latest-begun open span.
    let mut open: BTreeSet<(i64, usize)> = BTreeSet::new();
    let mut pieces: Vec<(i64, i64, usize)> = Vec::new();
    let mut k = 0;
    while k < events.len() {
        let t = events[k].0;
        while k < events.len() && events[k].0 == t {
            let (_, begin, i) = events[k];
            if begin {
                open.insert((clipped[i].0, i));
            } else {
                open.remove(&(clipped[i].0, i));
            }
            k += 1;
        }
        if let (Some(&(_, i)), Some(&(next, _, _))) = (open.last(), events.get(k)) {
            let class = clipped[i].2;
            match pieces.last_mut() {
                Some(last) if last.1 == t && last.2 == class => last.1 = next,
                _ => pieces.push((t, next, class)),
            }
        }
    }
    pieces
}

/// The union of the train steps' spans clipped to [start, end] (steps in begin order).
fn train_union(steps: &[Step], start: i64, end: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for s in steps.iter().filter(|s| is_train(s)) {
        let (b, e) = (s.begin_ns.max(start), s.end_ns.min(end));
        if b >= e {
            continue;
        }
        match out.last_mut() {
            Some(last) if b <= last.1 => last.1 = last.1.max(e),
            _ => out.push((b, e)),
        }
    }
    out
}

/// Contiguous segments (begin, class) covering [start, end]: each boundary of the named
/// pieces, the train union and the stall window, in order, with its class after it.
fn segments(
    named: &[(i64, i64, usize)],
    train: &[(i64, i64)],
    start: i64,
    end: i64,
) -> Vec<(i64, usize)> {
    let window = train.first().zip(train.last()).map(|(f, l)| (f.0, l.1));
    let mut cuts: Vec<i64> = Vec::with_capacity(2 * (named.len() + train.len()) + 4);
    cuts.push(start);
    cuts.extend(named.iter().flat_map(|p| [p.0, p.1]));
    cuts.extend(train.iter().flat_map(|p| [p.0, p.1]));
    cuts.extend(window.iter().flat_map(|w| [w.0, w.1]));
    cuts.sort_unstable();
    cuts.dedup();
    let (mut n, mut tr) = (0, 0);
    let mut out: Vec<(i64, usize)> = Vec::new();
    for &t in cuts.iter().filter(|t| **t < end) {
        while n < named.len() && named[n].1 <= t {
            n += 1;
        }
        while tr < train.len() && train[tr].1 <= t {
            tr += 1;
        }
        let class = match (named.get(n), train.get(tr)) {
            (Some(p), _) if p.0 <= t => p.2,
            (_, Some(s)) if s.0 <= t => TRAIN,
            _ if window.is_some_and(|w| w.0 <= t && t < w.1) => STALL,
            _ => IDLE,
        };
        if out.last().is_none_or(|l| l.1 != class) {
            out.push((t, class));
        }
    }
    out
}

/// The run's partition over [start, end] and each class's energy on each device: one
/// walk along each device's curve (the devices on every core).
pub fn partition(
    devices: &[Device],
    steps: &[Step],
    spans: &[PhaseRow],
    start: i64,
    end: i64,
) -> Partition {
    let mut p = Partition::default();
    for name in FIXED {
        p.class(name);
    }
    let named = named_pieces(&mut p, spans, start, end);
    for s in steps {
        p.count_step(s);
    }
    let train = train_union(steps, start, end);
    let segs = segments(&named, &train, start, end);
    drop((named, train));
    let edge = |i: usize| segs.get(i + 1).map_or(end, |s| s.0);
    for (i, &(b, class)) in segs.iter().enumerate() {
        p.seconds[class] += (edge(i) - b) as f64 / 1e9;
        if class != TRAIN && class != STALL {
            p.bands.push((b, edge(i), class));
        }
    }
    let classes = p.names.len();
    let walk = |d: &Device| {
        let mut j = vec![0.0; classes];
        let mut c = d.curve.cursor();
        let mut prev = c.at(start);
        for (i, &(_, class)) in segs.iter().enumerate() {
            let e = c.at(edge(i));
            j[class] += e - prev;
            prev = e;
        }
        j
    };
    let per_device: Vec<Vec<f64>> = std::thread::scope(|sc| {
        let handles: Vec<_> = devices.iter().map(|d| sc.spawn(|| walk(d))).collect();
        handles
            .into_iter()
            .zip(devices)
            // A walk cannot panic short of a bug; should one, walk again here.
            .map(|(h, d)| h.join().unwrap_or_else(|_| walk(d)))
            .collect()
    });
    p.device_j = (0..classes)
        .map(|k| per_device.iter().map(|v| v[k]).collect())
        .collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, b: i64, e: i64) -> PhaseRow {
        PhaseRow {
            pid: 1,
            name: Arc::from(name),
            begin_ns: b,
            end_ns: e,
            source: "socket",
        }
    }

    #[test]
    fn the_latest_begun_span_wins_and_the_rest_is_cut_in_order() {
        let mut p = Partition::default();
        for name in FIXED {
            p.class(name);
        }
        // eval 10..50 with a checkpoint 20..30 inside it, a second eval 60..70.
        let spans = [
            row("eval", 10, 50),
            row("checkpoint", 20, 30),
            row("eval", 60, 70),
        ];
        let named = named_pieces(&mut p, &spans, 0, 100);
        let (eval, ckpt) = (3, 4);
        assert_eq!(
            named,
            vec![
                (10, 20, eval),
                (20, 30, ckpt),
                (30, 50, eval),
                (60, 70, eval)
            ]
        );
        assert_eq!(p.spans, vec![0, 0, 0, 2, 1]);
        // Train steps 5..8 and 55..58 and 80..90: idle, train, stall, named, ...
        let train = vec![(5, 8), (55, 58), (80, 90)];
        let segs = segments(&named, &train, 0, 100);
        assert_eq!(
            segs,
            vec![
                (0, IDLE),
                (5, TRAIN),
                (8, STALL),
                (10, eval),
                (20, ckpt),
                (30, eval),
                (50, STALL),
                (55, TRAIN),
                (58, STALL),
                (60, eval),
                (70, STALL),
                (80, TRAIN),
                (90, IDLE)
            ]
        );
    }

    #[test]
    fn spans_named_like_the_fixed_classes_add_to_them() {
        let mut p = Partition::default();
        for name in FIXED {
            p.class(name);
        }
        let named = named_pieces(&mut p, &[row("idle", 0, 10), row("stall", 5, 7)], 0, 20);
        assert_eq!(named, vec![(0, 5, IDLE), (5, 7, STALL), (7, 10, IDLE)]);
        assert_eq!(p.names.len(), 3);
    }
}
