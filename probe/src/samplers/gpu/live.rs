//! A GPU's energy so far for the live figures (live.json): the last energy-counter
//! reading plus the integral of the power samples since it. The counter is read every
//! 30 s (its call costs ~4 ms of CPU), so the counter alone would move in 30 s steps.

use std::collections::VecDeque;

/// Power samples kept at most (30 s of 20 ms polls is 1,500): bounds memory when the
/// counter cannot be read.
const MAX_POINTS: usize = 4096;

#[derive(Debug, Clone, Default)]
pub struct LiveGpuEnergy {
    /// (ts_ns, J) of the last counter reading.
    counter: Option<(i64, f64)>,
    /// (ts_ns, running integral of power in J), in time order.
    integral: VecDeque<(i64, f64)>,
    /// The last power sample (ts_ns, W).
    last_power: Option<(i64, f64)>,
}

impl LiveGpuEnergy {
    /// A power sample; samples come in time order (one sampler thread polls power).
    pub fn power(&mut self, ts_ns: i64, power_mw: u32) {
        let w = power_mw as f64 / 1e3;
        let sum = self.integral.back().map_or(0.0, |p| p.1);
        let add = match self.last_power {
            Some((t0, w0)) if ts_ns > t0 => w0 * (ts_ns - t0) as f64 / 1e9,
            _ => 0.0,
        };
        self.last_power = Some((ts_ns, w));
        self.integral.push_back((ts_ns, sum + add));
        self.prune();
    }

    /// A counter reading, run-relative J.
    pub fn counter(&mut self, ts_ns: i64, energy_j: f64) {
        self.counter = Some((ts_ns, energy_j));
        self.prune();
    }

    /// Counter J plus the power integral since its reading; None before the first.
    pub fn live_j(&self) -> Option<f64> {
        let (ts, j) = self.counter?;
        let at = |t: i64| {
            let i = self.integral.partition_point(|p| p.0 <= t);
            i.checked_sub(1).map(|i| self.integral[i].1)
        };
        let now = self.integral.back().map(|p| p.1);
        let extra = match (at(ts), now) {
            (Some(then), Some(now)) => (now - then).max(0.0),
            _ => 0.0,
        };
        Some(j + extra)
    }

    /// Keeps the samples from the last one before the counter's reading on.
    fn prune(&mut self) {
        let keep_from = self.counter.map_or(i64::MAX, |c| c.0);
        while self.integral.len() > 1 && self.integral[1].0 <= keep_from {
            self.integral.pop_front();
        }
        while self.integral.len() > MAX_POINTS {
            self.integral.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LiveGpuEnergy;

    #[test]
    fn adds_the_power_since_the_last_counter_reading() {
        let mut g = LiveGpuEnergy::default();
        assert_eq!(g.live_j(), None);
        // 500 W polled every 20 ms for 10 s, the counter read at 0 s (100 J) only.
        g.counter(0, 100.0);
        for k in 0..=500 {
            g.power(k * 20_000_000, 500_000);
        }
        let j = g.live_j().unwrap();
        assert!((j - 5100.0).abs() < 1e-6, "{j}");
        // A new reading at 10 s replaces the estimate: nothing is counted twice.
        g.counter(10_000_000_000, 5_090.0);
        assert!((g.live_j().unwrap() - 5_090.0).abs() < 1e-6);
        for k in 501..=550 {
            g.power(k * 20_000_000, 300_000);
        }
        // 1 s more: 20 ms at 500 W, then 980 ms at 300 W.
        let j = g.live_j().unwrap();
        assert!((j - (5_090.0 + 10.0 + 294.0)).abs() < 1e-6, "{j}");
        // Memory stays bounded without counter readings.
        for k in 0..10_000 {
            g.power(20_000_000_000 + k * 20_000_000, 300_000);
        }
        assert!(g.integral.len() <= super::MAX_POINTS);
    }
}
