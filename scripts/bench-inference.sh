#!/usr/bin/env bash
# ViT-B/16 TransReID inference on the CPU: Burn (flex, ndarray) and the reference PyTorch model
# in one run on one machine. Usage: scripts/bench-inference.sh <reference checkout> [iters]
set -euo pipefail
cd "$(dirname "$0")/.."
ref="$1"; iters="${2:-3}"
cargo bench --bench inference --features ndarray -- --iters "$iters" | grep '^{' > /tmp/bench-inference.jsonl
python3 scripts/bench_inference_torch.py "$ref" "$iters" 2>/dev/null | grep '^{' >> /tmp/bench-inference.jsonl
python3 - <<'PY'
import json
rows = [json.loads(l) for l in open("/tmp/bench-inference.jsonl")]
torch = {(r["stride"], r["batch"]): r["images_per_second"] for r in rows if r["impl"] == "pytorch"}
print("| impl | stride | batch | images/s | vs PyTorch |\n|---|---|---|---|---|")
for r in rows:
    base = torch.get((r["stride"], r["batch"]))
    ratio = f'{r["images_per_second"] / base:.2f}x' if base else "-"
    print(f'| {r["impl"]} | {r["stride"]} | {r["batch"]} | {r["images_per_second"]:.2f} | {ratio} |')
PY
