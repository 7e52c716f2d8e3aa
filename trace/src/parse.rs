//! The one parser for durations and bounded numbers behind every duration, seconds and
//! speed flag of both binaries. Every value is range-checked before it becomes a
//! `Duration`: `Duration::from_secs_f64` panics on values past ~584 billion years, and a
//! figure nobody meant (`1e30` s, `inf`, `1e-300`x) is a typo to report, not to run.

use std::time::Duration;

use thiserror::Error;

/// The longest duration any flag takes: one year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// `MAX_DURATION` in seconds.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

#[derive(Debug, Error, PartialEq)]
pub enum ParseError {
    #[error(
        "invalid duration '{0}': expected a number with a unit (ns, us, ms, s, m, h), e.g. 500us, 20ms, 2s, 5m, 1h"
    )]
    Duration(String),
    #[error("duration '{got}' out of range: expected {min:?} to {max:?}")]
    DurationRange {
        got: String,
        min: Duration,
        max: Duration,
    },
    #[error("invalid number '{0}': expected a finite decimal number such as 2.5")]
    Number(String),
    #[error("'{got}' out of range: expected a number {range}")]
    NumberRange { got: String, range: String },
}

/// Parses `500us`, `20ms`, `2s`, `1.5s`, `5m`, `1h` (ns, us/µs, ms, s, m/min, h), from zero
/// to [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    parse_duration_in(s, Duration::ZERO, MAX_DURATION)
}

/// [`parse_duration`] within `min..=max` (`max` at most [`MAX_DURATION`]).
pub fn parse_duration_in(s: &str, min: Duration, max: Duration) -> Result<Duration, ParseError> {
    let t = s.trim();
    // Digits and a dot only: no sign, no exponent, no `inf`/`nan`.
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| ParseError::Duration(s.into()))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| ParseError::Duration(s.into()))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(ParseError::Duration(s.into())),
    };
    let max = max.min(MAX_DURATION);
    let secs = value * scale;
    let out_of_range = || ParseError::DurationRange {
        got: s.trim().into(),
        min,
        max,
    };
    // Checked in f64 first, so the conversion below cannot panic.
    if !(secs.is_finite() && secs <= max.as_secs_f64()) {
        return Err(out_of_range());
    }
    let d = Duration::try_from_secs_f64(secs).map_err(|_| out_of_range())?;
    if d < min || d > max {
        return Err(out_of_range());
    }
    Ok(d)
}

/// A finite number within `min..=max`.
pub fn parse_number(s: &str, min: f64, max: f64) -> Result<f64, ParseError> {
    let v = finite(s)?;
    if v < min || v > max {
        return Err(ParseError::NumberRange {
            got: s.trim().into(),
            range: format!("from {min} to {max}"),
        });
    }
    Ok(v)
}

/// A finite number above zero and at most `max`.
pub fn parse_positive(s: &str, max: f64) -> Result<f64, ParseError> {
    let v = finite(s)?;
    if !(v > 0.0 && v <= max) {
        return Err(ParseError::NumberRange {
            got: s.trim().into(),
            range: format!("above 0 and at most {max}"),
        });
    }
    Ok(v)
}

/// Seconds as a float (`2.5`), within `min_s..=max_s` (at most [`MAX_SECONDS`]).
pub fn parse_seconds(s: &str, min_s: f64, max_s: f64) -> Result<Duration, ParseError> {
    let max_s = max_s.min(MAX_SECONDS);
    let out_of_range = || ParseError::NumberRange {
        got: s.trim().into(),
        range: format!("of seconds from {min_s} to {max_s} (a year at most)"),
    };
    let v = finite(s)?;
    if v < min_s || v > max_s {
        return Err(out_of_range());
    }
    Duration::try_from_secs_f64(v).map_err(|_| out_of_range())
}

fn finite(s: &str) -> Result<f64, ParseError> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ParseError::Number(s.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("250ns"), Ok(Duration::from_nanos(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for bad in [
            "10",
            "ms",
            "10 parsecs",
            "",
            "1e3s",
            "-5s",
            "infs",
            "NaNs",
            ".s",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(ParseError::Duration(_))),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        for bad in [
            "99999999999999999999h",
            "8761h",
            "1000000000000000000000000000000s",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(
                matches!(err, ParseError::DurationRange { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("out of range"), "{err}");
        }
        let err = parse_duration_in("0s", Duration::from_millis(1), MAX_DURATION)
            .expect_err("zero below the minimum");
        assert!(err.to_string().contains("1ms"), "{err}");
        assert_eq!(
            parse_duration_in("1ms", Duration::from_millis(1), MAX_DURATION),
            Ok(Duration::from_millis(1))
        );
    }

    #[test]
    fn numbers_are_finite_and_bounded() {
        assert_eq!(parse_number("2.5", 0.0, 10.0), Ok(2.5));
        assert_eq!(parse_number("1e3", 0.0, 1e4), Ok(1000.0));
        for bad in ["inf", "-inf", "NaN", "x", ""] {
            assert!(
                matches!(parse_number(bad, 0.0, 10.0), Err(ParseError::Number(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_number("11", 0.0, 10.0),
            Err(ParseError::NumberRange { .. })
        ));
        assert!(parse_number("-1", 0.0, 10.0).is_err());
        assert!(parse_positive("0", 10.0).is_err());
        assert!(parse_positive("1e-300", 10.0).is_ok());
        assert!(parse_positive("1e300", 10.0).is_err());
    }

    #[test]
    fn seconds_never_panic() {
        assert_eq!(
            parse_seconds("2.5", 0.0, 10.0),
            Ok(Duration::from_millis(2500))
        );
        for bad in ["1e30", "inf", "1e300", "-1"] {
            assert!(parse_seconds(bad, 0.0, MAX_SECONDS).is_err(), "{bad}");
        }
        assert_eq!(
            parse_seconds(&MAX_SECONDS.to_string(), 0.0, MAX_SECONDS),
            Ok(MAX_DURATION)
        );
    }
}
