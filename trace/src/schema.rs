//! Table schemas of a run. Column names carry their units; every file also carries
//! `schema_version` and `table` in its metadata so a reader can refuse what it does
//! not understand.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

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
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::Gpu,
        Table::Cpu,
        Table::Steps,
        Table::Procs,
        Table::Evals,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Gpu => "gpu",
            Table::Cpu => "cpu",
            Table::Steps => "steps",
            Table::Procs => "procs",
            Table::Evals => "evals",
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
        };
        let metadata = HashMap::from([
            (SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string()),
            (TABLE_KEY.to_string(), self.name().to_string()),
        ]);
        Arc::new(Schema::new_with_metadata(fields, metadata))
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
