//! Privileged end-to-end tests: the eBPF uprobes and sched_switch accounting. They need
//! root and a probe built with its eBPF programs (`cargo xtask test` ensures both in
//! CI); elsewhere each test says why it is skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use eco2ai_trace::{Run, Table};

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !eco2ai_probe::ebpf::is_built() {
        return Some("probe built without its eBPF programs (see the build warning)".into());
    }
    None
}

macro_rules! require_ebpf {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED: {why}");
            if std::env::var("ECO2AI_REQUIRE_EBPF").is_ok_and(|v| v == "1") {
                panic!("eBPF tests are required here but cannot run: {why}");
            }
            return;
        }
    };
}

fn record(out: &Path, pre: &[&str], args: &[&str]) -> Output {
    let mut cmd = if pre.is_empty() {
        Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
    } else {
        Command::new(pre[0])
    };
    if !pre.is_empty() {
        cmd.args(&pre[1..]).arg(env!("CARGO_BIN_EXE_eco2ai-probe"));
    }
    cmd.args(["record", "--out", out.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn run_dir(o: &Output) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&o.stdout).lines().last().unwrap())
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn check_steps(run: &Run, n: u64, source: &str) {
    let steps = common::steps(run);
    assert_eq!(steps.len() as u64, n);
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s.step, i as u64);
        assert!(s.begin_ns < s.end_ns);
        assert_eq!(s.source, source);
    }
}

#[test]
fn uprobes_record_every_one_of_ten_thousand_steps() {
    require_ebpf!();
    let out = tempfile::tempdir().unwrap();
    let o = record(
        out.path(),
        &[],
        &["--", "python3", &fixture("markers.py"), "10000"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("steps through eBPF uprobes"), "{err}");
    let run = Run::open(&run_dir(&o)).unwrap();
    check_steps(&run, 10_000, "uprobe");
    assert_eq!(run.read_table(Table::Evals).unwrap().num_rows(), 10);
    let lost: u64 = run
        .meta()
        .sensor_errors
        .iter()
        .filter(|(k, _)| k.starts_with("ebpf"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(lost, 0, "{:?}", run.meta().sensor_errors);
}

#[test]
fn per_process_cpu_time_matches_the_workloads_own_clock() {
    require_ebpf!();
    let out = tempfile::tempdir().unwrap();
    let o = record(
        out.path(),
        &[],
        &["--", "python3", &fixture("burn.py"), "1.0"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let own_ns: f64 = stdout.lines().next().unwrap().trim().parse().unwrap();
    let run = Run::open(&run_dir(&o)).unwrap();
    let procs = run.read_table(Table::Procs).unwrap();
    let (mut total, mut pids) = (0u64, std::collections::BTreeSet::new());
    for b in &procs.batches {
        let pid = b
            .column_by_name("pid")
            .unwrap()
            .as_primitive::<UInt32Type>();
        let ns = b
            .column_by_name("oncpu_ns")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let src = b.column_by_name("source").unwrap().as_string::<i32>();
        let comm = b.column_by_name("comm").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            assert_eq!(src.value(i), "ebpf");
            assert!(
                !comm.value(i).is_empty(),
                "pid {} has no comm",
                pid.value(i)
            );
            total += ns.value(i);
            pids.insert(pid.value(i));
        }
    }
    let err = (total as f64 - own_ns).abs() / own_ns;
    eprintln!(
        "sched_switch {:.3} s vs the workload's clock {:.3} s ({:.2}%), {} processes",
        total as f64 / 1e9,
        own_ns / 1e9,
        100.0 * err,
        pids.len()
    );
    assert!(
        pids.len() >= 2,
        "the forked child was not followed: {pids:?}"
    );
    assert!(err < 0.05, "on-CPU time off by {:.1}%", 100.0 * err);
}

#[test]
fn without_privileges_the_socket_takes_over_and_no_step_is_lost() {
    require_ebpf!();
    let out = tempfile::tempdir().unwrap();
    // Let the unprivileged probe write its run under the temp dir.
    std::fs::set_permissions(
        out.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let o = record(
        out.path(),
        &nobody,
        &["--", "python3", &fixture("markers.py"), "2000"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("eBPF not used (loading eBPF programs needs root"),
        "{err}"
    );
    let run = Run::open(&run_dir(&o)).unwrap();
    check_steps(&run, 2_000, "socket");
}

#[test]
fn uprobe_counters_count_calls_per_step() {
    require_ebpf!();
    let out = tempfile::tempdir().unwrap();
    let lib = Path::new(env!("CARGO_BIN_EXE_eco2ai-probe")).with_file_name("libeco2ai_marker.so");
    let counter = format!("{}:eco2ai_marker_lost", lib.display());
    let o = record(
        out.path(),
        &[],
        &[
            "--uprobe",
            &counter,
            "--",
            "python3",
            &fixture("markers.py"),
            "200",
            "3",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = Run::open(&run_dir(&o)).unwrap();
    assert_eq!(run.meta().step_counters, vec![counter]);
    let steps = common::steps(&run);
    assert_eq!(steps.len(), 200);
    for s in &steps {
        // Even steps call the counted function 3 times, odd steps not at all; the
        // final lost() call of the script happens after the last step.
        let want = if s.step % 2 == 0 { 3 } else { 0 };
        assert_eq!(s.count_0, Some(want), "step {}", s.step);
        assert_eq!(s.count_1, None);
    }
}
