//! Fuzz harness for the duration and number parsers behind every flag
//! (`eco2ai_trace::parse`): shared by the fuzz target and the corpus regression test.

use std::time::Duration;

use eco2ai_trace::parse::{
    MAX_DURATION, parse_duration, parse_duration_in, parse_number, parse_positive, parse_seconds,
};

/// Bounds the flags of both binaries use, plus extremes.
const NUMBER_RANGES: [(f64, f64); 4] = [
    (0.0, 1.0),
    (1e-9, 1e9),
    (f64::MIN, f64::MAX),
    (f64::NEG_INFINITY, f64::INFINITY),
];

/// Feeds the text to every parser; whatever parses must lie in the range asked for.
pub fn run(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(s) {
        assert!(d <= MAX_DURATION, "{s:?} -> {d:?} past the maximum");
    }
    let duration_ranges = [
        (Duration::ZERO, MAX_DURATION),
        (Duration::from_millis(1), Duration::from_secs(60)),
        (Duration::from_nanos(1), Duration::MAX),
    ];
    for (min, max) in duration_ranges {
        if let Ok(d) = parse_duration_in(s, min, max) {
            assert!(d >= min && d <= max.min(MAX_DURATION), "{s:?} -> {d:?}");
        }
    }
    for (min, max) in NUMBER_RANGES {
        if let Ok(v) = parse_number(s, min, max) {
            assert!(v.is_finite() && v >= min && v <= max, "{s:?} -> {v}");
        }
        if let Ok(d) = parse_seconds(s, min, max) {
            assert!(d <= MAX_DURATION, "{s:?} -> {d:?}");
        }
    }
    for max in [1.0, 1e6, f64::MAX] {
        if let Ok(v) = parse_positive(s, max) {
            assert!(v > 0.0 && v <= max, "{s:?} -> {v}");
        }
    }
}
