//! Replaying a recorded run into Prometheus. The trace's rows are fed, in time order, to
//! the same [`MetricsState`] the probe's live exporter keeps, and the state is rendered at
//! each replay instant: replayed metrics have the live names, types, labels and values.
//! Outputs: an OpenMetrics file for backfill, remote_write, and a /metrics server.

pub mod fleet;
pub mod http;
pub mod openmetrics;
pub mod redact;
pub mod remote_write;
pub mod serve;

use std::collections::BTreeMap;
use std::path::Path;

use eco2ai_metrics::{Kind, MetricsState, RunInfo, Sink, render};
use eco2ai_trace::from_batch::{cpu_rows, eval_rows, gpu_rows, phase_rows, step_rows};
use eco2ai_trace::{CpuRow, EvalRow, GpuRow, PhaseRow, Rows, Run, StepRow, Table, TraceError};

/// What the trace does not say: grid intensity override, prices, budget, PUE.
#[derive(Debug, Clone, Default)]
pub struct Prices {
    pub intensity_g_per_kwh: Option<f64>,
    pub carbon_budget_kg: Option<f64>,
    pub price_per_kwh: Option<f64>,
    pub gpu_hour_usd: Option<f64>,
    pub pue: Option<f64>,
}

enum Event {
    Gpu(GpuRow),
    Cpu(CpuRow),
    Step(StepRow),
    Eval(EvalRow),
    Phase(PhaseRow),
}

impl Event {
    fn ts_ns(&self) -> i64 {
        match self {
            Event::Gpu(r) => r.ts_ns,
            Event::Cpu(r) => r.ts_ns,
            // A step is known once it has ended.
            Event::Step(r) => r.end_ns,
            Event::Eval(r) => r.ts_ns,
            // Likewise a phase span (its row is written at its end).
            Event::Phase(r) => r.end_ns,
        }
    }
}

/// A run being replayed: its rows in time order and the metrics state so far.
pub struct Replay {
    state: MetricsState,
    events: Vec<Event>,
    next: usize,
    start_ns: i64,
    end_ns: i64,
    mono_to_unix_ns: i64,
    errors: BTreeMap<String, u64>,
    host: String,
    dir: std::path::PathBuf,
    /// Rows left out because they lie outside the run's time span.
    rows_outside: usize,
}

/// Adds `instance="<host>"` to samples without one, as a live scrape adds its target:
/// it keeps the series of two nodes' runs apart (GPU 0 of each, say).
struct WithInstance<'a, S: Sink + ?Sized> {
    inner: &'a mut S,
    host: &'a str,
}

impl<S: Sink + ?Sized> Sink for WithInstance<'_, S> {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.inner.family(name, kind, help);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        if labels.len() >= 7 || labels.iter().any(|(k, _)| *k == "instance") {
            return self.inner.sample(name, labels, value);
        }
        let mut all = [("", ""); 8];
        all[..labels.len()].copy_from_slice(labels);
        all[labels.len()] = ("instance", self.host);
        self.inner.sample(name, &all[..=labels.len()], value);
    }
}

fn read_events(run: &Run) -> Result<(Vec<Event>, usize), TraceError> {
    let mut events = Vec::new();
    for b in run.read_table(Table::Gpu)?.batches {
        events.extend(gpu_rows(&b).into_iter().map(Event::Gpu));
    }
    for b in run.read_table(Table::Cpu)?.batches {
        events.extend(cpu_rows(&b).into_iter().map(Event::Cpu));
    }
    for b in run.read_table(Table::Steps)?.batches {
        events.extend(step_rows(&b).into_iter().map(Event::Step));
    }
    for b in run.read_table(Table::Evals)?.batches {
        events.extend(eval_rows(&b).into_iter().map(Event::Eval));
    }
    // A run recorded before phases has no phases table: it reads as empty.
    for b in run.read_table(Table::Phases)?.batches {
        events.extend(phase_rows(&b).into_iter().map(Event::Phase));
    }
    // Rows outside the run (a corrupt or forged timestamp) would stretch the replay over
    // years of empty ticks: they are left out, and counted.
    let m = run.meta();
    let lo = m.start_ns.saturating_sub(OUTSIDE_SLACK_NS);
    let hi = m
        .end_ns
        .unwrap_or(m.start_ns.saturating_add(MAX_OPEN_RUN_NS))
        .saturating_add(OUTSIDE_SLACK_NS);
    let before = events.len();
    events.retain(|e| (lo..=hi).contains(&e.ts_ns()));
    let outside = before - events.len();
    // Stable: rows of one sensor keep their recorded order at equal timestamps.
    events.sort_by_key(Event::ts_ns);
    Ok((events, outside))
}

/// How far outside the run's span a row may lie (clocks read a little apart).
const OUTSIDE_SLACK_NS: i64 = 60_000_000_000;
/// A run without an end (cut off) is taken to last at most a year.
const MAX_OPEN_RUN_NS: i64 = 366 * 86_400_000_000_000;

impl Replay {
    /// Reads the run; labels from its meta.json, `instance` from its host name.
    pub fn open(dir: &Path, prices: &Prices) -> Result<Replay, TraceError> {
        let run = Run::open(dir)?;
        let m = run.meta().clone();
        let (events, rows_outside) = read_events(&run)?;
        let last = events.last().map_or(m.start_ns, Event::ts_ns);
        let mut info = RunInfo::from_meta(&m, &m.host);
        // The run's own label by the one rule (region, else country) when no flag says.
        info.intensity_g_per_kwh = prices
            .intensity_g_per_kwh
            .or_else(|| eco2ai_trace::grid::from_labels(&m.labels).map(|i| i.g_per_kwh));
        info.carbon_budget_kg = prices.carbon_budget_kg;
        info.price_per_kwh = prices.price_per_kwh;
        info.gpu_hour_usd = prices.gpu_hour_usd;
        info.pue = eco2ai_trace::pricing::pue_rule(prices.pue, &m.labels);
        let errors = m.sensor_errors.clone();
        Ok(Replay {
            host: m.host.clone(),
            dir: dir.to_path_buf(),
            rows_outside,
            state: MetricsState::new(info),
            events,
            next: 0,
            start_ns: m.start_ns,
            end_ns: m.end_ns.unwrap_or(last).max(last),
            mono_to_unix_ns: m.mono_to_unix_ns,
            errors,
        })
    }

    pub fn start_ns(&self) -> i64 {
        self.start_ns
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rows of the trace left out because they lie outside the run's time span.
    pub fn rows_outside(&self) -> usize {
        self.rows_outside
    }

    pub fn project(&self) -> &str {
        &self.state.info.project
    }

    /// Monotonic ns of the run's clock at Unix ns `unix_ns`.
    pub fn mono_at_unix(&self, unix_ns: i64) -> i64 {
        unix_ns - self.mono_to_unix_ns
    }

    pub fn start_unix_ns(&self) -> i64 {
        self.start_ns + self.mono_to_unix_ns
    }

    pub fn end_unix_ns(&self) -> i64 {
        self.end_ns + self.mono_to_unix_ns
    }

    pub fn end_ns(&self) -> i64 {
        self.end_ns
    }

    pub fn unix_ms(&self, t_ns: i64) -> i64 {
        t_ns.saturating_add(self.mono_to_unix_ns)
            .div_euclid(1_000_000)
    }

    /// The replay instants: every `every_ns` from the start, and the end.
    pub fn ticks(&self, every_ns: i64) -> impl Iterator<Item = i64> + use<> {
        let (start, end, every) = (self.start_ns, self.end_ns, every_ns.max(1_000_000));
        let span = end.saturating_sub(start).max(0);
        let n = span / every;
        (0..=n)
            .map(move |k| start.saturating_add(k.saturating_mul(every)))
            .chain((span % every != 0).then_some(end))
    }

    /// Feeds every row up to and including `t_ns` to the state.
    pub fn advance_to(&mut self, t_ns: i64) {
        while self.next < self.events.len() && self.events[self.next].ts_ns() <= t_ns {
            let batch = self.take_run_of_one_kind(t_ns);
            self.state.observe(&batch);
            if self.next == self.events.len() {
                // No energy row comes after the last: a span that ended at the stop
                // is counted with what is known, as the recording's last rows were.
                self.state.phases.flush();
            }
        }
    }

    /// Consecutive rows of one table, so the state sees batches as it does live.
    fn take_run_of_one_kind(&mut self, t_ns: i64) -> Rows {
        let mut rows = match &self.events[self.next] {
            Event::Gpu(_) => Rows::Gpu(Vec::new()),
            Event::Cpu(_) => Rows::Cpu(Vec::new()),
            Event::Step(_) => Rows::Steps(Vec::new()),
            Event::Eval(_) => Rows::Evals(Vec::new()),
            Event::Phase(_) => Rows::Phases(Vec::new()),
        };
        while let Some(e) = self.events.get(self.next).filter(|e| e.ts_ns() <= t_ns) {
            match (&mut rows, e) {
                (Rows::Gpu(v), Event::Gpu(r)) => v.push(r.clone()),
                (Rows::Cpu(v), Event::Cpu(r)) => v.push(r.clone()),
                (Rows::Steps(v), Event::Step(r)) => v.push(r.clone()),
                (Rows::Evals(v), Event::Eval(r)) => v.push(r.clone()),
                (Rows::Phases(v), Event::Phase(r)) => v.push(r.clone()),
                _ => break,
            }
            self.next += 1;
        }
        rows
    }

    /// Renders the state as of the last `advance_to`, with costs as of `t_ns`.
    pub fn render_at<S: Sink + ?Sized>(&self, t_ns: i64, sink: &mut S) {
        let now_unix_s = (t_ns + self.mono_to_unix_ns) as f64 / 1e9;
        let mut with = WithInstance {
            inner: sink,
            host: &self.host,
        };
        render(&self.state, &self.errors, now_unix_s, &mut with);
    }

    pub fn state(&self) -> &MetricsState {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty(start: i64, end: i64) -> Replay {
        Replay {
            state: MetricsState::default(),
            events: Vec::new(),
            next: 0,
            start_ns: start,
            end_ns: end,
            mono_to_unix_ns: 0,
            errors: BTreeMap::new(),
            host: "h".into(),
            dir: "r".into(),
            rows_outside: 0,
        }
    }

    #[test]
    fn phase_spans_replay_as_they_were_live() {
        use eco2ai_trace::phase::EVAL;
        const S: i64 = 1_000_000_000;
        // One GPU at 200 W polled every 100 ms for 10 s; an eval span from 2 s to 5 s.
        let gpu = |k: i64| GpuRow {
            ts_ns: k * S / 10,
            gpu: 0,
            power_mw: Some(200_000),
            ..GpuRow::default()
        };
        let span = PhaseRow {
            pid: 1,
            name: EVAL.into(),
            begin_ns: 2 * S,
            end_ns: 5 * S,
            source: "socket",
        };
        let mut r = empty(0, 10 * S);
        r.state.info.pue = 1.0;
        r.events = (0..=100).map(|k| Event::Gpu(gpu(k))).collect();
        r.events.push(Event::Phase(span.clone()));
        r.events.sort_by_key(Event::ts_ns);
        r.advance_to(10 * S);
        // Live, the span's row arrives a second after its end, amid the power rows.
        let mut live = MetricsState::new(RunInfo {
            pue: 1.0,
            ..RunInfo::default()
        });
        live.observe(&Rows::Gpu((0..=60).map(gpu).collect()));
        live.observe(&Rows::Phases(vec![span]));
        live.observe(&Rows::Gpu((61..=100).map(gpu).collect()));
        let totals = |s: &MetricsState| {
            s.phases
                .totals()
                .map(|(k, t)| (k.to_string(), *t))
                .collect::<Vec<_>>()
        };
        let (replayed, live) = (totals(r.state()), totals(&live));
        assert_eq!(replayed, live);
        assert_eq!(replayed.len(), 1);
        let t = replayed[0].1;
        assert!((t.seconds - 3.0).abs() < 1e-9, "{t:?}");
        assert!((t.energy_j - 600.0).abs() < 1e-6, "{t:?}");
    }

    #[test]
    fn ticks_cover_start_to_end_once() {
        let t: Vec<i64> = empty(0, 2_500_000_000).ticks(1_000_000_000).collect();
        assert_eq!(t, vec![0, 1_000_000_000, 2_000_000_000, 2_500_000_000]);
        let t: Vec<i64> = empty(0, 2_000_000_000).ticks(1_000_000_000).collect();
        assert_eq!(t, vec![0, 1_000_000_000, 2_000_000_000]);
    }
}
