use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::fake::{FakeGpus, FakeScript, UPDATE_NS};
use super::*;

fn manual_clock() -> (Arc<AtomicI64>, fake::Clock) {
    let t = Arc::new(AtomicI64::new(0));
    let t2 = t.clone();
    (t, Arc::new(move || t2.load(Ordering::SeqCst)))
}

#[test]
fn power_changes_are_flagged_at_each_sensor_update() {
    let (t, clock) = manual_clock();
    let backend = Arc::new(FakeGpus::new(1, clock, FakeScript::default()));
    let mut s = GpuPowerSampler::new(backend, vec![0], 20_000_000, 5, ErrorCounts::default());
    let mut rows = Vec::new();
    for i in 0..50 {
        t.store(i * 20_000_000, Ordering::SeqCst);
        s.read(i * 20_000_000, &mut rows);
    }
    let changed = rows
        .iter()
        .filter(|r| r.power_changed == Some(true))
        .count();
    // 1 s at 20 ms polls sees every one of the ~9 value changes after the first.
    assert_eq!(changed, 9);
    assert_eq!(rows.iter().filter(|r| r.temp_c.is_some()).count(), 10);
}

#[test]
fn errors_mid_run_are_counted_and_a_counter_reset_never_goes_negative() {
    let (t, clock) = manual_clock();
    let script = FakeScript {
        power_errors: vec![(300_000_000, 500_000_000)],
        energy_errors: vec![(700_000_000, 800_000_000)],
        energy_reset_at_ns: Some(1_500_000_000),
    };
    let backend: Arc<dyn GpuBackend> = Arc::new(FakeGpus::new(2, clock, script));
    let errors = ErrorCounts::default();
    let mut power =
        GpuPowerSampler::new(backend.clone(), vec![0, 1], 10_000_000, 5, errors.clone());
    let mut energy = GpuEnergySampler::new(backend, vec![0, 1], 50_000_000, errors.clone());
    let (mut prow, mut erow) = (Vec::new(), Vec::new());
    let end = 3_000_000_000;
    let mut now = 0;
    while now <= end {
        t.store(now, Ordering::SeqCst);
        power.read(now, &mut prow);
        if now % 50_000_000 == 0 {
            energy.read(now, &mut erow);
        }
        now += 10_000_000;
    }
    let snap = errors.snapshot();
    assert_eq!(snap["nvml:power:transient"], 2 * 20, "{snap:?}");
    assert_eq!(snap["nvml:energy:transient"], 2 * 2 + 2, "{snap:?}");
    for gpu in 0..2 {
        let e: Vec<u64> = erow
            .iter()
            .filter(|r| r.gpu == gpu)
            .filter_map(|r| r.energy_mj)
            .collect();
        assert!(
            e.windows(2).all(|w| w[0] <= w[1]),
            "gpu{gpu} energy not monotonic: {e:?}"
        );
        // The reset loses at most the one update window it straddles, never more.
        let truth = FakeGpus::true_energy_mj(gpu, 0, end);
        let got = *e.last().unwrap() as f64;
        let max_level = 700_000.0 * UPDATE_NS as f64 / 1e12;
        assert!(
            got <= truth + 1.0 && truth - got <= 2.0 * max_level * 1000.0,
            "gpu{gpu}: {got} vs {truth}"
        );
    }
    assert!(
        prow.iter()
            .all(|r| r.power_mw.is_some() || (300..500).contains(&(r.ts_ns / 1_000_000)))
    );
}

#[test]
fn gpu_selection_honours_flag_and_cuda_visible_devices() {
    let all: Vec<GpuInfo> = (0..4)
        .map(|i| GpuInfo {
            index: i,
            uuid: format!("GPU-abc{i}"),
            ..Default::default()
        })
        .collect();
    let idx = |v: Vec<GpuInfo>| v.into_iter().map(|g| g.index).collect::<Vec<_>>();
    assert_eq!(idx(select_gpus(&all, None, None)), vec![0, 1, 2, 3]);
    assert_eq!(idx(select_gpus(&all, Some(&[1, 3]), None)), vec![1, 3]);
    assert_eq!(idx(select_gpus(&all, None, Some("2,0"))), vec![0, 2]);
    assert_eq!(idx(select_gpus(&all, None, Some("GPU-abc3"))), vec![3]);
    assert_eq!(
        idx(select_gpus(&all, Some(&[1]), Some("2"))),
        Vec::<u32>::new()
    );
}

/// Thread CPU time of `f`, in ns.
fn thread_cpu_of(f: impl FnOnce()) -> i64 {
    let now = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    };
    let t0 = now();
    f();
    now() - t0
}

#[test]
fn a_costed_fake_burns_the_cpu_of_the_real_calls() {
    use super::fake::CallCost;
    assert_eq!(CallCost::parse("h200"), Some(CallCost::H200));
    assert_eq!(CallCost::parse("none"), Some(CallCost::default()));
    assert_eq!(CallCost::parse("h100x"), None);
    let (_, clock) = manual_clock();
    let fake = FakeGpus::new(2, clock, FakeScript::default()).with_cost(CallCost::H200);
    let energy_ns = thread_cpu_of(|| {
        let _ = fake.energy_mj(1);
    });
    assert!(energy_ns >= CallCost::H200.energy_ns, "{energy_ns} ns");
    let aux_ns = thread_cpu_of(|| {
        let _ = fake.aux(0, &mut |_, _| {});
    });
    assert!(aux_ns >= 13_300, "{aux_ns} ns");
    // Without a cost the fake is free (the tests' default).
    let (_, clock) = manual_clock();
    let free = FakeGpus::new(1, clock, FakeScript::default());
    let free_ns = thread_cpu_of(|| {
        let _ = free.energy_mj(0);
    });
    assert!(free_ns < CallCost::H200.energy_ns, "{free_ns} ns");
}
