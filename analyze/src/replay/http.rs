//! A minimal HTTP/1.1 client for remote_write: one POST per connection, plain http (a TLS
//! endpoint is reached through a local relay such as vmagent or the Prometheus agent).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where to POST.
#[derive(Debug, Clone)]
pub struct Target {
    pub host_port: String,
    pub path: String,
}

/// Parses `http://host[:port]/path`.
pub fn parse_url(url: &str) -> Result<Target, String> {
    // Error messages name the URL without its credentials.
    let shown = super::redact::redact_url(url);
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("'{shown}': only http:// URLs are supported (put a relay in front of https)")
    })?;
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host_port.is_empty() {
        return Err(format!("'{shown}': no host"));
    }
    let host_port = if host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host_port.to_string()
    } else {
        format!("{host_port}:80")
    };
    Ok(Target {
        host_port,
        path: path.to_string(),
    })
}

/// Status code and body of the answer.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

pub fn post(
    t: &Target,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Answer> {
    let addr = t.host_port.to_socket_addrs()?.next().ok_or_else(|| {
        let shown = super::redact::redact_url(&format!("http://{}", t.host_port));
        std::io::Error::other(format!("{shown} resolves to nothing"))
    })?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
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
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status line in the answer"))?;
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
            (t.host_port.as_str(), t.path.as_str()),
            ("127.0.0.1:9090", "/api/v1/write")
        );
        assert_eq!(super::parse_url("http://vm").unwrap().host_port, "vm:80");
        assert!(super::parse_url("https://x/").is_err());
        assert!(super::parse_url("http:///x").is_err());
    }

    #[test]
    fn errors_name_the_url_without_credentials() {
        let e = super::parse_url("https://bob:hunter2@x/w?api_key=K3Y").unwrap_err();
        assert!(!e.contains("hunter2") && !e.contains("K3Y"), "{e}");
        assert!(e.contains("https://REDACTED@x/w?api_key=REDACTED"), "{e}");
    }
}
