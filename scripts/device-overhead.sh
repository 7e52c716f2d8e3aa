#!/usr/bin/env bash
# Where the probe's CPU goes on a GPU machine: the CPU cost of each NVML call (pynvml),
# then the probe's own CPU share under the same bf16 load in several configurations.
# .dev/ holds the binaries to compare (.dev/old/ an earlier build, if any).
set -uo pipefail
py=/opt/torch/.venv/bin/python3
[ -x "$py" ] || py=python3
echo "== NVML call cost (pynvml, 300 calls each)"
"$py" - <<'PY'
import time, pynvml as n
n.nvmlInit(); h = n.nvmlDeviceGetHandleByIndex(0)
calls = {
    "GetHandleByIndex": lambda: n.nvmlDeviceGetHandleByIndex(0),
    "GetPowerUsage": lambda: n.nvmlDeviceGetPowerUsage(h),
    "GetFieldValues(instant)": lambda: n.nvmlDeviceGetFieldValues(h, [186]),
    "GetFieldValues(avg,instant)": lambda: n.nvmlDeviceGetFieldValues(h, [185, 186]),
    "GetTotalEnergyConsumption": lambda: n.nvmlDeviceGetTotalEnergyConsumption(h),
    "GetUtilizationRates": lambda: n.nvmlDeviceGetUtilizationRates(h),
    "GetMemoryInfo": lambda: n.nvmlDeviceGetMemoryInfo(h),
    "GetTemperature": lambda: n.nvmlDeviceGetTemperature(h, 0),
    "GetClockInfo(SM)": lambda: n.nvmlDeviceGetClockInfo(h, 1),
}
for name, f in calls.items():
    f()
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(300):
        f()
    c, w = time.process_time() - c0, time.perf_counter() - w0
    print(f"{name:30s} cpu {c / 300 * 1e6:8.1f} us  wall {w / 300 * 1e6:8.1f} us")
PY
run() {  # name, binary dir, probe args...
    local name=$1 dir=$2; shift 2
    "$dir/eco2ai-probe" record --out /tmp/ov --run-id "$name" --project ov "$@" \
        -- "$py" scripts/gpu_matmul.py --seconds 12 > /dev/null 2>&1
    "$py" - "/tmp/ov/$name/meta.json" "$name" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); s = (m["end_ns"] - m["start_ns"]) / 1e9
print(f"{sys.argv[2]:28s} probe {100 * m['probe_cpu_ns'] / 1e9 / s:6.2f}% of a core over {s:.1f} s, "
      f"peak RSS {m['probe_peak_rss_kb'] / 1024:.1f} MB, rows {m['rows']}")
PY
}
rm -rf /tmp/ov
echo "== probe CPU under load"
[ -d .dev/old ] && run old-build .dev/old
run default .dev
run no-ebpf .dev --no-ebpf
run nvml-100ms .dev --nvml-interval 100ms
run no-metrics .dev --no-metrics
run energy-1s .dev --nvml-energy-interval 1s
run energy-1s-no-ebpf .dev --nvml-energy-interval 1s --no-ebpf
