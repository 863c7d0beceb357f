#!/usr/bin/env bash
# Runs every test, including the wgpu backend-parity tests (Vulkan through Mesa lavapipe).
set -euo pipefail
cd "$(dirname "$0")/.."
# Mesa lavapipe: a software Vulkan driver, so the wgpu backend tests run without a GPU.
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
cargo test --workspace --release --features wgpu
