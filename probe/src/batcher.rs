//! Hands rows from a sampler thread to the writer in batches of ~100 ms, without ever
//! blocking the sampler: when the bounded channel is full the batch is counted as
//! dropped (meta.json `dropped_rows`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

use eco2ai_trace::{CpuRow, EvalRow, GpuRow, ProcRow, Rows, StepRow};

pub struct Batcher {
    tx: SyncSender<Rows>,
    dropped: Arc<AtomicU64>,
    pub gpu: Vec<GpuRow>,
    pub cpu: Vec<CpuRow>,
    pub procs: Vec<ProcRow>,
    pub steps: Vec<StepRow>,
    pub evals: Vec<EvalRow>,
    last_send_ns: i64,
    every_ns: i64,
}

impl Batcher {
    pub fn new(tx: SyncSender<Rows>, dropped: Arc<AtomicU64>, every_ns: i64) -> Batcher {
        Batcher { tx, dropped, gpu: Vec::new(), cpu: Vec::new(), procs: Vec::new(), steps: Vec::new(), evals: Vec::new(), last_send_ns: 0, every_ns }
    }

    /// Sends what is buffered if the batch is old enough (or `force`).
    pub fn maybe_send(&mut self, now_ns: i64, force: bool) {
        if !force && now_ns - self.last_send_ns < self.every_ns {
            return;
        }
        self.last_send_ns = now_ns;
        if !self.gpu.is_empty() {
            let rows = Rows::Gpu(refill(&mut self.gpu));
            self.send(rows);
        }
        if !self.cpu.is_empty() {
            let rows = Rows::Cpu(refill(&mut self.cpu));
            self.send(rows);
        }
        if !self.procs.is_empty() {
            let rows = Rows::Procs(refill(&mut self.procs));
            self.send(rows);
        }
        if !self.steps.is_empty() {
            let rows = Rows::Steps(refill(&mut self.steps));
            self.send(rows);
        }
        if !self.evals.is_empty() {
            let rows = Rows::Evals(refill(&mut self.evals));
            self.send(rows);
        }
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

/// Takes the rows out, leaving a vector of the same capacity so that the next batch
/// does not grow from zero again.
fn refill<T>(v: &mut Vec<T>) -> Vec<T> {
    let cap = v.capacity();
    std::mem::replace(v, Vec::with_capacity(cap))
}

impl Drop for Batcher {
    fn drop(&mut self) {
        // The last rows of a stopping sampler: wait for room rather than drop them.
        for rows in [
            Rows::Gpu(std::mem::take(&mut self.gpu)),
            Rows::Cpu(std::mem::take(&mut self.cpu)),
            Rows::Procs(std::mem::take(&mut self.procs)),
            Rows::Steps(std::mem::take(&mut self.steps)),
            Rows::Evals(std::mem::take(&mut self.evals)),
        ] {
            if !rows.is_empty() {
                let n = rows.len() as u64;
                if self.tx.send(rows).is_err() {
                    self.dropped.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    }
}
