//! Sensor errors, classified so that a sampler knows whether to retry, give up on a
//! domain, or report the sensor missing; and counted per `sensor:kind` for meta.json.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SensorError {
    /// A read failed this time; the next poll tries again.
    #[error("read failed: {0}")]
    Transient(String),
    /// The device or domain went away (hot-unplug, driver unload); stop polling it.
    #[error("gone: {0}")]
    Gone(String),
    /// The sensor does not exist or this device does not support the value.
    #[error("not supported: {0}")]
    NotSupported(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
}

impl SensorError {
    pub fn kind(&self) -> &'static str {
        match self {
            SensorError::Transient(_) => "transient",
            SensorError::Gone(_) => "gone",
            SensorError::NotSupported(_) => "not_supported",
            SensorError::PermissionDenied(_) => "permission_denied",
        }
    }

    pub fn from_io(e: &std::io::Error, what: &str) -> SensorError {
        use std::io::ErrorKind::*;
        match e.kind() {
            NotFound => SensorError::Gone(format!("{what}: {e}")),
            PermissionDenied => SensorError::PermissionDenied(format!("{what}: {e}")),
            _ if e.raw_os_error() == Some(libc::ENODEV) => {
                SensorError::Gone(format!("{what}: {e}"))
            }
            _ => SensorError::Transient(format!("{what}: {e}")),
        }
    }
}

/// Error counts shared by every sampler thread, keyed `sensor:field:kind`.
#[derive(Debug, Clone, Default)]
pub struct ErrorCounts(Arc<Mutex<BTreeMap<String, u64>>>);

impl ErrorCounts {
    pub fn add(&self, sensor: &str, err: &SensorError) {
        let key = format!("{sensor}:{}", err.kind());
        if let Ok(mut m) = self.0.lock() {
            *m.entry(key).or_insert(0) += 1;
        }
    }

    /// Adds `n` to a count keyed exactly `key` (for counts that are not sensor errors,
    /// such as events the kernel side could not deliver).
    pub fn add_n(&self, key: &str, n: u64) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(key.to_string()).or_insert(0) += n;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}
