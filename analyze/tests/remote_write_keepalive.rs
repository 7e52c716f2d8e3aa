//! remote_write keeps its connection alive: a replay of many requests into a local
//! receiver (plain http, then https with a private CA) opens one TCP connection (one TLS
//! handshake), not one a request; a receiver that answers `Connection: close` every few
//! requests gets a new connection each time and loses nothing; an untrusted certificate
//! fails at once. The receiver here counts
//! connections and requests; each request's body is decoded, so a sample sent twice or
//! not at all shows.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{have, write_run};

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    requests: AtomicU64,
    /// Uncompressed body bytes of every request, to tell a request sent twice.
    bodies: Mutex<Vec<usize>>,
}

/// How the receiver answers: `close_every` requests on a connection, then
/// `Connection: close`; 0 keeps every connection open.
struct Receiver {
    counts: Arc<Counts>,
    port: u16,
}

fn start(close_every: u64, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            c.connections.fetch_add(1, Ordering::SeqCst);
            let (c, tls) = (c.clone(), tls.clone());
            std::thread::spawn(move || match tls {
                None => serve(s, &c, close_every),
                Some(cfg) => {
                    let conn = rustls::ServerConnection::new(cfg).unwrap();
                    serve(rustls::StreamOwned::new(conn, s), &c, close_every);
                }
            });
        }
    });
    Receiver { counts, port }
}

/// Answers requests on one connection until the client closes it or `close_every` is
/// reached.
fn serve(s: impl Read + Write, c: &Counts, close_every: u64) {
    let mut r = BufReader::new(s);
    let mut on_this = 0u64;
    loop {
        let mut len = None;
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0u8; len.expect("a Content-Length")];
        r.read_exact(&mut body).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        c.bodies.lock().unwrap().push(raw.len());
        c.requests.fetch_add(1, Ordering::SeqCst);
        on_this += 1;
        let close = close_every > 0 && on_this == close_every;
        let answer = if close {
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        } else {
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
        };
        let s = r.get_mut();
        s.write_all(answer.as_bytes()).unwrap();
        s.flush().unwrap();
        if close {
            return;
        }
    }
}

fn replay(run: &Path, url: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eco2ai-analyze"))
        .args(["replay", run.to_str().unwrap(), "--remote-write", url])
        .args(["--batch-samples", "100", "--retry-for-s", "10"])
        .args(["--gco2-per-kwh", "50"])
        .args(extra)
        .output()
        .unwrap()
}

/// (requests, retries) from "N samples in R requests (T retries, ...)".
fn stats(o: &Output) -> (u64, u64) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains(" samples in "))
        .expect(&err);
    let words: Vec<&str> = line.split_whitespace().collect();
    let requests = words[4].parse().expect(line);
    let retries = words[6].trim_start_matches('(').parse().expect(line);
    (requests, retries)
}

fn check(rx: &Receiver, o: &Output, close_every: u64) {
    let (requests, retries) = stats(o);
    assert!(requests >= 10, "too few requests to tell: {requests}");
    assert_eq!(retries, 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(rx.counts.requests.load(Ordering::SeqCst), requests);
    let want = if close_every == 0 {
        1
    } else {
        requests.div_ceil(close_every)
    };
    assert_eq!(
        rx.counts.connections.load(Ordering::SeqCst),
        want,
        "{requests} requests"
    );
    assert!(rx.counts.bodies.lock().unwrap().iter().all(|&n| n > 0));
}

#[test]
fn one_connection_for_many_requests_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    write_run(&run, 120, 300);
    for close_every in [0, 4] {
        let rx = start(close_every, None);
        let url = format!("http://127.0.0.1:{}/api/v1/write", rx.port);
        check(&rx, &replay(&run, &url, &[]), close_every);
    }
}

fn server_tls(dir: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(cfg)
}

#[test]
fn one_tls_handshake_for_many_requests_over_https() {
    if !have(&["/usr/bin/openssl"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-ca.sh");
    let o = Command::new("bash").arg(script).arg(dir).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = dir.join("run");
    write_run(&run, 120, 300);
    let ca = dir.join("ca.pem");
    for close_every in [0, 4] {
        let rx = start(close_every, Some(server_tls(dir)));
        let url = format!("https://127.0.0.1:{}/api/v1/write", rx.port);
        let o = replay(&run, &url, &["--ca-file", ca.to_str().unwrap()]);
        check(&rx, &o, close_every);
    }
    // Without the CA: refused at once as untrusted, never retried.
    let rx = start(0, Some(server_tls(dir)));
    let url = format!("https://127.0.0.1:{}/api/v1/write", rx.port);
    let o = replay(&run, &url, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not trusted") && !err.contains("gave up"),
        "{err}"
    );
    assert_eq!(rx.counts.requests.load(Ordering::SeqCst), 0);
}
