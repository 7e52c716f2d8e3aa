#!/usr/bin/env bash
# NVML validation on a machine with an NVIDIA GPU (the device tool lends one to some
# tasks): 60 s of bf16 matmuls under the probe, then the figures issue 2 asks for:
# the NVML update period seen, counter energy vs the integral of power, probe CPU.
# Build here first (cargo build --release -p eco2ai-probe -p eco2ai-analyze -p eco2ai-marker)
# and carry target/release/{eco2ai-probe,eco2ai-analyze,libeco2ai_marker.so}.
set -euo pipefail
out=${OUT:-/tmp/gpu-check}
bin=${BIN:-target/release}
py=/opt/torch/.venv/bin/python3
[ -x "$py" ] || py=python3
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv > "$out/gpu.csv" || true
"$bin/eco2ai-probe" info > "$out/info.txt" 2>&1
"$bin/eco2ai-probe" record --out "$out/runs" --run-id matmul --project gpu-check \
    -- "$py" scripts/gpu_matmul.py --seconds "${SECONDS_LOAD:-60}" 2> "$out/probe.log"
"$bin/eco2ai-analyze" summary --json "$out/runs/matmul" > "$out/summary.json"
"$bin/eco2ai-analyze" summary "$out/runs/matmul" | tee "$out/summary.txt"
"$py" - "$out/runs/matmul/meta.json" <<'PY' | tee "$out/probe_cpu.txt"
import json, sys
m = json.load(open(sys.argv[1]))
secs = (m["end_ns"] - m["start_ns"]) / 1e9
print(f"probe CPU {m['probe_cpu_ns'] / 1e9:.3f} s over {secs:.1f} s = {100 * m['probe_cpu_ns'] / 1e9 / secs:.3f}% of one core; "
      f"peak RSS {m['probe_peak_rss_kb'] / 1024:.1f} MB; rows {m['rows']}; errors {m['sensor_errors']}")
PY
