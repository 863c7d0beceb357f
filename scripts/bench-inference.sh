#!/usr/bin/env bash
# ViT-B/16 TransReID inference on the CPU: Burn (Flex) against the reference PyTorch model,
# paired (scripts/bench_inference_paired.py): both processes loaded at once, one embedding each
# in turn, PAIRS pairs per case; the table gives each side's median and the median and spread
# of the pair ratios.
# Usage: scripts/bench-inference.sh <reference checkout> [PAIRS=10] [CASES="16x1 16x16 12x1 12x16"]
set -euo pipefail
cd "$(dirname "$0")/.."
ref="$1"; pairs="${2:-10}"; cases="${3:-16x1 16x16 12x1 12x16}"
bin=$(cargo bench --bench inference --no-run --message-format=json 2>/dev/null \
      | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "inference" and m.get("executable"):
        print(m["executable"])')
raw=$(mktemp /tmp/bench-inference.XXXXXX.jsonl)
# shellcheck disable=SC2086 # one argument per case
python3 scripts/bench_inference_paired.py "$bin" "$ref" --pairs "$pairs" --cases $cases --raw "$raw"
echo "raw pairs: $raw"
