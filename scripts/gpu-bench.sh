#!/usr/bin/env bash
# The longer CUDA benchmark (the budgeted one is scripts/gpu-check.sh), in two halves.
#
#   scripts/gpu-bench.sh build
#       On a machine with the Rust toolchain: builds the `cuda` binary into .gpu/transreid
#       (kernels are compiled by NVRTC at run time, so no CUDA toolkit is needed to build).
#
#   scripts/gpu-bench.sh run <reference checkout> [steps]
#       On the GPU machine (CUDA driver, PyTorch): a short CUDA training run on synthetic data,
#       then ViT-B/16 TransReID training steps (256x128, JPM + camera SIE, batch 64, stride 16
#       and 12) with Burn (bf16 and f16 mixed precision, and f32) and with the reference PyTorch
#       implementation (AMP, as its training script, and f32), one process per case. Prints a Markdown table for
#       docs/performance.md; peak GPU memory is PyTorch's max_memory_allocated for PyTorch and
#       the largest `nvidia-smi` reading during the case for Burn.
#
# Run-time needs of the binary: libcuda, libnvrtc (13.0.x for a CUDA 13.0 driver) and the CUDA
# headers under $CUDA_PATH (default /usr/local/cuda); see docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
build)
  exec scripts/gpu-check.sh build
  ;;
run)
  ref="$2"; steps="${3:-20}"
  export CUDA_PATH="${CUDA_PATH:-/usr/local/cuda}"
  export LD_LIBRARY_PATH="${CUDA_PATH}/lib64:${CUDA_PATH}/lib:${LD_LIBRARY_PATH:-}"
  scripts/gpu-check.sh unpack
  bin=.gpu/transreid
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

  # 1. Correctness smoke test: a few epochs of the synthetic configuration on CUDA.
  work=$(mktemp -d)
  "$bin" data synth --out "$work/data" --ids 16 --cameras 4 > /dev/null
  "$bin" train --config configs/synthetic/tiny_transreid.toml --device cuda \
    --root "$work/data" --output-dir "$work/run" --epochs 5 --workers 4
  tail -n 2 "$work/run/metrics.csv"

  # 2. Throughput and memory, one process per case.
  out="$work/bench.jsonl"; : > "$out"
  for stride in 16 12; do
    for precision in bf16 f16 f32; do
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$work/smi.txt" &
      smi=$!
      base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n1)
      "$bin" bench train --device cuda --stride "$stride" --batch 64 --steps "$steps" \
        --precision "$precision" | grep '^{' > "$work/burn.json"
      kill "$smi"; wait "$smi" 2>/dev/null || true
      peak=$(sort -n "$work/smi.txt" | tail -n1)
      python3 - "$work/burn.json" "$base" "$peak" >> "$out" <<'PY'
import json, sys
row = json.load(open(sys.argv[1]))
row["peak_gpu_mib"] = float(sys.argv[3]) - float(sys.argv[2])
print(json.dumps(row))
PY
    done
    python3 scripts/bench_train_torch.py "$ref" --device cuda --strides "$stride" \
      --steps "$steps" 2>/dev/null | grep '^{' >> "$out"
    python3 scripts/bench_train_torch.py "$ref" --device cuda --strides "$stride" \
      --steps "$steps" --no-amp 2>/dev/null | grep '^{' >> "$out"
  done
  python3 scripts/bench_table.py "$out"
  ;;
*)
  echo "usage: $0 build | run <reference checkout> [steps]" >&2
  exit 2
  ;;
esac
