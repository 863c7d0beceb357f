"""Markdown table of benchmark JSON lines, each row with its ratio to PyTorch's row of the same
stride and batch (the AMP row when there is one). Usage: python3 scripts/bench_table.py <file.jsonl>"""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
torch = {}
for r in rows:
    key = (r["stride"], r["batch"])
    if r["impl"] == "pytorch-amp" or (r["impl"] == "pytorch" and key not in torch):
        torch[key] = r
print("| impl | stride | batch | images/s | vs PyTorch | peak memory (MiB) |")
print("|---|---|---|---|---|---|")
for r in rows:
    base = torch.get((r["stride"], r["batch"]))
    ratio = f'{r["images_per_second"] / base["images_per_second"]:.2f}x' if base else "-"
    memory = r.get("peak_gpu_mib", r.get("peak_rss_mib"))
    print(f'| {r["impl"]} | {r["stride"]} | {r["batch"]} | {r["images_per_second"]:.2f} '
          f'| {ratio} | {f"{memory:.0f}" if memory is not None else "-"} |')
