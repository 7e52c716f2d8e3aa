//! Peak RSS of compacting one minute of a probe's busiest table (RAPL at 1 kHz over five
//! domains, flushed every second as the writer does) into Parquet: the figure behind the
//! probe's 60 s peak in docs/benchmarks.md. `cargo run --release -p eco2ai-trace
//! --example compact_rss [ROWS_PER_S] [SECONDS]`.

use std::sync::Arc;

use eco2ai_trace::segment::TableWriter;
use eco2ai_trace::{CpuRow, Rows, Table};

fn vm_kb(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (per_s, secs) = (
        args.first().copied().unwrap_or(5_000),
        args.get(1).copied().unwrap_or(60),
    );
    let dir = tempfile::tempdir()?;
    let mut w = TableWriter::create(dir.path(), Table::Cpu)?;
    let domains: Vec<Arc<str>> = ["package-0", "core-0", "uncore-0", "dram-0", "psys"]
        .into_iter()
        .map(Arc::from)
        .collect();
    let mut e = 0u64;
    for s in 0..secs {
        let rows: Vec<CpuRow> = (0..per_s)
            .map(|k| {
                e += 37 + (k % 11);
                CpuRow {
                    ts_ns: (s * 1_000_000_000 + k * 1_000_000_000 / per_s) as i64,
                    domain: domains[(k % 5) as usize].clone(),
                    source: "perf",
                    energy_uj: Some(e),
                    energy_changed: Some(k % 3 == 0),
                    util_pct: None,
                }
            })
            .collect();
        w.write(&Rows::Cpu(rows).to_batch()?)?;
    }
    let before_kb = vm_kb("VmRSS:");
    let hwm_before_kb = vm_kb("VmHWM:");
    let t = std::time::Instant::now();
    let n = w.rotate()?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir.path().join(Table::Cpu.name()))? {
        bytes += e?.metadata()?.len();
    }
    println!(
        "compacted {n} rows in {ms:.0} ms into {bytes} bytes: RSS before {before_kb} kB, peak before {hwm_before_kb} kB, peak after {} kB",
        vm_kb("VmHWM:")
    );
    Ok(())
}
