//! Live totals per named phase (`eco2ai_trace::phase`): span-seconds and the run's
//! device energy while a span was open. A span is known only when its row arrives (at
//! its end), so the energy at its begin is looked up in a bounded history of the run's
//! cumulative energy; the row waits until the energy rows have passed its end.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use eco2ai_trace::PhaseRow;
use eco2ai_trace::phase::{MAX_LIVE_PHASES, OTHER};

/// History points this close together are merged: the finest the energy of a span is
/// resolved (a 2 s checkpoint is still 20 points).
const FINE_NS: i64 = 100_000_000;
/// Points kept at `FINE_NS` (~7 min): spans shorter than this are measured at 0.1 s.
const FINE_POINTS: usize = 4096;
/// Older points, thinned by halves as the run grows (~30 KB): a span begun long ago
/// is measured at the coarse resolution, small beside its length.
const COARSE_POINTS: usize = 2048;
/// Spans waiting for the energy rows to pass their end; beyond this the oldest is
/// taken with what is known.
const MAX_PENDING: usize = 1024;
/// A span waits at most this long (by the newest timestamp seen in any row) for the
/// energy rows to pass its end: a run whose sensors stopped, or that has none, still
/// counts its spans' seconds.
const MAX_WAIT_NS: i64 = 5_000_000_000;

/// (ts_ns, cumulative J) of the run's devices, in time order.
#[derive(Debug, Default)]
struct History {
    fine: VecDeque<(i64, f64)>,
    coarse: VecDeque<(i64, f64)>,
    coarse_every_ns: i64,
}

impl History {
    fn push(&mut self, ts_ns: i64, j: f64) {
        let n = self.fine.len();
        if n > 0 && ts_ns < self.fine[n - 1].0 {
            return;
        }
        // Within FINE_NS of the point before the newest: the newest moves on (it is
        // always the latest value), so the kept points lie >= FINE_NS apart.
        if n >= 2 && ts_ns.saturating_sub(self.fine[n - 2].0) < FINE_NS {
            self.fine[n - 1] = (ts_ns, j);
            return;
        }
        self.fine.push_back((ts_ns, j));
        while self.fine.len() > FINE_POINTS {
            let Some(old) = self.fine.pop_front() else {
                break;
            };
            self.push_coarse(old);
        }
    }

    fn push_coarse(&mut self, p: (i64, f64)) {
        if self.coarse_every_ns == 0 {
            self.coarse_every_ns = FINE_NS;
        }
        if self
            .coarse
            .back()
            .is_some_and(|b| p.0.saturating_sub(b.0) < self.coarse_every_ns)
        {
            return;
        }
        self.coarse.push_back(p);
        if self.coarse.len() > COARSE_POINTS {
            // Every other point goes: the coarse part keeps covering the whole run.
            let kept: VecDeque<_> = self.coarse.iter().copied().step_by(2).collect();
            self.coarse = kept;
            self.coarse_every_ns = self.coarse_every_ns.saturating_mul(2);
        }
    }

    /// Cumulative J at `ts_ns`, interpolated between the points around it; the first
    /// or last point outside the history.
    fn at(&self, ts_ns: i64) -> Option<f64> {
        let all = || self.coarse.iter().chain(self.fine.iter());
        let after = all().position(|p| p.0 >= ts_ns);
        let n = self.coarse.len() + self.fine.len();
        let get = |i: usize| {
            if i < self.coarse.len() {
                self.coarse[i]
            } else {
                self.fine[i - self.coarse.len()]
            }
        };
        match after {
            None => (n > 0).then(|| get(n - 1).1),
            Some(0) => Some(get(0).1),
            Some(i) => {
                let (a, b) = (get(i - 1), get(i));
                let f = (ts_ns - a.0) as f64 / (b.0 - a.0).max(1) as f64;
                Some(a.1 + (b.1 - a.1) * f)
            }
        }
    }

    fn newest_ns(&self) -> Option<i64> {
        self.fine.back().map(|p| p.0)
    }
}

/// One label value's totals.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PhaseTotals {
    pub seconds: f64,
    pub energy_j: f64,
    pub spans: u64,
}

/// Phase totals by label value: at most `MAX_LIVE_PHASES` names, then `other`.
#[derive(Debug, Default)]
pub struct LivePhases {
    history: History,
    pending: VecDeque<PhaseRow>,
    totals: BTreeMap<Arc<str>, PhaseTotals>,
    /// The newest timestamp of any row seen (energy, steps, spans).
    clock_ns: i64,
}

impl LivePhases {
    /// The run's cumulative device energy (facility J) at `ts_ns`; then spans whose
    /// end the energy has passed are counted.
    pub fn energy(&mut self, ts_ns: i64, j: f64) {
        self.history.push(ts_ns, j);
        self.clock(ts_ns);
    }

    /// A row's timestamp (a step's end, say): spans waiting too long are counted.
    pub fn clock(&mut self, ts_ns: i64) {
        self.clock_ns = self.clock_ns.max(ts_ns);
        if !self.pending.is_empty() {
            self.settle(false);
        }
    }

    /// Spans that ended; counted once the energy rows reach their end.
    pub fn spans(&mut self, rows: &[PhaseRow]) {
        self.pending.extend(rows.iter().cloned());
        let newest = rows.iter().map(|r| r.end_ns).max().unwrap_or(i64::MIN);
        self.clock(newest);
        self.settle(false);
    }

    /// Counts every span still waiting with what is known (the end of a replay).
    pub fn flush(&mut self) {
        self.settle(true);
    }

    fn settle(&mut self, all: bool) {
        let newest = self.history.newest_ns().unwrap_or(i64::MIN);
        let mut waiting = VecDeque::with_capacity(self.pending.len());
        while let Some(r) = self.pending.pop_front() {
            let over = self.pending.len() + waiting.len() >= MAX_PENDING;
            let waited = self.clock_ns.saturating_sub(r.end_ns) > MAX_WAIT_NS;
            if all || over || waited || newest >= r.end_ns {
                self.count(&r);
            } else {
                waiting.push_back(r);
            }
        }
        self.pending = waiting;
    }

    fn count(&mut self, r: &PhaseRow) {
        let label = self.label(&r.name);
        let energy_j = match (self.history.at(r.begin_ns), self.history.at(r.end_ns)) {
            (Some(a), Some(b)) => (b - a).max(0.0),
            _ => 0.0,
        };
        let t = self.totals.entry(label).or_default();
        t.seconds += r.end_ns.saturating_sub(r.begin_ns).max(0) as f64 / 1e9;
        t.energy_j += energy_j;
        t.spans = t.spans.saturating_add(1);
    }

    /// `name` while fewer than `MAX_LIVE_PHASES` names are labelled, else `other`:
    /// a run marking a new name per span cannot grow the series without end.
    fn label(&self, name: &Arc<str>) -> Arc<str> {
        let named = self.totals.keys().filter(|k| &***k != OTHER).count();
        if self.totals.contains_key(name) || (named < MAX_LIVE_PHASES && &**name != OTHER) {
            return name.clone();
        }
        Arc::from(OTHER)
    }

    /// Totals by label value, in label order.
    pub fn totals(&self) -> impl Iterator<Item = (&str, &PhaseTotals)> {
        self.totals.iter().map(|(k, v)| (&**k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, begin_ns: i64, end_ns: i64) -> PhaseRow {
        PhaseRow {
            pid: 1,
            name: name.into(),
            begin_ns,
            end_ns,
            source: "socket",
        }
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_span_gets_the_energy_between_its_begin_and_end() {
        let mut p = LivePhases::default();
        // 100 W from 0 s to 100 s, points every 0.1 s.
        for k in 0..=500 {
            p.energy(k * S / 10, k as f64 * 10.0);
        }
        p.spans(&[row("eval", 10 * S, 20 * S), row("eval", 30 * S, 35 * S)]);
        p.spans(&[row("checkpoint", 40 * S, 52 * S)]);
        // The checkpoint has not been passed yet: it waits.
        let got: Vec<_> = p.totals().map(|(k, t)| (k.to_string(), *t)).collect();
        assert_eq!(got.len(), 1, "{got:?}");
        let e = got[0].1;
        assert!((e.seconds - 15.0).abs() < 1e-9, "{e:?}");
        assert!((e.energy_j - 1500.0).abs() < 1e-6, "{e:?}");
        assert_eq!(e.spans, 2);
        for k in 501..=600 {
            p.energy(k * S / 10, k as f64 * 10.0);
        }
        let c = p.totals().find(|(k, _)| *k == "checkpoint").unwrap().1;
        assert!((c.energy_j - 1200.0).abs() < 1e-6, "{c:?}");
    }

    #[test]
    fn points_20_ms_apart_resolve_a_short_span() {
        let mut p = LivePhases::default();
        // 500 W polled every 20 ms for 3 s; a 50 ms span at 1 s.
        for k in 0..=150 {
            p.energy(k * S / 50, k as f64 * 10.0);
        }
        let h = &p.history;
        assert!(h.fine.len() >= 25 && h.fine.len() <= 40, "{}", h.fine.len());
        p.spans(&[row("checkpoint", S, S + S / 20)]);
        let e = p.totals().next().unwrap().1.energy_j;
        assert!((e - 25.0).abs() < 1e-6, "{e}");
    }

    #[test]
    fn without_energy_rows_a_span_still_counts_its_seconds_after_a_wait() {
        let mut p = LivePhases::default();
        p.spans(&[row("eval", 0, S)]);
        assert!(p.totals().next().is_none(), "waits for the energy rows");
        p.clock(S + MAX_WAIT_NS + 1);
        let t = *p.totals().next().unwrap().1;
        assert_eq!((t.seconds, t.energy_j, t.spans), (1.0, 0.0, 1));
    }

    #[test]
    fn at_most_sixteen_names_then_other() {
        let mut p = LivePhases::default();
        p.energy(0, 0.0);
        p.energy(100 * S, 100.0);
        let rows: Vec<_> = (0..40).map(|i| row(&format!("p{i:02}"), 0, S)).collect();
        p.spans(&rows);
        p.spans(&[row("p00", 0, S), row(OTHER, 0, S)]);
        let labels: Vec<_> = p.totals().map(|(k, t)| (k.to_string(), t.spans)).collect();
        assert_eq!(labels.len(), MAX_LIVE_PHASES + 1, "{labels:?}");
        assert!(labels.contains(&("p00".to_string(), 2)), "{labels:?}");
        assert!(
            labels.contains(&(OTHER.to_string(), 40 - 16 + 1)),
            "{labels:?}"
        );
    }

    #[test]
    fn the_history_stays_bounded_over_a_long_run() {
        let mut p = LivePhases::default();
        // A week of points a second apart (1 W).
        let week = 7 * 86_400 * S;
        let mut t = 0;
        while t < week {
            p.energy(t, t as f64 / 1e9);
            t += S;
        }
        let h = &p.history;
        assert!(h.fine.len() <= FINE_POINTS && h.coarse.len() <= COARSE_POINTS);
        // 1 W over a day, begun days ago: close to 86,400 J.
        p.spans(&[row("eval", 2 * 86_400 * S, 3 * 86_400 * S)]);
        p.flush();
        let e = p.totals().next().unwrap().1.energy_j;
        assert!((e - 86_400.0).abs() < 1.0, "{e}");
    }
}
