//! `report --out DIR` writes `DIR/<run id>` only for a safe run id from meta.json: a
//! forged `run_id` must not lead outside DIR.

use std::path::Path;
use std::process::{Command, Output};

use eco2ai_analyze::synth::{self, Spec};

fn analyze(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args(args)
        .output()
        .unwrap()
}

fn set_run_id(run: &Path, id: &str) {
    let path = run.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    meta["run_id"] = serde_json::Value::String(id.into());
    std::fs::write(&path, serde_json::to_string(&meta).unwrap()).unwrap();
}

/// Every file and directory under `root`, relative to it.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_forged_run_id_cannot_make_report_write_outside_out() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let good = runs.join("good");
    let bad = runs.join("bad");
    let spec = Spec {
        duration_s: 5.0,
        ..Spec::default()
    };
    synth::generate(&good, &spec).unwrap();
    synth::generate(&bad, &spec).unwrap();
    set_run_id(&good, "good-run");
    let out = tmp.path().join("x").join("y").join("out");
    std::fs::create_dir_all(&out).unwrap();
    let before = tree(tmp.path());
    for id in ["../../victim", "/abs/victim", "a/b", "..", ".hidden"] {
        set_run_id(&bad, id);
        // The good run first: nothing may be written before the bad one is refused.
        let o = analyze(&[
            "report",
            good.to_str().unwrap(),
            bad.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "run_id {id:?}: {err}");
        assert!(
            err.contains("unsafe run_id") && err.contains("invalid run id"),
            "{err}"
        );
        assert_eq!(tree(tmp.path()), before, "run_id {id:?} wrote something");
    }
    // A safe id is written where it belongs.
    set_run_id(&bad, "fine.id_1");
    let o = analyze(&[
        "report",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("fine.id_1").join("report.json").is_file());
}
