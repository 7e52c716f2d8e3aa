//! The one spawner of the recorder's sampler threads. Periodic samplers share one tick
//! thread (one wake-up per tick, `tick.rs`) unless their poll is slow enough to delay
//! a tick, which earns them a thread of their own running the same loop; sources that
//! block on their own input (the marker socket, the eBPF ring) get a thread each. Every
//! thread gets its own `Batcher` on the one channel to the writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;

use eco2ai_trace::Rows;

use crate::batcher::Batcher;
use crate::samplers::tick::{Sampler, run_tasks};

/// The shared tick thread's name.
pub const TICK_THREAD: &str = "sampler";

/// A started thread and what runs on it.
pub struct SamplerThread {
    pub name: String,
    /// The samplers it polls, fastest first (a source's own name for a source).
    pub runs: Vec<&'static str>,
    pub handle: JoinHandle<()>,
}

pub struct Spawner {
    tx: SyncSender<Rows>,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    batch_ns: i64,
    ticked: Vec<Box<dyn Sampler>>,
    threads: Vec<SamplerThread>,
}

impl Spawner {
    /// Threads send ~`batch_ns` batches on `tx`, count what a full channel drops in
    /// `dropped`, and end at `stop`.
    pub fn new(
        tx: SyncSender<Rows>,
        dropped: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        batch_ns: i64,
    ) -> Spawner {
        Spawner {
            tx,
            dropped,
            stop,
            batch_ns,
            ticked: Vec::new(),
            threads: Vec::new(),
        }
    }

    /// On the shared tick thread, started by `finish`.
    pub fn tick(&mut self, sampler: Box<dyn Sampler>) {
        self.ticked.push(sampler);
    }

    /// On a thread of its own named after it: a poll slow enough to delay the others'
    /// ticks (the NVML energy counter, ~4 ms a GPU on Hopper).
    pub fn own_thread(&mut self, sampler: Box<dyn Sampler>) -> std::io::Result<()> {
        let name = sampler.name();
        let stop = self.stop.clone();
        self.start(name, vec![name], move |mut b| {
            run_tasks(vec![sampler], &stop, &mut b)
        })
    }

    /// A source driven by its own input rather than a clock; `run` returns at `stop`.
    pub fn source(
        &mut self,
        name: &'static str,
        run: impl FnOnce(Batcher, Arc<AtomicBool>) + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = self.stop.clone();
        self.start(name, vec![name], move |b| run(b, stop))
    }

    /// Starts the tick thread (if any sampler is on it) and hands every thread over;
    /// the channel closes once they have all ended.
    pub fn finish(mut self) -> std::io::Result<Vec<SamplerThread>> {
        let ticked = std::mem::take(&mut self.ticked);
        if !ticked.is_empty() {
            let mut runs: Vec<(i64, &'static str)> =
                ticked.iter().map(|s| (s.period_ns(), s.name())).collect();
            runs.sort_by_key(|r| r.0);
            let stop = self.stop.clone();
            self.start(
                TICK_THREAD,
                runs.into_iter().map(|r| r.1).collect(),
                move |mut b| run_tasks(ticked, &stop, &mut b),
            )?;
        }
        Ok(self.threads)
    }

    fn start(
        &mut self,
        name: &str,
        runs: Vec<&'static str>,
        body: impl FnOnce(Batcher) + Send + 'static,
    ) -> std::io::Result<()> {
        let b = Batcher::new(self.tx.clone(), self.dropped.clone(), self.batch_ns);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(b))?;
        self.threads.push(SamplerThread {
            name: name.into(),
            runs,
            handle,
        });
        Ok(())
    }
}
