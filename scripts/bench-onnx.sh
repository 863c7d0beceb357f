#!/usr/bin/env bash
# ViT-B/16 TransReID (JPM + camera SIE, 256x128, random weights) exported to ONNX: export time,
# peak memory and file size (fp32 and fp16), then CPU inference of the exported model in
# onnxruntime beside Burn (Flex) and the reference PyTorch model, three processes taking turns
# (scripts/bench_inference_paired.py --onnx).
# Needs python3 with torch, yacs, numpy and onnxruntime, and GNU time.
# Usage: scripts/bench-onnx.sh <reference checkout> [PAIRS=10] [CASES="16x1 16x16 12x1 12x16"]
set -euo pipefail
cd "$(dirname "$0")/.."
ref="$1"; pairs="${2:-10}"; cases="${3:-16x1 16x16 12x1 12x16}"
features="${FEATURES:-}"
bench=$(cargo bench --bench inference ${features:+--features "$features"} --no-run \
      --message-format=json 2>/dev/null | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "inference" and m.get("executable"):
        print(m["executable"])')
cargo build --release ${features:+--features "$features"} --bin transreid 2>/dev/null
target="${CARGO_TARGET_DIR:-target}"
work=$(mktemp -d /tmp/bench-onnx.XXXXXX)
echo "| stride | precision | export seconds | peak memory (MB) | file (MB) | checkpoint (MB) |"
echo "|---|---|---|---|---|---|"
for stride in 16 12; do
  ck="$work/vitb_s$stride.safetensors"
  "$bench" --write-checkpoint "$ck" --stride "$stride"
  for precision in fp32 fp16; do
    out="$work/vitb_s${stride}_$precision.onnx"
    /usr/bin/time -f "%e %M" -o "$work/time" "$target/release/transreid" export \
      --checkpoint "$ck" --out "$out" --precision "$precision" >/dev/null
    read -r seconds kb < "$work/time"
    python3 -c "import os,sys; print(f'| $stride | $precision | $seconds | {$kb/1024:.0f} | {os.path.getsize(sys.argv[1])/1e6:.1f} | {os.path.getsize(sys.argv[2])/1e6:.1f} |')" "$out" "$ck"
  done
done
# shellcheck disable=SC2086 # one argument per case
python3 scripts/bench_inference_paired.py "$bench" "$ref" --pairs "$pairs" --cases $cases \
  --onnx "$work/vitb_s{stride}_fp32.onnx"
echo "files: $work"
