#!/usr/bin/env bash
# One explanation of a query / gallery pair for ViT-B/16 TransReID (JPM + camera SIE) at 256x128
# on the CPU: Burn (Flex, `benches/explain.rs`) beside the reference PyTorch model
# (scripts/bench_explain_torch.py). One process per side and mode, so that the peak resident
# memory (`/usr/bin/time -v`) is that mode's; the table gives the median seconds of ITERS runs.
# Usage: scripts/bench-explain.sh <reference checkout> [ITERS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
ref="$1"; iters="${2:-5}"
python="${PYTHON:-python3}"
bin=$(cargo bench --bench explain --no-run --message-format=json 2>/dev/null \
      | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "explain" and m.get("executable"):
        print(m["executable"])')
log=$(mktemp /tmp/bench-explain.XXXXXX)
measure() {  # side mode command...
  local side="$1" mode="$2"; shift 2
  local line rss
  line=$(/usr/bin/time -v "$@" 2>"$log.time" | tail -1)
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log.time")
  echo "$side $mode $line $rss" | tee -a "$log" >&2
}
for mode in embed rollout gradient; do
  measure burn "$mode" "$bin" --mode "$mode" --iters "$iters"
  measure pytorch "$mode" "$python" scripts/bench_explain_torch.py "$ref" --mode "$mode" --iters "$iters"
done
python3 - "$log" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    side, mode, rest = line.split(" ", 2)
    record, rss = rest.rsplit(" ", 1)
    rows[(side, mode)] = (json.loads(record)["median_s"], int(rss) / 1024)
print("| mode | Burn (flex) s, median | PyTorch s, median | PyTorch / Burn time | Burn peak MiB | PyTorch peak MiB |")
print("|---|---|---|---|---|---|")
for mode in ["embed", "rollout", "gradient"]:
    (bt, bm), (pt, pm) = rows[("burn", mode)], rows[("pytorch", mode)]
    print(f"| {mode} | {bt:.3f} | {pt:.3f} | {pt / bt:.2f}x | {bm:.0f} | {pm:.0f} |")
EOF
