//! Phase spans end to end: a workload marks `eval` and `checkpoint` spans (and nested,
//! user-named, forged and unended ones) through the marker library; the recording
//! holds one row per span with the times of the calls, the steps inside a span carry
//! its name, what breaks the rules is refused and counted, and /metrics labels the
//! phases (at most 16 names). Through the socket here; through the uprobes as root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use eco2ai_trace::from_batch::phase_rows;
use eco2ai_trace::{PhaseRow, Run, Table};

const ROUNDS: usize = 5;

fn fixture() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/phases.py").to_string()
}

fn record(out: &Path, args: &[&str], times: &Path, names: usize) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
        .args(["record", "--out", out.to_str().unwrap()])
        .args(args)
        .args(["--", "python3", &fixture(), &ROUNDS.to_string()])
        .arg(times)
        .arg(names.to_string())
        .output()
        .unwrap()
}

fn run_dir(o: &Output) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&o.stdout).lines().last().unwrap())
}

fn phases(run: &Run) -> Vec<PhaseRow> {
    let t = run.read_table(Table::Phases).expect("phases table");
    t.batches.iter().flat_map(phase_rows).collect()
}

/// (step, phase) of every step row.
fn step_phases(run: &Run) -> BTreeMap<u64, Option<String>> {
    let mut out = BTreeMap::new();
    for b in run.read_table(Table::Steps).unwrap().batches {
        let step = b
            .column_by_name("step")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let phase = b.column_by_name("phase").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            let p = (!phase.is_null(i)).then(|| phase.value(i).to_string());
            out.insert(step.value(i), p);
        }
    }
    out
}

/// "what before_ns after_ns" lines the fixture wrote around each marking call.
fn call_times(path: &Path) -> BTreeMap<String, (i64, i64)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].to_string(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            )
        })
        .collect()
}

/// Everything the fixture's run must show, whichever path carried the events.
fn check_run(o: &Output, times: &Path, names: usize, source: &str) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = Run::open(&run_dir(o)).unwrap();
    let rows = phases(&run);
    let calls = call_times(times);
    let within = |what: &str, ts: i64| {
        let (a, b) = calls[what];
        assert!(
            (a..=b).contains(&ts),
            "{what}: {ts} outside the call {a}..{b}"
        );
    };
    for name in ["eval", "checkpoint"] {
        let spans: Vec<_> = rows.iter().filter(|r| &*r.name == name).collect();
        assert_eq!(spans.len(), ROUNDS, "{name}: {rows:?}");
        for (i, r) in spans.iter().enumerate() {
            within(&format!("begin:{name}:{i}"), r.begin_ns);
            within(&format!("end:{name}:{i}"), r.end_ns);
            assert_eq!(r.source, source);
        }
    }
    // The span never ended: closed at the stop, after its begin.
    let open: Vec<_> = rows.iter().filter(|r| &*r.name == "left-open").collect();
    assert_eq!(open.len(), 1, "{rows:?}");
    within("begin:left-open:0", open[0].begin_ns);
    assert!(open[0].end_ns > calls["begin:left-open:0"].1);
    // Nested: inner ends inside outer.
    let get = |n: &str| rows.iter().find(|r| &*r.name == n).unwrap();
    let (inner, outer) = (get("inner"), get("outer"));
    assert!(outer.begin_ns <= inner.begin_ns && inner.end_ns <= outer.end_ns);
    let users = rows.iter().filter(|r| r.name.starts_with("user-")).count();
    assert_eq!(users, names);
    assert_eq!(rows.len(), 2 * ROUNDS + 3 + names, "{rows:?}");
    assert!(!rows.iter().any(|r| r.name.contains(' ')), "{rows:?}");

    let steps = step_phases(&run);
    assert_eq!(steps.len(), 2 * ROUNDS + 3);
    for (n, phase) in &steps {
        let want = match *n as usize {
            n if n < 2 * ROUNDS => (n % 2 == 1).then_some("eval"),
            n if n == 2 * ROUNDS => Some("inner"),
            n if n == 2 * ROUNDS + 1 => Some("outer"),
            _ => Some("left-open"),
        };
        assert_eq!(phase.as_deref(), want, "step {n}");
    }
    let errors = &run.meta().sensor_errors;
    let count = |k: &str| {
        errors
            .iter()
            .filter(|(e, _)| e.starts_with(k))
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    assert_eq!(count("marker:invalid_phase"), 1, "{errors:?}");
    assert_eq!(count("marker:phase_end_without_begin"), 1, "{errors:?}");
}

#[test]
fn socket_spans_make_phase_rows_and_steps_inside_them_carry_the_name() {
    let out = tempfile::tempdir().unwrap();
    let times = out.path().join("times");
    let o = record(out.path(), &["--no-ebpf"], &times, 3);
    check_run(&o, &times, 3, "socket");
}

#[test]
fn uprobe_spans_make_the_same_rows() {
    // SAFETY: geteuid has no preconditions.
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("not root")
    } else if !eco2ai_probe::ebpf::is_built() {
        Some("probe built without its eBPF programs")
    } else {
        None
    };
    if let Some(why) = why {
        eprintln!("SKIPPED: {why}");
        if std::env::var("ECO2AI_REQUIRE_EBPF").is_ok_and(|v| v == "1") {
            panic!("eBPF tests are required here but cannot run: {why}");
        }
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let times = out.path().join("times");
    let o = record(out.path(), &[], &times, 3);
    // The rows' source says the uprobes carried every event, not the socket.
    check_run(&o, &times, 3, "uprobe");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    Some(reply.split_once("\r\n\r\n")?.1.to_string())
}

/// (phase label, value) of one family's samples.
fn series(body: &str, family: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| l.starts_with(&format!("hf_training_{family}{{")))
        .filter_map(|l| {
            let phase = l.split("phase=\"").nth(1)?.split('"').next()?;
            let v = l.rsplit(' ').next()?.parse().ok()?;
            Some((phase.to_string(), v))
        })
        .collect()
}

#[test]
fn metrics_label_at_most_sixteen_phases_then_other() {
    let out = tempfile::tempdir().unwrap();
    let times = out.path().join("times");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
        .args(["record", "--no-ebpf", "--fake-gpus", "1", "--project", "p"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--out", out.path().to_str().unwrap()])
        .args(["--", "python3", &fixture(), &ROUNDS.to_string()])
        .arg(&times)
        .args(["20", "4", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    // eval, checkpoint, inner, outer, 20 user names: 24 names, 16 labelled.
    let body = loop {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(b) = scrape(port).filter(|b| series(b, "phase_seconds_total").len() == 17) {
            break b;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no phases on /metrics"
        );
    };
    assert!(child.wait().unwrap().success());
    assert!(body.contains("# TYPE hf_training_phase_seconds_total counter"));
    assert!(body.contains("# TYPE hf_training_phase_energy_joules_total counter"));
    let secs = series(&body, "phase_seconds_total");
    let energy = series(&body, "phase_energy_joules_total");
    assert_eq!(
        secs.keys().collect::<Vec<_>>(),
        energy.keys().collect::<Vec<_>>()
    );
    for name in ["eval", "checkpoint", "inner", "outer", "other"] {
        assert!(secs.contains_key(name), "{name}: {secs:?}");
    }
    // Checkpoints sleep 5 ms each: their seconds are at least that, and the fake GPU
    // draws power all the while (the fixture marks after a second of samples).
    assert!(secs["checkpoint"] >= ROUNDS as f64 * 0.005, "{secs:?}");
    assert!(energy["checkpoint"] > 0.0, "{energy:?}");
    assert!(body.contains(r#"project_name="p",phase="eval""#), "{body}");
    promtool_accepts(&body);
}

/// `promtool check metrics` parses the body (lint notes about names are not errors).
fn promtool_accepts(body: &str) {
    use std::io::Write;
    let Ok(mut p) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: exposition format not cross-checked");
        return;
    };
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let o = p.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !text.contains("error while linting") && !text.contains("parsing error"),
        "{text}"
    );
}

#[test]
fn the_library_cleans_names_by_the_trace_rule() {
    use eco2ai_trace::phase::{clean_name, pack, unpack};
    let mut inputs: Vec<Vec<u8>> = (1..=255u8).map(|b| vec![b]).collect();
    inputs.push(format!("data loader/{}", "x".repeat(40)).into_bytes());
    inputs.push("évál:1".as_bytes().to_vec());
    inputs.push(vec![b'a'; 33]);
    for raw in inputs {
        let library = eco2ai_marker::clean_phase_name(&raw);
        let trace = clean_name(&raw).map(|n| pack(&n));
        assert_eq!(library, trace, "{raw:?}");
        // What the library sends, the probe takes.
        assert!(library.is_some_and(|p| unpack(&p).is_some()), "{raw:?}");
    }
    assert_eq!(eco2ai_marker::clean_phase_name(b""), None);
}
