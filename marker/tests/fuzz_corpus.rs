//! The marker_wire fuzz corpus (fuzz/corpus/marker_wire/, kept by `cargo xtask fuzz`)
//! replayed through the fuzz target's harness.

use std::path::Path;

#[path = "../../fuzz/harness/marker_wire.rs"]
mod marker_wire;

#[test]
fn marker_wire_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/marker_wire");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        marker_wire::run(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n > 0, "{} is empty", dir.display());
}
