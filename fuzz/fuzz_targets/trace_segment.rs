#![no_main]
//! The trace reader on arbitrary segment bytes (IPC stream and Parquet).

use std::path::PathBuf;
use std::sync::OnceLock;

#[path = "../harness/trace_segment.rs"]
mod harness;

/// One scratch run directory per fuzzing process.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("eco2ai-fuzz-seg-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("creating the scratch directory");
        harness::prepare(&d);
        d
    })
}

/// arrow-ipc and parquet panic on some corrupt inputs, and the trace reader catches
/// those panics (`catch_decoder_panic`) and returns an error. libFuzzer's hook aborts on
/// every panic before it can be caught, so panics raised inside those two crates are let
/// unwind to the reader's guard; one that escapes it still aborts in libfuzzer-sys.
fn let_decoder_panics_unwind() {
    let abort_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let file = info.location().map(|l| l.file()).unwrap_or("");
        let in_decoder = ["/parquet-", "/arrow-"].iter().any(|c| file.contains(c));
        if !in_decoder {
            abort_hook(info);
        }
    }));
}

libfuzzer_sys::fuzz_target!(init: let_decoder_panics_unwind(), |data: &[u8]| {
    let _ = harness::run(dir(), data);
});
