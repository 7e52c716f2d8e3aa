//! The job's wait heatmap: ranks (rows) x steps (columns), each cell the time (or
//! energy) ranks spent waiting for the step's last arrival, binned to fit; drawn with
//! the per-run figures' SVG helpers.

use std::fmt::Write as _;

use crate::report::render::svg::{PAD, W, color, esc, fmt, open, share};

use super::JobReport;

/// `grid[row][col]` as a heatmap titled `title`, values in `unit`.
fn grid_svg(title: &str, grid: &[Vec<f64>], scale: f64, unit: &str, r: &JobReport) -> String {
    let rows = grid.len().max(1);
    let cols = grid.first().map_or(1, |c| c.len().max(1));
    let cell_h = (360.0 / rows as f64).clamp(4.0, 20.0);
    let h = 60.0 + cell_h * rows as f64 + 40.0;
    let (x0, x1) = (PAD + 70.0, W - 20.0);
    let cw = (x1 - x0) / cols as f64;
    let top = grid.iter().flatten().fold(0.0f64, |m, v| m.max(*v)) * scale;
    let mut o = open(title, h);
    let (first, last) = &r.grid_rank_labels;
    let _ = writeln!(
        o,
        "<text x=\"{:.0}\" y=\"50\" text-anchor=\"end\">{}</text>\
         <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>",
        x0 - 4.0,
        esc(first),
        x0 - 4.0,
        50.0 + cell_h * rows as f64,
        esc(last)
    );
    for (ri, row) in grid.iter().enumerate() {
        let y = 40.0 + cell_h * ri as f64;
        for (ci, v) in row.iter().enumerate() {
            let v = v * scale;
            if v <= 0.0 {
                continue;
            }
            let _ = writeln!(
                o,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{cell_h:.1}\" fill=\"{}\"><title>{} {unit}</title></rect>",
                x0 + cw * ci as f64,
                cw.max(0.5),
                color(share(v, top)),
                fmt(v)
            );
        }
    }
    let (s0, s1) = (
        r.steps.first().map_or(0, |s| s.step),
        r.steps.last().map_or(0, |s| s.step),
    );
    let _ = writeln!(
        o,
        "<text x=\"{x0:.0}\" y=\"{:.0}\">steps {s0} to {s1} (left to right); ranks top to bottom; blue: little, red: most ({} {unit} per cell); white: none</text></svg>",
        h - 12.0,
        fmt(top)
    );
    o
}

/// The two wait figures, by file name: wait time and wait energy.
pub fn figures(r: &JobReport) -> Vec<(&'static str, String)> {
    vec![
        (
            "wait_time.svg",
            grid_svg("Wait time: ranks x steps", &r.grid_wait_ns, 1e-6, "ms", r),
        ),
        (
            "wait_energy.svg",
            grid_svg("Wait energy: ranks x steps", &r.grid_wait_j, 1.0, "J", r),
        ),
    ]
}
