#!/usr/bin/env bash
# ViT-B/16 TransReID training steps (256x128, JPM + camera SIE, stride 16 and 12) on the CPU:
# Burn (flex) and the reference PyTorch implementation, one process per case so that each
# peak-memory figure is its own. Batch 64 (the configurations' IMS_PER_BATCH) by default.
# Usage: scripts/bench-train.sh <reference checkout> [steps] [batch]
set -euo pipefail
cd "$(dirname "$0")/.."
ref="$1"; steps="${2:-1}"; batch="${3:-64}"
cargo build --release --bin transreid
out=/tmp/bench-train.jsonl; : > "$out"
for stride in 16 12; do
  cargo run --release --quiet --bin transreid -- bench train --device flex --stride "$stride" --batch "$batch" \
    --steps "$steps" | grep '^{' >> "$out"
  python3 scripts/bench_train_torch.py "$ref" --strides "$stride" --batch "$batch" \
    --steps "$steps" 2>/dev/null | grep '^{' >> "$out"
done
python3 scripts/bench_table.py "$out"
