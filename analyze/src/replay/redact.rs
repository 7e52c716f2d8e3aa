//! URLs fit for a log or an error message: a remote_write URL may carry credentials
//! (`https://user:pass@host/...`, `?api_key=...`, a pre-signed `X-Amz-Signature`), and
//! error messages end up in CI logs. The same rules as the Python package's `redact_url`.

pub const REDACTED: &str = "REDACTED";

/// Query parameter names whose values are credentials (compared lower-case, decoded).
const SECRET_NAMES: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "key",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth",
    "authorization",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "sig",
    "signature",
    "credential",
    "credentials",
];
const SECRET_PREFIXES: &[&str] = &["x-amz-", "x-goog-"];
const SECRET_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "apikey",
    "api_key",
];

/// `url` with its userinfo (`user:pass@`) and the values of credential-looking query
/// parameters replaced by `REDACTED`; everything else as written.
pub fn redact_url(url: &str) -> String {
    let (before_frag, frag) = match url.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (url, None),
    };
    let (base, query) = match before_frag.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_frag, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(q) = query {
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret(name) => format!("{name}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if let Some(f) = frag {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// `scheme://userinfo@host/path` -> `scheme://REDACTED@host/path`.
fn redact_userinfo(base: &str) -> String {
    let (scheme, rest) = match base.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, base),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{REDACTED}@{host}"),
        None => authority.to_string(),
    };
    match scheme {
        Some(s) => format!("{s}://{authority}{path}"),
        None => format!("{authority}{path}"),
    }
}

fn is_secret(name: &str) -> bool {
    let n = percent_decode(name).trim().to_ascii_lowercase();
    SECRET_NAMES.contains(&n.as_str())
        || SECRET_PREFIXES.iter().any(|p| n.starts_with(p))
        || SECRET_PARTS.iter().any(|p| n.contains(p))
}

/// `%XX` and `+` decoded; anything malformed kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |k: usize| b.get(k).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_secret_parameters_are_redacted() {
        let url = "https://alice:s3cr3tpw@carbon.example:8443/v1/runs?project=bert&api_key=AKIA\
                   &access_token=tok&sig=sv&X-Amz-Signature=amz&page=2#top";
        assert_eq!(
            redact_url(url),
            "https://REDACTED@carbon.example:8443/v1/runs?project=bert&api_key=REDACTED\
             &access_token=REDACTED&sig=REDACTED&X-Amz-Signature=REDACTED&page=2#top"
        );
    }

    #[test]
    fn each_secret_looking_name() {
        for name in [
            "apikey",
            "key",
            "token",
            "secret",
            "password",
            "signature",
            "Api%5FKey",
            "client_secret",
            "X-Amz-Credential",
        ] {
            assert_eq!(
                redact_url(&format!("http://h/p?{name}=v4lue&n=1")),
                format!("http://h/p?{name}=REDACTED&n=1"),
                "{name}"
            );
        }
    }

    #[test]
    fn plain_urls_are_unchanged() {
        for url in [
            "http://127.0.0.1:9090/api/v1/write",
            "https://h/p?project=x&step=3",
            "http://h/p?flag",
            "http://h/a@b",
            "not a url",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}
