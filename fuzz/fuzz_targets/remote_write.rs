#![no_main]
//! The remote_write encoder on arbitrary samples and labels, decoded back. Compiled
//! from analyze/src/replay/proto.rs alone (the analyze crate links polars).

#[allow(dead_code)]
#[path = "../../analyze/src/replay/proto.rs"]
mod proto;

#[path = "../harness/remote_write.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
