//! The run writer: buffers rows per table, flushes them to the open segments about
//! once a second, rotates segments into Parquet about once a minute, and keeps
//! meta.json current so that a killed recorder still leaves a readable run.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::TraceError;
use crate::meta::{Meta, RunStatus};
use crate::rows::Rows;
use crate::schema::Table;
use crate::segment::TableWriter;

pub struct TraceWriter {
    dir: PathBuf,
    meta: Meta,
    tables: Vec<(TableWriter, Rows)>,
}

impl TraceWriter {
    /// Creates the run directory (which must not exist or be empty) and its
    /// meta.json with status `recording`.
    pub fn create(dir: &Path, meta: Meta) -> Result<TraceWriter, TraceError> {
        if dir.exists() {
            let mut entries = fs::read_dir(dir).map_err(|e| TraceError::io(dir, e))?;
            if entries.next().is_some() {
                return Err(TraceError::RunExists {
                    path: dir.to_path_buf(),
                });
            }
        }
        fs::create_dir_all(dir).map_err(|e| TraceError::io(dir, e))?;
        let mut meta = meta;
        meta.status = RunStatus::Recording;
        meta.write(dir)?;
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for t in Table::ALL {
            tables.push((TableWriter::create(dir, t)?, Rows::empty(t)));
        }
        Ok(TraceWriter {
            dir: dir.to_path_buf(),
            meta,
            tables,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Changes meta.json's content; written at the next flush.
    pub fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }

    /// Buffers rows until the next flush.
    pub fn append(&mut self, rows: Rows) {
        let table = rows.table();
        if let Some((_, buf)) = self.tables.iter_mut().find(|(_, b)| b.table() == table) {
            // Same table by construction, so append cannot refuse.
            let _ = buf.append(rows);
        }
    }

    /// Writes the buffered rows of every table to its open segment, then meta.json.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        for (writer, buf) in &mut self.tables {
            if buf.is_empty() {
                continue;
            }
            let table = buf.table();
            let batch = buf
                .to_batch()
                .map_err(|e| TraceError::arrow(&self.dir, e))?;
            writer.write(&batch)?;
            *self.meta.rows.entry(table.name().to_string()).or_insert(0) += buf.len() as u64;
            *buf = Rows::empty(table);
        }
        self.meta.write(&self.dir)
    }

    /// Flushes, then closes every open segment into Parquet.
    pub fn rotate(&mut self) -> Result<(), TraceError> {
        self.flush()?;
        for (writer, _) in &mut self.tables {
            writer.rotate()?;
        }
        Ok(())
    }

    /// Flushes and compacts everything, and marks the run complete.
    pub fn finish(mut self, end_ns: i64) -> Result<Meta, TraceError> {
        self.rotate()?;
        self.meta.end_ns = Some(end_ns);
        self.meta.status = RunStatus::Complete;
        self.meta.write(&self.dir)?;
        Ok(self.meta)
    }
}
