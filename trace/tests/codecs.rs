//! A segment rewritten by another tool keeps being readable: pyarrow and DuckDB write
//! Parquet with snappy by default, others with lz4; the trace reader reads both.

use std::fs::File;

use arrow_array::Int64Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use eco2ai_trace::{GpuRow, Meta, Rows, Run, Table, TraceWriter};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

fn finished_run(dir: &std::path::Path) {
    let mut w = TraceWriter::create(dir, Meta::new("codecs")).unwrap();
    let rows = (0..1000)
        .map(|i| GpuRow {
            ts_ns: i,
            gpu: 0,
            power_mw: Some(100_000 + i as u32),
            ..Default::default()
        })
        .collect();
    w.append(Rows::Gpu(rows));
    w.finish(1000).unwrap();
}

/// Rewrites `path` in place with `codec`, keeping its schema and key-value metadata.
fn rewrite(path: &std::path::Path, codec: Compression) {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned();
    let schema = reader.schema().clone();
    let batches: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
    let props = WriterProperties::builder()
        .set_compression(codec)
        .set_key_value_metadata(kv)
        .build();
    let tmp = path.with_extension("rewritten");
    let mut w = ArrowWriter::try_new(File::create(&tmp).unwrap(), schema, Some(props)).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn snappy_and_lz4_segments_read_back() {
    for codec in [Compression::SNAPPY, Compression::LZ4_RAW, Compression::LZ4] {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("r");
        finished_run(&run);
        let seg = std::fs::read_dir(run.join("gpu"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .unwrap();
        rewrite(&seg, codec);
        let data = Run::open(&run).unwrap().read_table(Table::Gpu).unwrap();
        let ts: Vec<i64> = data
            .batches
            .iter()
            .flat_map(|b| {
                let a: &Int64Array = b.column(0).as_primitive::<Int64Type>();
                a.values().to_vec()
            })
            .collect();
        assert_eq!(ts, (0..1000).collect::<Vec<i64>>(), "{codec:?}");
    }
}
