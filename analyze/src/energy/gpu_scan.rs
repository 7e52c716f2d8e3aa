//! The GPU table in one parallel pass, reduced while it is read: of each run of equal
//! power readings only the first and last polls are kept (all that `reconstruct` looks
//! at), so a 100 M-row trace costs a fraction of its rows in memory.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, PrimitiveArray, RecordBatch};
use eco2ai_trace::scan::{Part, fold_parts};
use eco2ai_trace::{Run, Table, TraceError};

/// One reading's polls with the middle of each run of equal values left out.
#[derive(Debug, Default, Clone)]
pub struct Polls {
    pub kept: Vec<(i64, f64)>,
    /// The latest poll, not kept yet: the last of its run so far.
    pending: Option<(i64, f64)>,
    last: Option<(i64, f64)>,
    /// Finite readings seen (kept or not).
    pub seen: usize,
    /// NaN or infinite readings.
    pub dropped: usize,
    pub out_of_order: usize,
    /// Set when this reading's points were let go (the other power reading is used).
    pub discarded: bool,
}

impl Polls {
    pub fn push(&mut self, t: i64, v: f64) {
        if !v.is_finite() {
            self.dropped += 1;
            return;
        }
        self.seen += 1;
        if self.discarded {
            return;
        }
        match self.last {
            Some((lt, lv)) if t >= lt && v == lv => self.pending = Some((t, v)),
            Some((lt, _)) => {
                self.out_of_order += usize::from(t < lt);
                self.flush();
                self.kept.push((t, v));
            }
            None => self.kept.push((t, v)),
        }
        self.last = Some((t, v));
    }

    fn flush(&mut self) {
        if let Some(p) = self.pending.take() {
            self.kept.push(p);
        }
    }

    fn discard(&mut self) {
        self.discarded = true;
        self.kept = Vec::new();
        self.pending = None;
    }

    /// Appends the polls that came after these (the next part of the table).
    fn append(&mut self, mut next: Polls) {
        self.flush();
        next.flush();
        if let (Some((lt, _)), Some(&(t, _))) = (self.last, next.kept.first()) {
            self.out_of_order += usize::from(t < lt);
        }
        self.seen += next.seen;
        self.dropped += next.dropped;
        self.out_of_order += next.out_of_order;
        if next.discarded {
            self.discard();
        }
        if !self.discarded {
            self.kept.append(&mut next.kept);
        }
        self.last = next.last.or(self.last);
    }

    /// Every kept poll, the last one included.
    pub fn finish(mut self) -> Polls {
        self.flush();
        self
    }
}

/// One GPU's readings.
#[derive(Debug, Default, Clone)]
pub struct GpuPolls {
    pub avg_w: Polls,
    pub instant_w: Polls,
    pub counter_j: Vec<(i64, f64)>,
}

impl GpuPolls {
    /// Instant power follows the load within a refresh; the 1 s average lags. The
    /// average is the fallback where instant power is missing or sparse.
    pub fn use_instant(&self) -> bool {
        self.instant_w.seen * 2 >= self.avg_w.seen && self.instant_w.seen >= 2
    }

    /// Lets go of the average's points once instant power is clearly there.
    fn settle(&mut self) {
        if self.use_instant() && !self.avg_w.discarded {
            self.avg_w.discard();
        }
    }
}

/// What one part of the GPU table holds.
#[derive(Debug, Default)]
pub struct Scan {
    pub gpus: BTreeMap<u32, GpuPolls>,
    pub util_sum: f64,
    pub util_n: usize,
    pub counter_out_of_order: usize,
    /// Rows without a timestamp or GPU index.
    pub skipped: usize,
}

const COLUMNS: [&str; 6] = [
    "ts_ns",
    "gpu",
    "power_mw",
    "power_instant_mw",
    "energy_mj",
    "util_gpu_pct",
];

fn column<'a, T: arrow_array::types::ArrowPrimitiveType>(
    b: &'a RecordBatch,
    name: &str,
) -> Option<&'a PrimitiveArray<T>> {
    b.column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<T>())
}

fn fold(scan: &mut Scan, b: &RecordBatch, keep_avg: bool) {
    let (Some(ts), Some(gpu)) = (
        column::<Int64Type>(b, "ts_ns"),
        column::<UInt32Type>(b, "gpu"),
    ) else {
        scan.skipped += b.num_rows();
        return;
    };
    let avg = column::<UInt32Type>(b, "power_mw");
    let inst = column::<UInt32Type>(b, "power_instant_mw");
    let ctr = column::<UInt64Type>(b, "energy_mj");
    let util = column::<UInt32Type>(b, "util_gpu_pct");
    let value = |a: Option<&PrimitiveArray<UInt32Type>>, i: usize| {
        a.filter(|a| a.is_valid(i))
            .map(|a| f64::from(a.value(i)) * 1e-3)
    };
    let mut current: Option<(u32, GpuPolls)> = None;
    for i in 0..b.num_rows() {
        if !ts.is_valid(i) || !gpu.is_valid(i) {
            scan.skipped += 1;
            continue;
        }
        let (t, g) = (ts.value(i), gpu.value(i));
        // Rows come in runs of one GPU: take its entry out of the map once per run.
        if current.as_ref().is_none_or(|c| c.0 != g) {
            if let Some((k, v)) = current.take() {
                scan.gpus.insert(k, v);
            }
            current = Some((g, scan.gpus.remove(&g).unwrap_or_default()));
        }
        let Some((_, p)) = current.as_mut() else {
            continue;
        };
        if let Some(w) = value(avg, i) {
            p.avg_w.push(t, w);
        }
        if let Some(w) = value(inst, i) {
            p.instant_w.push(t, w);
        }
        if let Some(c) = ctr.filter(|a| a.is_valid(i)) {
            let j = c.value(i) as f64 * 1e-3;
            if p.counter_j.last().is_some_and(|l| l.0 > t) {
                scan.counter_out_of_order += 1;
            }
            p.counter_j.push((t, j));
        }
        if let Some(u) = util.filter(|a| a.is_valid(i)) {
            scan.util_sum += f64::from(u.value(i));
            scan.util_n += 1;
        }
    }
    if let Some((k, v)) = current {
        scan.gpus.insert(k, v);
    }
    if !keep_avg {
        scan.gpus.values_mut().for_each(GpuPolls::settle);
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn merge(chunks: Vec<Scan>) -> Scan {
    let mut all = Scan::default();
    for c in chunks {
        all.util_sum += c.util_sum;
        all.util_n += c.util_n;
        all.counter_out_of_order += c.counter_out_of_order;
        all.skipped += c.skipped;
        for (g, p) in c.gpus {
            let e = all.gpus.entry(g).or_default();
            e.avg_w.append(p.avg_w);
            e.instant_w.append(p.instant_w);
            e.counter_j.extend(p.counter_j);
        }
    }
    for p in all.gpus.values_mut() {
        p.avg_w = std::mem::take(&mut p.avg_w).finish();
        p.instant_w = std::mem::take(&mut p.instant_w).finish();
    }
    all
}

/// Reads the GPU table's power, energy and utilisation columns on every core.
pub fn scan(run: &Run) -> Result<Scan, TraceError> {
    let parts: Vec<Part> = run.parts(Table::Gpu)?;
    let pass = |keep_avg: bool| {
        fold_parts(
            &parts,
            Table::Gpu,
            &COLUMNS,
            threads(),
            Scan::default,
            |s, b| fold(s, b, keep_avg),
        )
        .map(|(chunks, _)| merge(chunks))
    };
    let first = pass(false)?;
    // A GPU whose instant power thinned out after its average was let go: read again,
    // keeping the average (rare; the first pass settles only where instant dominates).
    let again = first
        .gpus
        .values()
        .any(|p| !p.use_instant() && p.avg_w.discarded);
    if again { pass(true) } else { Ok(first) }
}

#[cfg(test)]
mod tests {
    use super::Polls;

    #[test]
    fn only_the_ends_of_each_run_are_kept() {
        let mut p = Polls::default();
        for (t, v) in [
            (0, 1.0),
            (1, 1.0),
            (2, 1.0),
            (3, 2.0),
            (4, 2.0),
            (5, f64::NAN),
            (6, 3.0),
        ] {
            p.push(t, v);
        }
        let p = p.finish();
        assert_eq!(
            p.kept,
            vec![(0, 1.0), (2, 1.0), (3, 2.0), (4, 2.0), (6, 3.0)]
        );
        assert_eq!((p.seen, p.dropped), (6, 1));
    }

    #[test]
    fn parts_append_as_if_read_in_one() {
        let polls = [(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0), (4, 5.0), (5, 5.0)];
        let mut whole = Polls::default();
        polls.iter().for_each(|&(t, v)| whole.push(t, v));
        let (mut a, mut b) = (Polls::default(), Polls::default());
        polls[..2].iter().for_each(|&(t, v)| a.push(t, v));
        polls[2..].iter().for_each(|&(t, v)| b.push(t, v));
        a.append(b);
        let (whole, a) = (whole.finish(), a.finish());
        // The part boundary may keep one more poll; reconstruct ignores equal neighbours.
        assert!(
            whole.kept.iter().all(|p| a.kept.contains(p)),
            "{:?}",
            a.kept
        );
        assert_eq!(a.seen, 6);
        assert_eq!(a.out_of_order, 0);
    }

    #[test]
    fn out_of_order_polls_are_counted_and_kept() {
        let mut p = Polls::default();
        for (t, v) in [(10, 1.0), (20, 1.0), (15, 1.0), (30, 2.0)] {
            p.push(t, v);
        }
        let p = p.finish();
        assert_eq!(p.out_of_order, 1);
        assert!(p.kept.contains(&(15, 1.0)) && p.kept.contains(&(20, 1.0)));
    }
}
