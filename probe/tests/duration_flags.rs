//! Every duration flag of the probe, at a value past what a `Duration` holds or past a
//! year, is a clear error with exit code 2: never a panic, never a recording.

use std::process::{Command, Output};

fn probe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
        .args(args)
        .output()
        .expect("run eco2ai-probe")
}

const RECORD_FLAGS: &[&str] = &[
    "--rapl-interval",
    "--nvml-interval",
    "--nvml-energy-interval",
    "--cpu-interval",
    "--duration",
    "--stale-after",
    "--flush-interval",
    "--segment-interval",
];

#[test]
fn huge_durations_exit_2_with_a_message() {
    let out = tempfile::tempdir().unwrap();
    let o_dir = out.path().to_str().unwrap();
    for flag in RECORD_FLAGS {
        for value in ["99999999999999999999h", "8761h", "1e300s"] {
            let mut args = vec!["record", "--out", o_dir, "--no-metrics", "--duration", "1s"];
            if *flag == "--duration" {
                args.truncate(4);
            }
            args.extend([*flag, value]);
            let o = probe(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{flag} {value}: {err}");
            assert!(err.contains(flag), "{flag} {value}: {err}");
            assert!(!err.contains("panicked"), "{flag} {value}: {err}");
        }
    }
    // Nothing was recorded.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn zero_is_refused_where_it_means_nothing() {
    let out = tempfile::tempdir().unwrap();
    let o_dir = out.path().to_str().unwrap();
    for args in [
        vec!["record", "--out", o_dir, "--no-metrics", "--duration", "0s"],
        vec![
            "record",
            "--out",
            o_dir,
            "--duration",
            "1s",
            "--stale-after",
            "0ms",
        ],
    ] {
        let o = probe(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("out of range"), "{args:?}: {err}");
    }
}

#[test]
fn the_demo_workload_durations_too() {
    for args in [
        ["demo-workload", "--duration", "99999999999999999999h"],
        ["demo-workload", "--step", "99999999999999999999h"],
    ] {
        let o = probe(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("out of range"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
