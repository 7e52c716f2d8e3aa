#!/usr/bin/env bash
# Builds the release binaries and strips them into .dev/ (git-ignored) for device-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eco2ai-probe -p eco2ai-analyze -p eco2ai-marker
mkdir -p .dev
for f in eco2ai-probe eco2ai-analyze libeco2ai_marker.so; do
    strip -o ".dev/$f" "target/release/$f"
done
ls -la .dev
