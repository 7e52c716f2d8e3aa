#![no_main]
//! meta.json parsing on arbitrary bytes.

use std::path::PathBuf;
use std::sync::OnceLock;

#[path = "../harness/trace_meta.rs"]
mod harness;

/// One scratch run directory per fuzzing process.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("eco2ai-fuzz-meta-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("creating the scratch directory");
        d
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::run(dir(), data);
});
