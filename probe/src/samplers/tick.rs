//! Several samplers on one thread: each has its own period, and the thread sleeps to
//! the earliest deadline, so the process wakes once per RAPL millisecond, not once per
//! sensor. Every wake-up of a timer costs CPU (a VM exit on a guest) whatever it then
//! does, so folding the 20 ms NVML poll and the 100 ms CPU poll into the 1 ms RAPL tick
//! takes their wake-ups away while keeping every sample.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::batcher::Batcher;
use crate::clock::{monotonic_ns, sleep_until_or_stop};

/// What a task does at a tick: poll its sensor into the batcher, stamped `ts_ns`.
pub type Poll = Box<dyn FnMut(i64, &mut Batcher) + Send>;

/// One sampler on the shared thread.
pub struct Task {
    pub every_ns: i64,
    next_ns: i64,
    poll: Poll,
}

impl Task {
    pub fn new(every_ns: i64, poll: Poll) -> Task {
        Task {
            every_ns: every_ns.max(1),
            next_ns: i64::MIN,
            poll,
        }
    }
}

/// Runs each task every `every_ns` on absolute deadlines until `stop`, in the order
/// given (the fastest first: its reads are stamped closest to the tick); a late tick is
/// not made up for. One last poll of every task at the stop closes the interval the run
/// ended in, so a run shorter than one interval still has energy.
pub fn run_tasks(mut tasks: Vec<Task>, stop: &AtomicBool, b: &mut Batcher) {
    if tasks.is_empty() {
        return;
    }
    let start = monotonic_ns();
    for t in &mut tasks {
        t.next_ns = start;
    }
    while !stop.load(Ordering::Relaxed) {
        let now = monotonic_ns();
        for t in tasks.iter_mut().filter(|t| now >= t.next_ns) {
            (t.poll)(now, b);
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
        (t.poll)(now, b);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::mpsc::sync_channel;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn each_task_keeps_its_period_and_polls_once_more_at_the_stop() {
        let (tx, _rx) = sync_channel(1024);
        let mut b = Batcher::new(tx, Arc::new(AtomicU64::new(0)), 100_000_000);
        let seen: Arc<Mutex<Vec<(u8, i64)>>> = Arc::default();
        let task = |id: u8, every_ns: i64| {
            let s = seen.clone();
            Task::new(
                every_ns,
                Box::new(move |ts, _: &mut Batcher| s.lock().unwrap().push((id, ts))),
            )
        };
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(205));
            s2.store(true, Ordering::Relaxed);
        });
        run_tasks(vec![task(0, 2_000_000), task(1, 50_000_000)], &stop, &mut b);
        stopper.join().unwrap();
        let seen = seen.lock().unwrap();
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
