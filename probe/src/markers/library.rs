//! Finding the marker library this probe ships, and loading its functions as a user's
//! training loop would (the demo workload and the marker benchmark do).

use std::path::{Path, PathBuf};

pub const ENV_MARKER_LIB: &str = "ECO2AI_MARKER_LIB";
pub const LIB_NAME: &str = "libeco2ai_marker.so";

/// The marker library this probe ships: `--marker-lib`, else next to the executable,
/// else in `../lib` beside it.
pub fn find_marker_lib(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(LIB_NAME), dir.join("../lib").join(LIB_NAME)]
        .into_iter()
        .find(|p| p.is_file())
}

/// The marker functions of a loaded `libeco2ai_marker.so`.
pub struct MarkerFns {
    pub begin: extern "C" fn(u64),
    pub end: unsafe extern "C" fn(*const eco2ai_marker::Eco2aiStep),
    pub eval: extern "C" fn(u64, f64),
    // Read by the marker benchmark only (`bench-hooks`).
    #[cfg_attr(not(feature = "bench-hooks"), allow(dead_code))]
    pub lost: extern "C" fn() -> u64,
    /// `eco2ai_phase_begin/end`; None in a library from before phases.
    pub phase_begin: Option<PhaseFn>,
    pub phase_end: Option<PhaseFn>,
}

/// `void eco2ai_phase_begin(const char *name)` and its end twin.
pub type PhaseFn = unsafe extern "C" fn(*const std::ffi::c_char);

impl MarkerFns {
    /// Marks the begin (`begin`) or end of phase `name`, where the library has phases.
    pub fn phase(&self, begin: bool, name: &std::ffi::CStr) {
        let f = if begin {
            self.phase_begin
        } else {
            self.phase_end
        };
        if let Some(f) = f {
            // SAFETY: a NUL-terminated string that outlives the call.
            unsafe { f(name.as_ptr()) };
        }
    }
}

fn sym(lib: *mut std::ffi::c_void, name: &std::ffi::CStr) -> Option<*mut std::ffi::c_void> {
    // SAFETY: `lib` is a live handle from dlopen and `name` is NUL-terminated.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

impl MarkerFns {
    /// dlopen()s the library at `path`; None if it or a symbol is missing.
    pub fn load(path: &str) -> Option<MarkerFns> {
        let path = std::ffi::CString::new(path).ok()?;
        // SAFETY: dlopen with a NUL-terminated path; the handle is never closed, so the
        // symbols stay valid for the life of the process.
        let lib = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
        if lib.is_null() {
            return None;
        }
        let (b, e) = (
            sym(lib, c"eco2ai_step_begin")?,
            sym(lib, c"eco2ai_step_end")?,
        );
        let (v, l) = (sym(lib, c"eco2ai_eval")?, sym(lib, c"eco2ai_marker_lost")?);
        let phase = |name: &std::ffi::CStr| {
            // SAFETY: the symbol has exactly this C signature (eco2ai_marker.h).
            sym(lib, name)
                .map(|p| unsafe { std::mem::transmute::<*mut std::ffi::c_void, PhaseFn>(p) })
        };
        let (phase_begin, phase_end) = (phase(c"eco2ai_phase_begin"), phase(c"eco2ai_phase_end"));
        type End = unsafe extern "C" fn(*const eco2ai_marker::Eco2aiStep);
        // SAFETY: these symbols have exactly these C signatures (marker/include/eco2ai_marker.h).
        unsafe {
            Some(MarkerFns {
                begin: std::mem::transmute::<*mut std::ffi::c_void, extern "C" fn(u64)>(b),
                end: std::mem::transmute::<*mut std::ffi::c_void, End>(e),
                eval: std::mem::transmute::<*mut std::ffi::c_void, extern "C" fn(u64, f64)>(v),
                lost: std::mem::transmute::<*mut std::ffi::c_void, extern "C" fn() -> u64>(l),
                phase_begin,
                phase_end,
            })
        }
    }
}
