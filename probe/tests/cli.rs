//! End-to-end tests of the real `eco2ai-probe` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use arrow_array::Int64Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use eco2ai_probe::clock::monotonic_ns;
use eco2ai_probe::samplers::rapl::fake_tree::FakePowercap;
use eco2ai_trace::{Run, RunStatus, Table};

fn probe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
}

fn run(args: &[&str]) -> Output {
    probe().args(args).output().expect("run eco2ai-probe")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_line(o: &Output) -> PathBuf {
    PathBuf::from(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .expect("a line on stdout"),
    )
}

fn max_ts(run: &Run, table: Table) -> i64 {
    let data = run.read_table(table).expect("read table");
    data.batches
        .iter()
        .flat_map(|b| {
            let a: &Int64Array = b.column(0).as_primitive::<Int64Type>();
            a.values().to_vec()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn records_a_command_and_passes_its_exit_code_through() {
    let out = tempfile::tempdir().unwrap();
    let o = run(&[
        "record",
        "--out",
        out.path().to_str().unwrap(),
        "--project",
        "t",
        "--",
        "sh",
        "-c",
        "sleep 1.2; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let dir = last_line(&o);
    assert!(dir.starts_with(out.path()));
    let run = Run::open(&dir).unwrap();
    assert!(run.is_complete());
    assert_eq!(run.meta().exit_code, Some(7));
    assert_eq!(run.meta().labels.project_name.as_deref(), Some("t"));
    assert!(run.meta().pid.is_some());
    // No RAPL here: the CPU estimate is recorded and labelled as such.
    let cpu = run.read_table(Table::Cpu).unwrap();
    assert!(cpu.num_rows() > 5);
    assert!(
        run.meta()
            .sensors
            .iter()
            .any(|s| s.kind == "estimate" && s.used)
    );
    assert!(run.read_table(Table::Procs).unwrap().num_rows() >= 1);
}

#[test]
fn fake_sensors_are_all_recorded() {
    let out = tempfile::tempdir().unwrap();
    let tree = FakePowercap::intel_one_socket(&out.path().join("powercap")).unwrap();
    let _driver = tree.spawn_driver(Duration::from_millis(1));
    let o = run(&[
        "record",
        "--out",
        out.path().to_str().unwrap(),
        "--duration",
        "1500ms",
        "--fake-gpus",
        "2",
        "--powercap-root",
        tree.root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = Run::open(&last_line(&o)).unwrap();
    let m = run.meta();
    assert_eq!(m.gpus.len(), 2);
    let used: Vec<&str> = m
        .sensors
        .iter()
        .filter(|s| s.used && s.kind == "powercap")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(used, ["package-0", "core-0", "uncore-0", "dram-0", "psys"]);
    // 1 kHz x 5 domains for ~1.5 s, 50 Hz x 2 GPUs: allow for a busy machine.
    assert!(m.rows["cpu"] > 3_000, "{:?}", m.rows);
    assert!(m.rows["gpu"] > 80, "{:?}", m.rows);
    assert_eq!(m.dropped_rows, 0);
}

#[test]
fn kill_9_leaves_a_readable_run_missing_at_most_about_a_second() {
    let out = tempfile::tempdir().unwrap();
    let tree = FakePowercap::intel_one_socket(&out.path().join("powercap")).unwrap();
    let _driver = tree.spawn_driver(Duration::from_millis(1));
    let mut child = probe()
        .args([
            "record",
            "--out",
            out.path().to_str().unwrap(),
            "--run-id",
            "k",
            "--duration",
            "60s",
        ])
        .args([
            "--fake-gpus",
            "2",
            "--powercap-root",
            tree.root.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(3_500));
    let killed_ns = monotonic_ns();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let dir = out.path().join("k");
    let run = Run::open(&dir).unwrap();
    assert!(
        !run.is_complete(),
        "a killed run must not pass for complete"
    );
    for table in [Table::Gpu, Table::Cpu] {
        let lag_ms = (killed_ns - max_ts(&run, table)) / 1_000_000;
        eprintln!("{}: last sample {lag_ms} ms before the kill", table.name());
        assert!(
            (0..1_500).contains(&lag_ms),
            "{}: last sample {lag_ms} ms before the kill",
            table.name()
        );
    }
    let before = run.read_table(Table::Cpu).unwrap().num_rows();

    let o = run_recover(&dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = Run::open(&dir).unwrap();
    assert_eq!(run.meta().status, RunStatus::Truncated);
    let after = run.read_table(Table::Cpu).unwrap();
    assert_eq!(after.num_rows(), before, "recovery must keep every row");
    assert_eq!(after.open_segments, 0);
}

fn run_recover(dir: &Path) -> Output {
    run(&["recover", dir.to_str().unwrap()])
}

#[test]
fn sigterm_is_forwarded_and_the_run_is_closed() {
    let out = tempfile::tempdir().unwrap();
    let child = probe()
        .args([
            "record",
            "--out",
            out.path().to_str().unwrap(),
            "--",
            "sleep",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: signalling the child we just spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(128 + libc::SIGTERM), "{}", stderr(&o));
    let run = Run::open(&last_line(&o)).unwrap();
    assert!(run.is_complete());
    assert_eq!(run.meta().exit_code, Some(128 + libc::SIGTERM));
}

#[test]
fn bad_input_is_a_clear_error_without_a_panic() {
    let out = tempfile::tempdir().unwrap();
    let o_dir = out.path().to_str().unwrap();
    let file = out.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("runs");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["record", "--out", o_dir, "--", "no-such-command-xyz"],
            "command not found: 'no-such-command-xyz'",
        ),
        (
            vec![
                "record",
                "--out",
                under_file.to_str().unwrap(),
                "--duration",
                "1s",
            ],
            "cannot create output directory",
        ),
        (
            vec!["record", "--out", o_dir, "--duration", "10"],
            "invalid duration '10'",
        ),
        (
            vec![
                "record",
                "--out",
                o_dir,
                "--rapl-interval",
                "fast",
                "--duration",
                "1s",
            ],
            "invalid duration 'fast'",
        ),
        (
            vec![
                "record",
                "--out",
                o_dir,
                "--rapl-interval",
                "1us",
                "--duration",
                "1s",
            ],
            "--rapl-interval must be between",
        ),
        (vec!["record", "--out", o_dir], "nothing to record"),
        (
            vec!["record", "--out", o_dir, "--duration", "1s", "--", "true"],
            "not both",
        ),
        (
            vec![
                "record",
                "--out",
                o_dir,
                "--country",
                "France",
                "--duration",
                "1s",
            ],
            "ISO 3166",
        ),
        (
            vec![
                "record",
                "--out",
                o_dir,
                "--gpus",
                "0,x",
                "--duration",
                "1s",
            ],
            "invalid --gpus",
        ),
        (vec!["recover", o_dir], "not a run directory"),
        (
            vec![
                "record",
                "--out",
                o_dir,
                "--country",
                "QQ",
                "--duration",
                "1s",
            ],
            "unknown country 'QQ'",
        ),
        (
            vec![
                "record",
                "--out",
                o_dir,
                "--region",
                "mars:olympus",
                "--duration",
                "1s",
            ],
            "unknown region",
        ),
        (
            vec!["record", "--out", o_dir, "--pue", "0.5", "--duration", "1s"],
            "--pue must be from 1 to 10",
        ),
        (
            vec![
                "record",
                "--out",
                o_dir,
                "--price-per-kwh=-1",
                "--duration",
                "1s",
            ],
            "--price-per-kwh must be a non-negative",
        ),
    ];
    for (args, want) in cases {
        let o = run(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // No run directory was left by any of the refused commands.
    let entries: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("a-file")]);
}

#[test]
fn info_explains_missing_sensors() {
    let o = run(&["info", "--powercap-root", "/nonexistent"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("no RAPL zones under /nonexistent"), "{text}");
    assert!(text.contains("estimate"), "{text}");
}

#[test]
fn joins_a_running_process_until_it_exits_and_keeps_live_totals() {
    let out = tempfile::tempdir().unwrap();
    let mut target = Command::new("sh")
        // Busy for about two seconds whatever the machine's speed (a fixed count of
        // iterations ran 0.13 s on a fast CI machine).
        .args([
            "-c",
            "end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do \
             i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; done",
        ])
        .spawn()
        .unwrap();
    let pid = target.id().to_string();
    let start = Instant::now();
    let o = run(&[
        "record",
        "--out",
        out.path().to_str().unwrap(),
        "--pid",
        &pid,
    ]);
    target.wait().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(start.elapsed() < Duration::from_secs(30));
    let dir = last_line(&o);
    let joined = Run::open(&dir).unwrap();
    assert!(joined.is_complete());
    assert_eq!(joined.meta().pid, Some(target.id()));
    assert!(joined.meta().marker_lib.is_some());
    assert!(joined.read_table(Table::Procs).unwrap().num_rows() >= 1);
    let live = eco2ai_trace::Live::read(&dir).unwrap();
    assert!(live.done);
    assert!(live.cpu_energy_j > 0.0, "{live:?}");
    assert_eq!(live.energy_j, live.gpu_energy_j + live.cpu_energy_j);

    let o = run(&[
        "record",
        "--out",
        out.path().to_str().unwrap(),
        "--pid",
        "999999999",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no process with pid 999999999"),
        "{}",
        stderr(&o)
    );
}
