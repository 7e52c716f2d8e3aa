#!/usr/bin/env bash
# One call on a lent GPU machine (the device tool): NVML sampling, GPU energy counter vs
# power integral, per-step energies on real counters, live /metrics with a real GPU, and
# the Trainer callback on the GPU. Prepare here with `scripts/device-prepare.sh`, which
# puts stripped release binaries in .dev/ (carried); results land in $OUT.
set -uo pipefail
out=${OUT:-/tmp/device-check}
bin=$(realpath "${BIN:-.dev}")
work=/tmp/eco2ai-device
py=/opt/torch/.venv/bin/python3
[ -x "$py" ] || py=python3
mkdir -p "$out" "$work"
exec > >(tee "$out/log.txt") 2>&1
echo "== machine"; uname -r; ls -l /sys/kernel/btf/vmlinux
nvidia-smi --query-gpu=name,driver_version,power.limit,power.default_limit,clocks.max.sm --format=csv
"$bin/eco2ai-probe" info

echo "== matmul phases under the probe"
( sleep 25; curl -s -m 2 http://127.0.0.1:9091/metrics > "$work/metrics.txt" ) &
scrape=$!
"$bin/eco2ai-probe" record --out "$work/runs" --run-id matmul --project gpu-check --country US \
    -- "$py" scripts/gpu_matmul.py --seconds "${SECONDS_LOAD:-45}" --log "$work/matmul_steps.jsonl"
echo "probe exit $?"
wait "$scrape"  # a bare wait would also wait for the tee above
grep -E '^hf_training_(gpu_|energy_kwh|cpu_power|step_count|monitoring_errors)' "$work/metrics.txt" | head -30
"$bin/eco2ai-analyze" summary "$work/runs/matmul"
"$bin/eco2ai-analyze" summary --json "$work/runs/matmul" > "$work/summary.json"

echo "== Trainer on the GPU under Eco2AICallback"
ECO2AI_PROBE="$bin/eco2ai-probe" PYTHONPATH=python PYTHONUNBUFFERED=1 \
    timeout 240 "$py" scripts/gpu_trainer.py "$work/runs" 2>&1 | tail -25
for r in "$work"/runs/*/; do
    [ "$(basename "$r")" = matmul ] && continue
    "$bin/eco2ai-analyze" summary "$r"
done
tar czf "$out/runs.tgz" -C "$work" .
ls -la "$out"
