//! The CPU estimate's model (`PowerModel::FITTED`) against the ten CodeCarbon
//! load-vs-RAPL traces in datasets/cpu_load_vs_rapl: which RAPL column is right, energy
//! per trace, power per load phase, a leave-one-CPU-out refit, why 20 % per trace is out
//! of reach, and the probe recording the model end to end.
//! `cargo test -p eco2ai-probe --test estimate_model -- --nocapture` prints the table of
//! docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use eco2ai_probe::samplers::estimate::{Estimator, PowerModel, lookup_tdp_w};
use eco2ai_trace::{Run, Table};

/// One 30 s load phase of a trace.
struct Phase {
    util_pct: f64,
    duration_s: f64,
    /// RAPL energy of this phase (CodeCarbon's `rapl_energy`, kWh, here in J).
    rapl_j: f64,
    /// CodeCarbon's `rapl_power`: it lags one phase (checked below).
    rapl_power_w: f64,
}

struct Trace {
    file: String,
    cpu: String,
    tdp_w: f64,
    sockets: u32,
    phases: Vec<Phase>,
}

impl Trace {
    fn tdp_total_w(&self) -> f64 {
        self.tdp_w * self.sockets as f64
    }
    fn rapl_j(&self) -> f64 {
        self.phases.iter().map(|p| p.rapl_j).sum()
    }
    /// The probe's estimator run over the phases: estimated J.
    fn estimate_j(&self, model: PowerModel) -> f64 {
        let mut est = Estimator::with_model(self.tdp_w, self.sockets, model);
        let mut uj = 0;
        for p in &self.phases {
            uj = est.add(p.util_pct as f32, (p.duration_s * 1e9) as i64);
        }
        uj as f64 / 1e6
    }
    fn energy_error(&self, model: PowerModel) -> f64 {
        self.estimate_j(model) / self.rapl_j() - 1.0
    }
    /// RAPL power of each phase as a share of TDP x sockets.
    fn tdp_fractions(&self) -> Vec<(f64, f64)> {
        let t = self.tdp_total_w();
        self.phases
            .iter()
            .map(|p| (p.util_pct, p.rapl_j / p.duration_s / t))
            .collect()
    }
}

/// Hardware threads per package (vendor specifications): the traces give the machine's
/// logical CPUs (`cores_used` at full load), from which the sockets follow, as the probe
/// counts them from /proc/cpuinfo. The E5-2620 v3 machine has 24 threads: 2 sockets.
const THREADS_PER_PACKAGE: [(&str, u32); 4] = [
    ("EPYC 8024P", 16),
    ("Threadripper 1950X", 32),
    ("E3-1240 V2", 8),
    ("E5-2620 v3", 12),
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/cpu_load_vs_rapl")
}

fn parse(path: &Path) -> Trace {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (cpu_c, cores_c, load_c) = (col("cpu_name"), col("cores_used"), col("cpu_load"));
    let (energy_c, power_c, dur_c) = (col("rapl_energy"), col("rapl_power"), col("duration"));
    let (mut cpu, mut threads, mut phases) = (String::new(), 0u32, Vec::new());
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), header.len(), "{}: {line}", path.display());
        let num = |c: usize| f[c].parse::<f64>().unwrap();
        cpu = f[cpu_c].to_string();
        threads = threads.max(num(cores_c) as u32);
        phases.push(Phase {
            util_pct: num(load_c),
            duration_s: num(dur_c),
            rapl_j: num(energy_c) * 3.6e6,
            rapl_power_w: num(power_c),
        });
    }
    let (_, per_pkg) = THREADS_PER_PACKAGE
        .iter()
        .find(|(name, _)| cpu.contains(name))
        .unwrap_or_else(|| panic!("threads per package of {cpu}"));
    let (_, tdp_w) = lookup_tdp_w(&cpu).unwrap_or_else(|| panic!("{cpu} not in cpu_tdp.csv"));
    Trace {
        file: path.file_name().unwrap().to_string_lossy().into_owned(),
        cpu,
        tdp_w,
        sockets: threads.div_ceil(*per_pkg).max(1),
        phases,
    }
}

fn traces() -> Vec<Trace> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let all: Vec<Trace> = files.iter().map(|p| parse(p)).collect();
    assert_eq!(all.len(), 10, "the ten CodeCarbon traces");
    all
}

fn short(t: &Trace) -> String {
    let name = t.file.split("_compare").next().unwrap_or(&t.file);
    let kind = if t.file.contains("all_cores") {
        "all cores"
    } else {
        "some cores"
    };
    format!("{name}, {kind}")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn rapl_energy_is_the_column_that_matches_the_load() {
    // CodeCarbon's rapl_power of phase i is the energy of phase i-1 over its duration
    // (idle phases read 0.2..1.4 W, impossible for these packages), so the checks use
    // rapl_energy. The issue's -41..+63 % was computed from rapl_power.
    for t in traces() {
        let p = &t.phases;
        let lagged: Vec<f64> = (1..p.len())
            .map(|i| (p[i].rapl_power_w * p[i].duration_s / p[i - 1].rapl_j - 1.0).abs())
            .collect();
        let aligned: Vec<f64> = p
            .iter()
            .map(|x| (x.rapl_power_w * x.duration_s / x.rapl_j - 1.0).abs())
            .collect();
        let (lag, al) = (median(lagged), median(aligned));
        assert!(
            lag < 0.02 && al > 0.04,
            "{}: lagged {lag}, aligned {al}",
            t.file
        );
    }
}

#[test]
fn every_trace_within_the_bound_the_data_allow() {
    let all = traces();
    println!("| trace | CPU | TDP used | RAPL energy | old estimate | new estimate |");
    println!("|---|---|---|---|---|---|");
    let (mut worst_old, mut worst_new) = (0f64, 0f64);
    for t in &all {
        let (old, new) = (
            t.energy_error(PowerModel::FROM_ZERO),
            t.energy_error(PowerModel::FITTED),
        );
        println!(
            "| {} | {} | {} W x {} | {:.1} kJ | {:+.0} % | {:+.0} % |",
            short(t),
            t.cpu,
            t.tdp_w,
            t.sockets,
            t.rapl_j() / 1e3,
            old * 100.0,
            new * 100.0
        );
        worst_old = worst_old.max(old.abs());
        worst_new = worst_new.max(new.abs());
        // 20 % is out of reach (next test); 48 % is what the fitted curve reaches.
        assert!(new.abs() <= 0.48, "{}: {new:+.3}", t.file);
    }
    println!("worst |error|: old {worst_old:.3}, new {worst_new:.3}");
    assert!(worst_new < worst_old, "old {worst_old}, new {worst_new}");
}

#[test]
fn twenty_percent_is_out_of_reach_for_any_utilisation_model() {
    // Two machines with the same CPU (Xeon E3-1240 V2), the same schedule (some cores,
    // 0..8 threads) and the same clocks draw RAPL energies 1.9x apart. A model of TDP
    // and utilisation gives both nearly the same estimate, so one of them is off by at
    // least (r - 1) / (r + 1) whatever the curve.
    let all = traces();
    let pair: Vec<&Trace> = all
        .iter()
        .filter(|t| t.cpu.contains("E3-1240 V2") && t.file.contains("some_cores"))
        .collect();
    assert_eq!(pair.len(), 2);
    let (a, b) = (pair[0], pair[1]);
    let mean_util = |t: &Trace| t.phases.iter().map(|p| p.util_pct).sum::<f64>();
    let util_gap = (mean_util(a) / mean_util(b) - 1.0).abs();
    assert!(util_gap < 0.02, "schedules differ by {util_gap}");
    let r = a.rapl_j().max(b.rapl_j()) / a.rapl_j().min(b.rapl_j());
    let floor = (r - 1.0) / (r + 1.0);
    println!("E3-1240 V2 machines: RAPL energy ratio {r:.2}, best worst error {floor:.2}");
    assert!(floor > 0.25, "ratio {r}");
}

#[test]
fn idle_floor_fits_each_phase_better_than_from_zero() {
    // Errors as |ln(estimate / RAPL)|, the fit's own measure: a factor 2 over and a
    // factor 2 under weigh the same.
    let (mut old_all, mut new_all) = (Vec::new(), Vec::new());
    for t in traces() {
        for (u, frac) in t.tdp_fractions() {
            let old = (PowerModel::FROM_ZERO.tdp_fraction(u) / frac).ln().abs();
            let new = (PowerModel::FITTED.tdp_fraction(u) / frac).ln().abs();
            if u < 5.0 {
                // Idle: RAPL reads 5..43 W where TDP x utilisation gives 0..2 W.
                println!(
                    "idle {}: RAPL {:.2} x TDP, x{:.2} old, x{:.2} new",
                    short(&t),
                    frac,
                    PowerModel::FROM_ZERO.tdp_fraction(u) / frac,
                    PowerModel::FITTED.tdp_fraction(u) / frac
                );
                assert!(old > 1.0 && new < old, "{} at {u} %: {old} {new}", t.file);
            }
            old_all.push(old);
            new_all.push(new);
        }
    }
    let (old, new) = (median(old_all), median(new_all));
    println!(
        "median power error per phase: old x{:.2}, new x{:.2}",
        old.exp(),
        new.exp()
    );
    assert!(new < old - 0.04, "old {old}, new {new}");
}

/// Least squares of log power share over the phases of `train`, on a grid.
fn fit(train: &[&Trace]) -> PowerModel {
    let rows: Vec<(f64, f64)> = train.iter().flat_map(|t| t.tdp_fractions()).collect();
    let mut best = (f64::INFINITY, PowerModel::FITTED);
    for i in 1..=30 {
        for f in 50..=120 {
            for k in 6..=30 {
                let m = PowerModel {
                    idle_frac: i as f64 / 100.0,
                    full_frac: f as f64 / 100.0,
                    exponent: k as f64 / 20.0,
                };
                let loss: f64 = rows
                    .iter()
                    .map(|&(u, y)| (m.tdp_fraction(u) / y).ln().powi(2))
                    .sum();
                if loss < best.0 {
                    best = (loss, m);
                }
            }
        }
    }
    best.1
}

#[test]
fn leave_one_cpu_out_refits_agree_with_the_shipped_constants() {
    let all = traces();
    let whole = fit(&all.iter().collect::<Vec<_>>());
    let f = PowerModel::FITTED;
    println!("fit on all ten: {whole:?}");
    assert!((whole.idle_frac - f.idle_frac).abs() <= 0.015, "{whole:?}");
    assert!((whole.full_frac - f.full_frac).abs() <= 0.015, "{whole:?}");
    assert!((whole.exponent - f.exponent).abs() <= 0.05, "{whole:?}");
    let mut cpus: Vec<&str> = all.iter().map(|t| t.cpu.as_str()).collect();
    cpus.sort_unstable();
    cpus.dedup();
    assert_eq!(cpus.len(), 4);
    for cpu in cpus {
        let train: Vec<&Trace> = all.iter().filter(|t| t.cpu != cpu).collect();
        let m = fit(&train);
        // The idle floor is not one CPU's artefact: every fold finds it.
        assert!((0.08..=0.16).contains(&m.idle_frac), "{cpu}: {m:?}");
        for t in all.iter().filter(|t| t.cpu == cpu) {
            let e = t.energy_error(m);
            println!("held out {}: {m:?} -> {:+.0} %", short(t), e * 100.0);
            assert!(e.abs() <= 0.6, "{}: {e}", t.file);
        }
    }
}

#[test]
fn the_probe_records_the_fitted_curve_without_zero_watt_dips() {
    let out = tempfile::tempdir().unwrap();
    // No RAPL (both sources pointed nowhere), so the estimate is what gets recorded.
    let o = Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
        .args(["record", "--out", out.path().to_str().unwrap()])
        .args(["--duration", "1500ms", "--cpu-tdp-w", "50", "--no-metrics"])
        .args([
            "--powercap-root",
            "/nonexistent",
            "--perf-pmu",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let run = Run::open(Path::new(&dir)).unwrap();
    let tdp_total_w = 50.0 * run.meta().cpu_sockets.max(1) as f64;
    let mut rows = Vec::new();
    for b in run.read_table(Table::Cpu).unwrap().batches {
        rows.extend(
            eco2ai_trace::from_batch::cpu_rows(&b)
                .into_iter()
                .filter(|r| r.source == "estimate"),
        );
    }
    rows.sort_by_key(|r| r.ts_ns);
    assert!(rows.len() >= 5, "{} estimate rows", rows.len());
    let floor_w = PowerModel::FITTED.watts(tdp_total_w, 0.0);
    for w in rows.windows(2) {
        let de_j = (w[1].energy_uj.unwrap() - w[0].energy_uj.unwrap()) as f64 / 1e6;
        let watts = de_j / ((w[1].ts_ns - w[0].ts_ns) as f64 / 1e9);
        // Each row's energy step is the curve at that row's utilisation.
        let want = PowerModel::FITTED.watts(tdp_total_w, w[1].util_pct.unwrap() as f64);
        assert!(
            watts >= floor_w * 0.99,
            "{watts} W under the {floor_w} W floor"
        );
        assert!(
            (watts / want - 1.0).abs() < 0.01,
            "{watts} W, curve {want} W"
        );
    }
}
