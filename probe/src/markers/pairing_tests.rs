use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, sync_channel};

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

fn batcher() -> (Batcher, Receiver<Rows>) {
    let (tx, rx) = sync_channel(1 << 12);
    (Batcher::new(tx, Arc::new(AtomicU64::new(0)), 0), rx)
}

/// A pairing that accepts any timestamp from 0 on (the tests' own clock).
fn pairing() -> Pairing {
    let mut p = Pairing::new("socket", 0);
    p.valid_from_ns = 0;
    p
}

fn sent_steps(b: &mut Batcher, rx: &Receiver<Rows>) -> Vec<StepRow> {
    b.maybe_send(1, true);
    let mut out = Vec::new();
    while let Ok(rows) = rx.try_recv() {
        if let Rows::Steps(v) = rows {
            out.extend(v);
        }
    }
    out
}

#[test]
fn a_loss_logged_after_the_end_fills_the_held_step() {
    let (mut b, rx) = batcher();
    let errors = ErrorCounts::default();
    let mut p = pairing();
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
    let rows = sent_steps(&mut b, &rx);
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

#[test]
fn a_flood_of_begins_from_many_pids_is_capped_oldest_first() {
    let (mut b, rx) = batcher();
    let errors = ErrorCounts::default();
    let mut p = pairing();
    let flood = MAX_OPEN_STEPS as u32 * 3;
    for pid in 0..flood {
        p.handle(
            ev(EventKind::Begin, pid, 1, 100 + pid as i64, f64::NAN),
            None,
            &mut b,
            &errors,
        );
        assert!(p.open_steps() <= MAX_OPEN_STEPS);
    }
    assert_eq!(p.open_steps(), MAX_OPEN_STEPS);
    assert!(
        p.order.len() <= MAX_OPEN_STEPS,
        "the eviction index is bounded too"
    );
    let evicted = u64::from(flood) - MAX_OPEN_STEPS as u64;
    assert_eq!(
        errors.snapshot().get("marker:open_steps_evicted:transient"),
        Some(&evicted)
    );
    // The newest pid still pairs; the oldest was dropped and ends unbegun.
    let newest = flood - 1;
    p.handle(
        ev(EventKind::End, newest, 1, 1_000_000, f64::NAN),
        None,
        &mut b,
        &errors,
    );
    p.handle(
        ev(EventKind::End, 0, 1, 1_000_000, f64::NAN),
        None,
        &mut b,
        &errors,
    );
    p.release(0, true, &mut b);
    let rows = sent_steps(&mut b, &rx);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].pid, rows[0].begin_ns),
        (newest, 100 + newest as i64)
    );
    assert_eq!((rows[1].pid, rows[1].begin_ns), (0, 1_000_000));
    assert_eq!(
        errors.snapshot().get("marker:end_without_begin:transient"),
        Some(&1)
    );
}

#[test]
fn one_pid_beginning_again_and_again_keeps_one_entry() {
    let (mut b, _rx) = batcher();
    let errors = ErrorCounts::default();
    let mut p = pairing();
    for i in 0..10_000 {
        p.handle(
            ev(EventKind::Begin, 42, i, 100 + i as i64, f64::NAN),
            None,
            &mut b,
            &errors,
        );
    }
    assert_eq!((p.open_steps(), p.order.len()), (1, 1));
}

#[test]
fn events_outside_the_run_or_with_absurd_counts_are_refused() {
    let (mut b, rx) = batcher();
    let errors = ErrorCounts::default();
    let mut p = pairing();
    p.valid_from_ns = 1_000;
    let now = monotonic_ns();
    let mut huge = ev(EventKind::End, 3, 1, 2_000, 1.0);
    huge.samples = u64::MAX;
    let bad = [
        ev(EventKind::Begin, 1, 1, i64::MIN, f64::NAN),
        ev(EventKind::Begin, 1, 1, 999, f64::NAN),
        ev(EventKind::End, 1, 1, i64::MAX, f64::NAN),
        ev(EventKind::Eval, 1, 1, now + 10 * FUTURE_SLACK_NS, 0.5),
        huge,
    ];
    for e in bad {
        p.handle(e, None, &mut b, &errors);
    }
    p.handle(
        ev(EventKind::Begin, 3, 1, 1_500, f64::NAN),
        None,
        &mut b,
        &errors,
    );
    p.handle(huge, None, &mut b, &errors);
    // An end stamped before its begin is refused too.
    p.handle(
        ev(EventKind::Begin, 4, 1, 5_000, f64::NAN),
        None,
        &mut b,
        &errors,
    );
    p.handle(
        ev(EventKind::End, 4, 1, 4_000, f64::NAN),
        None,
        &mut b,
        &errors,
    );
    p.release(i64::MAX, false, &mut b);
    p.release(0, true, &mut b);
    assert!(sent_steps(&mut b, &rx).is_empty());
    let s = errors.snapshot();
    assert_eq!(s.get("marker:invalid_ts:transient"), Some(&4), "{s:?}");
    assert_eq!(s.get("marker:invalid_count:transient"), Some(&2), "{s:?}");
    assert_eq!(
        s.get("marker:end_before_begin:transient"),
        Some(&1),
        "{s:?}"
    );
}

#[test]
fn held_steps_are_bounded_and_handed_on_not_dropped() {
    let (mut b, _rx) = batcher();
    let errors = ErrorCounts::default();
    let mut p = pairing();
    let n = MAX_HELD_STEPS as u64 + 10;
    for i in 0..n {
        let ts = 100 + 2 * i as i64;
        p.handle(
            ev(EventKind::Begin, 1, i, ts, f64::NAN),
            None,
            &mut b,
            &errors,
        );
        p.handle(
            ev(EventKind::End, 1, i, ts + 1, f64::NAN),
            None,
            &mut b,
            &errors,
        );
    }
    assert_eq!(p.held.len(), MAX_HELD_STEPS);
    assert_eq!(b.steps.len(), 10, "the oldest went on early");
    p.release(0, true, &mut b);
    assert_eq!(b.steps.len() as u64, n);
}

#[test]
fn the_last_sync_mark_inside_a_step_is_its_sync_ns() {
    let (mut b, rx) = batcher();
    let errors = ErrorCounts::default();
    let mut p = pairing();
    let mut handle =
        |kind, pid, step, ts| p.handle(ev(kind, pid, step, ts, f64::NAN), None, &mut b, &errors);
    // pid 1 marks twice (gradient accumulation): the last one counts.
    handle(EventKind::Begin, 1, 5, 100);
    handle(EventKind::Sync, 1, 0, 150);
    handle(EventKind::Sync, 1, 0, 170);
    handle(EventKind::End, 1, 5, 200);
    // pid 2 never marks: null. A sync with no open step is refused.
    handle(EventKind::Begin, 2, 5, 100);
    handle(EventKind::End, 2, 5, 210);
    handle(EventKind::Sync, 2, 0, 220);
    p.release(0, true, &mut b);
    let rows = sent_steps(&mut b, &rx);
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].pid, rows[0].sync_ns), (1, Some(170)));
    assert_eq!((rows[1].pid, rows[1].sync_ns), (2, None));
    assert_eq!(
        errors.snapshot().get("marker:sync_without_step:transient"),
        Some(&1)
    );
}

#[test]
fn ranks_are_noted_when_a_pid_begins_its_first_step() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("41")).unwrap();
    std::fs::write(tmp.path().join("41/environ"), b"RANK=1\0LOCAL_RANK=0\0").unwrap();
    let book = crate::job::RankBook::with_proc_root(tmp.path());
    let (mut b, _rx) = batcher();
    let errors = ErrorCounts::default();
    let mut p = pairing().with_ranks(Some(book.clone()));
    p.handle(
        ev(EventKind::Begin, 41, 1, 10, f64::NAN),
        None,
        &mut b,
        &errors,
    );
    p.handle(
        ev(EventKind::End, 41, 1, 20, f64::NAN),
        None,
        &mut b,
        &errors,
    );
    assert_eq!(book.ranks()[&41].rank, 1);
    assert!(errors.snapshot().is_empty(), "{:?}", errors.snapshot());
}
