//! The fuzz corpora of the analyzer's targets (fuzz/corpus/<target>/, kept by `cargo
//! xtask fuzz`) replayed through the same harnesses as the fuzz targets. The harnesses
//! name the code under test `crate::series` and `crate::proto`, as the fuzz crate does.

use std::path::{Path, PathBuf};

use eco2ai_analyze::replay::proto;
use eco2ai_analyze::series;

#[path = "../../fuzz/harness/remote_write.rs"]
mod remote_write;
#[path = "../../fuzz/harness/series.rs"]
mod series_harness;

/// The corpus files of `target`; at least one, so a moved corpus fails loudly.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

#[test]
fn series_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("series.csv");
    for f in corpus("series") {
        series_harness::run(&path, &std::fs::read(&f).unwrap());
    }
}

#[test]
fn remote_write_corpus() {
    for f in corpus("remote_write") {
        remote_write::run(&std::fs::read(&f).unwrap());
    }
}
