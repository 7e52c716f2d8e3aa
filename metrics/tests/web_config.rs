//! /metrics over TLS with basic auth and client certificates from a node_exporter-format
//! web-config file, scraped by curl (a real client) with certificates from a private CA
//! made by openssl (scripts/test-ca.sh). Skips with a reason where openssl or curl is
//! missing, unless ECO2AI_REQUIRE_STACK=1.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use eco2ai_metrics::{MetricsServer, WebConfig};

fn have_tools() -> bool {
    let ok = [["openssl", "version"], ["curl", "--version"]]
        .iter()
        .all(|[t, v]| {
            Command::new(t)
                .arg(v)
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if !ok {
        assert!(
            std::env::var_os("ECO2AI_REQUIRE_STACK").is_none(),
            "openssl and curl are required (ECO2AI_REQUIRE_STACK=1)"
        );
        eprintln!("skipped: openssl or curl missing");
    }
    ok
}

fn certificates(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-ca.sh");
    let o = Command::new("bash").arg(script).arg(dir).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn serve(dir: &Path, yaml: &str) -> MetricsServer {
    let path = dir.join("web.yml");
    std::fs::write(&path, yaml).unwrap();
    let web = WebConfig::load(&path).expect("web config");
    let body = Arc::new(|| "hf_training_energy_kwh_total 1.5\n".to_string());
    MetricsServer::start_with(
        "127.0.0.1:0",
        body,
        Arc::new(|_: &str| {}),
        Some(Arc::new(web)),
    )
    .expect("start")
}

/// curl's exit code and HTTP status (`000` when no answer came).
fn curl(dir: &Path, url: &str, args: &[&str]) -> (i32, String, String) {
    let o = Command::new("curl")
        .args(["-s", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .current_dir(dir)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (
        o.status.code().unwrap_or(-1),
        code.to_string(),
        body.to_string(),
    )
}

#[test]
fn tls_and_basic_auth_from_a_web_config_file() {
    if !have_tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certificates(dir);
    let hash = bcrypt::hash("scrape-pw", 4).unwrap();
    let srv = serve(
        dir,
        &format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    );
    let url = format!("https://127.0.0.1:{}/metrics", srv.addr.port());
    let ok = ["--cacert", "ca.pem", "-u", "prometheus:scrape-pw"];
    let (rc, code, body) = curl(dir, &url, &ok);
    assert_eq!((rc, code.as_str()), (0, "200"), "{body}");
    assert!(body.contains("hf_training_energy_kwh_total 1.5"), "{body}");

    let (_, code, _) = curl(dir, &url, &["--cacert", "ca.pem", "-u", "prometheus:wrong"]);
    assert_eq!(code, "401");
    let (_, code, _) = curl(dir, &url, &["--cacert", "ca.pem"]);
    assert_eq!(code, "401");
    // Without the CA curl refuses the certificate; plain http gets no answer.
    let (rc, _, _) = curl(dir, &url, &["-u", "prometheus:scrape-pw"]);
    assert_eq!(rc, 60, "curl should not trust the server without the CA");
    let plain = url.replace("https://", "http://");
    let (_, code, _) = curl(dir, &plain, &["-u", "prometheus:scrape-pw"]);
    assert_eq!(code, "000");

    // Idle TLS clients (connected, no handshake) do not hold up a scrape.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    let (rc, code, _) = curl(dir, &url, &ok);
    assert_eq!((rc, code.as_str()), (0, "200"));
    drop(idle);
}

#[test]
fn client_certificates_are_required_when_the_config_says_so() {
    if !have_tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certificates(dir);
    let srv = serve(
        dir,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
         min_version: TLS13\n",
    );
    let url = format!("https://127.0.0.1:{}/metrics", srv.addr.port());
    let (rc, code, body) = curl(
        dir,
        &url,
        &[
            "--cacert",
            "ca.pem",
            "--cert",
            "client.pem",
            "--key",
            "client.key",
        ],
    );
    assert_eq!((rc, code.as_str()), (0, "200"), "{body}");
    let (rc, code, _) = curl(dir, &url, &["--cacert", "ca.pem"]);
    assert!(
        rc != 0 && code == "000",
        "answered without a client certificate"
    );
    // A client certificate from another CA is refused too.
    let other = tempfile::tempdir().unwrap();
    certificates(other.path());
    let (cert, key) = (
        other.path().join("client.pem"),
        other.path().join("client.key"),
    );
    let (rc, code, _) = curl(
        dir,
        &url,
        &[
            "--cacert",
            "ca.pem",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(rc != 0 && code == "000");
}
