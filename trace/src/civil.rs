//! Days since 1970-01-01 to and from proleptic Gregorian dates (UTC), after Howard
//! Hinnant's algorithms: run ids, report days, and RFC 3339 timestamps need no date crate.

/// (year, month 1-12, day 1-31) of a day number.
pub fn from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The day number of a date.
pub fn to_days(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        assert_eq!(super::from_days(0), (1970, 1, 1));
        assert_eq!(super::to_days(2026, 1, 1), 20_454);
        for d in [-1000, 0, 59, 60, 11_016, 20_454, 100_000] {
            let (y, m, dd) = super::from_days(d);
            assert_eq!(super::to_days(y, m, dd), d);
        }
    }
}
