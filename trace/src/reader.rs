//! Reading a run: meta.json plus every table's Parquet segments and open streams,
//! saying plainly when the run was cut off.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::TraceError;
use crate::meta::{META_FILE, Meta, RunStatus};
use crate::schema::Table;
use crate::segment::{
    PARQUET_EXT, STREAM_EXT, compact, parse_segment_name, read_stream, segment_path,
};

#[derive(Debug)]
pub struct Run {
    dir: PathBuf,
    meta: Meta,
}

/// A table's rows, in segment order.
#[derive(Debug, Default)]
pub struct TableData {
    pub batches: Vec<RecordBatch>,
    /// Segments read from open (not yet compacted) streams.
    pub open_segments: usize,
    /// An open stream ended in a torn batch: the rows after the last whole batch are
    /// gone (at most one flush interval).
    pub torn: bool,
}

impl TableData {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// The segments of one table directory, by sequence number.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u32, String)>, TraceError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(TraceError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| TraceError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((seq, ext)) = parse_segment_name(&name)
            && (ext == PARQUET_EXT || ext == STREAM_EXT)
        {
            // Opening a FIFO or a device named like a segment would block or never end.
            let path = entry.path();
            let md = match fs::metadata(&path) {
                Ok(md) => md,
                // Compacted away since the listing (a live run).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(TraceError::io(&path, e)),
            };
            if !md.is_file() {
                let why = std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a regular file; refusing to read it",
                );
                return Err(TraceError::io(&path, why));
            }
            out.push((seq, ext.to_string()));
        }
    }
    // Parquet first within a sequence number: a stream whose Parquet twin exists was
    // compacted but not yet deleted, and is skipped.
    out.sort_by_key(|(seq, ext)| (*seq, ext != PARQUET_EXT));
    out.dedup_by_key(|(seq, _)| *seq);
    Ok(out)
}

impl Run {
    pub fn open(dir: &Path) -> Result<Run, TraceError> {
        if !dir.join(META_FILE).exists() {
            return Err(TraceError::NotARun {
                path: dir.to_path_buf(),
            });
        }
        Ok(Run {
            dir: dir.to_path_buf(),
            meta: Meta::read(dir)?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// True when the recorder finished the run normally.
    pub fn is_complete(&self) -> bool {
        self.meta.status == RunStatus::Complete
    }

    pub fn read_table(&self, table: Table) -> Result<TableData, TraceError> {
        let dir = self.dir.join(table.name());
        let mut data = TableData::default();
        for (seq, ext) in list_segments(&dir)? {
            let path = segment_path(&dir, seq, &ext);
            if ext == PARQUET_EXT {
                data.batches.extend(read_parquet(&path, table)?);
            } else {
                let (batches, torn) = read_stream(&path, table)?;
                data.batches.extend(batches);
                data.open_segments += 1;
                data.torn |= torn;
            }
        }
        Ok(data)
    }

    /// Compacts the open streams a killed recorder left into Parquet and marks the run
    /// `truncated`. Rows are never dropped: every whole batch is kept.
    pub fn recover(dir: &Path) -> Result<Run, TraceError> {
        let mut run = Run::open(dir)?;
        if run.meta.status == RunStatus::Complete {
            return Ok(run);
        }
        for table in Table::ALL {
            let tdir = dir.join(table.name());
            for (seq, ext) in list_segments(&tdir)? {
                if ext == STREAM_EXT {
                    let out = segment_path(&tdir, seq, PARQUET_EXT);
                    compact(&segment_path(&tdir, seq, STREAM_EXT), &out, table)?;
                }
            }
            remove_leftovers(&tdir)?;
        }
        run.meta.status = RunStatus::Truncated;
        run.meta.write(dir)?;
        Ok(run)
    }
}

/// Removes temp files and streams already compacted.
fn remove_leftovers(tdir: &Path) -> Result<(), TraceError> {
    let Ok(entries) = fs::read_dir(tdir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = match parse_segment_name(&name) {
            Some((_, ext)) if ext.ends_with(".tmp") => true,
            Some((seq, STREAM_EXT)) => segment_path(tdir, seq, PARQUET_EXT).exists(),
            _ => false,
        };
        if stale {
            fs::remove_file(entry.path()).map_err(|e| TraceError::io(&entry.path(), e))?;
        }
    }
    Ok(())
}

fn read_parquet(path: &Path, table: Table) -> Result<Vec<RecordBatch>, TraceError> {
    let meta = crate::scan::parquet_meta(path, table)?;
    let file = File::open(path).map_err(|e| TraceError::io(path, e))?;
    crate::segment::catch_decoder_panic(path, || {
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
            .build()
            .map_err(|e| TraceError::parquet(path, e))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TraceError::arrow(path, e))?;
        // A file written before a column existed reads it as nulls.
        let names = table.column_names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        batches
            .into_iter()
            .map(|b| table.pad(b, &names).map_err(|e| TraceError::arrow(path, e)))
            .collect()
    })
}
