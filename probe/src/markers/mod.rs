//! Steps and evaluations from the marker library: where the library is (`library`),
//! the Unix-socket fallback with its sender check (`transport`), and the begin/end
//! pairing with event validation shared by the socket and the eBPF paths (`pairing`), and
//! the named-phase spans of each process (`phases`).

mod library;
mod pairing;
mod phases;
mod transport;

pub use library::{ENV_MARKER_LIB, LIB_NAME, find_marker_lib};
// dlopen()ed marker functions: the demo's, and the marker benchmark's through the
// `bench-hooks` feature; not part of the probe's API otherwise.
#[cfg(not(feature = "bench-hooks"))]
pub(crate) use library::MarkerFns;
#[cfg(feature = "bench-hooks")]
pub use library::{MarkerFns, PhaseFn};
pub use pairing::{
    Counts, FUTURE_SLACK_NS, HOLD_NS, MAX_EVENT_COUNT, MAX_HELD_STEPS, MAX_OPEN_STEPS, Pairing,
    mark_probe_start,
};
pub use phases::{MAX_PHASE_DEPTH, MAX_PHASE_PIDS};
pub use transport::{MarkerSocket, SOCKET_FILE, listen};
