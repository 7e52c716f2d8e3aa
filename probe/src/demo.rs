//! The built-in demo workload: a synthetic training loop with a real step structure
//! (compute on every core, a data-loading pause, a periodic evaluation) so that a
//! fresh machine has something to record. Run as the recorded command, like any
//! user workload.

use std::time::{Duration, Instant};

use eco2ai_marker::Eco2aiStep;

use crate::markers::{ENV_MARKER_LIB, MarkerFns};

pub struct DemoConfig {
    pub duration: Duration,
    pub step: Duration,
    pub threads: usize,
}

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

/// Runs the demo; prints one line every 10 steps. Returns the number of steps.
pub fn run(cfg: &DemoConfig) -> u64 {
    let markers = std::env::var(ENV_MARKER_LIB)
        .ok()
        .and_then(|p| MarkerFns::load(&p));
    if markers.is_none() {
        eprintln!("demo: no marker library in {ENV_MARKER_LIB}: steps will not be marked");
    }
    let start = Instant::now();
    let mut step = 0u64;
    let compute = cfg.step.mul_f64(0.8);
    let load = cfg.step.mul_f64(0.2);
    while start.elapsed() < cfg.duration {
        step += 1;
        if let Some(m) = &markers {
            (m.begin)(step);
        }
        std::thread::scope(|s| {
            for t in 0..cfg.threads {
                s.spawn(move || matmul_for(compute, step * 31 + t as u64));
            }
        });
        let loss = 4.0 * (-(step as f64) / 80.0).exp() + 0.5;
        let samples = 32;
        if let Some(m) = &markers {
            let s = Eco2aiStep {
                step,
                samples,
                tokens: samples * 512,
                loss,
                lr: 3e-4,
                epoch: step as f64 / 200.0,
            };
            // SAFETY: a valid step struct that outlives the call.
            unsafe { (m.end)(&s) };
        }
        std::thread::sleep(load); // "data loading"
        if step.is_multiple_of(50) {
            std::thread::sleep(cfg.step * 3); // "evaluation"
            if let Some(m) = &markers {
                (m.eval)(step, loss * 1.1);
            }
        }
        if step.is_multiple_of(10) {
            eprintln!("demo: step {step} loss {loss:.3}");
        }
    }
    step
}
