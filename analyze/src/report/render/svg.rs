//! Figures of a report as SVG, drawn by hand (no font or image libraries: the files and
//! report.html work offline and in any browser): power over time with the steps marked,
//! samples/kWh by day x hour, energy per step x GPU, and the energy, CO2 and cost split.

use std::fmt::Write as _;

use crate::numfmt;
use crate::report::heatmap::Cell;
use crate::report::{Analysis, Report};

pub(crate) const W: f64 = 900.0;
const H: f64 = 300.0;
pub(crate) const PAD: f64 = 50.0;

pub(crate) use super::esc;

pub(crate) fn open(title: &str, h: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {h}\" width=\"{W}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <title>{t}</title><rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{PAD}\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{t}</text>\n",
        t = esc(title)
    )
}

/// `v` as a share of `top`, 0 where there is nothing to compare with.
pub(crate) fn share(v: f64, top: f64) -> f64 {
    if top > 0.0 && v.is_finite() {
        (v / top).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Blue (low) to red (high), for a value in [0, 1].
pub(crate) fn color(f: f64) -> String {
    let f = f.clamp(0.0, 1.0);
    let (r, g, b) = (
        40.0 + 215.0 * f,
        90.0 + 80.0 * (1.0 - (2.0 * f - 1.0).abs()),
        220.0 - 190.0 * f,
    );
    format!("rgb({:.0},{:.0},{:.0})", r, g, b)
}

/// A figure's label: three significant digits, trailing zeros dropped, k/M for large.
pub(crate) fn fmt(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') && !s.contains('e') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    match v.abs() {
        x if x >= 1e6 => format!("{}M", trim(numfmt::sig(v / 1e6, 3))),
        x if x >= 1e4 => format!("{}k", trim(numfmt::sig(v / 1e3, 3))),
        _ => trim(numfmt::sig(v, 3)),
    }
}

/// Band colours of the named phases and idle (train steps are shaded `STEP_FILL`).
const BAND_FILLS: [&str; 6] = [
    "#fbd9a5", "#cdebc5", "#e6d3f0", "#f7c6c7", "#c9e9ee", "#efe3c2",
];
const IDLE_FILL: &str = "#e4e4e4";
const STEP_FILL: &str = "#dde8f5";
/// More stretches than this (and narrower than a pixel) are not drawn one by one.
const BANDS_DRAWN: usize = 5000;

/// The fill of a partition class on the power figure.
fn band_fill(class: usize) -> &'static str {
    if class == crate::energy::phases::IDLE {
        IDLE_FILL
    } else {
        BAND_FILLS[class % BAND_FILLS.len()]
    }
}

/// Named phases and idle as bands behind the curves, with a legend in the title row.
fn phase_bands(o: &mut String, a: &Analysis, x: &dyn Fn(i64) -> f64, (y0, y1): (f64, f64)) {
    let p = &a.partition;
    let all = p.bands.len() <= BANDS_DRAWN;
    let mut shown: Vec<usize> = Vec::new();
    for &(b, e, class) in &p.bands {
        let (l, r) = (x(b), x(e));
        if !all && r - l < 1.0 {
            continue;
        }
        if !shown.contains(&class) {
            shown.push(class);
        }
        let _ = writeln!(
            o,
            "<rect class=\"band\" x=\"{l:.1}\" y=\"{y1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
            (r - l).max(0.3),
            y0 - y1,
            band_fill(class)
        );
    }
    let mut lx = 420.0;
    let names = shown
        .iter()
        .map(|&k| (p.names.get(k).map_or("?", |n| &**n), band_fill(k)));
    for (name, fill) in std::iter::once(("train steps", STEP_FILL)).chain(names) {
        // The title row holds what fits; the phases table lists every class.
        if lx > W - 100.0 {
            break;
        }
        let _ = writeln!(
            o,
            "<rect x=\"{lx:.0}\" y=\"10\" width=\"12\" height=\"12\" fill=\"{fill}\" stroke=\"#999\"/><text x=\"{:.0}\" y=\"20\">{}</text>",
            lx + 16.0,
            esc(name)
        );
        lx += 26.0 + 7.0 * name.len() as f64;
    }
}

/// Train steps shaded behind the curves (up to 5,000 of them: more would be a solid block).
fn step_shading(o: &mut String, a: &Analysis, x: &dyn Fn(i64) -> f64, (y0, y1): (f64, f64)) {
    if a.steps.len() <= 5000 {
        // Train steps only: an eval step lies inside its phase's band.
        for s in a
            .steps
            .iter()
            .filter(|s| crate::energy::phases::is_train(s))
        {
            let (l, r) = (x(s.begin_ns), x(s.end_ns).max(x(s.begin_ns) + 0.3));
            let _ = writeln!(
                o,
                "<rect x=\"{l:.1}\" y=\"{y1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{STEP_FILL}\"/>",
                r - l,
                y0 - y1
            );
        }
    }
}

/// Power of each GPU (and the CPU) over the run, steps shaded, named phases and idle as
/// bands.
pub fn power(a: &Analysis) -> String {
    let mut o = open("Power over time (W)", H);
    let (t0, t1) = (a.start_ns, a.end_ns.max(a.start_ns + 1));
    let n = 600;
    let dt = (t1 - t0) / n;
    let series: Vec<(String, Vec<f64>)> = a
        .devices
        .iter()
        .map(|d| {
            let w = (0..n).map(|k| {
                let (x, y) = (t0 + k * dt, t0 + (k + 1) * dt);
                d.curve.between(x, y) / ((y - x).max(1) as f64 / 1e9)
            });
            (d.name.clone(), w.collect())
        })
        .collect();
    let peak = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold(1.0, f64::max);
    let (y_step, y_n) = numfmt::ticks(peak * 1.05, 4);
    let top = y_step * y_n as f64;
    let (x0, x1, y0, y1) = (PAD, W - 20.0, H - 30.0, 35.0);
    let x = |t: i64| x0 + (x1 - x0) * (t - t0) as f64 / (t1 - t0) as f64;
    let y = |w: f64| y0 - (y0 - y1) * w / top;
    phase_bands(&mut o, a, &x, (y0, y1));
    step_shading(&mut o, a, &x, (y0, y1));
    let palette = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
    ];
    for (i, (name, w)) in series.iter().enumerate() {
        let pts: Vec<String> = w
            .iter()
            .enumerate()
            .map(|(k, v)| format!("{:.1},{:.1}", x(t0 + k as i64 * dt), y(*v)))
            .collect();
        let c = palette[i % palette.len()];
        let _ = writeln!(
            o,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.2\" points=\"{}\"/>",
            pts.join(" ")
        );
        let _ = writeln!(
            o,
            "<text x=\"{:.0}\" y=\"{:.0}\" fill=\"{c}\">{}</text>",
            x1 - 90.0,
            40.0 + 14.0 * i as f64,
            esc(name)
        );
    }
    axes(
        &mut o,
        (x0, x1, y0, y1),
        (y_step, y_n),
        (t1 - t0) as f64 / 1e9,
        "s",
    );
    o.push_str("</svg>\n");
    o
}

/// Axes with round ticks: `y` as (step, intervals) from 0 to the top of the plot, the x
/// axis from 0 to `span` in `unit`.
fn axes(
    o: &mut String,
    (x0, x1, y0, y1): (f64, f64, f64, f64),
    (y_step, y_n): (f64, usize),
    span: f64,
    unit: &str,
) {
    let _ = writeln!(
        o,
        "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"black\"/><line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"black\"/>"
    );
    for k in 0..=y_n {
        let yy = y0 - (y0 - y1) * k as f64 / y_n as f64;
        let _ = writeln!(
            o,
            "<text x=\"{:.0}\" y=\"{yy:.0}\" text-anchor=\"end\">{}</text>",
            x0 - 4.0,
            fmt(y_step * k as f64)
        );
    }
    let (x_step, _) = numfmt::ticks(span, 6);
    let mut k = 0.0;
    while k * x_step <= span * (1.0 + 1e-9) && span > 0.0 {
        let xx = x0 + (x1 - x0) * k * x_step / span;
        let _ = writeln!(
            o,
            "<text x=\"{xx:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{} {unit}</text>",
            y0 + 16.0,
            fmt(k * x_step)
        );
        k += 1.0;
    }
}

/// Samples per kWh (or kWh where no samples are counted) by day and hour of day, UTC.
pub fn heatmap(cells: &[Cell]) -> String {
    let days: Vec<&str> = {
        let mut d: Vec<&str> = cells.iter().map(|c| c.day.as_str()).collect();
        d.dedup();
        d
    };
    let rows = days.len().max(1) as f64;
    let h = 60.0 + 22.0 * rows + 30.0;
    let has_samples = cells.iter().any(|c| c.samples_per_kwh.is_some());
    let title = if has_samples {
        "Efficiency by hour (samples/kWh, UTC)"
    } else {
        "Energy by hour (kWh, UTC)"
    };
    let mut o = open(title, h);
    let value = |c: &Cell| {
        if has_samples {
            c.samples_per_kwh.unwrap_or(0.0)
        } else {
            c.energy_kwh
        }
    };
    let top = cells.iter().map(value).fold(0.0, f64::max);
    let (cw, x0) = ((W - 120.0) / 24.0, 100.0);
    for h in 0..24 {
        let _ = writeln!(
            o,
            "<text x=\"{:.0}\" y=\"45\" text-anchor=\"middle\">{h}</text>",
            x0 + cw * (h as f64 + 0.5)
        );
    }
    for (r, d) in days.iter().enumerate() {
        let yy = 52.0 + 22.0 * r as f64;
        let _ = writeln!(
            o,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{d}</text>",
            x0 - 6.0,
            yy + 15.0
        );
        for c in cells.iter().filter(|c| c.day == *d) {
            let v = value(c);
            let _ = writeln!(
                o,
                "<rect x=\"{:.1}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"20\" fill=\"{}\"><title>{d} {}:00 {} ({} steps)</title></rect>",
                x0 + cw * c.hour as f64,
                cw - 1.0,
                color(share(v, top)),
                c.hour,
                fmt(v),
                c.steps
            );
        }
    }
    let _ = writeln!(
        o,
        "<text x=\"{x0}\" y=\"{:.0}\">blue: low, red: high (max {})</text>",
        h - 8.0,
        fmt(top)
    );
    o.push_str("</svg>\n");
    o
}

/// Energy of each step on each GPU (steps binned to at most 400 columns).
pub fn steps_by_gpu(a: &Analysis) -> String {
    let gpus: Vec<usize> = a
        .devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.gpu.is_some())
        .map(|(i, _)| i)
        .collect();
    let h = 60.0 + 18.0 * gpus.len().max(1) as f64 + 30.0;
    let mut o = open("Energy per step on each GPU (J)", h);
    let n = a.step_energy.len();
    if n == 0 || gpus.is_empty() {
        let _ = writeln!(
            o,
            "<text x=\"{PAD}\" y=\"50\">no steps or no GPU in this run</text></svg>"
        );
        return o;
    }
    let per = n.div_ceil(400);
    let cols = n.div_ceil(per);
    let bins: Vec<Vec<f64>> = gpus
        .iter()
        .map(|&g| {
            (0..cols)
                .map(|c| {
                    let chunk = &a.step_energy[(c * per).min(n)..((c + 1) * per).min(n)];
                    chunk.iter().map(|e| e.device_j[g]).sum::<f64>() / chunk.len().max(1) as f64
                })
                .collect()
        })
        .collect();
    let top = bins.iter().flatten().copied().fold(0.0, f64::max);
    let (x0, cw) = (80.0, (W - 100.0) / cols as f64);
    for (r, (&g, row)) in gpus.iter().zip(&bins).enumerate() {
        let yy = 40.0 + 18.0 * r as f64;
        let _ = writeln!(
            o,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>",
            x0 - 6.0,
            yy + 13.0,
            esc(&a.devices[g].name)
        );
        for (c, v) in row.iter().enumerate() {
            let _ = writeln!(
                o,
                "<rect x=\"{:.2}\" y=\"{yy:.0}\" width=\"{:.2}\" height=\"16\" fill=\"{}\"/>",
                x0 + cw * c as f64,
                cw.max(0.5),
                color(share(*v, top))
            );
        }
    }
    let first = a.steps.first().map_or(0, |s| s.step);
    let last = a.steps.last().map_or(0, |s| s.step);
    let _ = writeln!(
        o,
        "<text x=\"{x0}\" y=\"{:.0}\">steps {first} to {last}, {per} per column; max {} J</text>",
        h - 8.0,
        fmt(top)
    );
    o.push_str("</svg>\n");
    o
}

/// Where the energy went and what it cost, one panel per unit: kWh by device and by
/// activity (in steps, between steps), USD by kind, CO2 as its one figure. Bars are only
/// compared within a panel (one unit, one scale).
pub fn breakdown(r: &Report) -> String {
    let mut panels: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    let mut energy: Vec<(String, f64)> = r
        .devices
        .iter()
        .map(|d| (d.device.clone(), d.energy_kwh))
        .collect();
    if r.steps.count > 0 {
        energy.push(("in steps".into(), r.steps.in_steps_kwh));
        energy.push(("between steps".into(), r.steps.between_steps_kwh));
    }
    panels.push((format!("Energy (kWh, total {})", fmt(r.energy_kwh)), energy));
    let cost: Vec<(String, f64)> = [
        ("energy", r.cost.energy_usd),
        ("compute (GPU hours)", r.cost.compute_usd),
    ]
    .into_iter()
    .filter_map(|(n, v)| v.map(|v| (n.to_string(), v)))
    .collect();
    if !cost.is_empty() {
        let total = cost.iter().map(|c| c.1).sum::<f64>();
        panels.push((format!("Cost (USD, total {})", fmt(total)), cost));
    }
    let rows: usize = panels.iter().map(|p| p.1.len() + 1).sum();
    let h = 50.0 + 24.0 * rows as f64 + 30.0;
    let mut o = open("Energy, cost and CO2", h);
    let (x0, x1) = (200.0, W - 120.0);
    let mut yy = 35.0;
    for (title, bars) in &panels {
        let _ = writeln!(
            o,
            "<text x=\"{PAD}\" y=\"{:.0}\" font-weight=\"bold\">{}</text>",
            yy + 15.0,
            esc(title)
        );
        yy += 24.0;
        let top = bars.iter().map(|b| b.1).fold(0.0, f64::max);
        for (name, v) in bars {
            let w = (x1 - x0) * share(*v, top);
            let _ = writeln!(
                o,
                "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\n<rect x=\"{x0}\" y=\"{yy:.0}\" width=\"{w:.1}\" height=\"18\" fill=\"#1f77b4\"/>\n<text x=\"{:.0}\" y=\"{:.0}\">{}</text>",
                x0 - 6.0,
                yy + 15.0,
                esc(name),
                x0 + w + 6.0,
                yy + 15.0,
                fmt(*v)
            );
            yy += 24.0;
        }
    }
    let co2 = match (r.co2_kg, r.grid_intensity_g_per_kwh) {
        (Some(c), Some(g)) => format!("CO2: {} at {} gCO2/kWh", numfmt::mass_kg(c), fmt(g)),
        (Some(c), None) => format!("CO2: {} (time-varying intensity)", numfmt::mass_kg(c)),
        _ => "CO2: no grid intensity given (--country, --region or --gco2-per-kwh)".into(),
    };
    let _ = writeln!(
        o,
        "<text x=\"{PAD}\" y=\"{:.0}\" font-weight=\"bold\">{}</text>",
        yy + 15.0,
        esc(&co2)
    );
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn colours_and_numbers() {
        assert_eq!(super::color(0.0), "rgb(40,90,220)");
        assert_eq!(super::color(1.0), "rgb(255,90,30)");
        assert_eq!(super::fmt(1234.0), "1234");
        assert_eq!(super::fmt(12_500.0), "12.5k");
        assert_eq!(super::fmt(0.5), "0.5");
        assert_eq!(super::fmt(-0.0), "0");
        assert_eq!(super::esc("a<b&c"), "a&lt;b&amp;c");
    }
}
