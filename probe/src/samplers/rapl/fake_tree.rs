//! A fake powercap tree in a directory, with a "driver" that advances its counters:
//! for tests and for benchmarks on machines without RAPL. Values are written with one
//! fixed-width `pwrite` so a concurrent reader never sees a half-written number.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One zone: directory name (`intel-rapl:0`), `name` file, wrap range, power.
#[derive(Debug, Clone)]
pub struct FakeZone {
    pub zone: String,
    pub name: String,
    pub max_range_uj: u64,
    pub watts: f64,
}

pub struct FakePowercap {
    pub root: PathBuf,
    zones: Vec<FakeZone>,
}

impl FakePowercap {
    pub fn create(root: &Path, zones: Vec<FakeZone>) -> std::io::Result<FakePowercap> {
        for z in &zones {
            let dir = root.join(&z.zone);
            fs::create_dir_all(&dir)?;
            fs::write(dir.join("name"), format!("{}\n", z.name))?;
            fs::write(
                dir.join("max_energy_range_uj"),
                format!("{}\n", z.max_range_uj),
            )?;
        }
        let tree = FakePowercap {
            root: root.to_path_buf(),
            zones,
        };
        for z in &tree.zones {
            tree.set(&z.zone, 0)?;
        }
        Ok(tree)
    }

    /// The standard layout of a one-socket Intel server: package, core, uncore, dram, psys.
    pub fn intel_one_socket(root: &Path) -> std::io::Result<FakePowercap> {
        let z = |zone: &str, name: &str, watts: f64| FakeZone {
            zone: zone.into(),
            name: name.into(),
            max_range_uj: 262_143_328_850,
            watts,
        };
        FakePowercap::create(
            root,
            vec![
                z("intel-rapl:0", "package-0", 120.0),
                z("intel-rapl:0:0", "core", 80.0),
                z("intel-rapl:0:1", "uncore", 5.0),
                z("intel-rapl:0:2", "dram", 15.0),
                z("intel-rapl:1", "psys", 160.0),
            ],
        )
    }

    pub fn set(&self, zone: &str, value_uj: u64) -> std::io::Result<()> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(zone).join("energy_uj"))?;
        f.write_all_at(format!("{value_uj:020}\n").as_bytes(), 0)
    }

    pub fn remove(&self, zone: &str) -> std::io::Result<()> {
        fs::remove_dir_all(self.root.join(zone))
    }

    /// Advances every counter at its power every `period` until the handle is dropped.
    pub fn spawn_driver(&self, period: Duration) -> FakeDriver {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let tree = FakePowercap {
            root: self.root.clone(),
            zones: self.zones.clone(),
        };
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            while !s2.load(Ordering::Relaxed) {
                let t = start.elapsed().as_secs_f64();
                for z in &tree.zones {
                    let uj = (z.watts * t * 1e6) as u64 % (z.max_range_uj + 1);
                    // A zone removed by the test simply stops being written.
                    let _ = tree.set(&z.zone, uj);
                }
                std::thread::sleep(period);
            }
        });
        FakeDriver {
            stop,
            thread: Some(thread),
        }
    }
}

pub struct FakeDriver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FakeDriver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
