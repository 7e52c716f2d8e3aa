//! CPU power estimate for machines where no RAPL counter moves (VMs, these CI
//! machines): TDP of the CPU model (codecarbon's table, datasets/cpu_tdp.csv) times
//! sockets times machine utilisation. Rows carry `source = estimate`.

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

/// Integrates the estimated power into a run-relative energy counter.
pub struct Estimator {
    pub watts_at_full_load: f64,
    energy_uj: f64,
}

impl Estimator {
    pub fn new(tdp_w: f64, sockets: u32) -> Estimator {
        Estimator {
            watts_at_full_load: tdp_w * sockets.max(1) as f64,
            energy_uj: 0.0,
        }
    }

    /// Adds `dt_ns` at `util_pct` and returns the energy so far in uJ.
    pub fn add(&mut self, util_pct: f32, dt_ns: i64) -> u64 {
        let watts = self.watts_at_full_load * (util_pct as f64 / 100.0).clamp(0.0, 1.0);
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
    fn integrates_tdp_times_utilisation() {
        let mut e = Estimator::new(100.0, 2);
        assert_eq!(e.add(50.0, 1_000_000_000), 100_000_000); // 100 W for 1 s
        assert_eq!(e.add(150.0, 1_000_000_000), 300_000_000); // clamped to 200 W
    }
}
