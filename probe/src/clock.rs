//! CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`, so eBPF events and
//! sensor samples share one time axis.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn read(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        // Both clocks used here always exist on Linux; 0 keeps callers total.
        return 0;
    }
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

pub fn monotonic_ns() -> i64 {
    read(libc::CLOCK_MONOTONIC)
}

pub fn unix_ns() -> i64 {
    read(libc::CLOCK_REALTIME)
}

/// Offset to add to a monotonic timestamp to get Unix time, taken as the middle of the
/// tightest of a few bracketing reads.
pub fn mono_to_unix_ns() -> i64 {
    let mut best = (i64::MAX, 0i64);
    for _ in 0..5 {
        let a = monotonic_ns();
        let u = unix_ns();
        let b = monotonic_ns();
        if b - a < best.0 {
            best = (b - a, u - (a + (b - a) / 2));
        }
    }
    best.1
}

/// Sleeps until the monotonic time `deadline_ns` (returns at once if it has passed).
pub fn sleep_until(deadline_ns: i64) {
    let now = monotonic_ns();
    if deadline_ns > now {
        std::thread::sleep(Duration::from_nanos((deadline_ns - now) as u64));
    }
}

/// Sleeps until `deadline_ns` or until `stop` is set and this thread is unparked
/// (`Recorder::stop` unparks every sampler), so a sampler with a long period does not
/// hold the end of a run for up to its period.
pub fn sleep_until_or_stop(deadline_ns: i64, stop: &AtomicBool) {
    loop {
        let now = monotonic_ns();
        if deadline_ns <= now || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::park_timeout(Duration::from_nanos((deadline_ns - now) as u64));
    }
}
