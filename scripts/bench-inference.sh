#!/usr/bin/env bash
# ViT-B/16 TransReID inference on the CPU: Burn (flex) and the reference PyTorch model on one
# machine, alternating case by case for ROUNDS rounds so that both see the same load; the table
# gives each side's median and best round (each round: the mean of ITERS embeddings after a
# warm-up) and the ratios of the medians and of the bests.
# Usage: scripts/bench-inference.sh <reference checkout> [ITERS=3] [ROUNDS=3] [cargo features]
set -euo pipefail
cd "$(dirname "$0")/.."
ref="$1"; iters="${2:-3}"; rounds="${3:-3}"; features="${4:-}"
out=$(mktemp /tmp/bench-inference.XXXXXX.jsonl)
bin=$(cargo bench --bench inference ${features:+--features "$features"} --no-run \
      --message-format=json 2>/dev/null \
      | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "inference" and m.get("executable"):
        print(m["executable"])')
for round in $(seq "$rounds"); do
  for stride in 16 12; do
    for batch in 1 16; do
      "$bin" --iters "$iters" --stride "$stride" --batch "$batch" | grep '^{' >> "$out"
      python3 scripts/bench_inference_torch.py "$ref" "$iters" --strides "$stride" \
          --batches "$batch" 2>/dev/null | grep '^{' >> "$out"
    done
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault((r["stride"], r["batch"]), {}).setdefault(r["impl"], []).append(r["images_per_second"])
print("| stride | batch | impl | images/s (median) | best | vs PyTorch (medians) | (bests) |")
print("|---|---|---|---|---|---|---|")
for (stride, batch), impls in sorted(runs.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
    base, base_best = statistics.median(impls["pytorch"]), max(impls["pytorch"])
    for impl, values in sorted(impls.items()):
        median, best = statistics.median(values), max(values)
        print(f"| {stride} | {batch} | {impl} | {median:.2f} | {best:.2f} | {median / base:.2f}x "
              f"| {best / base_best:.2f}x |")
PY
echo "raw rounds: $out"
