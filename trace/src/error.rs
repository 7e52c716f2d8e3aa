use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TraceError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Meta { path: PathBuf, reason: String },
    #[error("{}: schema version {found}, this build reads version {expected}", path.display())]
    SchemaVersion {
        path: PathBuf,
        found: String,
        expected: u32,
    },
    #[error("{}: {source}", path.display())]
    Arrow {
        path: PathBuf,
        source: arrow_schema::ArrowError,
    },
    #[error("{}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("{}: not a run directory (no meta.json)", path.display())]
    NotARun { path: PathBuf },
    #[error("{}: already exists and is not empty; choose another --out or run id", path.display())]
    RunExists { path: PathBuf },
}

impl TraceError {
    pub fn io(path: &Path, source: std::io::Error) -> TraceError {
        TraceError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn arrow(path: &Path, source: arrow_schema::ArrowError) -> TraceError {
        TraceError::Arrow {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn parquet(path: &Path, source: parquet::errors::ParquetError) -> TraceError {
        TraceError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }
}
