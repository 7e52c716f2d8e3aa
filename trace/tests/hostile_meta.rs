//! Hostile run directories end in a clear error, never a hang: a FIFO where meta.json or
//! a segment should be (opening one blocks until a writer comes), a directory, and a
//! meta.json too big to be one.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use eco2ai_trace::meta::MAX_META_BYTES;
use eco2ai_trace::{META_FILE, Meta, Run, Table};

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo (coreutils)")
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// Runs `f` on a thread; fails the test if it has not returned within 5 s (a hang).
fn within_5s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{what}: still blocked after 5 s"))
}

#[test]
fn a_fifo_meta_json_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join(META_FILE));
    let d = dir.path().to_path_buf();
    let err = within_5s("Run::open on a FIFO meta.json", move || Run::open(&d))
        .expect_err("a FIFO is no meta.json");
    let msg = err.to_string();
    assert!(msg.contains("meta.json") && msg.contains("FIFO"), "{msg}");
}

#[test]
fn a_directory_meta_json_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(META_FILE)).unwrap();
    let err = Run::open(dir.path()).expect_err("a directory is no meta.json");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn an_oversized_meta_json_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join(META_FILE)).unwrap();
    // Sparse: costs no disk, reads as zeros.
    f.set_len(MAX_META_BYTES + 1).unwrap();
    let err = Run::open(dir.path()).expect_err("too big");
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[test]
fn a_fifo_segment_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    Meta::new("r1").write(dir.path()).unwrap();
    let gpu = dir.path().join(Table::Gpu.name());
    std::fs::create_dir(&gpu).unwrap();
    mkfifo(&gpu.join("seg-000001.parquet"));
    let d = dir.path().to_path_buf();
    let res = within_5s("reading a FIFO segment", move || {
        Run::open(&d).and_then(|r| r.read_table(Table::Gpu).map(|t| t.num_rows()))
    });
    let err = res.expect_err("a FIFO is no segment");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}
