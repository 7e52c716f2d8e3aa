//! The probe's trust boundary, end to end: forged marker events from another user,
//! absurd values from the recorded tree, and run ids that would leave `--out`.

mod common;

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use eco2ai_marker::wire::{EVENT_LEN, Event, EventKind};
use eco2ai_probe::clock::monotonic_ns;
use eco2ai_trace::{Run, RunStatus};

const NOBODY: u32 = 65534;

fn probe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Starts a socket-path recording of `script` under `out/<run_id>` and waits for its
/// meta.json to name the marker socket.
fn start(out: &Path, run_id: &str, script: &str) -> (Child, PathBuf, String) {
    let mut child = probe()
        .args(["record", "--no-ebpf", "--no-metrics", "--run-id", run_id])
        .arg("--out")
        .arg(out)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start eco2ai-probe");
    let dir = out.join(run_id);
    match wait_for_socket(&dir) {
        Some(socket) => (child, dir, socket),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no meta.json with a marker socket in {}", dir.display());
        }
    }
}

/// The marker socket meta.json names, once it does (None after 20 s).
fn wait_for_socket(dir: &Path) -> Option<String> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&meta)
            && let Some(s) = v["marker_socket"].as_str()
        {
            return Some(s.to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn connect(spec: &str) -> UnixDatagram {
    let sock = UnixDatagram::unbound().unwrap();
    match spec.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
            sock.connect_addr(&addr).unwrap();
        }
        None => sock.connect(spec).unwrap(),
    }
    sock
}

fn event(kind: EventKind, pid: u32, step: u64, ts_ns: i64, samples: u64) -> Event {
    Event {
        kind,
        pid,
        ts_ns,
        step,
        samples,
        loss: 0.5,
        lr: f64::NAN,
        epoch: f64::NAN,
        ..Event::default()
    }
}

/// A begin/end pair 1 ms long, ending now.
fn pair(pid: u32, step: u64, samples: u64) -> [Event; 2] {
    let now = monotonic_ns();
    [
        event(EventKind::Begin, pid, step, now - 1_000_000, 0),
        event(EventKind::End, pid, step, now, samples),
    ]
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("wait for eco2ai-probe")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// As uid 65534: sends `events` through `fd` (a socket root connected to the probe),
/// then tries to connect to the socket by its path. Err if that connect succeeded.
fn send_as_nobody(fd: i32, events: Vec<[u8; EVENT_LEN]>, socket_path: &str) -> std::io::Result<()> {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let (abstract_name, path) = match socket_path.strip_prefix('@') {
        Some(n) => (true, n.as_bytes()),
        None => (false, socket_path.as_bytes()),
    };
    let start = usize::from(abstract_name);
    for (dst, src) in addr.sun_path[start..].iter_mut().zip(path) {
        *dst = *src as libc::c_char;
    }
    let len = (2 + start + path.len() + usize::from(!abstract_name)) as libc::socklen_t;
    let mut cmd = Command::new("true");
    // SAFETY: the closure only makes async-signal-safe system calls on data prepared
    // before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for e in &events {
                libc::send(fd, e.as_ptr().cast(), e.len(), 0);
            }
            let s = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0);
            let addr_ptr = (&addr as *const libc::sockaddr_un).cast();
            if s >= 0 && libc::connect(s, addr_ptr, len) == 0 {
                for e in &events {
                    libc::send(s, e.as_ptr().cast(), e.len(), 0);
                }
                return Err(std::io::Error::from_raw_os_error(libc::EEXIST));
            }
            Ok(())
        });
    }
    let status = cmd.status()?;
    assert!(status.success());
    Ok(())
}

#[test]
fn another_user_cannot_write_steps_into_a_recording() {
    if !is_root() {
        eprintln!("skipped: sending as uid {NOBODY} needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (child, dir, socket) = start(tmp.path(), "foreign", "sleep 5; exit 3");
    assert!(
        !socket.starts_with('@'),
        "an abstract socket has no permissions: {socket}"
    );
    let root_conn = connect(&socket);
    // Root may always send: this step must land.
    for e in pair(4242, 500, 16) {
        root_conn.send(&e.encode()).unwrap();
    }
    let forged: Vec<[u8; EVENT_LEN]> = (0..10)
        .flat_map(|i| pair(4243, 9000 + i, 1_000_000_000))
        .map(|e| e.encode())
        .collect();
    let sent = forged.len() as u64;
    use std::os::fd::AsRawFd;
    let r = send_as_nobody(root_conn.as_raw_fd(), forged, &socket);
    assert!(
        r.is_ok(),
        "uid {NOBODY} could connect to the marker socket: {r:?}"
    );

    let o = finish(child);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let run = Run::open(&dir).unwrap();
    let steps = common::steps(&run);
    assert!(
        steps.iter().any(|s| s.step == 500),
        "root's step is missing: {steps:?}"
    );
    let forged_rows: Vec<_> = steps.iter().filter(|s| s.step >= 9000).collect();
    assert!(
        forged_rows.is_empty(),
        "forged steps recorded: {forged_rows:?}"
    );
    let errors = &run.meta().sensor_errors;
    let foreign = errors
        .iter()
        .filter(|(k, _)| k.starts_with("marker:foreign_sender"))
        .map(|(_, n)| *n)
        .sum::<u64>();
    assert_eq!(foreign, sent, "{errors:?}");
    assert!(
        !Path::new(&socket).exists(),
        "the socket is removed at the end"
    );
}

#[test]
fn absurd_events_from_the_recorded_user_are_refused_without_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let (child, dir, socket) = start(tmp.path(), "absurd", "sleep 5");
    let conn = connect(&socket);
    let mut events = Vec::new();
    events.extend(pair(11, 5, 16));
    // Two steps of u64::MAX samples would overflow any sum of them.
    events.extend(pair(12, 6, u64::MAX));
    events.extend(pair(13, 7, u64::MAX));
    events.extend(pair(14, 8, (1 << 40) + 1));
    events.push(event(EventKind::Begin, 15, 9, i64::MIN, 0));
    events.push(event(EventKind::Begin, 16, 10, 0, 0));
    events.push(event(EventKind::End, 17, 11, i64::MAX, u64::MAX));
    events.push(event(EventKind::Eval, 18, 12, i64::MAX, 0));
    for e in &events {
        conn.send(&e.encode()).unwrap();
    }
    let o = finish(child);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let run = Run::open(&dir).unwrap();
    let meta = run.meta();
    assert_eq!(meta.status, RunStatus::Complete);
    let steps = common::steps(&run);
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.step, s.samples))
            .collect::<Vec<_>>(),
        vec![(5, Some(16))],
        "only the sound step is kept"
    );
    let end_ns = meta.end_ns.unwrap();
    for s in &steps {
        assert!(meta.start_ns <= s.begin_ns && s.end_ns <= end_ns, "{s:?}");
    }
    let n = |k: &str| meta.sensor_errors.get(k).copied().unwrap_or(0);
    assert_eq!(
        n("marker:invalid_count:transient"),
        3,
        "{:?}",
        meta.sensor_errors
    );
    assert_eq!(
        n("marker:invalid_ts:transient"),
        4,
        "{:?}",
        meta.sensor_errors
    );
}

fn record_true(out: &Path, extra: &[&str]) -> Output {
    probe()
        .args(["record", "--no-metrics", "--out"])
        .arg(out)
        .args(extra)
        .args(["--", "true"])
        .output()
        .unwrap()
}

#[test]
fn run_ids_that_leave_out_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let abs = tmp.path().join("abs");
    let abs = abs.to_str().unwrap();
    for bad in ["../x", abs, "a/b", ".hidden", "", "sp ace"] {
        let o = record_true(&out, &["--run-id", bad]);
        assert_eq!(o.status.code(), Some(2), "--run-id {bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("invalid run id"), "{}", stderr(&o));
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert!(left.is_empty(), "--run-id {bad:?} left {left:?}");
    }
}

#[test]
fn a_project_name_with_slashes_stays_inside_out() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a").join("out");
    let o = record_true(&out, &["--project", "../../p/q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let dir = PathBuf::from(stdout.lines().last().unwrap_or_default());
    assert_eq!(dir.parent(), Some(out.as_path()), "{}", dir.display());
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert!(eco2ai_trace::validate_run_id(name).is_ok(), "{name}");
    let top: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(top, vec![std::ffi::OsString::from("a")]);
}
