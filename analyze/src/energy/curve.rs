//! A device's cumulative energy as a function of time, E(t), from what its sensors say.
//!
//! The energy counter is exact at the instants it is read, but a GPU's counter moves in
//! 100 ms quanta and is read every second (a read costs ~4 ms of CPU), so differences at
//! step edges are useless for single steps (measured on an H200: a 114 ms step read
//! 65-144 J). Power samples (20 ms, instant power where the driver has it) give the
//! shape. The curve is the power integral, rescaled between counter anchors at least
//! `anchor_min_ns` apart so that it passes through the counter there: the total is the
//! counter's, each step gets the power's shape. Without a counter it is the power
//! integral; without power samples, the counter interpolated linearly.

/// Cumulative J at instants (strictly increasing). Between two instants the power is
/// taken as linear between the powers recorded there (`w`), scaled to the energy step:
/// a step shorter than the sensor's period gets the slope's share, not the average's.
#[derive(Debug, Clone, Default)]
pub struct Curve {
    t_ns: Vec<i64>,
    e_j: Vec<f64>,
    /// Power shape at each instant (any scale); equal values mean constant power.
    w: Vec<f64>,
}

/// How a curve was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    CounterShapedByPower,
    Counter,
    PowerIntegral,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::CounterShapedByPower => "counter-shaped-by-power",
            Method::Counter => "counter",
            Method::PowerIntegral => "power-integral",
        }
    }
}

impl Curve {
    pub fn is_empty(&self) -> bool {
        self.t_ns.len() < 2
    }

    pub fn first_ns(&self) -> Option<i64> {
        self.t_ns.first().copied()
    }

    pub fn last_ns(&self) -> Option<i64> {
        self.t_ns.last().copied()
    }

    /// E(t), clamped to the first and last values outside the curve.
    pub fn at(&self, t: i64) -> f64 {
        self.at_index(self.t_ns.partition_point(|x| *x <= t), t)
    }

    /// E(t) where `i` is the number of instants at or before t.
    fn at_index(&self, i: usize, t: i64) -> f64 {
        let (ts, es) = (&self.t_ns, &self.e_j);
        match i {
            0 => es.first().copied().unwrap_or(0.0),
            i if i == ts.len() => es.last().copied().unwrap_or(0.0),
            i => {
                let (t0, t1, e0, e1) = (ts[i - 1], ts[i], es[i - 1], es[i]);
                let f = (t - t0) as f64 / (t1 - t0) as f64;
                let (w0, w1) = (self.w[i - 1], self.w[i]);
                // Share of the trapezoid under the linear power from t0 to t.
                let share = if w0 + w1 > 0.0 {
                    f * (2.0 * w0 + (w1 - w0) * f) / (w0 + w1)
                } else {
                    f
                };
                e0 + (e1 - e0) * share
            }
        }
    }

    /// E(t) at each instant, walking the curve forward while they ascend (a step back
    /// searches afresh): O(n + m) for sorted instants instead of m binary searches.
    pub fn at_each(&self, ts: impl Iterator<Item = i64>) -> Vec<f64> {
        let mut c = self.cursor();
        ts.map(|t| c.at(t)).collect()
    }

    /// A walker along the curve that holds nothing but its place: E(t) for ascending
    /// instants without collecting them.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor { curve: self, i: 0 }
    }

    /// Energy in [a, b].
    pub fn between(&self, a: i64, b: i64) -> f64 {
        self.at(b) - self.at(a)
    }

    pub fn total(&self) -> f64 {
        match (self.e_j.first(), self.e_j.last()) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        }
    }

    /// Energy of each `[a, b]` span; fastest when the spans come in time order.
    pub fn each_between(&self, spans: &[(i64, i64)]) -> Vec<f64> {
        let begin = self.at_each(spans.iter().map(|s| s.0));
        let end = self.at_each(spans.iter().map(|s| s.1));
        end.iter().zip(&begin).map(|(e, b)| e - b).collect()
    }
}

/// A place on a curve (`Curve::cursor`).
pub struct Cursor<'a> {
    curve: &'a Curve,
    i: usize,
}

impl Cursor<'_> {
    /// E(t): walks forward while the instants ascend (a step back searches afresh).
    pub fn at(&mut self, t: i64) -> f64 {
        let ts = &self.curve.t_ns;
        if self.i > 0 && ts[self.i - 1] > t {
            self.i = ts.partition_point(|x| *x <= t);
        }
        while self.i < ts.len() && ts[self.i] <= t {
            self.i += 1;
        }
        self.curve.at_index(self.i, t)
    }
}

/// Sorted points with strictly increasing time and finite values: a later duplicate
/// instant replaces the earlier one; NaN and infinite values are dropped (counted).
pub fn clean(points: &mut Vec<(i64, f64)>) -> usize {
    let before = points.len();
    points.retain(|p| p.1.is_finite());
    points.sort_by_key(|p| p.0);
    points.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            *earlier = *later;
            true
        } else {
            false
        }
    });
    before - points.len()
}

/// Cumulative trapezoidal integral of power (W) at its instants, J.
fn integrate(power: &[(i64, f64)]) -> Vec<f64> {
    let mut q = Vec::with_capacity(power.len());
    let mut acc = 0.0;
    for (i, p) in power.iter().enumerate() {
        if i > 0 {
            let prev = power[i - 1];
            acc += (prev.1 + p.1) / 2.0 * (p.0 - prev.0) as f64 / 1e9;
        }
        q.push(acc);
    }
    q
}

/// Counter readings reduced to anchors: the first, each later reading at least
/// `min_gap_ns` after the previous anchor, and the last.
fn anchors(counter: &[(i64, f64)], min_gap_ns: i64) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    for &c in counter {
        if out.last().is_none_or(|a| c.0 - a.0 >= min_gap_ns) {
            out.push(c);
        }
    }
    if let (Some(&last), Some(a)) = (counter.last(), out.last())
        && last.0 > a.0
    {
        out.push(last);
    }
    out
}

/// The counter made monotonic. A drop is a reset: the energy between the last reading
/// before it and the first after is bridged with the power integral `q_between` where
/// there is power, else taken as zero. Returns the number of resets.
fn repair(counter: &[(i64, f64)], q_between: &dyn Fn(i64, i64) -> f64) -> (Vec<(i64, f64)>, usize) {
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(counter.len());
    let (mut offset, mut resets) = (0.0, 0);
    for (i, &(t, v)) in counter.iter().enumerate() {
        if i > 0 && v < counter[i - 1].1 {
            resets += 1;
            let (t0, fixed0) = out[i - 1];
            offset = fixed0 + q_between(t0, t) - v;
        }
        out.push((t, v + offset));
    }
    (out, resets)
}

/// Builds the curve from `power` in W and `counter` in cumulative J (both cleaned, the
/// counter possibly with resets); returns it, how it was made, and the resets repaired.
pub fn build(
    power: &[(i64, f64)],
    counter: &[(i64, f64)],
    anchor_min_ns: i64,
) -> (Curve, Method, usize) {
    if power.len() < 2 {
        let (counter, resets) = repair(counter, &|_, _| 0.0);
        let (t_ns, e_j): (Vec<i64>, Vec<f64>) = counter.into_iter().unzip();
        let w = vec![1.0; t_ns.len()];
        return (Curve { t_ns, e_j, w }, Method::Counter, resets);
    }
    let q = integrate(power);
    let pt: Vec<i64> = power.iter().map(|p| p.0).collect();
    let (counter, resets) = repair(counter, &|a, b| interp(&pt, &q, b) - interp(&pt, &q, a));
    let anchors = anchors(&counter, anchor_min_ns);
    if anchors.len() < 2 {
        let w = power.iter().map(|p| p.1.max(0.0)).collect();
        return (
            Curve {
                t_ns: pt,
                e_j: q,
                w,
            },
            Method::PowerIntegral,
            resets,
        );
    }
    let qa: Vec<f64> = anchors.iter().map(|a| interp(&pt, &q, a.0)).collect();
    // Every power sample and every anchor, merged in time order, with Q at each.
    let mut merged: Vec<(i64, f64)> = Vec::with_capacity(pt.len() + anchors.len());
    let (mut i, mut j) = (0, 0);
    while i < pt.len() || j < anchors.len() {
        let take_power = j == anchors.len() || (i < pt.len() && pt[i] < anchors[j].0);
        let next = if take_power {
            i += 1;
            (pt[i - 1], q[i - 1])
        } else {
            j += 1;
            (anchors[j - 1].0, qa[j - 1])
        };
        if merged.last().is_none_or(|m| m.0 < next.0) {
            merged.push(next);
        }
    }
    let mut t_ns = Vec::with_capacity(merged.len());
    let mut e_j = Vec::with_capacity(merged.len());
    let mut w = Vec::with_capacity(merged.len());
    let pw: Vec<f64> = power.iter().map(|p| p.1.max(0.0)).collect();
    let mut k = 0; // the segment [anchors[k], anchors[k + 1]] holding t
    for (t, qt) in merged {
        while k + 2 < anchors.len() && anchors[k + 1].0 <= t {
            k += 1;
        }
        let ((a0, c0), (a1, c1), q0, q1) = (anchors[k], anchors[k + 1], qa[k], qa[k + 1]);
        let e = if t < a0 {
            c0 - (q0 - qt)
        } else if t > a1 {
            c1 + (qt - q1)
        } else if q1 - q0 > 1e-9 {
            c0 + (c1 - c0) * (qt - q0) / (q1 - q0)
        } else {
            c0 + (c1 - c0) * (t - a0) as f64 / (a1 - a0) as f64
        };
        t_ns.push(t);
        e_j.push(e);
        w.push(interp(&pt, &pw, t));
    }
    (Curve { t_ns, e_j, w }, Method::CounterShapedByPower, resets)
}

fn interp(ts: &[i64], vs: &[f64], t: i64) -> f64 {
    match ts.partition_point(|x| *x <= t) {
        0 => vs.first().copied().unwrap_or(0.0),
        i if i == ts.len() => vs.last().copied().unwrap_or(0.0),
        i => vs[i - 1] + (vs[i] - vs[i - 1]) * (t - ts[i - 1]) as f64 / (ts[i] - ts[i - 1]) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walking_the_curve_agrees_with_searching_it() {
        let power: Vec<(i64, f64)> = (0..=50)
            .map(|k| (k * 100_000_000, 200.0 + 50.0 * ((k % 7) as f64)))
            .collect();
        let (c, _, _) = build(&power, &[], 1);
        // Ascending, repeated, before the start, past the end, then a step back.
        let ts = [
            -5,
            0,
            130_000_000,
            130_000_000,
            2_345_678_901,
            9_000_000_000,
            40_000_000,
        ];
        let walked = c.at_each(ts.iter().copied());
        for (t, w) in ts.iter().zip(&walked) {
            assert_eq!(*w, c.at(*t), "at {t}");
        }
        let spans = [(0, 250_000_000), (250_000_000, 4_000_000_000), (100, 200)];
        let each = c.each_between(&spans);
        for ((a, b), e) in spans.iter().zip(&each) {
            assert_eq!(*e, c.between(*a, *b));
        }
    }

    #[test]
    fn the_curve_passes_through_the_counter_and_follows_the_power() {
        // 100 W for 10 s then 300 W for 10 s; the counter says 10% more than the power.
        let power: Vec<(i64, f64)> = (0..=20)
            .map(|s| (s * 1_000_000_000, if s < 10 { 100.0 } else { 300.0 }))
            .collect();
        let counter = vec![(0, 0.0), (20_000_000_000, 1.1 * 4100.0)];
        let (c, m, resets) = build(&power, &counter, 1);
        assert_eq!((m, resets), (Method::CounterShapedByPower, 0));
        assert!((c.total() - 4510.0).abs() < 1e-9);
        // Seconds 12-13 get 1.1 x the trapezoid of 300 W.
        assert!((c.between(12_000_000_000, 13_000_000_000) - 330.0).abs() < 1e-9);
    }

    #[test]
    fn a_reset_is_bridged_with_the_power() {
        let power: Vec<(i64, f64)> = (0..=4).map(|s| (s * 1_000_000_000, 100.0)).collect();
        // Reset between 2 s and 3 s: the counter starts again near 0.
        let counter = vec![
            (0, 0.0),
            (1_000_000_000, 100.0),
            (2_000_000_000, 200.0),
            (3_000_000_000, 50.0),
            (4_000_000_000, 150.0),
        ];
        let (c, _, resets) = build(&power, &counter, 1);
        assert_eq!(resets, 1);
        assert!((c.total() - 400.0).abs() < 1e-9, "{}", c.total());
    }

    #[test]
    fn without_power_the_counter_is_interpolated() {
        let (c, m, _) = build(&[], &[(0, 0.0), (10, 10.0)], 1);
        assert_eq!(m, Method::Counter);
        assert_eq!(c.between(2, 5), 3.0);
    }
}
