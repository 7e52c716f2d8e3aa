//! The Python side of the suite: a virtual environment at `.venv` with the package
//! (editable) and its test dependencies (torch, transformers, pyarrow), reused when it
//! is already there; then pytest.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::root;

pub fn venv_python() -> PathBuf {
    root().join(".venv/bin/python")
}

fn has_modules(py: &PathBuf, modules: &str) -> bool {
    Command::new(py)
        .args(["-c", &format!("import {modules}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Creates or completes `.venv`.
pub fn ensure_venv() -> Result<PathBuf> {
    let py = venv_python();
    if !py.exists() {
        eprintln!("xtask: creating .venv");
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(root().join(".venv"))
            .status()?
            .success();
        if !ok {
            bail!("python3 -m venv .venv failed (Debian: apt-get install python3-venv)");
        }
    }
    if !has_modules(
        &py,
        "hf_eco2ai, torch, transformers, accelerate, pyarrow, pytest, duckdb, prometheus_client",
    ) {
        eprintln!(
            "xtask: installing the Python package and its test dependencies into .venv (torch: a few GB, once)"
        );
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "-e"])
            .arg(format!("{}[test]", root().join("python").display()))
            .status()
            .context("running pip")?
            .success();
        if !ok {
            bail!("pip install -e python[test] failed");
        }
    }
    Ok(py)
}

/// Runs pytest on python/tests; returns (passed, failed) from its summary line.
pub fn pytest() -> Result<(u64, u64)> {
    let py = ensure_venv()?;
    let mut child = Command::new(&py)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(root().join("python"))
        .env("ECO2AI_PROBE", root().join("target/debug/eco2ai-probe"))
        .env("ECO2AI_ANALYZE", root().join("target/debug/eco2ai-analyze"))
        .stdout(Stdio::piped())
        .spawn()
        .context("running pytest")?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            // "3 failed, 17 passed in 9.1s" / "20 passed in 9.5s"
            if line.contains(" passed") || line.contains(" failed") || line.contains(" error") {
                for part in line.split([',', ' ']).collect::<Vec<_>>().windows(2) {
                    let n = part[0].parse::<u64>().unwrap_or(0);
                    match part[1] {
                        "passed" => passed = n,
                        "failed" | "errors" | "error" => failed += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        failed = 1; // pytest itself failed (collection error, no tests)
    }
    Ok((passed, failed))
}
