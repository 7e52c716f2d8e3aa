//! Fuzz harness for meta.json parsing (`eco2ai_trace::Meta::read`): shared by the fuzz
//! target and the corpus regression test.

use std::path::Path;

use eco2ai_trace::{META_FILE, Meta, Run, counts_line, validate_run_id};

/// Writes `data` as `dir/meta.json` and reads it back the way every command does; a
/// meta.json that parses must survive being written and read again. Returns whether
/// it parsed.
pub fn run(dir: &Path, data: &[u8]) -> bool {
    if std::fs::write(dir.join(META_FILE), data).is_err() {
        return false;
    }
    let Ok(meta) = Meta::read(dir) else {
        return false;
    };
    let _ = counts_line(&meta.sensor_errors);
    let _ = counts_line(&meta.rows);
    let _ = validate_run_id(&meta.run_id);
    assert!(
        Run::open(dir).is_ok(),
        "Meta::read accepted what Run::open refuses"
    );
    meta.write(dir).expect("writing a parsed meta.json back");
    let again = Meta::read(dir).expect("a meta.json written by Meta::write reads back");
    assert_eq!(again.run_id, meta.run_id);
    assert_eq!(again.rows, meta.rows);
    true
}
