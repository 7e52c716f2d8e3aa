//! Time-varying inputs: a CSV of `timestamp,value` rows (grid gCO2/kWh, or a
//! time-of-use price per kWh), each value in force from its timestamp to the next.
//! Timestamps are Unix seconds (or ms, us, ns, told apart by size) or RFC 3339 UTC
//! (`2026-01-01T00:00:00Z`).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{file}:{line}: {why}")]
    Bad {
        file: String,
        line: usize,
        why: String,
    },
    #[error("{0}: no rows")]
    Empty(String),
}

/// (Unix ns, value) in time order.
#[derive(Debug, Clone)]
pub struct Series(pub Vec<(i64, f64)>);

/// Unix ns of `2026-01-01T00:00:00Z` (seconds may carry a fraction) or of Unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        return secs.is_finite().then(|| (secs * 1e9) as i64);
    }
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once(['T', ' '])?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, mi) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next().unwrap_or("0").parse().ok()?;
    if !(1..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    let days = eco2ai_trace::civil::to_days(y, mo, da);
    // Unix ns span 1677..2262 only: a date outside is refused, not wrapped (found by fuzzing).
    (days * 86_400 + h * 3600 + mi * 60)
        .checked_mul(1_000_000_000)?
        .checked_add((sec * 1e9) as i64)
}

/// A row in range and after the previous one.
fn check_row(k: Kind, rows: &[(i64, f64)], t: i64, v: f64) -> Result<(), String> {
    if v > k.max() {
        return Err(format!(
            "{} {} is out of range (at most {} {})",
            crate::numfmt::sig(v, 4),
            k.unit(),
            k.max(),
            k.unit()
        ));
    }
    match rows.last() {
        Some(&(prev, _)) if t == prev => Err("duplicate timestamp".into()),
        Some(&(prev, _)) if t < prev => Err("timestamps out of order".into()),
        _ => Ok(()),
    }
}

/// What a series holds, for its range check and its messages.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Grid intensity, gCO2/kWh: the dirtiest grids are near 1,000; 5,000 is no grid.
    Intensity,
    /// Electricity price, USD/kWh: spot prices spike to a few; 100 is no tariff.
    Price,
}

impl Kind {
    fn max(self) -> f64 {
        match self {
            Kind::Intensity => 5_000.0,
            Kind::Price => 100.0,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Kind::Intensity => "gCO2/kWh",
            Kind::Price => "USD/kWh",
        }
    }
}

/// Numeric timestamps in the unit their size says: Unix seconds now are ~1.8e9, so
/// ~1.8e12 is milliseconds, ~1.8e15 microseconds and ~1.8e18 nanoseconds.
fn numeric_unit(x: f64) -> (f64, &'static str) {
    match x.abs() {
        v if v >= 1e17 => (1.0, "ns"),
        v if v >= 1e14 => (1e3, "us"),
        v if v >= 1e11 => (1e6, "ms"),
        _ => (1e9, "s"),
    }
}

/// One line's timestamp in Unix ns; numeric ones scaled by their unit.
fn line_time(t: &str, unit: &mut Option<(f64, &'static str)>) -> Option<Result<i64, String>> {
    let Ok(x) = t.parse::<f64>() else {
        return parse_time(t).map(Ok);
    };
    if !x.is_finite() {
        return None;
    }
    let u = numeric_unit(x);
    match unit {
        Some(seen) if seen.1 != u.1 => Some(Err(format!(
            "timestamp {t} looks like Unix {} but earlier ones are Unix {}",
            u.1, seen.1
        ))),
        _ => {
            *unit = Some(u);
            let ns = x * u.0;
            if ns.abs() < 9.2e18 {
                Some(Ok(ns as i64))
            } else {
                Some(Err(format!("timestamp {t} is out of range")))
            }
        }
    }
}

impl Series {
    /// A series without a range check (values only non-negative): see [`Series::read_checked`].
    pub fn read(path: &Path) -> Result<Series, SeriesError> {
        Series::read_inner(path, None).map(|(s, _)| s)
    }

    /// A series whose values must be in range for `kind`, in time order without
    /// duplicate timestamps. Returns notes for the user (the unit read from numeric
    /// timestamps when it is not seconds).
    pub fn read_checked(path: &Path, kind: Kind) -> Result<(Series, Vec<String>), SeriesError> {
        Series::read_inner(path, Some(kind))
    }

    fn read_inner(path: &Path, kind: Option<Kind>) -> Result<(Series, Vec<String>), SeriesError> {
        let name = path.display().to_string();
        // A regular file of at most 64 MiB: a FIFO or /dev/zero would never end.
        let bytes = eco2ai_trace::meta::read_regular_file(path, 64 << 20)
            .map_err(|e| SeriesError::Io(name.clone(), std::io::Error::other(e.to_string())))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            SeriesError::Io(
                name.clone(),
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        let mut rows: Vec<(i64, f64)> = Vec::new();
        let mut unit = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| SeriesError::Bad {
                file: name.clone(),
                line: i + 1,
                why,
            };
            let (t, v) = line
                .split_once(',')
                .ok_or_else(|| bad("expected timestamp,value".into()))?;
            let t = match line_time(t.trim(), &mut unit) {
                Some(r) => r.map_err(bad)?,
                None if rows.is_empty() && i == 0 => continue, // a header
                None => {
                    return Err(bad(format!(
                        "'{}' is neither a Unix timestamp nor RFC 3339 UTC",
                        t.trim()
                    )));
                }
            };
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| bad(format!("'{}' is not a number", v.trim())))?;
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(format!("{v} is not a non-negative number")));
            }
            if let Some(k) = kind {
                check_row(k, &rows, t, v).map_err(bad)?;
            }
            rows.push((t, v));
        }
        if rows.is_empty() {
            return Err(SeriesError::Empty(name));
        }
        rows.sort_by_key(|r| r.0);
        let notes = match unit {
            Some((_, u)) if u != "s" => {
                vec![format!("{name}: numeric timestamps read as Unix {u}")]
            }
            _ => Vec::new(),
        };
        Ok((Series(rows), notes))
    }

    /// A note when the series does not cover [a, b] (Unix ns): its first value then
    /// stands for the time before it.
    pub fn coverage_note(&self, a: i64, b: i64) -> Option<String> {
        let first = self.0.first()?.0;
        (first > a).then(|| {
            let late_s = (first.min(b) - a) as f64 / 1e9;
            format!(
                "the series starts {late_s:.0} s after the run began{}: its first value stands for the time before it",
                if first >= b { " (after it ended)" } else { "" }
            )
        })
    }

    /// The value in force at `t` (the first value before the series starts).
    pub fn at(&self, t: i64) -> f64 {
        let i = self.0.partition_point(|r| r.0 <= t);
        self.0[i.saturating_sub(1)].1
    }

    /// Instants in (a, b) where the value changes.
    pub fn breaks(&self, a: i64, b: i64) -> impl Iterator<Item = i64> + '_ {
        let i = self.0.partition_point(|r| r.0 <= a);
        self.0[i..].iter().map(|r| r.0).take_while(move |t| *t < b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(
            parse_time("2026-01-01T00:00:00Z"),
            Some(1_767_225_600_000_000_000)
        );
        assert_eq!(parse_time("1767225600"), Some(1_767_225_600_000_000_000));
        assert_eq!(parse_time("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn values_hold_until_the_next() {
        let s = Series(vec![(10, 1.0), (20, 2.0)]);
        assert_eq!(
            (s.at(5), s.at(10), s.at(15), s.at(25)),
            (1.0, 1.0, 1.0, 2.0)
        );
        assert_eq!(s.breaks(0, 30).collect::<Vec<_>>(), vec![10, 20]);
        assert_eq!(s.breaks(10, 20).collect::<Vec<_>>(), Vec::<i64>::new());
    }

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.csv");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn millisecond_and_nanosecond_timestamps_are_read_as_such() {
        let (_d, p) = file("1767225600000,50\n1767225660000,60\n");
        let (s, notes) = Series::read_checked(&p, Kind::Intensity).unwrap();
        assert_eq!(s.0[0].0, 1_767_225_600_000_000_000);
        assert!(notes[0].contains("Unix ms"), "{notes:?}");
        let (_d, p) = file("1767225600000000000,0.2\n");
        let (s, _) = Series::read_checked(&p, Kind::Price).unwrap();
        assert_eq!(s.0[0].0, 1_767_225_600_000_000_000);
    }

    #[test]
    fn bad_series_are_refused_with_their_line() {
        for (text, why) in [
            ("1767225600,50\n1767225600,60\n", "2: duplicate timestamp"),
            (
                "1767225660,50\n1767225600,60\n",
                "2: timestamps out of order",
            ),
            (
                "1767225600,1e300\n",
                "1: 1.000e300 gCO2/kWh is out of range",
            ),
            (
                "1767225600,50\n1767225600000,60\n",
                "2: timestamp 1767225600000 looks like Unix ms",
            ),
        ] {
            let (_d, p) = file(text);
            let e = Series::read_checked(&p, Kind::Intensity)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_series_starting_after_the_run_is_noted() {
        let s = Series(vec![(100_000_000_000, 1.0)]);
        let note = s.coverage_note(40_000_000_000, 200_000_000_000).unwrap();
        assert!(note.contains("starts 60 s after the run began"), "{note}");
        assert!(s.coverage_note(100_000_000_000, 200_000_000_000).is_none());
    }
}
