//! Phases in a generated run: the named spans of a spec, a profile that draws each
//! span's own power, and each partition class's energy in closed form.

use super::{Profile, S, Spec};

/// A named phase span of a generated run: every GPU draws `power_w` inside it. Steps
/// overlapping it are left out, except (with `steps`) those wholly inside, which carry
/// the phase's name (an evaluation's steps).
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    pub name: String,
    pub begin_s: f64,
    pub end_s: f64,
    pub power_w: f64,
    pub steps: bool,
}

/// A profile at a constant power inside each span (start s, end s, W), `base` elsewhere.
pub struct Phased<'a> {
    pub base: &'a dyn Profile,
    pub spans: Vec<(f64, f64, f64)>,
}

impl Profile for Phased<'_> {
    fn power_w(&self, g: u32, t: f64) -> f64 {
        match self.spans.iter().find(|s| s.0 <= t && t < s.1) {
            Some(s) => s.2,
            None => self.base.power_w(g, t),
        }
    }
    fn energy_j(&self, g: u32, t: f64) -> f64 {
        let mut e = self.base.energy_j(g, t);
        for &(b, end, w) in self.spans.iter().filter(|s| s.0 < t) {
            let to = end.min(t);
            e += w * (to - b) - (self.base.energy_j(g, to) - self.base.energy_j(g, b));
        }
        e
    }
}

/// The partition's classes in closed form: named spans (disjoint), train steps, the
/// gaps between train steps less the named spans in them (stall), and the stretches
/// before the first train step and after the last less the named spans there (idle).
pub(super) fn phase_truth(
    spec: &Spec,
    profile: &dyn Profile,
    steps: &[(i64, i64, Option<String>)],
    end_ns: i64,
) -> Vec<(String, f64)> {
    let e_j = |a: f64, b: f64| -> f64 {
        (0..spec.gpus)
            .map(|g| profile.energy_j(g, b) - profile.energy_j(g, a))
            .sum()
    };
    let named: Vec<(f64, f64)> = spec.phases.iter().map(|p| (p.begin_s, p.end_s)).collect();
    // Energy of [a, b] outside every named span.
    let outside = |a: f64, b: f64| -> f64 {
        let inside: f64 = named
            .iter()
            .map(|&(x, y)| (x.max(a), y.min(b)))
            .filter(|(x, y)| x < y)
            .map(|(x, y)| e_j(x, y))
            .sum();
        e_j(a, b) - inside
    };
    let train: Vec<(f64, f64)> = steps
        .iter()
        .filter(|s| s.2.is_none())
        .map(|s| (s.0 as f64 / S, s.1 as f64 / S))
        .collect();
    let mut out = vec![
        (
            "train".to_string(),
            train.iter().map(|&(b, e)| e_j(b, e)).sum(),
        ),
        (
            "stall".to_string(),
            train.windows(2).map(|w| outside(w[0].1, w[1].0)).sum(),
        ),
    ];
    let end = end_ns as f64 / S;
    let idle = match (train.first(), train.last()) {
        (Some(f), Some(l)) => outside(0.0, f.0) + outside(l.1, end),
        _ => outside(0.0, end),
    };
    out.push(("idle".to_string(), idle));
    for p in &spec.phases {
        out.push((p.name.clone(), e_j(p.begin_s, p.end_s)));
    }
    out
}
