#![no_main]
//! The intensity/price series parser on arbitrary text. analyze/src/series.rs is
//! compiled here on its own: the analyze crate links resvg and reqwest, slow to build
//! with coverage instrumentation.

use std::path::PathBuf;
use std::sync::OnceLock;

#[allow(dead_code)]
#[path = "../../trace/src/numfmt.rs"]
mod numfmt;
#[allow(dead_code)]
#[path = "../../analyze/src/series.rs"]
mod series;

#[path = "../harness/series.rs"]
mod harness;

/// One scratch file per fuzzing process.
fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("eco2ai-fuzz-series-{}.csv", std::process::id()))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(path(), data));
