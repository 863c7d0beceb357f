#!/usr/bin/env bash
# CLIP-ReID ViT-B/16 step times on the CPU (256x128, 751 identities, camera SIE, f32): a
# stage-1 step (prompts) and a stage-2 step (image side), Burn (flex) and the reference
# PyTorch code, one process each.
# Usage: scripts/bench-clip-reid.sh <CLIP-ReID checkout> [steps] [batch]
set -euo pipefail
cd "$(dirname "$0")/.."
ref="$1"; steps="${2:-2}"; batch="${3:-64}"
cargo run --release --quiet --bin transreid -- bench clip-reid --device flex --batch "$batch" \
  --steps "$steps" | grep '^{'
python3 scripts/bench_clip_reid_torch.py "$ref" --batch "$batch" --steps "$steps" 2>/dev/null \
  | grep '^{'
