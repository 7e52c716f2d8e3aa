//! report.html: self-contained (no scripts, nothing fetched), and it renders in headless
//! Chromium (Debian's chromium, installed by `cargo xtask setup`; skipped with a reason
//! where it is missing, unless ECO2AI_REQUIRE_STACK=1).

use std::process::Command;

use eco2ai_analyze::synth::{self, PhaseSpec, Spec};

/// The rows of the page's phases table: (phase, energy cell), header left out.
fn phase_rows(html: &str) -> Vec<(String, String)> {
    let Some(at) = html.find("<table id=\"phases\">") else {
        return Vec::new();
    };
    let table = &html[at..at + html[at..].find("</table>").unwrap()];
    table
        .split("<tr>")
        .filter(|r| r.contains("<td>"))
        .map(|r| {
            let cells: Vec<&str> = r
                .split("<td>")
                .skip(1)
                .map(|c| c.split("</td>").next().unwrap())
                .collect();
            (cells[0].to_string(), cells[1].to_string())
        })
        .collect()
}

#[test]
fn report_html_is_self_contained_and_renders_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    synth::generate(
        &run,
        &Spec {
            duration_s: 30.0,
            phases: vec![
                PhaseSpec {
                    name: "eval".into(),
                    begin_s: 10.0,
                    end_s: 16.0,
                    power_w: 150.0,
                    steps: true,
                },
                PhaseSpec {
                    name: "checkpoint".into(),
                    begin_s: 20.0,
                    end_s: 24.0,
                    power_w: 90.0,
                    steps: false,
                },
            ],
            ..Spec::default()
        },
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args([
            "report",
            run.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args([
            "--gco2-per-kwh",
            "100",
            "--price-per-kwh",
            "0.2",
            "--gpu-hour-usd",
            "2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = out.join("synthetic");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for f in [
        "power.svg",
        "heatmap.svg",
        "steps_by_gpu.svg",
        "breakdown.svg",
    ] {
        let svg = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{f}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 4);
    // The run has eval and checkpoint spans: the phases table lists them with their
    // energy, and the power figure shades them.
    let rows = phase_rows(&html);
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        ["train", "eval", "checkpoint", "stall", "idle"],
        "{html}"
    );
    for (name, energy) in &rows[..3] {
        let v: f64 = energy.trim_end_matches(" kWh").parse().unwrap();
        assert!(v > 0.0, "{name}: {energy}");
    }
    let power = std::fs::read_to_string(dir.join("power.svg")).unwrap();
    assert!(power.matches("class=\"band\"").count() >= 4, "{power}");
    assert!(power.contains(">eval</text>") && power.contains(">checkpoint</text>"));
    // Offline: no scripts, no external resources (the SVG namespace is not a fetch).
    assert!(!html.contains("<script") && !html.contains(" src=") && !html.contains("<link"));
    assert_eq!(
        html.matches("http").count(),
        html.matches("http://www.w3.org/2000/svg").count()
    );

    let chromium = "/usr/bin/chromium";
    if !std::path::Path::new(chromium).exists() {
        eprintln!("SKIPPED: {chromium} not installed (cargo xtask setup)");
        assert!(
            std::env::var("ECO2AI_REQUIRE_STACK").is_err(),
            "chromium missing"
        );
        return;
    }
    let url = format!("file://{}", dir.join("report.html").display());
    let headless = |extra: &[&str]| {
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!(
                "--user-data-dir={}",
                tmp.path().join("profile").display()
            ))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = headless(&["--dump-dom"]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("Run synthetic") && dom.matches("<svg").count() == 4,
        "{dom}"
    );
    // As rendered: the phases table is there and not empty.
    assert_eq!(phase_rows(&dom).len(), 5, "{dom}");
    let shot = tmp.path().join("shot.png");
    let o = headless(&[
        "--window-size=1000,1800",
        &format!("--screenshot={}", shot.display()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // A blank page compresses to a few kB; the figures make it far larger.
    assert!(png.len() > 40_000, "{} bytes: nothing drawn?", png.len());
}
