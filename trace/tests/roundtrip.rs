use std::fs;

use arrow_array::Int64Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use eco2ai_trace::{CpuRow, GpuRow, Meta, Rows, Run, RunStatus, Table, TraceWriter};

fn gpu_rows(from: i64, n: i64) -> Rows {
    Rows::Gpu(
        (from..from + n)
            .map(|i| GpuRow {
                ts_ns: i,
                gpu: 0,
                power_mw: Some(100_000 + i as u32),
                ..Default::default()
            })
            .collect(),
    )
}

fn ts(data: &eco2ai_trace::TableData) -> Vec<i64> {
    data.batches
        .iter()
        .flat_map(|b| {
            let a: &Int64Array = b.column(0).as_primitive::<Int64Type>();
            a.values().to_vec()
        })
        .collect()
}

#[test]
fn finished_run_is_complete_parquet_and_reads_back_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("r");
    let mut w = TraceWriter::create(&run_dir, Meta::new("r")).unwrap();
    w.append(gpu_rows(0, 10));
    w.flush().unwrap();
    w.append(gpu_rows(10, 5));
    w.rotate().unwrap();
    w.append(gpu_rows(15, 5));
    w.append(Rows::Cpu(vec![CpuRow {
        ts_ns: 3,
        domain: "package-0".into(),
        source: "powercap",
        energy_uj: Some(10),
        energy_changed: Some(true),
        util_pct: None,
    }]));
    let meta = w.finish(99).unwrap();
    assert_eq!(meta.rows["gpu"], 20);

    let run = Run::open(&run_dir).unwrap();
    assert!(run.is_complete());
    let gpu = run.read_table(Table::Gpu).unwrap();
    assert_eq!(ts(&gpu), (0..20).collect::<Vec<_>>());
    assert_eq!(gpu.open_segments, 0);
    assert_eq!(run.read_table(Table::Cpu).unwrap().num_rows(), 1);
    assert_eq!(run.read_table(Table::Steps).unwrap().num_rows(), 0);
    // Two segments, each compacted; no stream left behind.
    let names: Vec<_> = fs::read_dir(run_dir.join("gpu"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.to_string_lossy().ends_with(".parquet"))
    );
}

#[test]
fn killed_writer_leaves_every_flushed_row_readable_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("r");
    let mut w = TraceWriter::create(&run_dir, Meta::new("r")).unwrap();
    w.append(gpu_rows(0, 10));
    w.rotate().unwrap();
    w.append(gpu_rows(10, 10));
    w.flush().unwrap();
    w.append(gpu_rows(20, 10));
    w.flush().unwrap();
    w.append(gpu_rows(30, 10)); // never flushed: lost, as a kill -9 would lose it
    std::mem::forget(w); // no destructor: the process "died"

    let run = Run::open(&run_dir).unwrap();
    assert!(!run.is_complete());
    assert_eq!(run.meta().status, RunStatus::Recording);
    let gpu = run.read_table(Table::Gpu).unwrap();
    assert_eq!(ts(&gpu), (0..30).collect::<Vec<_>>());
    assert_eq!(gpu.open_segments, 1);

    // Tear the last batch in half, as a kill in the middle of a write would.
    let stream = run_dir.join("gpu/seg-000001.arrows");
    let len = fs::metadata(&stream).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&stream).unwrap();
    f.set_len(len - 40).unwrap();
    let gpu = run.read_table(Table::Gpu).unwrap();
    assert!(gpu.torn);
    assert_eq!(ts(&gpu), (0..20).collect::<Vec<_>>());

    // Recovery compacts what is left and keeps the run marked as cut off.
    let run = Run::recover(&run_dir).unwrap();
    assert_eq!(run.meta().status, RunStatus::Truncated);
    assert!(!stream.exists());
    let gpu = run.read_table(Table::Gpu).unwrap();
    assert_eq!(ts(&gpu), (0..20).collect::<Vec<_>>());
    assert_eq!(gpu.open_segments, 0);
}

#[test]
fn stream_with_parquet_twin_is_not_read_twice() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("r");
    let mut w = TraceWriter::create(&run_dir, Meta::new("r")).unwrap();
    w.append(gpu_rows(0, 10));
    w.flush().unwrap();
    // Keep a copy of the stream, compact, then put the stream back: the state a crash
    // between the Parquet rename and the stream's removal leaves.
    let stream = run_dir.join("gpu/seg-000000.arrows");
    let copy = fs::read(&stream).unwrap();
    w.rotate().unwrap();
    fs::write(&stream, copy).unwrap();
    let run = Run::open(&run_dir).unwrap();
    assert_eq!(
        ts(&run.read_table(Table::Gpu).unwrap()),
        (0..10).collect::<Vec<_>>()
    );
}

#[test]
fn bad_runs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Run::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("not a run directory"), "{err}");

    let run_dir = dir.path().join("r");
    let mut w = TraceWriter::create(&run_dir, Meta::new("r")).unwrap();
    w.append(gpu_rows(0, 3));
    w.finish(1).unwrap();
    // Corrupt Parquet: an error naming the file, not a panic.
    let seg = run_dir.join("gpu/seg-000000.parquet");
    fs::write(&seg, b"PAR1 garbage").unwrap();
    let err = Run::open(&run_dir)
        .unwrap()
        .read_table(Table::Gpu)
        .unwrap_err();
    assert!(err.to_string().contains("seg-000000.parquet"), "{err}");

    // A second writer into the same directory is refused.
    let err = TraceWriter::create(&run_dir, Meta::new("r")).err().unwrap();
    assert!(err.to_string().contains("already exists"), "{err}");
}

/// Compaction writes row groups of at most `ROW_GROUP_ROWS` rows: the writer holds a
/// whole row group in memory, so this bounds the probe's peak at each minute's compaction.
#[test]
fn compaction_bounds_its_row_groups_and_keeps_every_row() {
    use eco2ai_trace::segment::{ROW_GROUP_ROWS, TableWriter};
    let tmp = tempfile::tempdir().unwrap();
    let mut w = TableWriter::create(tmp.path(), Table::Gpu).unwrap();
    let n = 3 * ROW_GROUP_ROWS as i64 + 17;
    w.write(&gpu_rows(0, n).to_batch().unwrap()).unwrap();
    assert_eq!(w.rotate().unwrap(), n as u64);
    let dir = tmp.path().join(Table::Gpu.name());
    let file = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let reader =
        parquet::file::reader::SerializedFileReader::new(fs::File::open(&file).unwrap()).unwrap();
    use parquet::file::reader::FileReader;
    let groups: Vec<i64> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(groups.len(), 4, "{groups:?}");
    assert!(groups.iter().all(|&r| r <= ROW_GROUP_ROWS as i64));
    assert_eq!(groups.iter().sum::<i64>(), n);
}
