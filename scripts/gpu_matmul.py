"""GPU check workload: bf16 matrix products for --seconds, each step of --per-step
products marked through the marker library (when the probe announces it)."""
import argparse
import ctypes
import os
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=60)
ap.add_argument("--size", type=int, default=8192)
ap.add_argument("--per-step", type=int, default=10)
a = ap.parse_args()

lib = ctypes.CDLL(os.environ["ECO2AI_MARKER_LIB"]) if "ECO2AI_MARKER_LIB" in os.environ else None
x = torch.randn(a.size, a.size, device="cuda", dtype=torch.bfloat16)
y = torch.randn(a.size, a.size, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize()
time.sleep(2)  # idle baseline before the load
end = time.monotonic() + a.seconds
step = 0
while time.monotonic() < end:
    if lib:
        lib.eco2ai_step_begin(ctypes.c_uint64(step))
    for _ in range(a.per_step):
        z = x @ y
    torch.cuda.synchronize()
    if lib:
        s = (ctypes.c_uint64 * 3)(step, 0, 0)
        f = (ctypes.c_double * 3)(float("nan"), float("nan"), float("nan"))
        buf = ctypes.create_string_buffer(bytes(s) + bytes(f))
        lib.eco2ai_step_end(buf)
    step += 1
time.sleep(2)  # and after
print(f"{step} steps of {a.per_step} {a.size}^3 bf16 products")
