//! CPU power estimate for machines where no RAPL counter moves (VMs, these CI
//! machines): TDP of the CPU model (codecarbon's table, datasets/cpu_tdp.csv) times
//! sockets times a load curve with an idle floor, `PowerModel::FITTED`:
//! `P(u) = TDP x sockets x (0.12 + (0.85 - 0.12) x u^0.8)`, u the machine utilisation
//! in 0..1. A powered package never draws 0 W, so the estimate never drops to 0 W
//! between phases. The constants are fitted on the ten CodeCarbon load-vs-RAPL traces
//! in datasets/cpu_load_vs_rapl and checked leave-one-CPU-out by
//! probe/tests/estimate_model.rs; their errors are in docs/benchmarks.md. Rows carry
//! `source = estimate`.

/// The TDP table, embedded so the binary needs no data files.
const CPU_TDP_CSV: &str = include_str!("../../../datasets/cpu_tdp.csv");

/// Used when the model is not in the table (codecarbon's default as well).
pub const DEFAULT_TDP_W: f64 = 85.0;

/// `Intel(R) Xeon(R) CPU E5-2620 v3 @ 2.40GHz` -> `intel xeon e5-2620 v3`.
pub fn normalise_model(model: &str) -> String {
    let mut s = model.to_lowercase();
    if let Some(at) = s.find('@') {
        s.truncate(at);
    }
    for junk in ["(r)", "(tm)", " cpu ", " processor"] {
        s = s.replace(junk, " ");
    }
    let words: Vec<&str> = s
        .split_whitespace()
        .filter(|w| !w.ends_with("-core"))
        .collect();
    words.join(" ")
}

/// TDP in watts for a CPU model name: an exact match after normalising, else the
/// longest table name (with a digit in it) found inside the model name.
pub fn lookup_tdp_w(model: &str) -> Option<(String, f64)> {
    let want = normalise_model(model);
    let mut best: Option<(String, f64)> = None;
    for line in CPU_TDP_CSV.lines().skip(1) {
        let Some((name, tdp)) = line.rsplit_once(',') else {
            continue;
        };
        let Ok(tdp) = tdp.trim().parse::<f64>() else {
            continue;
        };
        let norm = normalise_model(name);
        if norm == want {
            return Some((name.to_string(), tdp));
        }
        let contained = norm.len() >= 4
            && norm.chars().any(|c| c.is_ascii_digit())
            && contains_words(&want, &norm);
        if contained
            && best
                .as_ref()
                .is_none_or(|(b, _)| norm.len() > normalise_model(b).len())
        {
            best = Some((name.to_string(), tdp));
        }
    }
    best
}

/// Whether `needle` appears in `hay` on word boundaries.
fn contains_words(hay: &str, needle: &str) -> bool {
    let hay = format!(" {hay} ");
    hay.contains(&format!(" {needle} "))
}

/// Package power as a share of TDP against machine utilisation:
/// `idle_frac + (full_frac - idle_frac) * u^exponent`, u in 0..1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerModel {
    /// Share of TDP drawn at 0 % utilisation (the idle floor).
    pub idle_frac: f64,
    /// Share of TDP drawn at 100 % (sustained package power sits below TDP).
    pub full_frac: f64,
    /// Below 1 the curve is concave: the first busy cores wake the package and
    /// turbo, so power rises fastest at low load.
    pub exponent: f64,
}

impl PowerModel {
    /// Least squares of log power over the 108 load phases of the ten CodeCarbon
    /// traces (fit: 0.115, 0.86, 0.8), rounded. Leave-one-CPU-out refits give idle
    /// 0.09..0.12, full 0.71..0.93, exponent 0.5..0.85 (docs/benchmarks.md).
    pub const FITTED: PowerModel = PowerModel {
        idle_frac: 0.12,
        full_frac: 0.85,
        exponent: 0.8,
    };

    /// The estimate before the fit (TDP x utilisation, from zero), kept to compare.
    pub const FROM_ZERO: PowerModel = PowerModel {
        idle_frac: 0.0,
        full_frac: 1.0,
        exponent: 1.0,
    };

    /// Share of TDP at `util_pct` (clamped to 0..100; not a number counts as idle).
    pub fn tdp_fraction(&self, util_pct: f64) -> f64 {
        let u = if util_pct.is_finite() {
            (util_pct / 100.0).clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.idle_frac + (self.full_frac - self.idle_frac) * u.powf(self.exponent)
    }

    /// Watts at `util_pct` for a machine whose TDPs add up to `tdp_total_w`.
    pub fn watts(&self, tdp_total_w: f64, util_pct: f64) -> f64 {
        tdp_total_w * self.tdp_fraction(util_pct)
    }

    /// The formula as the sensor status prints it.
    pub fn describe(&self) -> String {
        format!(
            "({} + {:.2} x u^{}), u = machine CPU utilisation in 0..1",
            self.idle_frac,
            self.full_frac - self.idle_frac,
            self.exponent
        )
    }
}

/// Integrates the estimated power into a run-relative energy counter.
pub struct Estimator {
    /// TDP times sockets.
    pub tdp_total_w: f64,
    pub model: PowerModel,
    energy_uj: f64,
}

impl Estimator {
    /// The fitted model for `sockets` packages of `tdp_w` each.
    pub fn new(tdp_w: f64, sockets: u32) -> Estimator {
        Estimator::with_model(tdp_w, sockets, PowerModel::FITTED)
    }

    pub fn with_model(tdp_w: f64, sockets: u32, model: PowerModel) -> Estimator {
        Estimator {
            tdp_total_w: tdp_w * sockets.max(1) as f64,
            model,
            energy_uj: 0.0,
        }
    }

    /// Adds `dt_ns` at `util_pct` and returns the energy so far in uJ.
    pub fn add(&mut self, util_pct: f32, dt_ns: i64) -> u64 {
        let watts = self.model.watts(self.tdp_total_w, util_pct as f64);
        self.energy_uj += watts * dt_ns.max(0) as f64 / 1e3;
        self.energy_uj as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_models_as_proc_cpuinfo_spells_them() {
        let cases = [
            ("Intel(R) Xeon(R) CPU E5-2620 v3 @ 2.40GHz", 85.0),
            ("AMD EPYC 8024P 8-Core Processor", 90.0),
            ("AMD Ryzen Threadripper 1950X 16-Core Processor", 180.0),
            ("Intel(R) Xeon(R) CPU E3-1240 V2 @ 3.40GHz", 69.0),
        ];
        for (model, tdp) in cases {
            let (name, got) = lookup_tdp_w(model).unwrap_or_else(|| panic!("{model} not found"));
            assert_eq!(got, tdp, "{model} matched {name}");
        }
        assert_eq!(lookup_tdp_w("Intel(R) Xeon(R) Processor"), None);
    }

    #[test]
    fn integrates_the_fitted_curve_with_its_idle_floor() {
        let mut e = Estimator::new(100.0, 2);
        // 200 W x 0.12 = 24 W at idle for 1 s: never 0 W.
        assert_eq!(e.add(0.0, 1_000_000_000), 24_000_000);
        // 200 W x 0.85 at full load for 1 s; above 100 % clamps to full load.
        assert_eq!(e.add(150.0, 1_000_000_000), 24_000_000 + 170_000_000);
        // Half load: 0.12 + 0.73 x 0.5^0.8 of 200 W.
        let before = e.add(0.0, 0);
        let after = e.add(50.0, 1_000_000_000);
        let want_w = 200.0 * (0.12 + 0.73 * 0.5f64.powf(0.8));
        assert!(((after - before) as f64 / 1e6 - want_w).abs() < 1e-3);
        // A negative interval adds nothing; a NaN utilisation counts as idle.
        assert_eq!(e.add(50.0, -5), after);
        assert_eq!(e.add(f32::NAN, 1_000_000), after + 24_000);
    }

    #[test]
    fn curve_rises_fastest_at_low_load() {
        let m = PowerModel::FITTED;
        let (p0, p25, p50, p100) = (
            m.tdp_fraction(0.0),
            m.tdp_fraction(25.0),
            m.tdp_fraction(50.0),
            m.tdp_fraction(100.0),
        );
        assert!(p0 > 0.0 && p0 < p25 && p25 < p50 && p50 < p100);
        // Concave: the first half of the load adds more than the second.
        assert!(p50 - p0 > p100 - p50, "{p0} {p25} {p50} {p100}");
        assert_eq!(PowerModel::FROM_ZERO.watts(90.0, 50.0), 45.0);
    }
}
