//! Numbers as people read them, for every text the tools print (report table, HTML,
//! figures, CSV): never `-0`, significant digits for small quantities, thousands
//! separators for large counts, and round axis ticks.

/// `v` with `digits` decimals, without a sign when it rounds to zero (`-0.000` -> `0.000`).
pub fn fixed(v: f64, digits: usize) -> String {
    let s = format!("{v:.digits$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

/// `v` with `sig` significant digits (at least one), plain decimal notation for
/// magnitudes people read (1e-6 ..= 1e15), no `-0`.
pub fn sig(v: f64, sig: usize) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-6..=15).contains(&mag) {
        return format!("{v:.*e}", sig.saturating_sub(1));
    }
    let decimals = (sig.max(1) as i32 - 1 - mag).max(0) as usize;
    fixed(v, decimals)
}

/// An integer part with thousands separators: 1234567.8 -> `1,234,568`.
pub fn thousands(v: f64) -> String {
    if !v.is_finite() || v.abs() >= 1e18 {
        return sig(v, 4);
    }
    let s = fixed(v.round(), 0);
    let (sign, digits) = match s.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", s.as_str()),
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// A mass of CO2 in the unit that shows it best: `2.35 kg`, `496 g`, `0.0413 g`.
pub fn mass_kg(kg: f64) -> String {
    if kg.abs() >= 1.0 {
        format!("{} kg", fixed(kg, 3))
    } else {
        format!("{} g", sig(kg * 1000.0, 3))
    }
}

/// An energy in kWh with enough digits for a seconds-long run: `0.00123 kWh`.
pub fn kwh(v: f64) -> String {
    if v.abs() >= 1.0 {
        format!("{} kWh", fixed(v, 3))
    } else {
        format!("{} kWh", sig(v, 3))
    }
}

/// Round axis ticks from 0 to at least `top`: steps of 1, 2 or 5 x 10^k, `want`
/// intervals or a few more. Returns (step, number of intervals).
pub fn ticks(top: f64, want: usize) -> (f64, usize) {
    let want = want.max(1);
    if !(top.is_finite() && top > 0.0) {
        return (1.0, want);
    }
    let raw = top / want as f64;
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * p);
    let n = (top / step - 1e-9).ceil().max(1.0) as usize;
    (step, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_negative_zero() {
        assert_eq!(fixed(-0.0, 6), "0.000000");
        assert_eq!(fixed(-0.000_000_4, 6), "0.000000");
        assert_eq!(fixed(-0.000_004, 6), "-0.000004");
        assert_eq!(sig(-0.0, 3), "0");
    }

    #[test]
    fn significant_digits() {
        assert_eq!(sig(0.000_496, 3), "0.000496");
        assert_eq!(sig(1234.6, 3), "1235");
        assert_eq!(sig(41.44, 3), "41.4");
        assert_eq!(sig(2.0e-9, 2), "2.0e-9");
    }

    #[test]
    fn separators() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
        assert_eq!(thousands(0.2), "0");
    }

    #[test]
    fn masses() {
        assert_eq!(mass_kg(-0.000_496), "-0.496 g");
        assert_eq!(mass_kg(2.345_6), "2.346 kg");
        assert_eq!(mass_kg(0.0), "0 g");
    }

    #[test]
    fn round_ticks() {
        assert_eq!(ticks(94.0, 4), (25.0, 4));
        assert_eq!(ticks(100.0, 4), (25.0, 4));
        assert_eq!(ticks(101.0, 4), (50.0, 3));
        assert_eq!(ticks(0.7, 4), (0.2, 4));
        assert_eq!(ticks(0.0, 4), (1.0, 4));
    }
}
