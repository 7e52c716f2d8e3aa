//! Energy per device as a curve over time, and its attribution to steps.

pub mod curve;
pub mod gpu_scan;
pub mod phases;

use std::collections::BTreeMap;

use eco2ai_trace::{Run, Table, TraceError, cpu_total_j};

pub use curve::{Curve, Method};

/// Counter anchors at least this far apart: a GPU counter read lags its last refresh by
/// up to 100 ms, which over 30 s windows moves a window's scale by at most ~0.3%.
pub const ANCHOR_MIN_NS: i64 = 30_000_000_000;

/// One device's energy over the run.
#[derive(Debug, Clone)]
pub struct Device {
    /// `gpu0`, or a CPU domain (`package-0`, `dram-0`, `psys`).
    pub name: String,
    pub gpu: Option<u32>,
    pub method: Method,
    /// `measured`, or `estimated` (TDP x load curve with an idle floor).
    pub source: &'static str,
    pub curve: Curve,
    /// Counter drops repaired (a reset counts on from where it was).
    pub counter_resets: usize,
    /// Readings dropped: NaN, infinite, or a duplicate instant.
    pub dropped: usize,
}

/// Data-quality notes gathered while loading.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Quality {
    pub counter_resets: usize,
    pub dropped_readings: usize,
    pub timestamps_out_of_order: usize,
    /// Counter readings no GPU can reach (a jump above twice the board's power limit),
    /// left out so that the curve follows the power there.
    pub counter_glitches: usize,
    /// Step rows outside the run's time span (or ending before they begin), left out.
    pub steps_outside_run: usize,
    /// Steps of the one process that overlap the one before.
    pub overlapping_steps: usize,
    /// Phase span rows outside the run's time span (or ending before they begin), left out.
    pub phases_outside_run: usize,
}

/// How far outside the run's span a step row may lie (clocks read a little apart).
const STEP_SLACK_NS: i64 = 60_000_000_000;

/// Whether a span a process marked (a step, a phase) can be used: it ends after it
/// begins and lies inside the run, with `STEP_SLACK_NS` either side.
pub(crate) struct SpanBounds {
    lo_ns: i64,
    hi_ns: i64,
}

impl SpanBounds {
    pub(crate) fn of(m: &eco2ai_trace::Meta) -> SpanBounds {
        SpanBounds {
            lo_ns: m.start_ns.saturating_sub(STEP_SLACK_NS),
            hi_ns: m
                .end_ns
                .map_or(i64::MAX / 4, |e| e.saturating_add(STEP_SLACK_NS)),
        }
    }

    pub(crate) fn holds(&self, begin_ns: i64, end_ns: i64) -> bool {
        begin_ns <= end_ns && begin_ns >= self.lo_ns && end_ns <= self.hi_ns
    }
}

fn out_of_order(ts: &[i64]) -> usize {
    ts.windows(2).filter(|w| w[1] < w[0]).count()
}

/// Power readings as the sensor meant them. A driver refreshes its reading every period
/// T (100 ms on Hopper) with the average power over the period just ended; polls repeat
/// it. A change seen between two polls happened between them (taken at their midpoint).
/// Each value becomes a point at the middle of its period, and a value that stayed the
/// same over several periods also holds at the middle of the last of them; the curve
/// interpolates linearly between points, which keeps each period's energy to second
/// order. Returns the points, the period, and the refresh instants.
fn reconstruct(polls: &[(i64, f64)]) -> (Vec<(i64, f64)>, i64, Vec<i64>) {
    let mut changes: Vec<(i64, f64)> = Vec::new();
    for (i, &(t, v)) in polls.iter().enumerate() {
        match i {
            0 => changes.push((t, v)),
            _ if polls[i - 1].1 != v => changes.push(((polls[i - 1].0 + t) / 2, v)),
            _ => {}
        }
    }
    let mut gaps: Vec<i64> = changes.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_unstable();
    // A low percentile: a signal that holds still (an idle GPU, a steady phase) changes
    // seldom, but each change of level shows two refreshes apart (the mixed period, then
    // the new level), so short gaps are the period.
    let period = gaps
        .get(gaps.len() / 5)
        .copied()
        .unwrap_or(100_000_000)
        .clamp(10_000_000, 2_000_000_000);
    regularise(&mut changes, period);
    let mut points: Vec<(i64, f64)> = Vec::with_capacity(changes.len() * 2 + 2);
    for (j, &(c, v)) in changes.iter().enumerate() {
        if j > 0 && c - changes[j - 1].0 > period * 3 / 2 {
            points.push((c - period * 3 / 2, changes[j - 1].1));
        }
        let mid = if j == 0 { c } else { c - period / 2 };
        if points.last().is_none_or(|p| p.0 < mid) {
            points.push((mid, v));
        }
    }
    if let (Some(&(t, _)), Some(&(_, v))) = (polls.last(), changes.last())
        && points.last().is_some_and(|p| p.0 < t)
    {
        points.push((t, v));
    }
    (points, period, changes.iter().map(|c| c.0).collect())
}

/// Each change instant is known to within half a poll (+-10 ms at 20 ms polls); the
/// refreshes behind them keep a steady rhythm, so a straight line fitted to the
/// neighbouring instants against their refresh numbers places each one to a few ms.
fn regularise(changes: &mut [(i64, f64)], period: i64) {
    const HALF: usize = 8;
    if changes.len() < 2 * HALF + 1 {
        return;
    }
    let mut n = vec![0i64; changes.len()];
    for j in 1..changes.len() {
        let steps = ((changes[j].0 - changes[j - 1].0) as f64 / period as f64)
            .round()
            .max(1.0);
        n[j] = n[j - 1] + steps as i64;
    }
    let t: Vec<i64> = changes.iter().map(|c| c.0).collect();
    for j in 1..changes.len() - 1 {
        let (lo, hi) = (j.saturating_sub(HALF), (j + HALF + 1).min(changes.len()));
        // A gap of many periods (the signal held still) breaks the rhythm's evidence.
        if n[hi - 1] - n[lo] > 4 * (hi - lo) as i64 {
            continue;
        }
        let k = (hi - lo) as f64;
        let (mx, my) = (
            n[lo..hi].iter().map(|&x| (x - n[j]) as f64).sum::<f64>() / k,
            t[lo..hi].iter().map(|&y| (y - t[j]) as f64).sum::<f64>() / k,
        );
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for i in lo..hi {
            let (x, y) = ((n[i] - n[j]) as f64 - mx, (t[i] - t[j]) as f64 - my);
            sxy += x * y;
            sxx += x * x;
        }
        if sxx > 0.0 {
            let fitted = my + sxy / sxx * (0.0 - mx);
            changes[j].0 = t[j] + fitted.round() as i64;
        }
    }
}

/// Counter readings moved to the refresh they report: a reading at r holds the energy
/// up to the last refresh before r, known from the power's refreshes to within a poll.
/// A reading within a quarter period of a refresh could report either side of it, so it
/// is left out (the counter is read every second: there are plenty of others).
fn at_refresh(counter: &[(i64, f64)], refreshes: &[i64], period: i64) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(counter.len());
    for &(r, c) in counter {
        let i = refreshes.partition_point(|x| *x <= r);
        let prev = i.checked_sub(1).map(|k| refreshes[k]);
        let next = refreshes.get(i).copied();
        let t = match (prev, next) {
            (Some(u), _) if r - u < period / 4 => continue,
            (_, Some(n)) if n - r < period / 4 => continue,
            (Some(u), _) if r - u < 2 * period => u,
            _ => r,
        };
        if out.last().is_none_or(|o| o.0 < t) {
            out.push((t, c));
        }
    }
    if out.len() < 2 {
        return counter.to_vec();
    }
    out
}

/// Energy columns are run-relative: zero at the run's start. The first reading comes a
/// poll later, so the start itself is a reading of 0 (what the counter gained before the
/// first poll belongs to the run).
fn from_zero(counter: &mut Vec<(i64, f64)>, start_ns: i64) {
    if counter
        .first()
        .is_some_and(|c| c.0 > start_ns && c.1 >= 0.0)
    {
        counter.insert(0, (start_ns, 0.0));
    }
}

/// A counter reading is a glitch when reaching it from the last good one would take
/// more than this many times the board's power limit.
const GLITCH_LIMIT_FACTOR: f64 = 2.0;
/// The power limit assumed where meta.json has none (above any board sold today).
const UNKNOWN_LIMIT_W: f64 = 1500.0;

/// Leaves out counter readings that jump up faster than `max_w` allows from the last
/// good reading (a 2^63 spike, a corrupt row); the curve follows the power across them.
/// A drop is left alone: it is a reset, repaired by the curve. Returns how many.
fn drop_glitches(counter: &mut Vec<(i64, f64)>, max_w: f64) -> usize {
    let before = counter.len();
    let mut last: Option<(i64, f64)> = None;
    counter.retain(|&(t, c)| {
        let ok = last.is_none_or(|(lt, lc)| {
            let dt_s = (t.saturating_sub(lt) as f64 / 1e9).max(0.01);
            c - lc <= max_w * dt_s + 1.0
        });
        if ok {
            last = Some((t, c));
        }
        ok
    });
    before - counter.len()
}

fn gpu_devices(
    scan: gpu_scan::Scan,
    start_ns: i64,
    limits_w: &BTreeMap<u32, f64>,
    q: &mut Quality,
) -> Vec<Device> {
    q.timestamps_out_of_order += scan.counter_out_of_order;
    let mut out = Vec::new();
    for (g, mut r) in scan.gpus {
        q.timestamps_out_of_order += r.avg_w.out_of_order + r.instant_w.out_of_order;
        let polls = if r.use_instant() {
            std::mem::take(&mut r.instant_w)
        } else {
            std::mem::take(&mut r.avg_w)
        };
        let mut power = polls.kept;
        let mut dropped = polls.dropped + curve::clean(&mut power);
        dropped += curve::clean(&mut r.counter_j);
        let limit_w = limits_w.get(&g).copied().unwrap_or(UNKNOWN_LIMIT_W);
        // After from_zero: the first reading is checked against the run's start at 0.
        from_zero(&mut r.counter_j, start_ns);
        q.counter_glitches += drop_glitches(&mut r.counter_j, limit_w * GLITCH_LIMIT_FACTOR);
        let (points, period, refreshes) = reconstruct(&power);
        drop(power);
        let counter = at_refresh(&r.counter_j, &refreshes, period);
        let (c, method, resets) = curve::build(&points, &counter, ANCHOR_MIN_NS);
        q.counter_resets += resets;
        q.dropped_readings += dropped;
        if c.is_empty() {
            continue;
        }
        out.push(Device {
            name: format!("gpu{g}"),
            gpu: Some(g),
            method,
            source: "measured",
            curve: c,
            counter_resets: resets,
            dropped,
        });
    }
    out
}

fn cpu_devices(run: &Run, q: &mut Quality) -> Result<Vec<Device>, TraceError> {
    let mut raw: BTreeMap<(String, &'static str), Vec<(i64, f64)>> = BTreeMap::new();
    for b in run.read_table(Table::Cpu)?.batches {
        for r in eco2ai_trace::from_batch::cpu_rows(&b) {
            if let Some(uj) = r.energy_uj {
                let key = (r.domain.to_string(), r.source);
                raw.entry(key)
                    .or_default()
                    .push((r.ts_ns, uj as f64 * 1e-6));
            }
        }
    }
    let mut out = Vec::new();
    for ((name, src), mut pts) in raw {
        q.timestamps_out_of_order += out_of_order(&pts.iter().map(|p| p.0).collect::<Vec<_>>());
        let dropped = curve::clean(&mut pts);
        from_zero(&mut pts, run.meta().start_ns);
        let (c, method, resets) = curve::build(&[], &pts, ANCHOR_MIN_NS);
        q.counter_resets += resets;
        q.dropped_readings += dropped;
        if c.is_empty() {
            continue;
        }
        out.push(Device {
            name,
            gpu: None,
            method,
            source: if src == "estimate" {
                "estimated"
            } else {
                "measured"
            },
            curve: c,
            counter_resets: resets,
            dropped,
        });
    }
    Ok(out)
}

/// Every device with an energy curve (GPUs, then CPU domains), and the mean GPU
/// utilisation (%) over every GPU row that has it.
pub fn devices(run: &Run) -> Result<(Vec<Device>, Quality, Option<f64>), TraceError> {
    let mut q = Quality::default();
    let scan = gpu_scan::scan(run)?;
    let util = (scan.util_n > 0).then(|| scan.util_sum / scan.util_n as f64);
    let limits_w: BTreeMap<u32, f64> = run
        .meta()
        .gpus
        .iter()
        .filter_map(|g| Some((g.index, f64::from(g.power_limit_mw?) / 1e3)))
        .filter(|(_, w)| *w > 0.0)
        .collect();
    let mut d = gpu_devices(scan, run.meta().start_ns, &limits_w, &mut q);
    d.extend(cpu_devices(run, &mut q)?);
    Ok((d, q, util))
}

/// A training step as recorded: the trace's own row.
pub type Step = eco2ai_trace::StepRow;

/// The steps of the run's main process (the one with most steps: under DDP each rank
/// marks the same steps, and node-level energy is attributed once), in order.
pub fn steps(run: &Run, q: &mut Quality) -> Result<Vec<Step>, TraceError> {
    let m = run.meta();
    // Steps lie inside the run; a minute of slack for clocks read a little apart. Rows
    // outside (a forged or corrupt timestamp) are left out and counted.
    let bounds = SpanBounds::of(m);
    let mut all = Vec::new();
    for b in run.read_table(Table::Steps)?.batches {
        for r in eco2ai_trace::from_batch::step_rows(&b) {
            if !bounds.holds(r.begin_ns, r.end_ns) {
                q.steps_outside_run += 1;
                continue;
            }
            all.push(Step {
                loss: r.loss.filter(|l| l.is_finite()),
                ..r
            });
        }
    }
    let mut count: BTreeMap<u32, usize> = BTreeMap::new();
    for s in &all {
        *count.entry(s.pid).or_default() += 1;
    }
    let main = count
        .iter()
        .max_by_key(|(pid, n)| (**n, std::cmp::Reverse(**pid)))
        .map(|(p, _)| *p);
    all.retain(|s| Some(s.pid) == main);
    all.sort_by_key(|s| s.begin_ns);
    // One process runs one step at a time: an overlap is a data error (said, and the
    // "in steps" energy counts each instant once).
    q.overlapping_steps += all
        .windows(2)
        .filter(|w| w[1].begin_ns < w[0].end_ns)
        .count();
    Ok(all)
}

/// Each step's energy: per device (J), GPU total, CPU total (package + DRAM, or psys).
#[derive(Debug, Clone)]
pub struct StepEnergy {
    pub device_j: Vec<f64>,
    pub gpu_j: f64,
    pub cpu_j: f64,
}

/// Each step's energy on each device: one walk along each device's curve, the devices
/// on every core.
pub fn attribute(devices: &[Device], steps: &[Step]) -> Vec<StepEnergy> {
    let spans: Vec<(i64, i64)> = steps.iter().map(|s| (s.begin_ns, s.end_ns)).collect();
    let per_device: Vec<Vec<f64>> = std::thread::scope(|sc| {
        let handles: Vec<_> = devices
            .iter()
            .map(|d| sc.spawn(|| d.curve.each_between(&spans)))
            .collect();
        handles
            .into_iter()
            .zip(devices)
            // A walk cannot panic short of a bug; should one, walk again here.
            .map(|(h, d)| h.join().unwrap_or_else(|_| d.curve.each_between(&spans)))
            .collect()
    });
    (0..steps.len())
        .map(|k| {
            let device_j: Vec<f64> = per_device.iter().map(|v| v[k]).collect();
            let gpu_j = devices
                .iter()
                .zip(&device_j)
                .filter(|(d, _)| d.gpu.is_some())
                .map(|(_, j)| j)
                .sum();
            let cpu_j = cpu_total_j(
                devices
                    .iter()
                    .zip(&device_j)
                    .filter(|(d, _)| d.gpu.is_none())
                    .map(|(d, j)| (d.name.as_str(), *j)),
            );
            StepEnergy {
                device_j,
                gpu_j,
                cpu_j,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn held_readings_become_period_midpoints() {
        // A reading refreshed every 100 ms (at 10, 110, 210 ... ms), polled every 20 ms:
        // 1, 2, ... 10 W, then held at 10 W until the refresh at 2010 ms brings 20 W.
        const MS: i64 = 1_000_000;
        let reading = |t: i64| match (t - 10 * MS).div_euclid(100 * MS) {
            k if k < 0 => 0.0,
            k if k < 10 => (k + 1) as f64,
            k if k < 20 => 10.0,
            _ => 20.0,
        };
        let polls: Vec<(i64, f64)> = (0..=110)
            .map(|k| (k * 20 * MS, reading(k * 20 * MS)))
            .collect();
        let (points, period, refreshes) = super::reconstruct(&polls);
        assert_eq!(period, 100 * MS);
        // Seen between the polls at 0 and 20 ms, then fitted to the 100 ms rhythm.
        assert!((refreshes[1] - 10 * MS).abs() <= 10 * MS, "{refreshes:?}");
        // 2 W is the average over 10..110 ms: its point is at the middle, 60 ms.
        let two = points.iter().find(|p| p.1 == 2.0).unwrap();
        assert!((two.0 - 60 * MS).abs() <= 10 * MS, "{points:?}");
        // 10 W held: it also stands at the middle of its last period (1810-1910 ms),
        // the one before the period that 20 W describes.
        let held: Vec<i64> = points.iter().filter(|p| p.1 == 10.0).map(|p| p.0).collect();
        assert_eq!(held.len(), 2, "{points:?}");
        assert!((held[1] - 1860 * MS).abs() <= 10 * MS, "{held:?}");
        assert_eq!(points.last(), Some(&(2200 * MS, 20.0)));
    }
}
