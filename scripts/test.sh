#!/usr/bin/env bash
# Runs every test, including the wgpu backend-parity tests (Vulkan through Mesa lavapipe) and the
# data-parallel tests (two MPI ranks on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
# Mesa lavapipe: a software Vulkan driver, so the wgpu backend tests run without a GPU.
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers libvulkan1)
# Open MPI for the `mpi` feature's tests, libclang for its bindings.
command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin libopenmpi-dev)
# libclang.so itself (libclang-dev): other packages bring libclang-cpp, which bindgen cannot use.
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || missing+=(libclang-dev)
# pgrep, with which the fault test finds the ranks to kill.
command -v pgrep >/dev/null 2>&1 || missing+=(procps)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
cargo test --workspace --release --features wgpu,mpi
