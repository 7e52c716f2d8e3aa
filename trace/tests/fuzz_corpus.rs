//! The fuzz corpora of the trace targets (fuzz/corpus/<target>/, kept by `cargo xtask
//! fuzz`, and fuzz/crashes/<target>/) replayed through the same harnesses as the fuzz
//! targets: every input that once crashed or found new code must still pass.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/harness/parse_flags.rs"]
mod parse_flags;
#[path = "../../fuzz/harness/trace_meta.rs"]
mod trace_meta;
#[path = "../../fuzz/harness/trace_segment.rs"]
mod trace_segment;

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
fn trace_segment_corpus() {
    let dir = tempfile::tempdir().unwrap();
    trace_segment::prepare(dir.path());
    let mut rows = 0;
    for f in corpus("trace_segment") {
        rows += trace_segment::run(dir.path(), &std::fs::read(&f).unwrap());
    }
    // The seeds are real segments: a reader that refused everything would pass otherwise.
    assert!(rows > 0, "no corpus segment was read");
}

#[test]
fn trace_meta_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let mut parsed = 0;
    for f in corpus("trace_meta") {
        parsed += usize::from(trace_meta::run(dir.path(), &std::fs::read(&f).unwrap()));
    }
    assert!(parsed > 0, "no corpus meta.json parsed");
}

#[test]
fn parse_flags_corpus() {
    for f in corpus("parse_flags") {
        parse_flags::run(&std::fs::read(&f).unwrap());
    }
}
