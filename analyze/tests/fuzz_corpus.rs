//! The fuzz corpora of the analyzer's targets (fuzz/corpus/<target>/, kept by `cargo
//! xtask fuzz`, and fuzz/crashes/<target>/) replayed through the same harnesses as the
//! fuzz targets. The harnesses name the code under test `crate::series` and
//! `crate::proto`, as the fuzz crate does.

use std::path::{Path, PathBuf};

use eco2ai_metrics::proto;
use eco2ai_analyze::series;

#[path = "../../fuzz/harness/remote_write.rs"]
mod remote_write;
#[path = "../../fuzz/harness/series.rs"]
mod series_harness;

/// The corpus files of `target`, then the inputs that once crashed it; at least one
/// corpus file, so a moved corpus fails loudly.
fn corpus(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let files_in = |dir: PathBuf| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    };
    let mut files = files_in(fuzz.join("corpus").join(target));
    assert!(!files.is_empty(), "no corpus for {target}");
    files.extend(files_in(fuzz.join("crashes").join(target)));
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
