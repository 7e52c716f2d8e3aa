//! The namespace cluster's end-to-end tests live in `tests/`; this library only says
//! where the harness is. The harness itself is `scripts/cluster/cluster.sh` (also
//! `cargo xtask cluster up|down|status|exec`): N nodes as network namespaces with their
//! own hostnames on a bridge, munged, slurmctld in node 0 and one slurmd per node.

use std::path::{Path, PathBuf};

/// The repository root (this crate lives one level below it).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The harness script.
pub fn script() -> PathBuf {
    repo().join("scripts/cluster/cluster.sh")
}

/// A private /24 (`10.77.X`) for a cluster, chosen from `seed` (a pid) among those no
/// interface on this machine uses (`in_use` lists the third octets taken), so that test
/// binaries running at once get different ones.
pub fn pick_subnet(seed: u32, in_use: &[u8]) -> Option<String> {
    let start = 20 + (seed % 200);
    (0..200)
        .map(|k| 20 + (start - 20 + k) % 200)
        .find(|x| !in_use.contains(&(*x as u8)))
        .map(|x| format!("10.77.{x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_skips_those_in_use() {
        assert_eq!(pick_subnet(0, &[]).as_deref(), Some("10.77.20"));
        assert_eq!(pick_subnet(0, &[20, 21]).as_deref(), Some("10.77.22"));
        assert_eq!(pick_subnet(199, &[219]).as_deref(), Some("10.77.20"));
        let all: Vec<u8> = (20..220).collect();
        assert_eq!(pick_subnet(5, &all), None);
    }
}
