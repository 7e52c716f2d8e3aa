//! A minimal HTTP/1.1 client for remote_write: one POST per connection, over plain http
//! or https (rustls: the system's roots, or a CA file for a private CA). Credentials in
//! the URL (`https://user:pass@host/...`) become basic auth and never reach a message.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Where to POST, and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`, without credentials.
    pub host_port: String,
    /// The host alone: the TLS server name.
    pub host: String,
    pub path: String,
    pub https: bool,
    /// `user:password` from the URL, for basic auth.
    pub userinfo: Option<(String, String)>,
}

/// The most of an answer that is read: a remote_write answer is a status and a reason.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// Parses `http[s]://[user:pass@]host[:port]/path`.
pub fn parse_url(url: &str) -> Result<Target, String> {
    // Error messages name the URL without its credentials.
    let shown = super::redact::redact_url(url);
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "'{shown}': only http:// and https:// URLs are supported"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((u, h)) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            (Some((user.to_string(), pass.to_string())), h)
        }
        None => (None, authority),
    };
    let (host, port) = if let Some(r) = host_port.strip_prefix('[') {
        let (h, after) = r
            .split_once(']')
            .ok_or_else(|| format!("'{shown}': an unclosed '[' in the host"))?;
        (h, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("'{shown}': the port is not a number"))?,
        None if https => 443,
        None => 80,
    };
    if host.is_empty() {
        return Err(format!("'{shown}': no host"));
    }
    let host_port = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Target {
        host_port,
        host: host.to_string(),
        path: path.to_string(),
        https,
        userinfo,
    })
}

/// The TLS settings of an https target: the system's roots plus `ca_file`'s
/// certificates, or `ca_file`'s alone when the system has none.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are left out: a private CA file may be all that
    // is needed, and a missing root shows as a clear verification error later.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("--ca-file {shown}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--ca-file {shown}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("--ca-file {shown}: no PEM certificate in it"));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("--ca-file {shown}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Status code and body of the answer.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// An error worth retrying (the network, the receiver restarting) or not (TLS
/// verification: the same certificate fails the same way every time).
#[derive(Debug)]
pub enum PostError {
    Transient(std::io::Error),
    Permanent(String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Transient(e) => write!(f, "{e}"),
            PostError::Permanent(e) => write!(f, "{e}"),
        }
    }
}

fn classify(e: std::io::Error) -> PostError {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => PostError::Permanent(format!(
            "TLS: the server's certificate is not trusted ({c:?}); give its CA with --ca-file"
        )),
        Some(rustls::Error::AlertReceived(a)) => {
            PostError::Permanent(format!("TLS: the server refused the handshake ({a:?})"))
        }
        _ => PostError::Transient(e),
    }
}

pub fn post(
    t: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, PostError> {
    let addr = t
        .host_port
        .to_socket_addrs()
        .map_err(PostError::Transient)?
        .next()
        .ok_or_else(|| PostError::Permanent(format!("{} resolves to nothing", t.host_port)))?;
    let s = TcpStream::connect_timeout(&addr, timeout).map_err(PostError::Transient)?;
    s.set_read_timeout(Some(timeout))
        .map_err(PostError::Transient)?;
    s.set_write_timeout(Some(timeout))
        .map_err(PostError::Transient)?;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        t.path,
        t.host_port,
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let raw = match (t.https, tls) {
        (false, _) => exchange(s, head.as_bytes(), body),
        (true, Some(config)) => {
            let name = ServerName::try_from(t.host.clone())
                .map_err(|e| PostError::Permanent(format!("TLS server name '{}': {e}", t.host)))?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| PostError::Permanent(format!("TLS: {e}")))?;
            exchange(rustls::StreamOwned::new(conn, s), head.as_bytes(), body)
        }
        (true, None) => {
            return Err(PostError::Permanent(
                "https without a TLS configuration".into(),
            ));
        }
    }
    .map_err(classify)?;
    parse_answer(&raw)
}

/// Sends the request and reads the answer to its end (bounded).
fn exchange(mut s: impl Read + Write, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(head)?;
    s.write_all(body)?;
    s.flush()?;
    let mut raw = Vec::new();
    match s.take(MAX_ANSWER_BYTES).read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // A TLS server that closes without close_notify after a whole answer: the answer
        // is still whole (Connection: close ends it).
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && raw.contains(&b'\n') => Ok(raw),
        Err(e) => Err(e),
    }
}

fn parse_answer(raw: &[u8]) -> Result<Answer, PostError> {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            PostError::Transient(std::io::Error::other("no HTTP status line in the answer"))
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        let t = super::parse_url("http://127.0.0.1:9090/api/v1/write").unwrap();
        assert_eq!(
            (t.host_port.as_str(), t.path.as_str(), t.https),
            ("127.0.0.1:9090", "/api/v1/write", false)
        );
        assert_eq!(super::parse_url("http://vm").unwrap().host_port, "vm:80");
        let t = super::parse_url("https://bob:s3cret@mimir.example/api/v1/push").unwrap();
        assert_eq!(
            (t.host_port.as_str(), t.host.as_str()),
            ("mimir.example:443", "mimir.example")
        );
        assert_eq!(t.userinfo, Some(("bob".into(), "s3cret".into())));
        let t = super::parse_url("https://[::1]:8428/w").unwrap();
        assert_eq!(
            (t.host_port.as_str(), t.host.as_str()),
            ("[::1]:8428", "::1")
        );
        assert!(super::parse_url("ftp://x/").is_err());
        assert!(super::parse_url("http:///x").is_err());
        assert!(super::parse_url("http://x:port/").is_err());
    }

    #[test]
    fn errors_name_the_url_without_credentials() {
        let e = super::parse_url("ftp://bob:hunter2@x/w?api_key=K3Y").unwrap_err();
        assert!(!e.contains("hunter2") && !e.contains("K3Y"), "{e}");
        assert!(e.contains("ftp://REDACTED@x/w?api_key=REDACTED"), "{e}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = super::tls_config(Some(&p)).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = super::tls_config(Some(&dir.path().join("absent.pem"))).unwrap_err();
        assert!(e.contains("--ca-file"), "{e}");
    }
}
