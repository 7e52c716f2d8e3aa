//! TLS and basic auth for /metrics from a web-config file in node_exporter's format
//! (the exporter-toolkit's), so one file serves a fleet's exporters alike:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.pem          # paths relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven, NoClientCert
//!   client_ca_file: ca.pem
//!   min_version: TLS13             # TLS12 (default) or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...         # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! A key this file does not know is an error, as in node_exporter, so a typo never
//! leaves an endpoint open that its operator believes closed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use yaml_rust2::{Yaml, YamlLoader};

/// The most of a web-config file that is read.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Checked credentials remembered, so that a scrape every few seconds does not pay
/// bcrypt's deliberate ~50 ms each time.
const CACHE_ENTRIES: usize = 64;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("web config {path}: {reason}")]
pub struct WebConfigError {
    pub path: PathBuf,
    pub reason: String,
}

/// What the server applies to every connection.
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    users: BTreeMap<String, String>,
    checked: Mutex<HashMap<(String, String), bool>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WebConfig {
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let err = |reason: String| WebConfigError {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = eco2ai_trace::meta::read_regular_file(path, MAX_FILE_BYTES)
            .map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8".into()))?;
        let docs = YamlLoader::load_from_str(&text).map_err(|e| err(e.to_string()))?;
        let empty = Yaml::Hash(Default::default());
        let doc = docs.first().unwrap_or(&empty);
        let top = mapping(doc, "the file").map_err(err)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut tls = None;
        let mut users = BTreeMap::new();
        for (key, value) in top {
            match key.as_str() {
                "tls_server_config" => tls = Some(tls_config(value, base).map_err(err)?),
                "basic_auth_users" => users = basic_auth_users(value).map_err(err)?,
                other => return Err(err(format!("unknown or unsupported key '{other}'"))),
            }
        }
        Ok(WebConfig {
            tls: tls.map(Arc::new),
            users,
            checked: Mutex::new(HashMap::new()),
        })
    }

    pub fn needs_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether an `Authorization` header value names a configured user and password.
    pub fn authorized(&self, header: Option<&str>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some((user, pass)) = header.and_then(basic_credentials) else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let key = (user, pass);
        if let Some(ok) = self.checked.lock().ok().and_then(|c| c.get(&key).copied()) {
            return ok;
        }
        let ok = bcrypt::verify(&key.1, hash).unwrap_or(false);
        if let Ok(mut c) = self.checked.lock() {
            if c.len() >= CACHE_ENTRIES {
                c.clear();
            }
            c.insert(key, ok);
        }
        ok
    }
}

/// `Basic base64(user:pass)` into its parts.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, b64) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// A YAML mapping with string keys, in file order.
fn mapping<'a>(y: &'a Yaml, what: &str) -> Result<Vec<(String, &'a Yaml)>, String> {
    match y {
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| match k {
                Yaml::String(s) => Ok((s.clone(), v)),
                _ => Err(format!("{what}: keys must be strings")),
            })
            .collect(),
        Yaml::Null => Ok(Vec::new()),
        _ => Err(format!("{what} must be a mapping")),
    }
}

fn string(y: &Yaml, key: &str) -> Result<String, String> {
    y.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{key} must be a string"))
}

fn basic_auth_users(y: &Yaml) -> Result<BTreeMap<String, String>, String> {
    let mut users = BTreeMap::new();
    for (user, hash) in mapping(y, "basic_auth_users")? {
        let hash = string(hash, &format!("basic_auth_users.{user}"))?;
        if !hash.starts_with("$2") {
            return Err(format!(
                "basic_auth_users.{user}: not a bcrypt hash (make one with htpasswd -nBC 10 \"\")"
            ));
        }
        users.insert(user, hash);
    }
    Ok(users)
}

#[derive(Default)]
struct TlsFields {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_auth: String,
    tls13_only: bool,
}

fn tls_fields(y: &Yaml, base: &Path) -> Result<TlsFields, String> {
    let mut f = TlsFields {
        client_auth: "NoClientCert".into(),
        ..TlsFields::default()
    };
    for (key, value) in mapping(y, "tls_server_config")? {
        let v = string(value, &format!("tls_server_config.{key}"))?;
        match key.as_str() {
            "cert_file" => f.cert = Some(base.join(v)),
            "key_file" => f.key = Some(base.join(v)),
            "client_ca_file" => f.client_ca = Some(base.join(v)),
            "client_auth_type" => f.client_auth = v,
            "min_version" => match v.as_str() {
                "TLS12" => f.tls13_only = false,
                "TLS13" => f.tls13_only = true,
                _ => return Err(format!("min_version '{v}': TLS12 or TLS13")),
            },
            other => {
                return Err(format!(
                    "tls_server_config: unknown or unsupported key '{other}'"
                ));
            }
        }
    }
    Ok(f)
}

fn tls_config(y: &Yaml, base: &Path) -> Result<rustls::ServerConfig, String> {
    let f = tls_fields(y, base)?;
    let (Some(cert), Some(key)) = (&f.cert, &f.key) else {
        return Err("tls_server_config needs cert_file and key_file".into());
    };
    let shown = |p: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| shown(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| shown(cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| shown(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if f.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?;
    let builder = match (f.client_auth.as_str(), &f.client_ca) {
        ("NoClientCert", _) => builder.with_no_client_auth(),
        (kind @ ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven"), Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| shown(ca, &e))? {
                roots
                    .add(c.map_err(|e| shown(ca, &e))?)
                    .map_err(|e| shown(ca, &e))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if kind == "VerifyClientCertIfGiven" {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
        }
        (kind, None) if kind != "NoClientCert" => {
            return Err(format!("client_auth_type {kind} needs client_ca_file"));
        }
        (kind, _) => return Err(format!("client_auth_type '{kind}' is not supported")),
    };
    builder
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("{}: {e}", cert.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WebConfig, WebConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.yml");
        std::fs::write(&p, text).unwrap();
        WebConfig::load(&p)
    }

    #[test]
    fn users_are_checked_against_their_bcrypt_hash() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let c = load(&format!("basic_auth_users:\n  prom: '{hash}'\n")).unwrap();
        assert!(c.needs_auth() && c.tls.is_none());
        use base64::Engine;
        let header = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(c.authorized(Some(&header("prom", "s3cret"))));
        assert!(c.authorized(Some(&header("prom", "s3cret")))); // from the cache
        assert!(!c.authorized(Some(&header("prom", "wrong"))));
        assert!(!c.authorized(Some(&header("other", "s3cret"))));
        assert!(!c.authorized(Some("Bearer x")));
        assert!(!c.authorized(None));
    }

    #[test]
    fn typos_and_half_configurations_are_errors() {
        for (text, want) in [
            (
                "tls_server_config:\n  cert_fil: a\n",
                "unknown or unsupported key 'cert_fil'",
            ),
            (
                "basic_auth_user:\n  a: b\n",
                "unknown or unsupported key 'basic_auth_user'",
            ),
            (
                "tls_server_config:\n  cert_file: a\n",
                "needs cert_file and key_file",
            ),
            ("basic_auth_users:\n  a: plain\n", "not a bcrypt hash"),
            (
                "tls_server_config:\n  min_version: TLS10\n",
                "TLS12 or TLS13",
            ),
            ("[1, 2]\n", "must be a mapping"),
            ("a: [\n", "web config"),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert!(!load("").unwrap().needs_auth());
    }
}
