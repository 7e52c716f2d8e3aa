#![no_main]
//! The duration and number flag parsers on arbitrary text.

#[path = "../harness/parse_flags.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
