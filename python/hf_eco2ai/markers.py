"""The step markers of libeco2ai_marker.so, through ctypes. Under eco2ai-probe each call
is seen by an eBPF uprobe (or sent over the probe's socket) and stamped on the clock of
the power samples; outside a recording a call costs a few nanoseconds plus ctypes."""

import contextlib
import ctypes
import logging
import math
import os

ENV_MARKER_LIB = "ECO2AI_MARKER_LIB"
NAN = float("nan")
# trace::phase: a name is 1..32 bytes of [A-Za-z0-9_.:-]; spans nest at most 8 deep per
# process (the probe refuses a deeper begin, so Python does not send one).
PHASE_NAME_MAX_BYTES = 32
PHASE_MAX_DEPTH = 8
PHASE_TRAIN = "train"
_PHASE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")

log = logging.getLogger("hf_eco2ai")


def _name_bytes(name):
    if isinstance(name, bytes):
        return name
    if isinstance(name, str):
        return name.encode("utf-8")
    raise ValueError(f"a phase name is a str, not {type(name).__name__}")


def valid_phase_name(name):
    """Whether `name` is a phase name as trace::phase::valid_name says: 1 to 32 bytes of
    [A-Za-z0-9_.:-]."""
    try:
        raw = _name_bytes(name)
    except ValueError:
        return False
    return 0 < len(raw) <= PHASE_NAME_MAX_BYTES and all(b in _PHASE_BYTES for b in raw)


def clean_phase_name(name):
    """`name` made a phase name as the marker library cleans it (trace::phase::clean_name):
    cut at 32 bytes, other bytes become '_'. ValueError when nothing is left."""
    raw = _name_bytes(name)[:PHASE_NAME_MAX_BYTES]
    if not raw:
        raise ValueError("a phase name cannot be empty")
    return bytes(b if b in _PHASE_BYTES else ord("_") for b in raw).decode("ascii")


def check_phase_name(name):
    """`name` if it is a phase name, else ValueError saying the rule."""
    if not valid_phase_name(name):
        raise ValueError(f"bad phase name {name!r}: 1 to 32 bytes of letters, digits and _ . : -")
    return name.decode("ascii") if isinstance(name, bytes) else name


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
        # eco2ai_phase_begin/eco2ai_phase_end came with phases: an older library lacks them.
        self._phase_begin = getattr(lib, "eco2ai_phase_begin", None)
        self._phase_end = getattr(lib, "eco2ai_phase_end", None)
        if self._phase_begin is None or self._phase_end is None:
            self._phase_begin = self._phase_end = None
        else:
            self._phase_begin.argtypes = [ctypes.c_char_p]
            self._phase_end.argtypes = [ctypes.c_char_p]
        self._said_no_phases = False
        # This process's open spans, innermost last: what the probe's stack holds.
        self.phases_open = []
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

    @property
    def has_phases(self):
        return self._phase_begin is not None

    @property
    def phase_now(self):
        """The innermost open phase of this process, None when training (`train`)."""
        return self.phases_open[-1] if self.phases_open else None

    @property
    def in_train(self):
        """Whether a step begun now is a training step: no span open, or the innermost
        named "train" (trace::phase::TRAIN, what samples/kWh counts)."""
        return self.phase_now in (None, PHASE_TRAIN)

    def phase_begin(self, name, clean=False):
        """Opens a span of phase `name`: steps begun until phase_end(name) belong to it.
        A bad name raises ValueError, or with `clean` is made a name as the library
        would. Returns the name used, or None when not opened (nested 8 deep)."""
        name = clean_phase_name(name) if clean else check_phase_name(name)
        if len(self.phases_open) >= PHASE_MAX_DEPTH:
            if not clean:
                raise ValueError(f"phase {name!r}: phases nest at most {PHASE_MAX_DEPTH} deep ({self.phases_open})")
            log.warning("hf-eco2ai: phase %r not marked: already %d open %s", name, PHASE_MAX_DEPTH, self.phases_open)
            return None
        self.phases_open.append(name)
        if self._phases_marked():
            self._phase_begin(name.encode("ascii"))
        return name

    def phase_end(self, name, clean=False):
        """Closes the innermost open span of phase `name`. One that is not open raises
        ValueError, or with `clean` is ignored (False returned)."""
        name = clean_phase_name(name) if clean else check_phase_name(name)
        if name not in self.phases_open:
            if not clean:
                raise ValueError(f"phase {name!r} is not open (open: {self.phases_open})")
            return False
        i = len(self.phases_open) - 1 - self.phases_open[::-1].index(name)
        del self.phases_open[i]
        if self._phases_marked():
            self._phase_end(name.encode("ascii"))
        return True

    @contextlib.contextmanager
    def phase(self, name, clean=False):
        """`with markers.phase("eval"):` the span ends however the block ends."""
        opened = self.phase_begin(name, clean)
        try:
            yield opened
        finally:
            if opened is not None:
                self.phase_end(opened, clean)

    def _phases_marked(self):
        if self._phase_begin is not None:
            return True
        if not self._said_no_phases:
            self._said_no_phases = True
            log.warning("hf-eco2ai: the marker library %s predates phases (no eco2ai_phase_begin): "
                        "phases are not marked (steps in them are recorded as training steps)", self.path)
        return False

    def log(self, step, loss=None, lr=None):
        self._lib.eco2ai_step_log(int(step), _f(loss), _f(lr))

    def eval(self, step, eval_loss):
        self._lib.eco2ai_eval(int(step), _f(eval_loss))

    def lost(self):
        return int(self._lib.eco2ai_marker_lost())
