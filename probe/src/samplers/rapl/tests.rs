use std::time::Duration;

use super::fake_tree::{FakePowercap, FakeZone};
use super::*;

fn zone(zone: &str, name: &str, max: u64) -> FakeZone {
    FakeZone {
        zone: zone.into(),
        name: name.into(),
        max_range_uj: max,
        watts: 50.0,
    }
}

fn cfg(root: &std::path::Path) -> RaplConfig {
    RaplConfig {
        powercap_root: root.to_path_buf(),
        perf_pmu: root.join("no-perf-pmu"),
        check_window: Duration::from_millis(30),
    }
}

#[test]
fn counters_that_do_not_move_are_not_used() {
    let dir = tempfile::tempdir().unwrap();
    FakePowercap::create(dir.path(), vec![zone("intel-rapl:0", "package-0", 1000)]).unwrap();
    let (chosen, status) = discover(&cfg(dir.path()));
    assert!(chosen.is_empty());
    let pkg = status.iter().find(|s| s.name == "package-0").unwrap();
    assert!(!pkg.used && pkg.note.contains("not moving"), "{pkg:?}");
    assert!(
        status
            .iter()
            .any(|s| s.kind == "perf" && s.note.contains("no perf power PMU"))
    );
}

#[test]
fn wraps_are_unwrapped_and_a_vanished_domain_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let max = 10_000_000;
    let tree = FakePowercap::create(
        dir.path(),
        vec![
            zone("intel-rapl:0", "package-0", max),
            zone("intel-rapl:0:0", "dram", max),
        ],
    )
    .unwrap();
    let chosen = {
        let _driver = tree.spawn_driver(Duration::from_millis(1));
        discover(&cfg(dir.path())).0
    };
    let names: Vec<String> = chosen.iter().map(|r| r.domain().name.to_string()).collect();
    assert_eq!(names, vec!["package-0", "dram-0"]);

    let errors = ErrorCounts::default();
    let mut s = RaplSampler::new(chosen, 1_000_000, errors.clone());
    let mut rows = Vec::new();
    // (package, dram): 9.0 -> 9.9 (+0.9), wrap to 0.4 (+0.1 + 0.4), flat, 2.0 (+1.6)
    let script = [
        (9_000_000, Some(1_000_000)),
        (9_900_000, Some(1_450_000)),
        (400_000, Some(1_700_000)),
        (400_000, None),
        (2_000_000, None),
    ];
    for (i, (pkg, dram)) in script.into_iter().enumerate() {
        tree.set("intel-rapl:0", pkg).unwrap();
        match dram {
            Some(v) => tree.set("intel-rapl:0:0", v).unwrap(),
            None if i == 3 => tree.remove("intel-rapl:0:0").unwrap(),
            None => {}
        }
        s.read(i as i64, &mut rows);
    }
    let pkg: Vec<(u64, bool)> = rows
        .iter()
        .filter(|r| &*r.domain == "package-0")
        .map(|r| (r.energy_uj.unwrap(), r.energy_changed.unwrap()))
        .collect();
    assert_eq!(
        pkg,
        vec![
            (0, false),
            (900_000, true),
            (1_400_000, true),
            (1_400_000, false),
            (3_000_000, true)
        ]
    );

    // The vanished zone is noticed within one recheck period, counted once, dropped.
    for i in 0..300 {
        s.read(10 + i, &mut rows);
    }
    let dram: Vec<u64> = rows
        .iter()
        .filter(|r| &*r.domain == "dram-0")
        .map(|r| r.energy_uj.unwrap())
        .collect();
    assert_eq!(dram[..3], [0, 450_000, 700_000]);
    assert!(dram[3..].iter().all(|e| *e == 700_000));
    assert!(dram.len() < 256 + 3, "{} dram rows", dram.len());
    assert_eq!(
        errors.snapshot().get("powercap:dram-0:gone"),
        Some(&1),
        "{:?}",
        errors.snapshot()
    );
    assert!(rows.iter().all(|r| r.source == "powercap"));
    assert_eq!(
        rows.iter().filter(|r| &*r.domain == "package-0").count(),
        305
    );
}
