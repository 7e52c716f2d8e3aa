//! Reading a table in parts (each Parquet row group, each open stream), only the
//! columns asked for, on several threads: the analyzer's path through long runs, where
//! holding a table's every column in memory would take gigabytes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use crate::error::TraceError;
use crate::reader::{Run, list_segments};
use crate::schema::{SCHEMA_VERSION_KEY, Table};
use crate::segment::{
    PARQUET_EXT, catch_decoder_panic, check_version, for_each_stream_batch, segment_path,
};

/// Rows per decoded batch: big enough to amortise, small enough to stay in cache.
const BATCH_ROWS: usize = 64 * 1024;

/// A piece of a table that can be read on its own.
#[derive(Debug, Clone)]
pub enum Part {
    RowGroup {
        path: PathBuf,
        meta: ArrowReaderMetadata,
        index: usize,
    },
    /// An open (not yet compacted) stream, read whole.
    Stream { path: PathBuf },
}

/// Opens a Parquet segment's footer, checking its schema version and columns.
pub(crate) fn parquet_meta(path: &Path, table: Table) -> Result<ArrowReaderMetadata, TraceError> {
    let file = File::open(path).map_err(|e| TraceError::io(path, e))?;
    let meta = catch_decoder_panic(path, || {
        ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| TraceError::parquet(path, e))
    })?;
    let kv = meta.metadata().file_metadata().key_value_metadata();
    let version = kv
        .and_then(|kv| kv.iter().find(|k| k.key == SCHEMA_VERSION_KEY))
        .and_then(|k| k.value.as_ref());
    check_version(path, version)?;
    if !table.accepts(meta.schema().fields()) {
        return Err(TraceError::Meta {
            path: path.to_path_buf(),
            reason: format!("columns differ from the {} table's schema", table.name()),
        });
    }
    Ok(meta)
}

impl Run {
    /// The table's parts in order: each Parquet segment's row groups, then (within its
    /// sequence number) each open stream.
    pub fn parts(&self, table: Table) -> Result<Vec<Part>, TraceError> {
        let dir = self.dir().join(table.name());
        let mut parts = Vec::new();
        for (seq, ext) in list_segments(&dir)? {
            let path = segment_path(&dir, seq, &ext);
            if ext == PARQUET_EXT {
                let meta = parquet_meta(&path, table)?;
                for index in 0..meta.metadata().num_row_groups() {
                    parts.push(Part::RowGroup {
                        path: path.clone(),
                        meta: meta.clone(),
                        index,
                    });
                }
            } else {
                parts.push(Part::Stream { path });
            }
        }
        Ok(parts)
    }
}

/// Calls `f` on each batch of the part, holding only `columns` (in the table's order).
/// Returns true when an open stream ended in a torn batch.
pub fn read_part(
    part: &Part,
    table: Table,
    columns: &[&str],
    mut f: impl FnMut(&RecordBatch),
) -> Result<bool, TraceError> {
    match part {
        Part::RowGroup { path, meta, index } => {
            let file = File::open(path).map_err(|e| TraceError::io(path, e))?;
            let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone());
            let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
            let mut reader = catch_decoder_panic(path, || {
                builder
                    .with_row_groups(vec![*index])
                    .with_projection(mask)
                    .with_batch_size(BATCH_ROWS)
                    .build()
                    .map_err(|e| TraceError::parquet(path, e))
            })?;
            while let Some(batch) = catch_decoder_panic(path, || Ok(reader.next()))? {
                let batch = batch.map_err(|e| TraceError::arrow(path, e))?;
                // A file written before a column existed reads it as nulls.
                f(&table
                    .pad(batch, columns)
                    .map_err(|e| TraceError::arrow(path, e))?);
            }
            Ok(false)
        }
        Part::Stream { path } => {
            let schema = table.schema();
            let keep: Vec<usize> = columns
                .iter()
                .filter_map(|c| schema.index_of(c).ok())
                .collect();
            for_each_stream_batch(path, table, |b| {
                let b = b.project(&keep).map_err(|e| TraceError::arrow(path, e))?;
                f(&b);
                Ok(())
            })
        }
    }
}

/// Folds every part into its own `T` on up to `threads` threads; returns them in part
/// order, and whether an open stream was torn. The first error stops the rest.
pub fn fold_parts<T: Send>(
    parts: &[Part],
    table: Table,
    columns: &[&str],
    threads: usize,
    init: impl Fn() -> T + Sync,
    fold: impl Fn(&mut T, &RecordBatch) + Sync,
) -> Result<(Vec<T>, bool), TraceError> {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, T, bool)>> = Mutex::new(Vec::with_capacity(parts.len()));
    let failed: Mutex<Option<TraceError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, parts.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(part) = parts.get(i) else { return };
                    let mut acc = init();
                    match read_part(part, table, columns, |b| fold(&mut acc, b)) {
                        Ok(torn) => lock(&done).push((i, acc, torn)),
                        Err(e) => {
                            lock(&failed).get_or_insert(e);
                            next.store(parts.len(), Ordering::Relaxed);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|d| d.0);
    let torn = done.iter().any(|d| d.2);
    Ok((done.into_iter().map(|d| d.1).collect(), torn))
}

/// A poisoned lock only means another worker panicked; its data is still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Meta;
    use crate::rows::{GpuRow, Rows};
    use crate::writer::TraceWriter;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;

    fn gpu_rows(from: i64, n: i64) -> Rows {
        Rows::Gpu(
            (from..from + n)
                .map(|t| GpuRow {
                    ts_ns: t,
                    gpu: 0,
                    power_mw: Some(t as u32),
                    ..GpuRow::default()
                })
                .collect(),
        )
    }

    #[test]
    fn parts_come_back_in_order_with_only_the_columns_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TraceWriter::create(dir.path(), Meta::new("scan")).unwrap();
        w.append(gpu_rows(0, 1000));
        w.rotate().unwrap(); // a Parquet segment
        w.append(gpu_rows(1000, 500));
        w.flush().unwrap(); // an open stream
        let run = Run::open(dir.path()).unwrap();
        let parts = run.parts(Table::Gpu).unwrap();
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(matches!(parts[1], Part::Stream { .. }));
        let (chunks, torn) = fold_parts(
            &parts,
            Table::Gpu,
            &["ts_ns", "power_mw"],
            4,
            Vec::new,
            |acc: &mut Vec<i64>, b| {
                assert_eq!(b.num_columns(), 2);
                acc.extend(b.column(0).as_primitive::<Int64Type>().values().iter());
            },
        )
        .unwrap();
        assert!(!torn);
        let all: Vec<i64> = chunks.concat();
        assert_eq!(all, (0..1500).collect::<Vec<_>>());
    }
}
