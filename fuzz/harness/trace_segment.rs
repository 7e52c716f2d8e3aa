//! Fuzz harness for the trace reader on arbitrary segment bytes: shared by the fuzz
//! target and the corpus regression test. The first byte picks the table; the rest is
//! written as that table's segment, once as an open IPC stream (`.arrows`) and once as
//! a Parquet segment, and read through both of the reader's paths (whole table, and
//! the analyzer's parts).

use std::path::Path;

use eco2ai_trace::from_batch::{cpu_rows, eval_rows, gpu_rows, phase_rows, step_rows};
use eco2ai_trace::scan::read_part;
use eco2ai_trace::segment::{PARQUET_EXT, STREAM_EXT, segment_path};
use eco2ai_trace::{Meta, Run, Table};

/// Makes `dir` a run directory with a valid meta.json.
pub fn prepare(dir: &Path) {
    Meta::new("fuzz")
        .write(dir)
        .expect("writing the fuzz run's meta.json");
}

/// Returns the rows read (whole-table path), so a test can tell valid seeds were read.
pub fn run(dir: &Path, data: &[u8]) -> usize {
    let Some((&pick, bytes)) = data.split_first() else {
        return 0;
    };
    let table = Table::ALL[usize::from(pick) % Table::ALL.len()];
    let tdir = dir.join(table.name());
    std::fs::create_dir_all(&tdir).expect("creating the table directory");
    let mut n = 0;
    for ext in [STREAM_EXT, PARQUET_EXT] {
        let path = segment_path(&tdir, 0, ext);
        std::fs::write(&path, bytes).expect("writing the segment");
        n += read(dir, table);
        std::fs::remove_file(&path).expect("removing the segment");
    }
    n
}

fn read(dir: &Path, table: Table) -> usize {
    let run = Run::open(dir).expect("the fuzz run's meta.json is valid");
    let mut n = 0;
    if let Ok(data) = run.read_table(table) {
        for b in &data.batches {
            n += rows(table, b);
        }
    }
    let Ok(parts) = run.parts(table) else {
        return n;
    };
    let schema = table.schema();
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for part in &parts {
        let _ = read_part(part, table, &columns, |b| {
            rows(table, b);
        });
    }
    n
}

/// The typed rows the analyzer and replay build from a batch.
fn rows(table: Table, b: &arrow_array::RecordBatch) -> usize {
    let n = match table {
        Table::Gpu => gpu_rows(b).len(),
        Table::Cpu => cpu_rows(b).len(),
        Table::Steps => step_rows(b).len(),
        Table::Evals => eval_rows(b).len(),
        Table::Procs => b.num_rows(),
        // A span whose name breaks the phase rule is skipped, not an error.
        Table::Phases => return phase_rows(b).len().min(b.num_rows()),
    };
    assert_eq!(n, b.num_rows(), "{} rows lost in conversion", table.name());
    n
}
