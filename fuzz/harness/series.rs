//! Fuzz harness for the intensity/price series parser (`series::Series`): shared by the
//! fuzz target (which compiles analyze/src/series.rs on its own) and the corpus
//! regression test in analyze. Both name the module `crate::series`.

use std::path::Path;

use crate::series::{Kind, Series};

/// Writes `data` as the series file at `path` and reads it with and without the range
/// check; what is accepted must be in time order and usable by the report.
pub fn run(path: &Path, data: &[u8]) {
    if std::fs::write(path, data).is_err() {
        return;
    }
    if let Ok(s) = Series::read(path) {
        assert!(
            s.0.windows(2).all(|w| w[0].0 <= w[1].0),
            "rows out of order"
        );
        use_series(&s);
    }
    for kind in [Kind::Intensity, Kind::Price] {
        if let Ok((s, _notes)) = Series::read_checked(path, kind) {
            assert!(
                s.0.windows(2).all(|w| w[0].0 < w[1].0),
                "checked series not strictly in time order"
            );
            assert!(s.0.iter().all(|r| r.1.is_finite() && r.1 >= 0.0));
            use_series(&s);
        }
    }
}

/// What the report does with a series over a run's span (Unix ns of 2020..2030).
fn use_series(s: &Series) {
    let (a, b) = (1_577_836_800_000_000_000_i64, 1_893_456_000_000_000_000_i64);
    let _ = s.coverage_note(a, b);
    let first = s.0[0].0;
    for t in [a, b, first, first.saturating_sub(1), i64::MIN, i64::MAX] {
        assert!(s.at(t).is_finite());
    }
    let _ = s.breaks(a, b).count();
}
