//! Helpers shared by the end-to-end tests.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use eco2ai_trace::{Run, Table};

/// One row of the steps table, as the tests look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub step: u64,
    pub begin_ns: i64,
    pub end_ns: i64,
    pub samples: Option<u64>,
    pub loss: Option<f64>,
    pub source: String,
    pub count_0: Option<u64>,
    pub count_1: Option<u64>,
}

pub fn steps(run: &Run) -> Vec<Step> {
    let mut out = Vec::new();
    for b in run.read_table(Table::Steps).expect("steps table").batches {
        let col = |n: &str| {
            b.column_by_name(n)
                .unwrap_or_else(|| panic!("no column {n}"))
                .clone()
        };
        let (step, begin, end) = (col("step"), col("begin_ns"), col("end_ns"));
        let (samples, loss, source) = (col("samples"), col("loss"), col("source"));
        let (c0, c1) = (col("count_0"), col("count_1"));
        let u = |a: &dyn Array, i: usize| {
            let a = a.as_primitive::<UInt64Type>();
            (!a.is_null(i)).then(|| a.value(i))
        };
        for i in 0..b.num_rows() {
            let loss = loss.as_primitive::<Float64Type>();
            out.push(Step {
                step: step.as_primitive::<UInt64Type>().value(i),
                begin_ns: begin.as_primitive::<Int64Type>().value(i),
                end_ns: end.as_primitive::<Int64Type>().value(i),
                samples: u(&samples, i),
                loss: (!loss.is_null(i)).then(|| loss.value(i)),
                source: source.as_string::<i32>().value(i).to_string(),
                count_0: u(&c0, i),
                count_1: u(&c1, i),
            });
        }
    }
    out
}
