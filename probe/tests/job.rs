//! A node of a multi-node job: `record --job-id` or the job's environment lays the run out
//! `OUT/job=<id>/node=<node>/<run id>/` with `meta.job`; the ranks that send steps are
//! recorded by pid; `eco2ai_step_sync` marks land in the steps' `sync_ns`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type};
use eco2ai_trace::{Run, Table};

/// Every variable job detection reads, so that the test's own environment never leaks in.
const JOB_VARS: [&str; 10] = [
    "SLURM_JOB_ID",
    "TORCHELASTIC_RUN_ID",
    "SLURMD_NODENAME",
    "SLURM_NODEID",
    "GROUP_RANK",
    "NODE_RANK",
    "SLURM_JOB_NUM_NODES",
    "SLURM_NNODES",
    "WORLD_SIZE",
    "SLURM_NTASKS",
];

fn probe(out: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"));
    for v in JOB_VARS {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied())
        .args(["record", "--out", out.to_str().unwrap(), "--no-metrics"])
        .args(args)
        .output()
        .unwrap()
}

fn run_dir(o: &Output) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&o.stdout).lines().last().unwrap())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_job_id_flag_lays_the_run_out_by_job_and_node() {
    let out = tempfile::tempdir().unwrap();
    let o = probe(
        out.path(),
        &[],
        &["--job-id", "j-42", "--run-id", "r1", "--duration", "200ms"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let node = hostname();
    let want = out
        .path()
        .join("job=j-42")
        .join(format!("node={node}"))
        .join("r1");
    assert_eq!(run_dir(&o), want);
    let run = Run::open(&want).unwrap();
    let job = run.meta().job.clone().expect("meta.job");
    assert_eq!(
        (
            job.job_id.as_str(),
            job.id_source.as_str(),
            job.node.as_str()
        ),
        ("j-42", "flag", node.as_str())
    );
    assert!(job.ranks.is_empty(), "no process sent steps");
}

#[test]
fn slurm_and_torchrun_environments_name_the_job() {
    let out = tempfile::tempdir().unwrap();
    let slurm = [
        ("SLURM_JOB_ID", "7731"),
        ("SLURMD_NODENAME", "gpu-n3"),
        ("SLURM_NODEID", "1"),
        ("SLURM_JOB_NUM_NODES", "2"),
        ("SLURM_NTASKS", "16"),
        // Ignored: Slurm's id comes first.
        ("TORCHELASTIC_RUN_ID", "tr-1"),
    ];
    let o = probe(
        out.path(),
        &slurm,
        &["--run-id", "a", "--duration", "100ms"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(run_dir(&o), out.path().join("job=7731/node=gpu-n3/a"));
    let job = Run::open(&run_dir(&o)).unwrap().meta().job.clone().unwrap();
    assert_eq!(job.id_source, "slurm");
    assert_eq!(
        (job.node_rank, job.num_nodes, job.world_size),
        (Some(1), Some(2), Some(16))
    );

    let torch = [("TORCHELASTIC_RUN_ID", "tr-9"), ("GROUP_RANK", "0")];
    let o = probe(
        out.path(),
        &torch,
        &["--run-id", "b", "--duration", "100ms"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = out.path().join(format!("job=tr-9/node={}/b", hostname()));
    assert_eq!(run_dir(&o), want);
    let job = Run::open(&want).unwrap().meta().job.clone().unwrap();
    assert_eq!(
        (job.id_source.as_str(), job.node_rank),
        ("torchelastic", Some(0))
    );

    // Outside a job the layout is as before, and meta.json has no job.
    let o = probe(out.path(), &[], &["--run-id", "c", "--duration", "100ms"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(run_dir(&o), out.path().join("c"));
    assert!(
        Run::open(&out.path().join("c"))
            .unwrap()
            .meta()
            .job
            .is_none()
    );
}

#[test]
fn hostile_job_ids_are_refused_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    for (env, args) in [
        (vec![], vec!["--job-id", "../../etc"]),
        (vec![], vec!["--job-id", ".hidden"]),
        (vec![], vec!["--job-id", "a/b"]),
        (vec![("SLURM_JOB_ID", "x y")], vec![]),
        (vec![("TORCHELASTIC_RUN_ID", "../up")], vec![]),
    ] {
        let mut all = args.clone();
        all.extend(["--duration", "100ms"]);
        let o = probe(&out, &env, &all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{env:?} {args:?}: {err}");
        assert!(err.contains("job id"), "{err}");
        assert!(!out.exists(), "{env:?} {args:?} wrote {}", out.display());
    }
    // A hostile node name from Slurm is not joined to a path: the host name is used.
    let o = probe(
        &out,
        &[("SLURM_JOB_ID", "5"), ("SLURMD_NODENAME", "../../x")],
        &["--run-id", "r", "--duration", "100ms"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        run_dir(&o),
        out.join(format!("job=5/node={}/r", hostname()))
    );
}

#[test]
fn info_shows_the_detected_job() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"));
    for v in JOB_VARS {
        cmd.env_remove(v);
    }
    let o = cmd
        .envs([("SLURM_JOB_ID", "88"), ("SLURMD_NODENAME", "n7")])
        .args(["info", "--fake-gpus", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = text.lines().find(|l| l.starts_with("job")).unwrap();
    assert!(line.contains("88 (from slurm), node n7"), "{line}");
}

/// pid -> (rank, sync_ns of each step) from the steps table.
fn sync_by_pid(run: &Run) -> std::collections::BTreeMap<u32, Vec<Option<i64>>> {
    let mut out = std::collections::BTreeMap::<u32, Vec<Option<i64>>>::new();
    for b in run.read_table(Table::Steps).unwrap().batches {
        let pid = b
            .column_by_name("pid")
            .unwrap()
            .as_primitive::<UInt32Type>();
        let sync = b
            .column_by_name("sync_ns")
            .unwrap()
            .as_primitive::<Int64Type>();
        let (begin, end) = (
            b.column_by_name("begin_ns")
                .unwrap()
                .as_primitive::<Int64Type>(),
            b.column_by_name("end_ns")
                .unwrap()
                .as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            let s = (!sync.is_null(i)).then(|| sync.value(i));
            if let Some(s) = s {
                assert!(
                    begin.value(i) <= s && s <= end.value(i),
                    "sync outside its step"
                );
            }
            out.entry(pid.value(i)).or_default().push(s);
        }
    }
    out
}

/// Checks a recording of `ranks.py 2 STEPS`: two ranks by pid, every step of rank 0
/// carries a sync mark inside it, rank 1's none.
fn check_two_ranks(run: &Run, steps: usize) {
    let job = run.meta().job.clone().expect("meta.job");
    assert_eq!(job.ranks.len(), 2, "{:?}", job.ranks);
    let by_pid = sync_by_pid(run);
    for (pid, r) in &job.ranks {
        assert_eq!(r.local_rank, Some(r.rank));
        let syncs = &by_pid[pid];
        assert_eq!(syncs.len(), steps, "rank {}", r.rank);
        if r.rank == 0 {
            assert!(syncs.iter().all(Option::is_some), "rank 0 marks every step");
        } else {
            assert!(syncs.iter().all(Option::is_none), "rank 1 never marks");
        }
    }
    let mut ranks: Vec<u32> = job.ranks.values().map(|r| r.rank).collect();
    ranks.sort();
    assert_eq!(ranks, [0, 1]);
}

#[test]
fn ranks_by_pid_and_sync_marks_through_the_socket() {
    let out = tempfile::tempdir().unwrap();
    let o = probe(
        out.path(),
        &[],
        &[
            "--job-id",
            "ranks",
            "--no-ebpf",
            "--",
            "python3",
            &fixture("ranks.py"),
            "2",
            "30",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = Run::open(&run_dir(&o)).unwrap();
    check_two_ranks(&run, 30);
    assert!(common::steps(&run).iter().all(|s| s.source == "socket"));
    let errors = &run.meta().sensor_errors;
    assert!(
        errors
            .keys()
            .all(|k| !k.starts_with("marker") && !k.starts_with("job")),
        "{errors:?}"
    );
}

#[test]
fn sync_marks_through_the_uprobes() {
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
    let o = probe(
        out.path(),
        &[],
        &[
            "--job-id",
            "ranks",
            "--",
            "python3",
            &fixture("ranks.py"),
            "2",
            "30",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = Run::open(&run_dir(&o)).unwrap();
    check_two_ranks(&run, 30);
    assert!(common::steps(&run).iter().all(|s| s.source == "uprobe"));
}

fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

#[test]
fn live_metrics_carry_the_job_and_the_node() {
    let out = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"));
    for v in JOB_VARS {
        cmd.env_remove(v);
    }
    let mut child = cmd
        .envs([("SLURM_JOB_ID", "991"), ("SLURMD_NODENAME", "node-b")])
        .args(["record", "--duration", "5s", "--fake-gpus", "1"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--out", out.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let body = loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if let Some(b) = scrape(port).filter(|b| b.contains("hf_training_gpu_power_watts{")) {
            break b;
        }
        assert!(start.elapsed().as_secs() < 15, "no metrics served");
    };
    let _ = child.kill();
    let _ = child.wait();
    let samples: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("hf_training_"))
        .collect();
    assert!(samples.len() > 5, "{body}");
    for l in samples {
        assert!(
            l.contains(r#"job_id="991""#) && l.contains(r#"node="node-b""#),
            "{l}"
        );
    }
}

/// A host name is any bytes root set: one that is not a safe path component is refused
/// (exit 2) rather than joined to OUT. Needs root for a UTS namespace of its own.
#[test]
fn a_hostile_host_name_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: not root (a UTS namespace with another host name needs it)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let script = format!(
        "printf ../../x > /proc/sys/kernel/hostname && exec {} record --out {} --no-metrics --job-id j --duration 100ms",
        env!("CARGO_BIN_EXE_eco2ai-probe"),
        out.display()
    );
    let mut cmd = Command::new("unshare");
    for v in JOB_VARS {
        cmd.env_remove(v);
    }
    let o = cmd.args(["--uts", "sh", "-c", &script]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("node name"), "{err}");
    assert!(!out.exists());
}
