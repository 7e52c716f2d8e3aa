//! remote_write over https with basic auth, into Debian's victoria-metrics serving TLS
//! with a certificate from a private CA made here with openssl: what fleets run (Mimir,
//! Thanos receive, Grafana Cloud) speaks https and wants credentials. Skips with a reason
//! where victoria-metrics, openssl or curl is missing (unless ECO2AI_REQUIRE_STACK=1).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Killed, Made, free_port, have, write_run};

const PASSWORD: &str = "pw-7f3a9c-not-in-logs";

/// A private CA and a server certificate for 127.0.0.1 signed by it (scripts/test-ca.sh).
fn certificates(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-ca.sh");
    let o = Command::new("bash").arg(script).arg(dir).output().unwrap();
    assert!(
        o.status.success(),
        "test-ca.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn curl(dir: &Path, url: &str) -> Option<String> {
    let o = Command::new("curl")
        .args(["-sf", "--max-time", "5", "--cacert"])
        .arg(dir.join("ca.pem"))
        .args(["-u", &format!("eco:{PASSWORD}"), url])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn replay(run: &Path, url: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args(["replay", run.to_str().unwrap(), "--remote-write", url])
        .args(["--retry-for-s", "30", "--gco2-per-kwh", "50"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn remote_write_over_https_with_basic_auth_into_victoriametrics() {
    if !have(&[
        "/usr/bin/victoria-metrics",
        "/usr/bin/openssl",
        "/usr/bin/curl",
    ]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certificates(dir);
    std::fs::write(dir.join("password"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(dir.join("wrong"), "not-it\n").unwrap();
    std::fs::write(dir.join("token"), "t0ken\n").unwrap();
    let run = dir.join("run");
    let Made { kwh, end_unix, .. } = write_run(&run, 600, 5 * 60);
    let port = free_port();
    let _vm = Killed(
        Command::new("/usr/bin/victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", dir.join("vm").display()))
            .args(["-retentionPeriod=100y", "-tls", "-httpAuth.username=eco"])
            .arg(format!("-httpAuth.password={PASSWORD}"))
            .arg(format!("-tlsCertFile={}", dir.join("server.pem").display()))
            .arg(format!("-tlsKeyFile={}", dir.join("server.key").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl(dir, &format!("{base}/health")).is_none_or(|b| !b.contains("OK")) {
        assert!(
            Instant::now() < deadline,
            "victoria-metrics never served https"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let url = format!("{base}/api/v1/write");
    let ca = dir.join("ca.pem");
    let (ca, pw, wrong) = (
        ca.to_str().unwrap(),
        dir.join("password"),
        dir.join("wrong"),
    );
    let auth = ["--basic-auth-user", "eco", "--basic-auth-password-file"];

    // The private CA given: every sample lands.
    let mut args = vec!["--ca-file", ca];
    args.extend(auth);
    args.push(pw.to_str().unwrap());
    let o = replay(&run, &url, &args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    curl(dir, &format!("{base}/internal/force_flush")).expect("flush");
    let q = format!("{base}/api/v1/query?query=hf_training_energy_kwh_total&time={end_unix:.3}");
    let body = curl(dir, &q).expect("query");
    let v: serde_json::Value = serde_json::from_str(&body).expect(&body);
    let got: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .expect(&body)
        .parse()
        .unwrap();
    assert!((got - kwh).abs() < 1e-9, "{got} vs {kwh}");

    // Without the CA: refused at once as untrusted, not retried for --retry-for-s.
    let mut args = auth.to_vec();
    args.push(pw.to_str().unwrap());
    let o = replay(&run, &url, &args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("not trusted") && err.contains("--ca-file"),
        "{err}"
    );
    assert!(
        !err.contains("gave up"),
        "a TLS verification error was retried: {err}"
    );

    // A wrong password: the receiver's 401, at once.
    let mut args = vec!["--ca-file", ca];
    args.extend(auth);
    args.push(wrong.to_str().unwrap());
    let o = replay(&run, &url, &args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("HTTP 401"), "{err}");

    // Credentials in the URL work too, and never reach a message.
    let with_user = format!("https://eco:{PASSWORD}@127.0.0.1:{port}/api/v1/write");
    let o = replay(&run, &with_user, &["--ca-file", ca]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");

    // Two kinds of credentials, or a CA file for plain http: refused before sending.
    let token = dir.join("token");
    let mut args = vec![
        "--ca-file",
        ca,
        "--bearer-token-file",
        token.to_str().unwrap(),
    ];
    args.extend(auth);
    args.push(pw.to_str().unwrap());
    let o = replay(&run, &url, &args);
    assert!(String::from_utf8_lossy(&o.stderr).contains("use one"));
    let o = replay(
        &run,
        &format!("http://127.0.0.1:{port}/api/v1/write"),
        &["--ca-file", ca],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is for an https:// receiver"));
}
