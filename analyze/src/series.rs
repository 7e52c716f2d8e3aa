//! Time-varying inputs: a CSV of `timestamp,value` rows (grid gCO2/kWh, or a
//! time-of-use price per kWh), each value in force from its timestamp to the next.
//! Timestamps are Unix seconds or RFC 3339 UTC (`2026-01-01T00:00:00Z`).

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
    if !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || h > 23
        || mi > 59
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    let days = eco2ai_trace::civil::to_days(y, mo, da);
    Some((days * 86_400 + h * 3600 + mi * 60) * 1_000_000_000 + (sec * 1e9) as i64)
}

impl Series {
    pub fn read(path: &Path) -> Result<Series, SeriesError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SeriesError::Io(name.clone(), e))?;
        let mut rows = Vec::new();
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
            let Some(t) = parse_time(t.trim()) else {
                if rows.is_empty() && i == 0 {
                    continue; // a header
                }
                return Err(bad(format!(
                    "'{t}' is neither Unix seconds nor RFC 3339 UTC"
                )));
            };
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| bad(format!("'{}' is not a number", v.trim())))?;
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(format!("{v} is not a non-negative number")));
            }
            rows.push((t, v));
        }
        if rows.is_empty() {
            return Err(SeriesError::Empty(name));
        }
        rows.sort_by_key(|r| r.0);
        Ok(Series(rows))
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
}
