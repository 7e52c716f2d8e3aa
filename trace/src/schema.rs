//! Table schemas of a run. Column names carry their units; every file also carries
//! `schema_version` and `table` in its metadata so a reader can refuse what it does
//! not understand.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchOptions, new_null_array};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};

/// Bumped on any change a reader of the previous version would misread.
pub const SCHEMA_VERSION: u32 = 1;

/// Key of the schema version in Parquet key-value and Arrow schema metadata.
pub const SCHEMA_VERSION_KEY: &str = "schema_version";
/// Key naming the table a file belongs to.
pub const TABLE_KEY: &str = "table";

/// The tables of a run directory, one sub-directory each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Gpu,
    Cpu,
    Steps,
    Procs,
    Evals,
    Phases,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::Gpu,
        Table::Cpu,
        Table::Steps,
        Table::Procs,
        Table::Evals,
        Table::Phases,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Gpu => "gpu",
            Table::Cpu => "cpu",
            Table::Steps => "steps",
            Table::Procs => "procs",
            Table::Evals => "evals",
            Table::Phases => "phases",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The Arrow schema, with version and table name in its metadata.
    pub fn schema(self) -> SchemaRef {
        let fields = match self {
            Table::Gpu => gpu_fields(),
            Table::Cpu => cpu_fields(),
            Table::Steps => steps_fields(),
            Table::Procs => procs_fields(),
            Table::Evals => evals_fields(),
            Table::Phases => phases_fields(),
        };
        let metadata = HashMap::from([
            (SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string()),
            (TABLE_KEY.to_string(), self.name().to_string()),
        ]);
        Arc::new(Schema::new_with_metadata(fields, metadata))
    }

    /// Whether a file with these columns is readable as this table: the table's columns,
    /// or a prefix of them whose missing tail is nullable (columns added later without
    /// a version bump, such as the steps' `sync_ns`; they read as nulls).
    pub fn accepts(self, fields: &Fields) -> bool {
        let schema = self.schema();
        let all = schema.fields();
        fields.len() <= all.len()
            && fields.iter().zip(all.iter()).all(|(a, b)| a == b)
            && all.iter().skip(fields.len()).all(|f| f.is_nullable())
    }

    /// `batch` with each of `columns` (names of this table, in the table's order) that it
    /// lacks added as nulls: what a file written before the column existed reads as.
    /// A batch that has them all comes back as it is.
    pub fn pad(self, batch: RecordBatch, columns: &[&str]) -> Result<RecordBatch, ArrowError> {
        let has = |c: &&str| batch.schema().column_with_name(c).is_some();
        if columns.iter().all(has) {
            return Ok(batch);
        }
        let schema = self.schema();
        let rows = batch.num_rows();
        let mut fields = Vec::with_capacity(columns.len());
        let mut arrays = Vec::with_capacity(columns.len());
        for c in columns {
            match batch.schema().column_with_name(c) {
                Some((i, f)) => {
                    fields.push(f.clone());
                    arrays.push(batch.column(i).clone());
                }
                None => {
                    let f = schema.field_with_name(c)?;
                    fields.push(f.clone());
                    arrays.push(new_null_array(f.data_type(), rows));
                }
            }
        }
        let out = Schema::new_with_metadata(fields, batch.schema().metadata().clone());
        let opts = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::new(out), arrays, &opts)
    }

    /// Every column's name, in order.
    pub fn column_names(self) -> Vec<String> {
        self.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }
}

fn req(name: &str, dt: DataType) -> Field {
    Field::new(name, dt, false)
}

fn opt(name: &str, dt: DataType) -> Field {
    Field::new(name, dt, true)
}

/// One row per GPU per poll. Power rows come from the fast loop and energy rows from
/// the slow one, so each sensor column is null where that loop did not read it or the
/// read failed (failures are counted in meta.json).
fn gpu_fields() -> Vec<Field> {
    use DataType::*;
    vec![
        req("ts_ns", Int64),
        req("gpu", UInt32),
        opt("power_mw", UInt32),
        opt("power_changed", Boolean),
        opt("power_instant_mw", UInt32),
        opt("energy_mj", UInt64),
        opt("energy_changed", Boolean),
        opt("util_gpu_pct", UInt32),
        opt("util_mem_pct", UInt32),
        opt("mem_used_bytes", UInt64),
        opt("mem_total_bytes", UInt64),
        opt("temp_c", UInt32),
        opt("sm_clock_mhz", UInt32),
    ]
}

/// CPU energy counters (`energy_uj`: run-relative, unwrapped, monotonic) and CPU
/// utilisation rows (`domain` = machine | job, `source` = procfs).
fn cpu_fields() -> Vec<Field> {
    use DataType::*;
    vec![
        req("ts_ns", Int64),
        req("domain", Utf8),
        req("source", Utf8),
        opt("energy_uj", UInt64),
        opt("energy_changed", Boolean),
        opt("util_pct", Float32),
    ]
}

fn steps_fields() -> Vec<Field> {
    use DataType::*;
    vec![
        req("step", UInt64),
        req("begin_ns", Int64),
        req("end_ns", Int64),
        req("pid", UInt32),
        opt("samples", UInt64),
        opt("tokens", UInt64),
        opt("loss", Float64),
        opt("lr", Float64),
        opt("epoch", Float64),
        req("source", Utf8),
        // Calls during the step of each function counted with `record --uprobe`
        // (meta.json `step_counters` names them), null where not counted.
        opt("count_0", UInt64),
        opt("count_1", UInt64),
        opt("count_2", UInt64),
        opt("count_3", UInt64),
        // Added after version 1 without a bump (a reader pads it with nulls where a
        // file lacks it): the last `eco2ai_step_sync` mark inside the step on its pid,
        // CLOCK_MONOTONIC; null when the rank did not mark it.
        opt("sync_ns", Int64),
        // Added after version 1 without a bump, like `sync_ns`: the phase the step's pid
        // was in when the step began (`eco2ai_phase_begin`); null is `train`.
        opt("phase", Utf8),
    ]
}

/// On-CPU time of each process of the recorded tree during the interval ending at
/// `ts_ns`.
fn procs_fields() -> Vec<Field> {
    use DataType::*;
    vec![
        req("ts_ns", Int64),
        req("pid", UInt32),
        req("comm", Utf8),
        req("oncpu_ns", UInt64),
        req("source", Utf8),
    ]
}

/// One row per phase span (`eco2ai_phase_begin(name)` .. `eco2ai_phase_end(name)`) of
/// one process: `eval`, `checkpoint`, or a user's own name (`crate::phase`). Written
/// when the span ends; a span still open when the recording stops ends there.
fn phases_fields() -> Vec<Field> {
    use DataType::*;
    vec![
        req("pid", UInt32),
        req("name", Utf8),
        req("begin_ns", Int64),
        req("end_ns", Int64),
        req("source", Utf8),
    ]
}

fn evals_fields() -> Vec<Field> {
    use DataType::*;
    vec![
        req("ts_ns", Int64),
        req("step", UInt64),
        req("pid", UInt32),
        opt("eval_loss", Float64),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_schemas_carry_version() {
        for t in Table::ALL {
            assert_eq!(Table::from_name(t.name()), Some(t));
            let s = t.schema();
            assert_eq!(s.metadata()[SCHEMA_VERSION_KEY], SCHEMA_VERSION.to_string());
            assert_eq!(s.metadata()[TABLE_KEY], t.name());
        }
        assert_eq!(Table::from_name("nope"), None);
    }

    #[test]
    fn files_without_a_later_nullable_column_are_accepted_and_padded() {
        let full = Table::Steps.schema();
        let old: Fields = full.fields().iter().take(14).cloned().collect();
        assert!(Table::Steps.accepts(full.fields()));
        assert!(Table::Steps.accepts(&old));
        // A required column missing, or a column of another type, is refused.
        let short: Fields = full.fields().iter().take(3).cloned().collect();
        assert!(!Table::Steps.accepts(&short));
        let mut other: Vec<Field> = old.iter().map(|f| f.as_ref().clone()).collect();
        other[1] = Field::new("begin_ns", DataType::Utf8, false);
        assert!(!Table::Steps.accepts(&Fields::from(other)));

        let b = RecordBatch::new_empty(Arc::new(Schema::new(old.clone())));
        let names = Table::Steps.column_names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let padded = Table::Steps.pad(b, &names).unwrap();
        assert_eq!(padded.schema().fields(), full.fields());
        let one = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "step",
                DataType::UInt64,
                false,
            )])),
            vec![Arc::new(arrow_array::UInt64Array::from(vec![7u64]))],
        )
        .unwrap();
        let p = Table::Steps.pad(one, &["step", "sync_ns"]).unwrap();
        assert_eq!((p.num_rows(), p.num_columns()), (1, 2));
        assert_eq!(p.column(1).null_count(), 1);
    }

    /// A real trace recorded before `sync_ns` existed reads whole, the column as nulls.
    #[test]
    fn a_trace_from_before_sync_ns_reads_it_as_nulls() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/traces/h200-matmul");
        let run = crate::Run::open(&dir).unwrap();
        let data = run.read_table(Table::Steps).unwrap();
        assert!(data.num_rows() > 0);
        for b in &data.batches {
            assert_eq!(b.schema().fields(), Table::Steps.schema().fields());
            assert_eq!(
                b.column_by_name("sync_ns").unwrap().null_count(),
                b.num_rows()
            );
        }
        let rows: Vec<_> = data
            .batches
            .iter()
            .flat_map(crate::from_batch::step_rows)
            .collect();
        assert!(
            rows.iter()
                .all(|r| r.sync_ns.is_none() && r.end_ns >= r.begin_ns)
        );
        let parts = run.parts(Table::Steps).unwrap();
        let mut n = 0;
        for p in &parts {
            crate::scan::read_part(p, Table::Steps, &["begin_ns", "sync_ns"], |b| {
                assert_eq!(b.num_columns(), 2);
                n += b.num_rows();
            })
            .unwrap();
        }
        assert_eq!(n, data.num_rows());
    }

    #[test]
    fn every_time_column_is_in_nanoseconds() {
        for t in Table::ALL {
            for f in t.schema().fields() {
                let n = f.name();
                if n.contains("ts") || n.ends_with("begin_ns") || n.ends_with("end_ns") {
                    assert!(n.ends_with("_ns"), "{n} in {} lacks its unit", t.name());
                }
            }
        }
    }
}
