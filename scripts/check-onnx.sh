#!/usr/bin/env bash
# Checks the ONNX files the `onnx_export` tests write with the official checker, onnxruntime and
# OpenVINO (CPU), in a virtual environment outside the clone (about 250 MB, made once).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TRANSREID_ONNX_VENV:-/var/tmp/transreid-onnx-venv}"
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
if ! "$venv/bin/python" -c "import onnx, onnxruntime, openvino, numpy" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q onnx onnxruntime openvino numpy
fi
cases="$(mktemp -d)"
trap 'rm -rf "$cases"' EXIT
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
# The flags of scripts/test.sh, so that the test binary is the one already built.
TRANSREID_ONNX_CASES="$cases" cargo test --workspace --release --features wgpu,mpi \
  --test onnx_export -q
"$venv/bin/python" scripts/check_onnx.py "$cases"
