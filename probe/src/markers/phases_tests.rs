//! Phase spans through the pairing: rows at each end, the step's phase, validation,
//! nesting, the caps, spans closed at stop.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, sync_channel};

use eco2ai_trace::{PhaseRow, Rows, phase};

use super::*;
use crate::markers::phases::{MAX_PHASE_DEPTH, MAX_PHASE_PIDS};

fn step(kind: EventKind, pid: u32, step: u64, ts_ns: i64) -> Event {
    Event {
        kind,
        pid,
        ts_ns,
        step,
        loss: f64::NAN,
        lr: f64::NAN,
        epoch: f64::NAN,
        ..Event::default()
    }
}

fn mark(kind: EventKind, pid: u32, name: &str, ts_ns: i64) -> Event {
    let mut e = Event {
        kind,
        pid,
        ts_ns,
        ..Event::default()
    };
    e.set_phase_name(&phase::pack(name));
    e
}

struct Rig {
    p: Pairing,
    b: Batcher,
    rx: Receiver<Rows>,
    errors: ErrorCounts,
}

impl Rig {
    fn new() -> Rig {
        let (tx, rx) = sync_channel(1 << 12);
        let mut p = Pairing::new("socket", 0);
        p.valid_from_ns = 0;
        Rig {
            p,
            b: Batcher::new(tx, Arc::new(AtomicU64::new(0)), 0),
            rx,
            errors: ErrorCounts::default(),
        }
    }

    fn feed(&mut self, ev: Event) {
        self.p.handle(ev, None, &mut self.b, &self.errors);
    }

    fn begin(&mut self, pid: u32, name: &str, ts: i64) {
        self.feed(mark(EventKind::PhaseBegin, pid, name, ts));
    }

    fn end(&mut self, pid: u32, name: &str, ts: i64) {
        self.feed(mark(EventKind::PhaseEnd, pid, name, ts));
    }

    fn step(&mut self, pid: u32, n: u64, begin: i64, end: i64) {
        self.feed(step(EventKind::Begin, pid, n, begin));
        self.feed(step(EventKind::End, pid, n, end));
    }

    /// Everything sent, after a stop at the end of the recording.
    fn stop(mut self) -> (Vec<StepRow>, Vec<PhaseRow>, ErrorCounts) {
        self.p.release(0, true, &mut self.b);
        self.b.maybe_send(1, true);
        let (mut steps, mut phases) = (Vec::new(), Vec::new());
        while let Ok(rows) = self.rx.try_recv() {
            match rows {
                Rows::Steps(v) => steps.extend(v),
                Rows::Phases(v) => phases.extend(v),
                _ => {}
            }
        }
        (steps, phases, self.errors)
    }
}

fn key(kind: &str) -> String {
    format!("{kind}:transient")
}

#[test]
fn each_span_is_one_row_and_steps_inside_eval_carry_it() {
    let mut r = Rig::new();
    let n = 3;
    for i in 0..n {
        let t = 1_000 * i;
        r.step(1, 2 * i as u64, t, t + 100);
        r.begin(1, "eval", t + 200);
        r.step(1, 2 * i as u64 + 1, t + 300, t + 400);
        r.end(1, "eval", t + 500);
        r.begin(1, "checkpoint", t + 600);
        r.end(1, "checkpoint", t + 700);
    }
    let (steps, phases, errors) = r.stop();
    assert!(errors.snapshot().is_empty(), "{:?}", errors.snapshot());
    assert_eq!(phases.len(), 2 * n as usize);
    for i in 0..n {
        let t = 1_000 * i;
        let (e, c) = (&phases[2 * i as usize], &phases[2 * i as usize + 1]);
        assert_eq!((&*e.name, e.begin_ns, e.end_ns), ("eval", t + 200, t + 500));
        assert_eq!(
            (&*c.name, c.begin_ns, c.end_ns),
            ("checkpoint", t + 600, t + 700)
        );
        assert_eq!((e.pid, e.source), (1, "socket"));
    }
    assert_eq!(steps.len(), 2 * n as usize);
    for s in &steps {
        let want = (s.step % 2 == 1).then_some("eval");
        assert_eq!(s.phase.as_deref(), want, "step {}", s.step);
    }
    // One name, one allocation: the rows share it.
    assert!(Arc::ptr_eq(&phases[0].name, &phases[2].name));
}

#[test]
fn a_step_takes_its_own_pids_innermost_phase_at_its_begin() {
    let mut r = Rig::new();
    r.begin(1, "eval", 10);
    r.begin(1, "data-reload", 20);
    r.step(1, 1, 30, 40);
    r.step(2, 1, 30, 40); // another process: train
    r.end(1, "data-reload", 50);
    r.step(1, 2, 60, 70);
    // Begun inside the span, ended after it: still eval.
    r.feed(step(EventKind::Begin, 1, 3, 80));
    r.end(1, "eval", 90);
    r.feed(step(EventKind::End, 1, 3, 100));
    let (steps, phases, errors) = r.stop();
    assert!(errors.snapshot().is_empty(), "{:?}", errors.snapshot());
    let by = |pid, n| {
        steps
            .iter()
            .find(|s| s.pid == pid && s.step == n)
            .and_then(|s| s.phase.as_deref().map(str::to_string))
    };
    assert_eq!(by(1, 1).as_deref(), Some("data-reload"));
    assert_eq!(by(2, 1), None);
    assert_eq!(by(1, 2).as_deref(), Some("eval"));
    assert_eq!(by(1, 3).as_deref(), Some("eval"));
    let spans: Vec<_> = phases
        .iter()
        .map(|p| (&*p.name, p.begin_ns, p.end_ns))
        .collect();
    assert_eq!(spans, [("data-reload", 20, 50), ("eval", 10, 90)]);
}

#[test]
fn an_end_closes_the_innermost_span_of_its_name() {
    let mut r = Rig::new();
    r.begin(1, "a", 10);
    r.begin(1, "b", 20);
    r.begin(1, "a", 30);
    r.end(1, "a", 40); // the inner a
    r.end(1, "a", 50); // the outer a; b stays open
    r.step(1, 1, 60, 70);
    r.end(1, "b", 80);
    let (steps, phases, _) = r.stop();
    let spans: Vec<_> = phases
        .iter()
        .map(|p| (&*p.name, p.begin_ns, p.end_ns))
        .collect();
    assert_eq!(spans, [("a", 30, 40), ("a", 10, 50), ("b", 20, 80)]);
    assert_eq!(steps[0].phase.as_deref(), Some("b"));
}

#[test]
fn forged_and_unmatched_marks_are_refused_and_counted() {
    let mut r = Rig::new();
    let mut forged = mark(EventKind::PhaseBegin, 1, "eval", 10);
    let mut junk = phase::pack("eval");
    junk[1] = b' ';
    forged.set_phase_name(&junk);
    r.feed(forged);
    r.feed(mark(EventKind::PhaseBegin, 1, "", 10));
    let mut high = mark(EventKind::PhaseBegin, 1, "x", 10);
    high.set_phase_name(&[0xff; 32]);
    r.feed(high);
    r.end(1, "eval", 20); // nothing open
    r.begin(1, "eval", 30);
    r.end(1, "checkpoint", 40); // not the open name
    r.end(1, "eval", 25); // before its begin
    r.feed(mark(EventKind::PhaseBegin, 1, "late", i64::MAX));
    r.step(1, 1, 50, 60);
    let (steps, phases, errors) = r.stop();
    let e = errors.snapshot();
    assert_eq!(e.get(&key("marker:invalid_phase")), Some(&3), "{e:?}");
    assert_eq!(e.get(&key("marker:phase_end_without_begin")), Some(&2));
    assert_eq!(e.get(&key("marker:phase_end_before_begin")), Some(&1));
    assert_eq!(e.get(&key("marker:invalid_ts")), Some(&1));
    assert!(phases.is_empty(), "{phases:?}");
    assert_eq!(steps[0].phase, None);
}

#[test]
fn open_spans_end_at_the_stop() {
    let mut r = Rig::new();
    r.begin(7, "eval", 10);
    r.begin(7, "checkpoint", 20);
    r.begin(8, "eval", 30);
    let before = monotonic_ns();
    let (_, phases, errors) = r.stop();
    assert!(errors.snapshot().is_empty(), "{:?}", errors.snapshot());
    let spans: Vec<_> = phases.iter().map(|p| (p.pid, &*p.name)).collect();
    assert_eq!(spans, [(7, "checkpoint"), (7, "eval"), (8, "eval")]);
    assert!(phases.iter().all(|p| p.end_ns >= before), "{phases:?}");
}

#[test]
fn depth_and_pids_are_capped() {
    let mut r = Rig::new();
    for i in 0..MAX_PHASE_DEPTH + 2 {
        r.begin(1, &format!("p{i}"), 10 + i as i64);
    }
    for pid in 2..MAX_PHASE_PIDS as u32 + 12 {
        r.begin(pid, "eval", 100);
    }
    assert_eq!(r.p.open_phase_pids(), MAX_PHASE_PIDS);
    let e = r.errors.snapshot();
    assert_eq!(e.get(&key("marker:phase_too_deep")), Some(&2), "{e:?}");
    assert_eq!(e.get(&key("marker:open_phases_evicted")), Some(&11));
    let (_, phases, _) = r.stop();
    // pid 1 was the least recently marked: its spans went first.
    assert!(phases.iter().all(|p| p.pid != 1));
    assert_eq!(phases.len(), MAX_PHASE_PIDS);
}
