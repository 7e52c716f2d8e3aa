#![no_main]
//! The marker wire decoder on arbitrary bytes.

#[path = "../harness/marker_wire.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
