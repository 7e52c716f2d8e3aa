//! Hands rows from a sampler thread to the writer in batches of ~100 ms, without ever
//! blocking the sampler: when the bounded channel is full the batch is counted as
//! dropped (meta.json `dropped_rows`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

use eco2ai_trace::{CpuRow, EvalRow, GpuRow, PhaseRow, ProcRow, Rows, StepRow};

pub struct Batcher {
    tx: SyncSender<Rows>,
    dropped: Arc<AtomicU64>,
    pub gpu: Vec<GpuRow>,
    pub cpu: Vec<CpuRow>,
    pub procs: Vec<ProcRow>,
    pub steps: Vec<StepRow>,
    pub evals: Vec<EvalRow>,
    pub phases: Vec<PhaseRow>,
    last_send_ns: i64,
    every_ns: i64,
}

impl Batcher {
    pub fn new(tx: SyncSender<Rows>, dropped: Arc<AtomicU64>, every_ns: i64) -> Batcher {
        Batcher {
            tx,
            dropped,
            gpu: Vec::new(),
            cpu: Vec::new(),
            procs: Vec::new(),
            steps: Vec::new(),
            evals: Vec::new(),
            phases: Vec::new(),
            last_send_ns: 0,
            every_ns,
        }
    }

    /// Sends what is buffered if the batch is old enough (or `force`).
    pub fn maybe_send(&mut self, now_ns: i64, force: bool) {
        if !force && now_ns - self.last_send_ns < self.every_ns {
            return;
        }
        self.last_send_ns = now_ns;
        for rows in self.take_all() {
            self.send(rows);
        }
    }

    /// The buffered rows of every table that has some, leaving each buffer empty.
    fn take_all(&mut self) -> impl Iterator<Item = Rows> + use<> {
        [
            take(&mut self.gpu, Rows::Gpu),
            take(&mut self.cpu, Rows::Cpu),
            take(&mut self.procs, Rows::Procs),
            take(&mut self.steps, Rows::Steps),
            take(&mut self.evals, Rows::Evals),
            take(&mut self.phases, Rows::Phases),
        ]
        .into_iter()
        .flatten()
    }

    fn send(&self, rows: Rows) {
        let n = rows.len() as u64;
        match self.tx.try_send(rows) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// Takes the rows out if there are any, leaving a vector of the same capacity so that
/// the next batch does not grow from zero again.
fn take<T>(v: &mut Vec<T>, wrap: fn(Vec<T>) -> Rows) -> Option<Rows> {
    if v.is_empty() {
        return None;
    }
    let cap = v.capacity();
    Some(wrap(std::mem::replace(v, Vec::with_capacity(cap))))
}

impl Drop for Batcher {
    fn drop(&mut self) {
        // The last rows of a stopping sampler: wait for room rather than drop them.
        for rows in self.take_all() {
            let n = rows.len() as u64;
            if self.tx.send(rows).is_err() {
                self.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}
