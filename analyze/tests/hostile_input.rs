//! Hostile input through the binary: a FIFO for meta.json, out-of-range seconds, speeds
//! and rates, and a remote_write URL carrying credentials. Each ends with exit code 2 and
//! a message: no hang, no panic, no secret in the output.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::write_run;

fn analyze() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
}

/// Runs the command; kills it and fails the test if it runs past `limit` (a hang).
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn eco2ai-analyze");
    let t = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_fifo_meta_json_is_a_clear_error_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let ok = Command::new("mkfifo")
        .arg(run.join("meta.json"))
        .status()
        .expect("mkfifo")
        .success();
    assert!(ok);
    for sub in ["summary", "report"] {
        let mut cmd = analyze();
        cmd.arg(sub).arg(&run);
        let o = run_within(cmd, Duration::from_secs(10));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{sub}: {err}");
        assert!(
            err.contains("FIFO") && err.contains("meta.json"),
            "{sub}: {err}"
        );
        assert!(!err.contains("panicked"), "{sub}: {err}");
    }
}

fn replay(run: &Path, args: &[&str]) -> Output {
    let mut cmd = analyze();
    cmd.arg("replay").arg(run).args(args);
    run_within(cmd, Duration::from_secs(30))
}

#[test]
fn out_of_range_replay_flags_exit_2_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    write_run(&run, 30, 120);
    let om = tmp.path().join("out.om");
    let om = om.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--serve", "127.0.0.1:0", "--speed", "1e-300x"],
            "--speed",
        ),
        (vec!["--serve", "127.0.0.1:0", "--speed", "infx"], "--speed"),
        (
            vec![
                "--serve",
                "127.0.0.1:0",
                "--speed",
                "1000000x",
                "--linger-s",
                "inf",
            ],
            "--linger-s",
        ),
        (
            vec![
                "--remote-write",
                "http://127.0.0.1:1/api/v1/write",
                "--retry-for-s",
                "1e30",
            ],
            "--retry-for-s",
        ),
        (vec!["--openmetrics", om, "--every-s", "1e-12"], "--every-s"),
        (
            vec!["--openmetrics", om, "--max-samples-per-s", "0"],
            "--max-samples-per-s",
        ),
        (
            vec!["--openmetrics", om, "--max-samples-per-s", "NaN"],
            "--max-samples-per-s",
        ),
        (
            vec!["--openmetrics", om, "--stale-after-s", "1e300"],
            "--stale-after-s",
        ),
    ];
    for (args, flag) in cases {
        let o = replay(&run, &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_remote_write_url_is_printed_without_its_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    write_run(&run, 10, 120);
    let url = "http://alice:hunter2@127.0.0.1:1/api/v1/write?api_key=K3YVALUE&tenant=t1";
    let o = replay(&run, &["--remote-write", url, "--retry-for-s", "0"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("remote_write to"), "{err}");
    assert!(
        !err.contains("hunter2") && !err.contains("K3YVALUE"),
        "{err}"
    );
    assert!(err.contains("REDACTED@127.0.0.1:1"), "{err}");
    assert!(err.contains("tenant=t1"), "{err}");
}
