"""The step markers of libeco2ai_marker.so, through ctypes. Under eco2ai-probe each call
is seen by an eBPF uprobe (or sent over the probe's socket) and stamped on the clock of
the power samples; outside a recording a call costs a few nanoseconds plus ctypes."""

import ctypes
import math
import os

ENV_MARKER_LIB = "ECO2AI_MARKER_LIB"
NAN = float("nan")


class Step(ctypes.Structure):
    """`struct eco2ai_step` of marker/include/eco2ai_marker.h: Python's one statement of
    it (the probe's fixtures load it from here; marker/tests/layout.rs checks it against
    the C compiler's layout and eco2ai_probe_common's)."""

    _fields_ = [
        ("step", ctypes.c_uint64),
        ("samples", ctypes.c_uint64),
        ("tokens", ctypes.c_uint64),
        ("loss", ctypes.c_double),
        ("lr", ctypes.c_double),
        ("epoch", ctypes.c_double),
    ]


_Step = Step


def _f(x):
    """A float for the C side; None and non-numbers become NaN (unknown)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return NAN
    return x if math.isfinite(x) else NAN


class Markers:
    def __init__(self, lib_path):
        if not lib_path or not os.path.exists(lib_path):
            raise FileNotFoundError(f"marker library not found: {lib_path!r}")
        self.path = lib_path
        lib = ctypes.CDLL(lib_path)
        lib.eco2ai_step_begin.argtypes = [ctypes.c_uint64]
        lib.eco2ai_step_end.argtypes = [ctypes.POINTER(_Step)]
        lib.eco2ai_eval.argtypes = [ctypes.c_uint64, ctypes.c_double]
        lib.eco2ai_step_log.argtypes = [ctypes.c_uint64, ctypes.c_double, ctypes.c_double]
        lib.eco2ai_marker_lost.restype = ctypes.c_uint64
        # eco2ai_step_sync came with multi-node jobs: an older library lacks it.
        self._sync = getattr(lib, "eco2ai_step_sync", None)
        if self._sync is not None:
            self._sync.argtypes = []
        self._lib = lib
        # The library may have been loaded for an earlier recording in this process.
        lib.eco2ai_marker_reconnect()

    @classmethod
    def from_env(cls):
        return cls(os.environ.get(ENV_MARKER_LIB))

    def begin(self, step):
        self._lib.eco2ai_step_begin(int(step))

    def end(self, step, samples=0, tokens=0, loss=None, lr=None, epoch=None):
        s = _Step(int(step), int(samples or 0), int(tokens or 0), _f(loss), _f(lr), _f(epoch))
        self._lib.eco2ai_step_end(ctypes.byref(s))

    def sync(self):
        """This rank's own compute of the current step ended; it now waits on the step's
        collective. The probe keeps the last mark inside the step as its sync_ns."""
        if self._sync is not None:
            self._sync()

    @property
    def has_sync(self):
        return self._sync is not None

    def log(self, step, loss=None, lr=None):
        self._lib.eco2ai_step_log(int(step), _f(loss), _f(lr))

    def eval(self, step, eval_loss):
        self._lib.eco2ai_eval(int(step), _f(eval_loss))

    def lost(self):
        return int(self._lib.eco2ai_marker_lost())
