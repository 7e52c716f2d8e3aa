//! hf-eco2ai recorder. Pipeline: samplers (NVML, RAPL, procfs, estimate) -> one
//! bounded channel -> the trace writer (crash-safe segments) -> `runs/<run-id>/`.
//! Never links the analyzer: analysis lives in `eco2ai-analyze`.

pub mod batcher;
pub mod clock;
pub mod config;
pub mod demo;
pub mod ebpf;
pub mod end_summary;
pub mod host;
pub mod job;
pub mod latency;
pub mod markers;
pub mod record;
pub mod recorder;
pub mod runner;
pub mod samplers;
pub mod sensors;
