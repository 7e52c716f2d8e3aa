//! `record --web-config-file`: the probe's /metrics behind TLS and basic auth, scraped by
//! a real Prometheus configured as a fleet would (scheme https, tls_config.ca_file,
//! basic_auth), with certificates from a private CA (scripts/test-ca.sh). A bad file is
//! refused before anything is recorded. Needs Debian's prometheus and openssl; skips
//! with a reason otherwise, unless ECO2AI_REQUIRE_STACK=1.

mod stack;

use std::process::Command;
use std::time::Duration;

use stack::{PROMETHEUS, free_port, missing, probe, prometheus, vector, wait_for};

#[test]
fn prometheus_scrapes_the_probe_over_tls_with_basic_auth() {
    if missing(&[PROMETHEUS, "/usr/bin/openssl"]).is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let script = stack::repo().join("scripts/test-ca.sh");
    let o = Command::new("bash").arg(script).arg(dir).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hash = bcrypt::hash("scrape-pw", 4).unwrap();
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap();
    let (probe_port, prom_port) = (free_port(), free_port());
    let web = dir.join("web.yml");
    let _probe = probe(
        dir,
        probe_port,
        "tls",
        &["--web-config-file", web.to_str().unwrap()],
    );
    let ca = dir.join("ca.pem");
    let scrape = |job: &str, password: &str| {
        format!(
            "  - job_name: {job}\n    scheme: https\n    tls_config: {{ca_file: {}}}\n    \
             basic_auth: {{username: prometheus, password: {password}}}\n    \
             static_configs: [{{targets: ['127.0.0.1:{probe_port}']}}]\n",
            ca.display()
        )
    };
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n{}{}",
            scrape("good", "scrape-pw"),
            scrape("bad", "wrong")
        ),
    )
    .unwrap();
    let _prom = prometheus(dir, "prometheus.yml", prom_port);
    let energy = wait_for(Duration::from_secs(60), "energy over https", || {
        stack::try_vector(prom_port, "hf_training_energy_kwh_total{job=\"good\"}")
            .filter(|v| !v.is_empty())
    });
    assert_eq!(energy[0]["metric"]["project_name"], "tls");
    // The wrong password is refused: that target is down, with 401 as its reason.
    let up = wait_for(Duration::from_secs(30), "the bad job's up", || {
        stack::try_vector(prom_port, "up{job=\"bad\"}").filter(|v| !v.is_empty())
    });
    assert_eq!(up[0]["value"][1], "0", "{up:?}");
    let targets = stack::get(prom_port, "/api/v1/targets").unwrap().1;
    assert!(targets.contains("401"), "{targets}");
    let good = vector(prom_port, "up{job=\"good\"}");
    assert_eq!(good[0]["value"][1], "1");
}

#[test]
fn a_bad_web_config_is_refused_before_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("web.yml");
    std::fs::write(&web, "tls_server_config:\n  cert_fil: x\n").unwrap();
    let out = tmp.path().join("runs");
    let o = Command::new(env!("CARGO_BIN_EXE_eco2ai-probe"))
        .args(["record", "--web-config-file", web.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown or unsupported key 'cert_fil'"),
        "{err}"
    );
    assert!(!out.exists());
}
