//! One table's files: a short open segment (an Arrow IPC stream, readable up to its
//! last whole batch) that is compacted into a Parquet file when it is rotated.
//!
//! Layout: `<run>/<table>/seg-000000.parquet`, ... and at most one open
//! `seg-NNNNNN.arrows`. Compaction writes `seg-NNNNNN.parquet.tmp`, renames it, then
//! deletes the `.arrows`: a crash at any point leaves either the stream or the Parquet
//! file with every flushed row (a reader prefers the Parquet file when both exist).

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::TraceError;
use crate::schema::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, TABLE_KEY, Table};

pub const STREAM_EXT: &str = "arrows";
pub const PARQUET_EXT: &str = "parquet";

pub fn segment_path(table_dir: &Path, seq: u32, ext: &str) -> PathBuf {
    table_dir.join(format!("seg-{seq:06}.{ext}"))
}

/// Parses `seg-000012.parquet` into (12, "parquet").
pub fn parse_segment_name(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix("seg-")?;
    let (num, ext) = rest.split_once('.')?;
    Some((num.parse().ok()?, ext))
}

struct OpenSegment {
    seq: u32,
    path: PathBuf,
    writer: StreamWriter<BufWriter<File>>,
    rows: u64,
}

pub struct TableWriter {
    table: Table,
    dir: PathBuf,
    next_seq: u32,
    open: Option<OpenSegment>,
}

impl TableWriter {
    pub fn create(run_dir: &Path, table: Table) -> Result<TableWriter, TraceError> {
        let dir = run_dir.join(table.name());
        fs::create_dir_all(&dir).map_err(|e| TraceError::io(&dir, e))?;
        Ok(TableWriter {
            table,
            dir,
            next_seq: 0,
            open: None,
        })
    }

    /// Appends one batch to the open segment (opening one if needed) and pushes it to
    /// the kernel, so a `kill -9` after this call loses none of it.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), TraceError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            self.open = Some(self.open_segment()?);
        }
        let Some(seg) = self.open.as_mut() else {
            return Ok(());
        };
        seg.writer
            .write(batch)
            .map_err(|e| TraceError::arrow(&seg.path, e))?;
        seg.writer
            .flush()
            .map_err(|e| TraceError::arrow(&seg.path, e))?;
        seg.rows += batch.num_rows() as u64;
        Ok(())
    }

    fn open_segment(&mut self) -> Result<OpenSegment, TraceError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = segment_path(&self.dir, seq, STREAM_EXT);
        let file = File::create(&path).map_err(|e| TraceError::io(&path, e))?;
        let writer = StreamWriter::try_new(BufWriter::new(file), &self.table.schema())
            .map_err(|e| TraceError::arrow(&path, e))?;
        Ok(OpenSegment {
            seq,
            path,
            writer,
            rows: 0,
        })
    }

    /// Closes the open segment and compacts it to Parquet. Returns the rows moved.
    pub fn rotate(&mut self) -> Result<u64, TraceError> {
        let Some(mut seg) = self.open.take() else {
            return Ok(0);
        };
        seg.writer
            .finish()
            .map_err(|e| TraceError::arrow(&seg.path, e))?;
        drop(seg.writer);
        let out = segment_path(&self.dir, seg.seq, PARQUET_EXT);
        compact(&seg.path, &out, self.table)?;
        Ok(seg.rows)
    }
}

/// Writes every whole batch of the stream at `stream` into the Parquet file `out`
/// (via a temp file and a rename), then removes the stream. Returns rows written.
pub fn compact(stream: &Path, out: &Path, table: Table) -> Result<u64, TraceError> {
    let tmp = out.with_extension(format!("{PARQUET_EXT}.tmp"));
    let file = File::create(&tmp).map_err(|e| TraceError::io(&tmp, e))?;
    let mut writer = ArrowWriter::try_new(file, table.schema(), Some(writer_props(table)))
        .map_err(|e| TraceError::parquet(&tmp, e))?;
    let mut rows = 0u64;
    for_each_stream_batch(stream, table, |batch| {
        rows += batch.num_rows() as u64;
        writer
            .write(&batch)
            .map_err(|e| TraceError::parquet(&tmp, e))
    })?;
    let file = writer
        .into_inner()
        .map_err(|e| TraceError::parquet(&tmp, e))?;
    file.sync_all().map_err(|e| TraceError::io(&tmp, e))?;
    fs::rename(&tmp, out).map_err(|e| TraceError::io(out, e))?;
    fs::remove_file(stream).map_err(|e| TraceError::io(stream, e))?;
    Ok(rows)
}

/// Rows per Parquet row group. The writer holds a whole row group's encoded pages until
/// it ends, so this bounds what compaction adds to the probe's memory (a minute of RAPL
/// at 1 kHz over five domains is 300,000 rows: +12.7 MB in one group, docs/benchmarks.md).
pub const ROW_GROUP_ROWS: usize = 8_192;

fn writer_props(table: Table) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_dictionary_enabled(false)
        .set_key_value_metadata(Some(vec![
            KeyValue::new(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string()),
            KeyValue::new(TABLE_KEY.to_string(), table.name().to_string()),
        ]))
        .build()
}

/// Reads the whole batches of an IPC stream. The flag is true when the stream ends in
/// a torn batch or header (the writer was killed while writing it).
pub fn read_stream(path: &Path, table: Table) -> Result<(Vec<RecordBatch>, bool), TraceError> {
    let mut batches = Vec::new();
    let torn = for_each_stream_batch(path, table, |b| {
        batches.push(b);
        Ok(())
    })?;
    Ok((batches, torn))
}

/// Calls `f` on each whole batch of an IPC stream in turn, holding one at a time.
/// Returns true when the stream ends in a torn batch or header.
pub fn for_each_stream_batch(
    path: &Path,
    table: Table,
    mut f: impl FnMut(RecordBatch) -> Result<(), TraceError>,
) -> Result<bool, TraceError> {
    let file = File::open(path).map_err(|e| TraceError::io(path, e))?;
    if file.metadata().map_err(|e| TraceError::io(path, e))?.len() == 0 {
        return Ok(true);
    }
    check_buffer_bounds(path, &file)?;
    let opened = catch_decoder_panic(path, || {
        Ok(StreamReader::try_new(std::io::BufReader::new(file), None))
    })?;
    let mut reader = match opened {
        Ok(r) => r,
        // A header cut short by a crash holds no rows.
        Err(_) => return Ok(true),
    };
    check_version(path, reader.schema().metadata().get(SCHEMA_VERSION_KEY))?;
    if !table.accepts(reader.schema().fields()) {
        return Err(TraceError::Meta {
            path: path.to_path_buf(),
            reason: format!("columns differ from the {} table's schema", table.name()),
        });
    }
    let names = table.column_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    loop {
        match catch_decoder_panic(path, || Ok(reader.next()))? {
            // An older stream lacks columns added since: they read as nulls.
            Some(Ok(b)) => f(table
                .pad(b, &names)
                .map_err(|e| TraceError::arrow(path, e))?)?,
            Some(Err(_)) => return Ok(true),
            None => return Ok(false),
        }
    }
}

/// Runs a call into arrow-ipc or parquet, turning a panic inside it into an error: both
/// panic on some corrupt inputs (slices out of bounds, found by fuzzing) where they
/// should return one. Only the decoder runs inside, never a caller's closure.
pub(crate) fn catch_decoder_panic<T>(
    path: &Path,
    decode: impl FnOnce() -> Result<T, TraceError>,
) -> Result<T, TraceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(TraceError::Meta {
            path: path.to_path_buf(),
            reason: format!("corrupt segment: the decoder failed ({why})"),
        })
    })
}

/// Refuses a stream holding a whole batch whose buffers point outside its body, which
/// arrow-ipc 60 slices without a check (a panic, found by fuzzing). Only the framing
/// and the message headers are read; a cut-short message is left to the reader, which
/// reports it torn. `file` is rewound for the reader.
fn check_buffer_bounds(path: &Path, file: &File) -> Result<(), TraceError> {
    use std::io::{Seek, SeekFrom};
    let io = |e| TraceError::io(path, e);
    let len = file.metadata().map_err(io)?.len();
    let mut r = BufReader::new(file);
    let (mut pos, mut meta) = (0u64, Vec::new());
    loop {
        // The continuation marker, absent in the legacy format, then the header length.
        let Some(mut meta_len) = read_word(&mut r) else {
            break;
        };
        pos += 4;
        if meta_len == u32::MAX {
            let Some(n) = read_word(&mut r) else {
                break;
            };
            (meta_len, pos) = (n, pos + 4);
        }
        let meta_len = u64::from(meta_len);
        if meta_len == 0 || meta_len > len - pos {
            break;
        }
        meta.clear();
        (&mut r).take(meta_len).read_to_end(&mut meta).map_err(io)?;
        pos += meta_len;
        let Ok(msg) = arrow_ipc::root_as_message(&meta) else {
            break;
        };
        let Some(body_len) = u64::try_from(msg.bodyLength())
            .ok()
            .filter(|b| *b <= len - pos)
        else {
            break;
        };
        if !buffers_in_body(&msg, body_len) {
            return Err(TraceError::Meta {
                path: path.to_path_buf(),
                reason: "corrupt Arrow IPC batch: a buffer lies outside its message body".into(),
            });
        }
        r.seek_relative(body_len as i64).map_err(io)?;
        pos += body_len;
    }
    drop(r);
    let mut f = file;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(())
}

fn read_word(r: &mut impl Read) -> Option<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).ok().map(|()| u32::from_le_bytes(b))
}

/// True when every buffer of a (record or dictionary) batch lies within its body.
fn buffers_in_body(msg: &arrow_ipc::Message, body_len: u64) -> bool {
    let batch = msg
        .header_as_record_batch()
        .or_else(|| msg.header_as_dictionary_batch().and_then(|d| d.data()));
    batch
        .and_then(|b| b.buffers())
        .into_iter()
        .flatten()
        .all(|buf| {
            let end = buf.offset().checked_add(buf.length());
            buf.offset() >= 0 && buf.length() >= 0 && end.is_some_and(|e| e as u64 <= body_len)
        })
}

pub fn check_version(path: &Path, found: Option<&String>) -> Result<(), TraceError> {
    match found {
        Some(v) if *v == SCHEMA_VERSION.to_string() => Ok(()),
        other => Err(TraceError::SchemaVersion {
            path: path.to_path_buf(),
            found: other.cloned().unwrap_or_else(|| "none".to_string()),
            expected: SCHEMA_VERSION,
        }),
    }
}
