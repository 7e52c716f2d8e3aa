#![no_main]
//! The remote_write encoder (eco2ai-metrics' proto.rs) on arbitrary samples and
//! labels, decoded back.

use eco2ai_metrics::proto;

#[path = "../harness/remote_write.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
