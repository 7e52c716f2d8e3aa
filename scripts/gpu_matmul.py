"""GPU check workload: bf16 matrix products in phases of different step lengths, each step
marked through the marker library (when the probe announces it).

Phases (steps of N products of SIZE^3): long steps (~100 ms on an H100/H200, about one NVML
energy-counter period), short steps (~10 ms, ten times shorter than it), and long steps
with idle gaps between them, so per-step attribution can be checked on real counters:
identical steps must get near-identical energies, and the gaps must not leak into steps."""
import argparse
import ctypes
import json
import os
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=45, help="total load time over all phases")
ap.add_argument("--size", type=int, default=8192)
ap.add_argument("--long", type=int, default=70, help="products per long step")
ap.add_argument("--short", type=int, default=7, help="products per short step")
ap.add_argument("--log", default=None, help="JSON lines of each step's wall times, for comparison")
a = ap.parse_args()

lib = ctypes.CDLL(os.environ["ECO2AI_MARKER_LIB"]) if "ECO2AI_MARKER_LIB" in os.environ else None
x = torch.randn(a.size, a.size, device="cuda", dtype=torch.bfloat16)
y = torch.randn(a.size, a.size, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize()
log = open(a.log, "w") if a.log else None
step = 0


def run_step(products, phase):
    global step
    t0 = time.monotonic_ns()
    if lib:
        lib.eco2ai_step_begin(ctypes.c_uint64(step))
    for _ in range(products):
        x @ y
    torch.cuda.synchronize()
    if lib:
        s = (ctypes.c_uint64 * 3)(step, 0, 0)
        f = (ctypes.c_double * 3)(float("nan"), float("nan"), float("nan"))
        lib.eco2ai_step_end(ctypes.create_string_buffer(bytes(s) + bytes(f)))
    if log:
        log.write(json.dumps({"step": step, "phase": phase, "products": products,
                              "begin_ns": t0, "end_ns": time.monotonic_ns()}) + "\n")
    step += 1


time.sleep(2)  # idle baseline before the load
third = a.seconds / 3
for phase, products, gap_s in (("long", a.long, 0.0), ("short", a.short, 0.0), ("gapped", a.long, 0.3)):
    end = time.monotonic() + third
    while time.monotonic() < end:
        run_step(products, phase)
        if gap_s:
            time.sleep(gap_s)
time.sleep(2)  # and after
print(f"{step} steps of {a.long}/{a.short} {a.size}^3 bf16 products")
