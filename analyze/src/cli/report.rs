//! `eco2ai-analyze report` and `compare`: flags, then the report as a table, JSON or
//! HTML, and a directory (report.json, report.html, figures as SVG and PNG, steps.csv,
//! heatmap.csv).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use eco2ai_analyze::report::compare;
use eco2ai_analyze::report::heatmap;
use eco2ai_analyze::report::render::{html, png, text};
use eco2ai_analyze::report::{self, Analysis, Options, Rate, Report};
use eco2ai_analyze::series::{Kind, Series};

use eco2ai_trace::pricing::PriceArgs;

/// Grid, prices and budget of `report` and `compare`: the shared flags, and the
/// time-varying series only these two take.
#[derive(Args, Clone)]
pub struct Pricing {
    #[command(flatten)]
    prices: PriceArgs,
    /// CSV of timestamp,gCO2_per_kWh (Unix seconds or RFC 3339 UTC), each value in force
    /// from its timestamp to the next; instead of --country/--region/--gco2-per-kwh.
    #[arg(long)]
    intensity_series: Option<PathBuf>,
    /// CSV of timestamp,USD_per_kWh (Unix seconds or RFC 3339 UTC): a time-of-use tariff,
    /// instead of --price-per-kwh.
    #[arg(long)]
    price_series: Option<PathBuf>,
}

#[derive(Args)]
pub struct ReportArgs {
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    #[command(flatten)]
    pricing: Pricing,
    /// table, json, or html (one self-contained page on stdout)
    #[arg(long, default_value = "table")]
    format: String,
    /// Also write report.json, report.html, the figures (SVG and PNG), steps.csv and heatmap.csv
    /// into DIR/<run id>/.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct CompareArgs {
    a: PathBuf,
    b: PathBuf,
    #[command(flatten)]
    pricing: Pricing,
    #[arg(long, default_value = "table")]
    format: String,
}

/// A checked series, its notes (unit read, coverage of the run) said on stderr.
fn series(f: &Path, kind: Kind, a: &Analysis) -> Result<Series> {
    let (s, mut notes) = Series::read_checked(f, kind)?;
    let off = a.mono_to_unix_ns;
    let span = (a.start_ns.saturating_add(off), a.end_ns.saturating_add(off));
    notes.extend(
        s.coverage_note(span.0, span.1)
            .map(|n| format!("{}: {n}", f.display())),
    );
    for n in notes {
        eprintln!("eco2ai-analyze: note: {n}");
    }
    Ok(s)
}

/// Options for one run: flags first, then the run's own country/region labels.
fn options(p: &Pricing, a: &Analysis) -> Result<Options> {
    let (intensity, source) = if let Some(f) = &p.intensity_series {
        let src = format!("--intensity-series {}", f.display());
        (
            Some(Rate::Series(series(f, Kind::Intensity, a)?)),
            Some(src),
        )
    } else {
        match p.prices.intensity(&a.meta.labels)? {
            Some(i) => (Some(Rate::Fixed(i.g_per_kwh)), Some(i.source)),
            None => (None, None),
        }
    };
    let price = match (&p.price_series, p.prices.price_per_kwh) {
        (Some(f), _) => Some(Rate::Series(series(f, Kind::Price, a)?)),
        (None, Some(v)) => Some(Rate::Fixed(v)),
        _ => None,
    };
    Ok(Options {
        intensity,
        intensity_source: source,
        pue: p.prices.pue_for(&a.meta.labels),
        price,
        gpu_hour_usd: p.prices.gpu_hour_usd,
        carbon_budget_kg: p.prices.carbon_budget_kg,
    })
}

fn check(p: &Pricing, format: &str) -> Result<()> {
    let flag_intensity = p.prices.check()?;
    if p.intensity_series.is_some() && flag_intensity.is_some() {
        bail!("give one grid intensity: --country, --region, --gco2-per-kwh or --intensity-series");
    }
    if p.prices.price_per_kwh.is_some() && p.price_series.is_some() {
        bail!("give one price: --price-per-kwh or --price-series");
    }
    if !["table", "json", "html"].contains(&format) {
        bail!("--format must be table, json or html, got '{format}'");
    }
    Ok(())
}

/// A run path the user typed: one that does not exist is said so, before the trace
/// reader calls it "not a run directory".
pub fn must_exist(dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_err() {
        bail!("{} does not exist", dir.display());
    }
    Ok(())
}

fn load(dir: &Path) -> Result<Analysis> {
    load_as(dir, "")
}

/// A run's analysis, its stages shown on a terminal after `which` (e.g. "run 2/5 ").
fn load_as(dir: &Path, which: &str) -> Result<Analysis> {
    must_exist(dir)?;
    // Progress on a terminal only: piped or redirected, stderr stays quiet.
    // SAFETY: isatty has no preconditions.
    let tty = unsafe { libc::isatty(2) } == 1;
    let started = std::time::Instant::now();
    let mut stage = |what: &str| {
        if tty {
            eprint!(
                "\reco2ai-analyze: {which}{} [{:.1} s] {what}\x1b[K",
                dir.display(),
                started.elapsed().as_secs_f64()
            );
        }
    };
    let a = report::analyse_with(dir, &mut stage);
    if tty {
        eprint!("\r\x1b[K");
    }
    a.with_context(|| format!("reading run {}", dir.display()))
}

/// steps.csv: every step's times, samples, loss, energy per device, and phase.
fn steps_csv(a: &Analysis) -> String {
    let mut csv = String::from("step,begin_unix_s,end_unix_s,duration_s,samples,loss,gpu_j,cpu_j");
    for d in &a.devices {
        let _ = write!(csv, ",{}_j", d.name);
    }
    // Appended last: readers of the older columns by position keep working.
    csv.push_str(",phase\n");
    for (s, e) in a.steps.iter().zip(&a.step_energy) {
        let unix = |t: i64| (t + a.mono_to_unix_ns) as f64 / 1e9;
        let _ = write!(
            csv,
            "{},{:.6},{:.6},{:.6},{},{},{:.6},{:.6}",
            s.step,
            unix(s.begin_ns),
            unix(s.end_ns),
            (s.end_ns - s.begin_ns) as f64 / 1e9,
            s.samples.map_or(String::new(), |n| n.to_string()),
            s.loss.map_or(String::new(), |l| l.to_string()),
            // `+ 0.0`: an empty sum is -0.0, which prints as "-0".
            e.gpu_j + 0.0,
            e.cpu_j + 0.0
        );
        for j in &e.device_j {
            let _ = write!(csv, ",{:.6}", j + 0.0);
        }
        // A valid phase name has no comma or quote (trace::phase::valid_name).
        let _ = writeln!(
            csv,
            ",{}",
            s.phase.as_deref().unwrap_or(eco2ai_trace::phase::TRAIN)
        );
    }
    csv
}

fn write_dir(out: &Path, a: &Analysis, r: &Report) -> Result<()> {
    // The run id comes from the run's meta.json: it must not lead outside `out`.
    let id = eco2ai_trace::validate_run_id(&a.run_id).context(
        "refusing to write the report directory: the run's meta.json has an unsafe run_id",
    )?;
    let dir = out.join(id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(r)?)?;
    std::fs::write(dir.join("steps.csv"), steps_csv(a))?;
    let cells = heatmap::cells(&[a]);
    let figs = html::figure_set(a, r, &cells);
    for (name, svg) in &figs {
        std::fs::write(dir.join(name), svg)?;
        let png = png::from_svg(svg, 2.0).with_context(|| format!("drawing {name} as PNG"))?;
        std::fs::write(dir.join(name).with_extension("png"), png)?;
    }
    std::fs::write(dir.join("report.html"), html::page(a, r, &figs))?;
    let mut hm = String::from("day,hour,steps,energy_kwh,samples_per_kwh\n");
    for c in &cells {
        let spk = c
            .samples_per_kwh
            .map_or(String::new(), |v| format!("{v:.3}"));
        let _ = writeln!(
            hm,
            "{},{},{},{:.9},{spk}",
            c.day, c.hour, c.steps, c.energy_kwh
        );
    }
    std::fs::write(dir.join("heatmap.csv"), hm)?;
    Ok(())
}

pub fn run_report(a: ReportArgs) -> Result<()> {
    check(&a.pricing, &a.format)?;
    refuse_duplicates(&a.runs)?;
    if a.out.is_some() {
        // Every run's id is checked before the first report directory is written.
        for dir in &a.runs {
            let meta = eco2ai_trace::Meta::read(dir)
                .with_context(|| format!("reading run {}", dir.display()))?;
            eco2ai_trace::validate_run_id(&meta.run_id).with_context(|| {
                format!("refusing --out: run {} has an unsafe run_id", dir.display())
            })?;
        }
    }
    let mut reports = Vec::new();
    for (i, dir) in a.runs.iter().enumerate() {
        let which = if a.runs.len() > 1 {
            format!("run {}/{} ", i + 1, a.runs.len())
        } else {
            String::new()
        };
        let an = load_as(dir, &which)?;
        let r = report::report(&an, &options(&a.pricing, &an)?);
        if let Some(out) = &a.out {
            write_dir(out, &an, &r)?;
        }
        if a.format == "html" {
            let cells = heatmap::cells(&[&an]);
            print!(
                "{}",
                html::page(&an, &r, &html::figure_set(&an, &r, &cells))
            );
        }
        reports.push(r);
    }
    match (a.format.as_str(), reports.as_slice()) {
        ("html", _) => {}
        ("json", [one]) => println!("{}", serde_json::to_string_pretty(one)?),
        ("json", many) => println!("{}", serde_json::to_string_pretty(&fleet(many))?),
        (_, many) => {
            for r in many {
                print!("{}", text::table(r));
            }
            if many.len() > 1 {
                let f = fleet(many);
                println!(
                    "all {} runs: {:.6} kWh, {} kg CO2",
                    many.len(),
                    f["energy_kwh"],
                    f["co2_kg"]
                );
            }
        }
    }
    Ok(())
}

/// Several runs: each report, and their sums.
fn fleet(reports: &[Report]) -> serde_json::Value {
    let sum = |f: fn(&Report) -> Option<f64>| {
        let v: Vec<f64> = reports.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>())
    };
    serde_json::json!({
        "runs": reports,
        "energy_kwh": sum(|r| Some(r.energy_kwh)),
        "gpu_energy_kwh": sum(|r| Some(r.gpu_energy_kwh)),
        "cpu_energy_kwh": sum(|r| Some(r.cpu_energy_kwh)),
        "co2_kg": sum(|r| r.co2_kg),
        "cost": { "total_usd": sum(|r| r.cost.total_usd), "energy_usd": sum(|r| r.cost.energy_usd), "compute_usd": sum(|r| r.cost.compute_usd) },
        "truncated": reports.iter().any(|r| r.truncated),
    })
}

/// The GPUs and CPU of a run, as one line.
fn hardware(a: &Analysis) -> String {
    let mut gpus: Vec<&str> = a.meta.gpus.iter().map(|g| g.name.as_str()).collect();
    gpus.sort_unstable();
    let n = gpus.len();
    gpus.dedup();
    let gpus = match (n, gpus.as_slice()) {
        (0, _) => "no GPU".to_string(),
        (n, [one]) => format!("{n} x {one}"),
        (_, many) => many.join(" + "),
    };
    format!("{gpus}, {}", a.meta.cpu_model)
}

/// A warning when two runs did not run on like hardware: their ratio then measures the
/// machines as much as the training.
fn unlike_hardware(x: &Analysis, y: &Analysis) -> Option<String> {
    let (hx, hy) = (hardware(x), hardware(y));
    (hx != hy).then(|| format!("unlike hardware: A ran on {hx}; B on {hy}"))
}

/// Each run once: a run given twice would be counted twice in the totals.
fn refuse_duplicates(runs: &[PathBuf]) -> Result<()> {
    let mut seen: Vec<(PathBuf, &Path)> = Vec::new();
    for r in runs {
        must_exist(r)?;
        let canon =
            std::fs::canonicalize(r).with_context(|| format!("resolving {}", r.display()))?;
        if let Some((_, first)) = seen.iter().find(|(c, _)| *c == canon) {
            bail!(
                "{} is given twice (as {} and {}): each run is counted once",
                canon.display(),
                first.display(),
                r.display()
            );
        }
        seen.push((canon, r));
    }
    Ok(())
}

pub fn run_compare(a: CompareArgs) -> Result<()> {
    check(&a.pricing, &a.format)?;
    let (x, y) = (load(&a.a)?, load(&a.b)?);
    let rx = report::report(&x, &options(&a.pricing, &x)?);
    let ry = report::report(&y, &options(&a.pricing, &y)?);
    let mut c = compare::compare(&rx, &ry);
    c.warnings.extend(unlike_hardware(&x, &y));
    if a.format == "json" {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", text::comparison_table(&c));
    }
    Ok(())
}
