//! `meta.json`: what a run is (host, sensors, labels, clocks) and how it ended.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TraceError;
use crate::schema::SCHEMA_VERSION;

pub const META_FILE: &str = "meta.json";
/// The most of meta.json that is read: real ones are a few KiB; a bigger one is not a
/// meta.json, and reading it whole would stall every command on it.
pub const MAX_META_BYTES: u64 = 16 << 20;

/// `recording` until the writer finishes; a run left `recording` is still being
/// recorded or was cut off; `truncated` once a cut-off run was recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    #[default]
    Recording,
    Complete,
    Truncated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub power_limit_mw: Option<u32>,
}

/// A sensor the probe looked for, and whether it recorded from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorStatus {
    /// nvml | powercap | perf | estimate | procfs
    pub kind: String,
    /// The domain or device, e.g. `package-0`, `gpu0`.
    pub name: String,
    pub used: bool,
    /// Why it is not used, or how an estimate is made.
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Labels {
    pub project_name: Option<String>,
    pub model_name: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
    /// A fixed grid intensity given to the recorder (`record --gco2-per-kwh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gco2_per_kwh: Option<f64>,
    /// The data centre's PUE given to the recorder (`record --pue`): the analysis uses it
    /// when no --pue flag says otherwise, so a job's nodes keep their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pue: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Sampling {
    pub nvml_interval_ns: u64,
    pub nvml_energy_interval_ns: u64,
    pub rapl_interval_ns: u64,
    pub cpu_interval_ns: u64,
    pub procs_interval_ns: u64,
    pub flush_interval_ns: u64,
    pub segment_interval_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Meta {
    pub schema_version: u32,
    pub tool_version: String,
    pub run_id: String,
    pub host: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpu_sockets: u32,
    pub cpu_threads: u32,
    /// TDP used for the CPU estimate, when one is made.
    pub cpu_tdp_w: Option<f64>,
    pub gpus: Vec<GpuInfo>,
    pub sensors: Vec<SensorStatus>,
    pub labels: Labels,
    pub sampling: Sampling,
    /// Add to a CLOCK_MONOTONIC `ts_ns` to get Unix time in ns.
    pub mono_to_unix_ns: i64,
    pub start_ns: i64,
    pub end_ns: Option<i64>,
    pub status: RunStatus,
    pub command: Vec<String>,
    /// Where the recorded processes send step markers: the library the uprobes watch,
    /// and the socket (`@name`) when eBPF is not used.
    pub marker_lib: Option<String>,
    pub marker_socket: Option<String>,
    /// `LIB:SYMBOL` counted per step, in the order of the steps table's `count_N`.
    pub step_counters: Vec<String>,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    /// Rows a sampler could not hand to the writer (channel full).
    pub dropped_rows: u64,
    /// Sensor read failures by `kind:error` name.
    pub sensor_errors: BTreeMap<String, u64>,
    /// Rows written per table.
    pub rows: BTreeMap<String, u64>,
    /// The recorder's own CPU time (user + system) and peak resident memory.
    pub probe_cpu_ns: Option<u64>,
    pub probe_peak_rss_kb: Option<u64>,
    /// The multi-node job this run is one node of (`crate::job`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<crate::job::JobInfo>,
}

impl Meta {
    pub fn new(run_id: impl Into<String>) -> Meta {
        Meta {
            schema_version: SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id: run_id.into(),
            ..Meta::default()
        }
    }

    /// Writes atomically (temp file + rename) so a crash never leaves half a file.
    pub fn write(&self, dir: &Path) -> Result<(), TraceError> {
        write_json_atomic(dir, META_FILE, self)
    }

    pub fn read(dir: &Path) -> Result<Meta, TraceError> {
        let path = dir.join(META_FILE);
        let bytes = read_regular_file(&path, MAX_META_BYTES)?;
        let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| TraceError::Meta {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if meta.schema_version != SCHEMA_VERSION {
            return Err(TraceError::SchemaVersion {
                path,
                found: meta.schema_version.to_string(),
                expected: SCHEMA_VERSION,
            });
        }
        meta.check_times()
            .and_then(|()| meta.check_job())
            .and_then(|()| match meta.labels.pue {
                Some(p) if !(1.0..=10.0).contains(&p) => {
                    Err(format!("labels.pue {p} is not from 1 to 10"))
                }
                _ => Ok(()),
            })
            .map_err(|reason| TraceError::Meta { path, reason })?;
        Ok(meta)
    }

    /// A job id and node name are joined to paths and shown: the run id's rule holds.
    fn check_job(&self) -> Result<(), String> {
        if let Some(job) = &self.job {
            for (what, v) in [("job_id", &job.job_id), ("node", &job.node)] {
                crate::run_id::validate_run_id(v).map_err(|e| format!("job {what}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The clock fields every reader does arithmetic on, in ranges a real run has:
    /// a monotonic start, an end within ten years of it, a Unix offset far from overflow.
    fn check_times(&self) -> Result<(), String> {
        const TEN_YEARS_NS: i64 = 10 * 366 * 86_400 * 1_000_000_000;
        if !(0..=i64::MAX / 4).contains(&self.start_ns) {
            return Err(format!(
                "start_ns {} is no monotonic clock reading",
                self.start_ns
            ));
        }
        if let Some(end) = self.end_ns
            && !(self.start_ns..=self.start_ns + TEN_YEARS_NS).contains(&end)
        {
            return Err(format!(
                "end_ns {end} is not within ten years after start_ns {}",
                self.start_ns
            ));
        }
        if self.mono_to_unix_ns.unsigned_abs() > 1 << 62 {
            return Err(format!(
                "mono_to_unix_ns {} is out of range",
                self.mono_to_unix_ns
            ));
        }
        Ok(())
    }
}

/// Reads `path` whole if it is a regular file of at most `max_bytes`. Anything else is
/// refused before it is read: opening a FIFO blocks until a writer comes (forever), and
/// a device or a huge file never ends.
pub fn read_regular_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, TraceError> {
    let not_regular = |what: &str| TraceError::Meta {
        path: path.to_path_buf(),
        reason: format!("not a regular file ({what}); refusing to read it"),
    };
    // Checked before the open, which is what would block on a FIFO.
    let md = fs::metadata(path).map_err(|e| TraceError::io(path, e))?;
    if !md.is_file() {
        return Err(not_regular(file_kind(&md)));
    }
    let file = fs::File::open(path).map_err(|e| TraceError::io(path, e))?;
    // Checked again on the open file, in case the path was swapped in between.
    let md = file.metadata().map_err(|e| TraceError::io(path, e))?;
    if !md.is_file() {
        return Err(not_regular(file_kind(&md)));
    }
    let too_big = || TraceError::Meta {
        path: path.to_path_buf(),
        reason: format!("larger than {max_bytes} bytes; refusing to read it"),
    };
    if md.len() > max_bytes {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    // One byte past the bound tells a file that grew after the check.
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TraceError::io(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big());
    }
    Ok(bytes)
}

fn file_kind(md: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = md.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a file"
    }
}

/// `none`, or `key n, key n` for a count map (sensor errors in summaries).
pub fn counts_line(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `value` as `dir/name` through a temp file and a rename.
pub fn write_json_atomic(dir: &Path, name: &str, value: &impl Serialize) -> Result<(), TraceError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let json = serde_json::to_vec_pretty(value).map_err(|e| TraceError::Meta {
        path: tmp.clone(),
        reason: e.to_string(),
    })?;
    let mut f = fs::File::create(&tmp).map_err(|e| TraceError::io(&tmp, e))?;
    f.write_all(&json).map_err(|e| TraceError::io(&tmp, e))?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(|e| TraceError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = Meta::new("r1");
        m.sensor_errors.insert("nvml:power".into(), 3);
        m.write(dir.path()).expect("write");
        assert_eq!(Meta::read(dir.path()).expect("read"), m);

        m.schema_version = SCHEMA_VERSION + 1;
        m.write(dir.path()).expect("write");
        let err = Meta::read(dir.path()).expect_err("newer version");
        assert!(err.to_string().contains("schema version"), "{err}");
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(META_FILE), b"{not json").expect("write");
        let err = Meta::read(dir.path()).expect_err("garbage");
        assert!(err.to_string().contains("meta.json"), "{err}");
    }

    #[test]
    fn oversized_and_non_files_are_refused_unread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        fs::write(&path, vec![b' '; 1025]).expect("write");
        let err = read_regular_file(&path, 1024).expect_err("over the bound");
        assert!(err.to_string().contains("larger than 1024 bytes"), "{err}");
        assert_eq!(
            read_regular_file(&path, 1025).expect("at the bound").len(),
            1025
        );
        let err = read_regular_file(dir.path(), 1024).expect_err("a directory");
        assert!(err.to_string().contains("a directory"), "{err}");
    }
}
