//! The built-in demo workload: a synthetic training run with the phases of a real one
//! (warm-up, training steps with a data-loading pause, an evaluation pass, a checkpoint
//! save, more training, idle at the end), so that a fresh machine has something that
//! looks like training to record. Run as the recorded command, like any user workload.
//! The evaluation pass and the checkpoint save are marked as `eval` and `checkpoint`
//! phase spans (`eco2ai_phase_begin/end`); warm-up steps are training steps.

use std::io::Write as _;
use std::time::{Duration, Instant};

use eco2ai_marker::Eco2aiStep;

use crate::markers::{ENV_MARKER_LIB, MarkerFns};

pub struct DemoConfig {
    pub duration: Duration,
    pub step: Duration,
    pub threads: usize,
}

/// What the demo is doing; each phase gets a share of the run's duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The first steps: slower (caches, allocator), compute ramping up.
    WarmUp,
    /// Steady training steps: compute on every core, then a data-loading pause.
    Train,
    /// Forward passes only: half the compute per batch, not marked as training steps.
    Eval,
    /// Model state written to disk and synced: one core, mostly I/O.
    Checkpoint,
    /// The process is alive but does nothing (waiting for the next job, say).
    Idle,
}

/// The schedule as (phase, share of the duration), in order.
pub const SCHEDULE: [(Phase, f64); 6] = [
    (Phase::WarmUp, 0.10),
    (Phase::Train, 0.40),
    (Phase::Eval, 0.12),
    (Phase::Checkpoint, 0.08),
    (Phase::Train, 0.20),
    (Phase::Idle, 0.10),
];

/// Busy work the optimiser cannot remove: a small matrix product.
fn matmul_for(d: Duration, seed: u64) -> f64 {
    const N: usize = 48;
    let start = Instant::now();
    let a: Vec<f64> = (0..N * N)
        .map(|i| ((i as u64 ^ seed) % 97) as f64 / 97.0)
        .collect();
    let mut c = vec![0.0f64; N * N];
    let mut acc = 0.0;
    while start.elapsed() < d {
        for i in 0..N {
            for k in 0..N {
                let aik = a[i * N + k];
                for j in 0..N {
                    c[i * N + j] += aik * a[k * N + j];
                }
            }
        }
        acc += c[seed as usize % (N * N)];
    }
    std::hint::black_box(acc)
}

/// `threads` cores busy for `d`.
fn compute(threads: usize, d: Duration, seed: u64) {
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || matmul_for(d, seed * 31 + t as u64));
        }
    });
}

/// The state of the demo's training loop.
struct Trainer<'a> {
    cfg: &'a DemoConfig,
    markers: Option<MarkerFns>,
    step: u64,
}

impl Trainer<'_> {
    fn loss(&self) -> f64 {
        4.0 * (-(self.step as f64) / 80.0).exp() + 0.5
    }

    /// One marked training step; `slowdown` > 1 during warm-up.
    fn train_step(&mut self, slowdown: f64) {
        self.step += 1;
        if let Some(m) = &self.markers {
            (m.begin)(self.step);
        }
        compute(
            self.cfg.threads,
            self.cfg.step.mul_f64(0.8 * slowdown),
            self.step,
        );
        let samples = 32;
        if let Some(m) = &self.markers {
            let s = Eco2aiStep {
                step: self.step,
                samples,
                tokens: samples * 512,
                loss: self.loss(),
                lr: 3e-4 * (self.step as f64 / 20.0).min(1.0),
                epoch: self.step as f64 / 200.0,
            };
            // SAFETY: a valid step struct that outlives the call.
            unsafe { (m.end)(&s) };
        }
        std::thread::sleep(self.cfg.step.mul_f64(0.2)); // "data loading"
        if self.step.is_multiple_of(10) {
            eprintln!("demo: step {} loss {:.3}", self.step, self.loss());
        }
    }

    /// Marks the begin or end of a named phase span, where the library has phases.
    fn mark(&self, begin: bool, name: &std::ffi::CStr) {
        if let Some(m) = &self.markers {
            m.phase(begin, name);
        }
    }

    /// Runs one phase for `span`.
    fn phase(&mut self, phase: Phase, span: Duration, index: usize) {
        let start = Instant::now();
        eprintln!("demo: {phase:?} for {:.1} s", span.as_secs_f64());
        match phase {
            Phase::WarmUp | Phase::Train => {
                while start.elapsed() < span {
                    let progress = start.elapsed().as_secs_f64() / span.as_secs_f64();
                    let slowdown = if phase == Phase::WarmUp {
                        1.6 - 0.6 * progress
                    } else {
                        1.0
                    };
                    self.train_step(slowdown);
                }
            }
            Phase::Eval => {
                self.mark(true, c"eval");
                let mut batch = 0u64;
                while start.elapsed() < span {
                    batch += 1;
                    compute(self.cfg.threads, self.cfg.step.mul_f64(0.4), batch);
                }
                if let Some(m) = &self.markers {
                    (m.eval)(self.step, self.loss() * 1.1);
                }
                self.mark(false, c"eval");
            }
            Phase::Checkpoint => {
                self.mark(true, c"checkpoint");
                checkpoint(span, index);
                self.mark(false, c"checkpoint");
            }
            Phase::Idle => std::thread::sleep(span.saturating_sub(start.elapsed())),
        }
    }
}

/// Writes a checkpoint-sized file for at most `span`, syncs it and removes it.
fn checkpoint(span: Duration, index: usize) {
    let start = Instant::now();
    // The temp directory, not the run: a demo killed mid-write leaves nothing in the trace.
    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        "demo-checkpoint-{}-{index}.bin",
        std::process::id()
    ));
    let written = std::fs::File::create(&path).and_then(|mut f| {
        let chunk = vec![0x5au8; 1 << 20];
        let mut n = 0u64;
        // Up to 64 MiB, as fast as the disk takes it, within the phase.
        while n < 64 && start.elapsed() < span {
            f.write_all(&chunk)?;
            n += 1;
        }
        f.sync_all()?;
        Ok(n)
    });
    let _ = std::fs::remove_file(&path);
    match written {
        Ok(mib) => eprintln!("demo: checkpoint of {mib} MiB written"),
        Err(e) => eprintln!("demo: checkpoint not written ({e})"),
    }
    std::thread::sleep(span.saturating_sub(start.elapsed()));
}

/// Runs the demo; prints its phases and one line every 10 steps. Returns the number of
/// training steps.
pub fn run(cfg: &DemoConfig) -> u64 {
    let markers = std::env::var(ENV_MARKER_LIB)
        .ok()
        .and_then(|p| MarkerFns::load(&p));
    if markers.is_none() {
        eprintln!("demo: no marker library in {ENV_MARKER_LIB}: steps will not be marked");
    }
    let mut trainer = Trainer {
        cfg,
        markers,
        step: 0,
    };
    let start = Instant::now();
    let mut planned = Duration::ZERO;
    for (i, (phase, share)) in SCHEDULE.iter().enumerate() {
        planned += cfg.duration.mul_f64(*share);
        // Each phase ends where the schedule says, whatever the earlier ones overran.
        let span = planned.saturating_sub(start.elapsed());
        trainer.phase(*phase, span, i);
    }
    trainer.step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_covers_the_run_once() {
        let total: f64 = SCHEDULE.iter().map(|(_, s)| s).sum();
        assert!((total - 1.0).abs() < 1e-9, "shares add up to {total}");
        assert_eq!(SCHEDULE.first().map(|p| p.0), Some(Phase::WarmUp));
        assert_eq!(SCHEDULE.last().map(|p| p.0), Some(Phase::Idle));
    }

    #[test]
    fn unmarked_demo_runs_its_phases_within_the_duration() {
        let cfg = DemoConfig {
            duration: Duration::from_millis(600),
            step: Duration::from_millis(20),
            threads: 1,
        };
        let t = Instant::now();
        let steps = run(&cfg);
        let took = t.elapsed();
        assert!(steps >= 5, "only {steps} training steps");
        assert!(took >= cfg.duration, "ended early: {took:?}");
        assert!(took < cfg.duration * 3, "overran: {took:?}");
    }
}
