//! Sensor samplers. Each reads one kind of sensor behind a trait with a fake, and
//! stamps rows with CLOCK_MONOTONIC ns.

pub mod counter;
pub mod cpu;
pub mod errors;
pub mod estimate;
pub mod gpu;
pub mod procfs;
pub mod rapl;
pub mod spawn;
pub mod tick;
