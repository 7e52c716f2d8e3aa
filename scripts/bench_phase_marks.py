"""The cost of a phase mark (eco2ai_phase_begin + eco2ai_phase_end) through ctypes.

    python3 scripts/bench_phase_marks.py N [LIB]

LIB: the marker library (default $ECO2AI_MARKER_LIB, which `eco2ai-probe record` sets):
run it plain for the cost outside a recording, and as the command of
`eco2ai-probe record [--no-ebpf] --` for the uprobe or the socket path. Prints the time
per mark beside a bare ctypes call (eco2ai_marker_lost), on stderr.
"""
import ctypes
import os
import sys
import time

n = int(sys.argv[1])
lib = ctypes.CDLL(sys.argv[2] if len(sys.argv) > 2 else os.environ["ECO2AI_MARKER_LIB"])
lib.eco2ai_phase_begin.argtypes = [ctypes.c_char_p]
lib.eco2ai_phase_end.argtypes = [ctypes.c_char_p]
lib.eco2ai_marker_lost.restype = ctypes.c_uint64
begin, end, bare = lib.eco2ai_phase_begin, lib.eco2ai_phase_end, lib.eco2ai_marker_lost
name = b"eval"

t = time.perf_counter_ns()
for _ in range(n):
    bare()
bare_ns = (time.perf_counter_ns() - t) / n
t = time.perf_counter_ns()
for _ in range(n):
    begin(name)
    end(name)
mark_ns = (time.perf_counter_ns() - t) / (2 * n)
print(f"phase mark {mark_ns:.0f} ns (bare ctypes call {bare_ns:.0f} ns), lost {bare()}", file=sys.stderr)
