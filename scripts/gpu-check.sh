#!/usr/bin/env bash
# The GPU check: what a CUDA session must measure, in one command that fits the GPU budget by
# design (a global budget of 400 s, each stage capped, later stages skipped when time runs out).
#
#   scripts/gpu-check.sh build [REFERENCE]
#       Here (Rust toolchain, no GPU needed): builds the `cuda` binary and fills the folder that
#       travels, .gpu/ (ignored by git): the binary stripped and xz-compressed
#       (.gpu/transreid.xz), a copy of the reference checkout REFERENCE without its .git
#       (.gpu/reference) and the yacs wheel the reference's config needs (.gpu/wheels); then
#       prints what a command will send (tracked + untracked + .gpu) and fails above 60 MiB.
#   scripts/gpu-check.sh payload [CARRIED...]
#       Only that measurement (scripts/payload.py): fails when the tracked tree passes 40 MiB
#       or everything together 60 MiB, naming the largest files.
#   scripts/gpu-check.sh unpack
#       On the GPU machine: .gpu/transreid from .gpu/transreid.xz (xz, else python3's lzma).
#   scripts/gpu-check.sh run OUT [REFERENCE]
#       On the GPU machine, with .gpu carried: unpacks the binary,
#       then every stage on CUDA. REFERENCE (default .gpu/reference) is a checkout of the
#       reference PyTorch implementation (the PyTorch stages are skipped without it or torch).
#   scripts/gpu-check.sh dry-run OUT [REFERENCE]
#       The same stages end to end on the CPU (flex) at tiny sizes, after the payload check of
#       the tree; the test suite runs it.
#
# OUT receives results.jsonl, one JSON object per result with its "stage" and "seconds",
# appended as soon as each command ends (a timeout keeps everything before it), and log.txt,
# every command's output. Stages:
#   env            GPU, driver, CUDA headers and NVRTC found (or what is missing)
#   check          the tiny JPM + SIE model's eval features, loss and gradients against the
#                  reference implementation's fixture, f32 (1e-4) and bf16 (3e-2, gradients
#                  0.25: src/device_check.rs says why)
#   check-clip-reid  the tiny trained CLIP-ReID's eval and text features, both stages' losses and
#                  their gradients against the reference implementation's fixture, f32 (1e-4)
#   train          a short synthetic training run in bf16: loss and mAP per evaluation
#   bench-train    ViT-B/16 TransReID training steps at 256x128, batch 64: stride 16 bf16 and
#                  f32, stride 12 bf16; images/s and peak GPU memory
#   pytorch-train  the reference with AMP (its training script's setting), the same cases
#   infer          embedding images/s at batch 1 and 256, Burn bf16 / f32 and PyTorch
#   bench-clip-reid  CLIP-ReID ViT-B/16 at 256x128, f32: seconds per stage-1 step (64 image
#                  features) and stage-2 step (64 images), peak GPU memory
#
# The binary needs at run time libcuda, libnvrtc (13.0.x for a CUDA 13.0 driver) and the CUDA
# headers under $CUDA_PATH (../shared/GPU.md, docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)

mode="${1:-}"
case "$mode" in
build)
  CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}" \
    cargo build --release --features cuda --bin transreid
  target="${CARGO_TARGET_DIR:-target}"
  mkdir -p .gpu
  rm -f .gpu/transreid .gpu/transreid.xz
  # Only the compressed binary travels: 65 MB as built, 51 MB stripped, about 8 MB with xz.
  strip -o "$target/transreid.stripped" "$target/release/transreid"
  xz -9 -T0 -c "$target/transreid.stripped" > .gpu/transreid.xz.part
  mv .gpu/transreid.xz.part .gpu/transreid.xz
  if [[ -n ${2:-} ]]; then
    rm -rf .gpu/reference
    mkdir -p .gpu/reference
    (cd "$2" && tar --exclude=.git -cf - .) | tar -xf - -C .gpu/reference
  fi
  # The reference's config needs yacs, which the GPU machine's Python lacks (pure Python).
  if [[ ! -d .gpu/wheels ]] && ! python3 -m pip download -q --no-deps --only-binary=:all: \
    -d .gpu/wheels yacs==0.1.8; then
    rm -rf .gpu/wheels
    echo "could not fetch the yacs wheel: the PyTorch stages will be skipped there" >&2
  fi
  echo "built .gpu/transreid.xz; carry .gpu and run: bash scripts/gpu-check.sh run \$OUT"
  exec python3 scripts/payload.py .gpu
  ;;
unpack)
  # .gpu/transreid from .gpu/transreid.xz, with xz or else Python's lzma.
  if [[ ! -x .gpu/transreid && -f .gpu/transreid.xz ]]; then
    if command -v xz > /dev/null; then
      xz -dc .gpu/transreid.xz > .gpu/transreid.part
    else
      python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        .gpu/transreid.xz .gpu/transreid.part
    fi
    chmod +x .gpu/transreid.part
    mv .gpu/transreid.part .gpu/transreid
  fi
  exit 0
  ;;
payload)
  shift
  exec python3 scripts/payload.py "$@"
  ;;
run | dry-run) ;;
_*) ;; # a stage, run by this script under `timeout`
*)
  echo "usage: $0 build [REFERENCE] | payload [CARRIED...] | unpack | run OUT [REFERENCE] | dry-run OUT [REFERENCE]" >&2
  exit 2
  ;;
esac

# ---- stage bodies (each prints JSON lines on stdout) -------------------------------------

if [[ $mode == _env ]]; then
  python3 - "$DEVICE" <<'PY'
import glob, json, os, shutil, subprocess, sys
device = sys.argv[1]
row = {"device": device, "autotune": os.environ.get("CUBECL_AUTOTUNE_LEVEL"),
       "cpus": os.cpu_count()}
if device == "cuda":
    missing = []
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                            "--format=csv,noheader"], capture_output=True, text=True).stdout
        name, driver, memory = [v.strip() for v in (q.splitlines() or [",,"])[0].split(",")]
        row.update(gpu=name, driver=driver, memory=memory)
    else:
        missing.append("nvidia-smi")
    cuda = os.environ.get("CUDA_PATH", "")
    row["cuda_path"] = cuda
    for header in ["cuda_runtime.h", "cuda_bf16.h", "crt/mma.h", "cooperative_groups.h"]:
        if not os.path.exists(os.path.join(cuda, "include", header)):
            missing.append(f"$CUDA_PATH/include/{header}")
    nvrtc = [p for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d
             for p in glob.glob(os.path.join(d, "libnvrtc.so*"))]
    row["nvrtc"] = sorted(nvrtc)[:1]
    if not nvrtc:
        missing.append("libnvrtc.so on LD_LIBRARY_PATH")
    if shutil.which("nvcc"):
        row["nvcc"] = subprocess.run(["nvcc", "--version"], capture_output=True,
                                     text=True).stdout.strip().splitlines()[-1]
    row["missing"] = missing
    if missing:
        row["diagnosis"] = ("cubecl-cuda compiles kernels with NVRTC at run time and needs the "
                            "CUDA headers: install the toolkit or the nvidia-cuda-{nvrtc,runtime,"
                            "crt,cccl} 13.0 wheels and set CUDA_PATH / LD_LIBRARY_PATH")
try:
    import torch
    row["torch"] = torch.__version__
except ImportError:
    row["torch"] = None
print(json.dumps(row))
PY
  exit 0
fi

if [[ $mode == _train ]]; then
  work="$2"; epochs="$3"
  "$BIN" data synth --out "$work/data" --ids 16 --cameras 4 >&2
  "$BIN" train --config configs/synthetic/tiny_transreid.toml --device "$DEVICE" \
    --root "$work/data" --output-dir "$work/run" --epochs "$epochs" --workers 4 \
    --precision bf16 >&2
  python3 - "$work/run/metrics.csv" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
losses = [float(r["loss"]) for r in rows]
maps = {int(r["epoch"]): float(r["map"]) for r in rows if r["map"]}
print(json.dumps({"precision": "bf16", "epochs": len(rows), "first_loss": losses[0],
                  "last_loss": losses[-1], "loss_fell": losses[-1] < losses[0],
                  "map_by_epoch": maps, "images_per_second": float(rows[-1]["images_per_second"])}))
PY
  exit 0
fi

if [[ $mode == _bench ]]; then
  # `transreid bench ...` with the peak GPU memory over its run (nvidia-smi, 100 ms samples).
  shift
  if [[ $DEVICE == cuda ]] && command -v nvidia-smi > /dev/null; then
    base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n1)
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/smi.txt" &
    smi=$!
    "$BIN" bench "$@" | grep '^{' > "$OUT/bench.json"
    kill "$smi"; wait "$smi" 2> /dev/null || true
    peak=$(sort -n "$OUT/smi.txt" | tail -n1)
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); r["peak_gpu_mib"] = float(sys.argv[3]) - float(sys.argv[2]); print(json.dumps(r))' \
      "$OUT/bench.json" "$base" "$peak"
  else
    "$BIN" bench "$@"
  fi
  exit 0
fi

# ---- the driver ---------------------------------------------------------------------------

OUT="${2:?usage: $0 $mode OUT [REFERENCE]}"
REFERENCE="${3:-}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export OUT
: > "$OUT/results.jsonl"
: > "$OUT/log.txt"
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"

if [[ $mode == run ]]; then
  export DEVICE=cuda
  export BIN="${TRANSREID_BIN:-$here/.gpu/transreid}"
  [[ -n ${TRANSREID_BIN:-} ]] || bash "$0" unpack
  if [[ -z $REFERENCE && -d $here/.gpu/reference ]]; then REFERENCE="$here/.gpu/reference"; fi
  if ! python3 -c 'import yacs' 2> /dev/null && compgen -G "$here/.gpu/wheels/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --target "$here/.gpu/site" "$here"/.gpu/wheels/*.whl
    export PYTHONPATH="$here/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  for dir in "${CUDA_PATH:-}" /usr/local/cuda /opt/cuda; do
    if [[ -n $dir && -e $dir/include/cuda_runtime.h ]]; then
      export CUDA_PATH="$dir"
      break
    fi
  done
  export CUDA_PATH="${CUDA_PATH:-/usr/local/cuda}"
  export LD_LIBRARY_PATH="$CUDA_PATH/lib64:$CUDA_PATH/lib:${LD_LIBRARY_PATH:-}"
  budget=400
  # ViT-B/16 at 256x128 as the reference trains it; a few timed steps after the warm-up.
  model=(--backbone vit_base16 --size 256 128)
  train_batch=64; train_steps=10; train_epochs=10
  infer_batches=(1 256); infer_iters=10
  clip=(--size 256 128 --batch 64 --prompt-batch 64 --steps 5)
  torch_device=cuda
else
  export DEVICE=flex
  export BIN="${TRANSREID_BIN:-$here/${CARGO_TARGET_DIR:-target}/release/transreid}"
  budget=300
  model=(--backbone tiny --size 128 64)
  train_batch=8; train_steps=1; train_epochs=2
  infer_batches=(1 4); infer_iters=1
  clip=(--size 32 16 --batch 8 --prompt-batch 8 --steps 1)
  torch_device=cpu
fi
[[ -x $BIN ]] || { echo "no transreid binary at $BIN" >&2; exit 1; }
deadline=$((SECONDS + budget))

# Appends one result line with its stage and duration.
record() {
  python3 -c 'import json, sys
try:
    row = json.loads(sys.argv[2])
except ValueError:
    row = {"raw": sys.argv[2]}
print(json.dumps({"stage": sys.argv[1], **row, "seconds": int(sys.argv[3])}))' \
    "$1" "$2" "$3" >> "$OUT/results.jsonl"
}

# stage NAME CAP COMMAND...: runs COMMAND under `timeout` (CAP, or what is left of the
# budget), records every JSON line it prints, then an error line if it failed.
stage() {
  local name="$1" cap="$2"
  shift 2
  local left=$((deadline - SECONDS))
  if ((left < 15)); then
    record "$name" '{"skipped": "the budget is spent"}' 0
    return
  fi
  if ((cap > left)); then cap=$left; fi
  local started=$SECONDS rc=0
  echo "== $name: $*" >> "$OUT/log.txt"
  timeout --kill-after=10 "$cap" "$@" > "$OUT/stage.out" 2> "$OUT/stage.err" || rc=$?
  cat "$OUT/stage.out" "$OUT/stage.err" >> "$OUT/log.txt"
  local line
  while IFS= read -r line; do
    if [[ $line == "{"* ]]; then record "$name" "$line" $((SECONDS - started)); fi
  done < "$OUT/stage.out"
  if ((rc != 0)); then
    local error
    error=$(python3 -c 'import json, sys
tail = open(sys.argv[2], errors="replace").read()[-1500:]
print(json.dumps({"error": "timed out" if sys.argv[1] in ("124", "137") else "exit " + sys.argv[1], "tail": tail}))' \
      "$rc" "$OUT/stage.err")
    record "$name" "$error" $((SECONDS - started))
  fi
}

have_torch() {
  [[ -n $REFERENCE ]] && python3 -c 'import torch' 2> /dev/null
}

if [[ $mode == dry-run ]]; then
  # What the GPU machine would be sent from this tree (the binary is measured by `build`).
  stage payload 30 python3 scripts/payload.py
fi
stage env 30 bash "$0" _env
fixture=tests/fixtures/reference_model.safetensors
stage check 150 "$BIN" bench check --device "$DEVICE" --precision f32 --fixture "$fixture"
stage check 120 "$BIN" bench check --device "$DEVICE" --precision bf16 --fixture "$fixture"
stage check-clip-reid 90 "$BIN" bench check --model clip-reid --device "$DEVICE" --precision f32 \
  --fixture crates/transreid-model/tests/fixtures/clip_reid.safetensors
work=$(mktemp -d)
stage train 150 bash "$0" _train "$work" "$train_epochs"
for case in "16 bf16" "16 f32" "12 bf16"; do
  read -r stride precision <<< "$case"
  stage bench-train 100 bash "$0" _bench train --device "$DEVICE" "${model[@]}" --stride "$stride" \
    --batch "$train_batch" --steps "$train_steps" --precision "$precision"
done
if have_torch; then
  stage pytorch-train 150 python3 scripts/bench_train_torch.py "$REFERENCE" \
    --device "$torch_device" --strides 16 12 --batch "$train_batch" --steps "$train_steps"
else
  record pytorch-train '{"skipped": "no reference checkout given, or no torch"}' 0
fi
for precision in bf16 f32; do
  for batch in "${infer_batches[@]}"; do
    stage infer 60 bash "$0" _bench infer --device "$DEVICE" "${model[@]}" --stride 16 \
      --batch "$batch" --iters "$infer_iters" --precision "$precision"
  done
done
if have_torch; then
  for amp in --amp ""; do
    stage infer 60 python3 scripts/bench_inference_torch.py "$REFERENCE" "$infer_iters" \
      --device "$torch_device" --strides 16 --batches "${infer_batches[@]}" $amp
  done
else
  record infer '{"impl": "pytorch", "skipped": "no reference checkout given, or no torch"}' 0
fi
stage bench-clip-reid 120 bash "$0" _bench clip-reid --device "$DEVICE" "${clip[@]}"
rm -rf "$work" "$OUT/stage.out" "$OUT/stage.err" "$OUT/bench.json" "$OUT/smi.txt"
echo "results: $OUT/results.jsonl ($((SECONDS)) s)"
