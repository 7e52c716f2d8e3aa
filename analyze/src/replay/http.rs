//! The remote_write HTTP client: reqwest (hyper, rustls) on a current-thread tokio
//! runtime, rustls only and the fewest features. One client per replay keeps its
//! connection alive, so an https receiver costs one TLS handshake, not one a request.
//! TLS trusts the system's roots plus `--ca-file`. Credentials in the URL
//! (`https://user:pass@host/...`) become basic auth and never reach a message: reqwest's
//! errors are shown without their URL.

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
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
/// certificates, or `ca_file`'s alone when the system has none; HTTP/1.1 by ALPN.
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
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
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
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
    Transient(String),
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

/// A keep-alive client for one target. reqwest is async; the replay is not, so each
/// request is driven to its end on a runtime of the calling thread.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// The target without its userinfo (the query stays: the receiver may need it).
    url: reqwest::Url,
}

impl Client {
    pub fn new(t: &Target, ca_file: Option<&Path>, timeout: Duration) -> Result<Client, String> {
        let scheme = if t.https { "https" } else { "http" };
        let url = reqwest::Url::parse(&format!("{scheme}://{}{}", t.host_port, t.path))
            .map_err(|e| format!("the URL: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("the HTTP client's runtime: {e}"))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(ca_file)?)
            .http1_only()
            .connect_timeout(timeout)
            .timeout(timeout)
            // A receiver's redirect is its answer: a POST is not re-sent elsewhere, and
            // credentials never follow it to another host.
            .redirect(reqwest::redirect::Policy::none())
            // As before the move to reqwest: the receiver is reached directly.
            .no_proxy()
            .build()
            .map_err(|e| format!("the HTTP client: {}", describe(&e)))?;
        Ok(Client { runtime, http, url })
    }

    /// POSTs `body`; the connection stays open for the next request.
    pub fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer, PostError> {
        let mut req = self.http.post(self.url.clone()).body(body.to_vec());
        for (k, v) in headers {
            let mut value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| PostError::Permanent(format!("header {k}: not a header value")))?;
            value.set_sensitive(k.eq_ignore_ascii_case("authorization"));
            req = req.header(*k, value);
        }
        self.runtime.block_on(async {
            let mut resp = req.send().await.map_err(|e| classify(&e))?;
            let status = resp.status().as_u16();
            let mut raw = Vec::new();
            // The body is a reason at most: read up to a bound, the rest is dropped with
            // the connection.
            while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e))? {
                raw.extend_from_slice(&chunk);
                if raw.len() as u64 >= MAX_ANSWER_BYTES {
                    break;
                }
            }
            let body = String::from_utf8_lossy(&raw).trim().to_string();
            Ok(Answer { status, body })
        })
    }
}

/// reqwest's error and its causes, without the URL (it may carry credentials).
fn describe(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = match err.downcast_ref::<reqwest::Error>() {
            // Its Display names the URL; its kind alone is what a person needs here.
            Some(r) if r.is_timeout() => "timed out".to_string(),
            Some(r) if r.is_connect() => "could not connect".to_string(),
            Some(r) if r.is_body() || r.is_decode() => "reading the answer".to_string(),
            Some(_) => "sending the request".to_string(),
            None => err.to_string(),
        };
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        cur = err.source();
    }
    out
}

/// The rustls error somewhere in `e`'s causes. An io::Error hides its inner error from
/// `source()`, and hyper-rustls wraps tokio-rustls' io::Error in another, so each
/// io::Error is opened as well as followed.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        return Some(t);
    }
    let inner = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref());
    if let Some(found) = inner.and_then(|i| tls_error(i)) {
        return Some(found);
    }
    e.source().and_then(tls_error)
}

fn classify(e: &reqwest::Error) -> PostError {
    match tls_error(e) {
        Some(rustls::Error::InvalidCertificate(c)) => PostError::Permanent(format!(
            "TLS: the server's certificate is not trusted ({c:?}); give its CA with --ca-file"
        )),
        Some(rustls::Error::AlertReceived(a)) => {
            PostError::Permanent(format!("TLS: the server refused the handshake ({a:?})"))
        }
        _ if e.is_builder() => PostError::Permanent(describe(e)),
        _ => PostError::Transient(describe(e)),
    }
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
