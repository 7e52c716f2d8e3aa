//! Several samplers on one thread: each has its own period, and the thread sleeps to
//! the earliest deadline, so the process wakes once per RAPL millisecond, not once per
//! sensor. Every wake-up of a timer costs CPU (a VM exit on a guest) whatever it then
//! does, so folding the 20 ms NVML poll and the 100 ms CPU poll into the 1 ms RAPL tick
//! takes their wake-ups away while keeping every sample.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::batcher::Batcher;
use crate::clock::{monotonic_ns, sleep_until_or_stop};

/// A sensor read on a period: the one shape the spawner (`samplers::spawn`) runs. The
/// model is alumet's Source (a name, a trigger, a poll into a buffer), without its
/// framework: the trigger is a period, the buffer the thread's `Batcher`.
pub trait Sampler: Send {
    /// Names the sampler in the spawner's plan (and its thread, when it has its own).
    fn name(&self) -> &'static str;
    /// How often it is polled.
    fn period_ns(&self) -> i64;
    /// Reads its sensor into `b`, stamped `now_ns`.
    fn poll(&mut self, now_ns: i64, b: &mut Batcher);
}

/// One sampler on a tick thread, with its next deadline.
struct Task {
    every_ns: i64,
    next_ns: i64,
    sampler: Box<dyn Sampler>,
}

/// Runs each sampler every `period_ns` on absolute deadlines until `stop`, the fastest
/// first (its reads are stamped closest to the tick); a late tick is not made up for.
/// One last poll of every sampler at the stop closes the interval the run ended in, so
/// a run shorter than one interval still has energy.
pub fn run_tasks(samplers: Vec<Box<dyn Sampler>>, stop: &AtomicBool, b: &mut Batcher) {
    if samplers.is_empty() {
        return;
    }
    let start = monotonic_ns();
    let mut tasks: Vec<Task> = samplers
        .into_iter()
        .map(|sampler| Task {
            every_ns: sampler.period_ns().max(1),
            next_ns: start,
            sampler,
        })
        .collect();
    // Stable: samplers of equal period keep the order they were added in.
    tasks.sort_by_key(|t| t.every_ns);
    while !stop.load(Ordering::Relaxed) {
        let now = monotonic_ns();
        for t in tasks.iter_mut().filter(|t| now >= t.next_ns) {
            t.sampler.poll(now, b);
            t.next_ns += t.every_ns;
            if t.next_ns < now {
                t.next_ns = now + t.every_ns;
            }
        }
        b.maybe_send(now, false);
        let next = tasks.iter().map(|t| t.next_ns).min().unwrap_or(now);
        sleep_until_or_stop(next, stop);
    }
    let now = monotonic_ns();
    for t in &mut tasks {
        t.sampler.poll(now, b);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::mpsc::sync_channel;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records the instants it is polled at.
    struct Recording {
        id: u8,
        every_ns: i64,
        seen: Arc<Mutex<Vec<(u8, i64)>>>,
    }

    impl Sampler for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }
        fn period_ns(&self) -> i64 {
            self.every_ns
        }
        fn poll(&mut self, now_ns: i64, _: &mut Batcher) {
            self.seen.lock().unwrap().push((self.id, now_ns));
        }
    }

    #[test]
    fn each_task_keeps_its_period_and_polls_once_more_at_the_stop() {
        let (tx, _rx) = sync_channel(1024);
        let mut b = Batcher::new(tx, Arc::new(AtomicU64::new(0)), 100_000_000);
        let seen: Arc<Mutex<Vec<(u8, i64)>>> = Arc::default();
        let task = |id: u8, every_ns: i64| -> Box<dyn Sampler> {
            Box::new(Recording {
                id,
                every_ns,
                seen: seen.clone(),
            })
        };
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(205));
            s2.store(true, Ordering::Relaxed);
        });
        // Given slowest first: the thread orders them by period.
        run_tasks(vec![task(1, 50_000_000), task(0, 2_000_000)], &stop, &mut b);
        stopper.join().unwrap();
        let seen = seen.lock().unwrap();
        // The fastest is polled first at a shared tick, whatever the order given.
        assert_eq!(seen[0].0, 0, "{seen:?}");
        let count = |id| seen.iter().filter(|(i, _)| *i == id).count();
        // ~205 ms: ticks at 0, 50, ..., 200 ms plus the one at the stop (fewer or one
        // more on a loaded machine); the fast task about 100 (a loaded machine may lose
        // some, never add).
        assert!((4..=7).contains(&count(1)), "{seen:?}");
        assert!((20..=110).contains(&count(0)), "{}", count(0));
        // The slow task's k-th tick is never before its deadline, k x 50 ms after the
        // start (the first tick may itself be late by up to a period on a busy machine).
        let slow: Vec<i64> = seen.iter().filter(|(i, _)| *i == 1).map(|x| x.1).collect();
        for (k, ts) in slow[..slow.len() - 1].iter().enumerate() {
            assert!(ts - slow[0] >= (k as i64 - 1) * 50_000_000, "{slow:?}");
        }
        // Both tasks close the run at the same instant.
        let last = |id| seen.iter().rev().find(|(i, _)| *i == id).map(|x| x.1);
        assert_eq!(last(0), last(1));
    }
}
