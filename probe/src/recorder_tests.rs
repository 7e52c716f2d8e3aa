use std::sync::Arc;

use eco2ai_trace::{GpuInfo, Meta, TraceWriter};

use super::*;
use crate::samplers::errors::SensorError;
use crate::samplers::gpu::fake::{FakeGpus, FakeScript};
use crate::samplers::rapl::{Domain, EnergyReader};

/// A RAPL counter that moves by 1 J a read.
struct Stepping(Domain, u64);

impl EnergyReader for Stepping {
    fn domain(&self) -> &Domain {
        &self.0
    }
    fn read_uj(&mut self) -> Result<u64, SensorError> {
        self.1 += 1_000_000;
        Ok(self.1)
    }
}

fn sensors() -> Sensors {
    let gpus = (0..2)
        .map(|index| GpuInfo {
            index,
            name: "fake".into(),
            uuid: format!("GPU-{index}"),
            power_limit_mw: None,
        })
        .collect();
    let domain = Domain {
        name: "package-0".into(),
        source: "powercap",
        max_range_uj: None,
    };
    Sensors {
        gpu_backend: Some(Arc::new(FakeGpus::new(
            2,
            Arc::new(monotonic_ns),
            FakeScript::default(),
        ))),
        gpus,
        rapl: vec![Box::new(Stepping(domain, 0))],
        estimate_tdp_w: None,
        cpu_sockets: 1,
        status: Vec::new(),
    }
}

#[test]
fn every_sampler_runs_through_the_spawner_and_the_fast_ones_share_one_tick() {
    let dir = tempfile::tempdir().unwrap();
    let writer = TraceWriter::create(&dir.path().join("run"), Meta::new("run")).unwrap();
    let sock = MarkerSocket::bind(None).unwrap();
    let rec = Recorder::start(
        writer,
        sensors(),
        StepSource::Socket(sock),
        None,
        Intervals::default(),
        ErrorCounts::default(),
    )
    .unwrap();
    let mut threads: Vec<(String, Vec<&str>)> = rec
        .sampler_threads()
        .into_iter()
        .map(|(n, runs)| (n.to_string(), runs.to_vec()))
        .collect();
    threads.sort();
    // RAPL (1 ms), NVML power (20 ms) and the CPU poll (100 ms) wake up once per tick
    // on one thread; the slow energy counter and the socket have their own.
    assert_eq!(
        threads,
        vec![
            ("markers".to_string(), vec!["markers"]),
            ("nvml-energy".to_string(), vec!["nvml-energy"]),
            ("sampler".to_string(), vec!["rapl", "nvml-power", "cpu"]),
        ]
    );
    std::thread::sleep(std::time::Duration::from_millis(50));
    let done = rec.stop().unwrap();
    // Each sampler's rows reached the writer: both GPUs' counters, the RAPL domain.
    assert_eq!(
        done.totals.gpu_j.keys().collect::<Vec<_>>(),
        vec!["gpu0", "gpu1"]
    );
    assert!(done.totals.cpu_j.contains_key("package-0 (powercap)"));
    assert!(done.meta.rows.get("gpu").is_some_and(|n| *n > 2));
}
