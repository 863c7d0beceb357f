"""Paired CPU inference comparison: a Burn (Flex) process and a reference PyTorch process per
case, both loaded at once and idle between requests, asked for one timed embedding each in
turn (the order alternating, a pause before each so that neither's threads still spin). Each
pair's ratio compares the two within seconds of each other, so the machine's drift cancels;
the table gives each side's median and the median, spread and wins of the pair ratios.

With `--onnx PATTERN` (e.g. `/tmp/vitb_s{stride}.onnx`, files `transreid export` made of the
same model) an onnxruntime process joins each case, the three taking turns in rotating order;
each side's rate is then also compared with PyTorch's in the same round.

Usage: python3 scripts/bench_inference_paired.py <inference bench binary> <reference checkout>
           [--pairs 8] [--cases 16x1 16x16 12x1 12x16] [--onnx PATTERN] [--raw FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("burn")
parser.add_argument("reference")
parser.add_argument("--pairs", type=int, default=8)
parser.add_argument("--cases", nargs="+", default=["16x1", "16x16", "12x1", "12x16"])
parser.add_argument("--onnx", help="exported model per stride, `{stride}` in the path")
parser.add_argument("--raw", help="append one JSON line per pair to this file")
args = parser.parse_args()
if args.pairs < 1:
    sys.exit("--pairs must be at least 1")
torch_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_inference_torch.py")
onnx_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_inference_onnx.py")


class Server:
    def __init__(self, command):
        # stderr is kept aside and shown only if the process fails.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, text=True)
        self.expect("ready")

    def fail(self, what):
        code = self.process.wait()
        self.log.seek(0)
        tail = "".join(self.log.readlines()[-20:])
        sys.exit(f"{' '.join(self.process.args)} {what} (exit {code}):\n{tail}")

    def expect(self, word):
        for line in self.process.stdout:
            if line.strip() == word:
                return
        self.fail(f"ended before '{word}'")

    def time_one(self):
        time.sleep(0.5)
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.fail("ended")
        return float(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def onnx_table():
    """Three sides per case, each round in rotating order; ratios to PyTorch per round."""
    print("| stride | batch | Burn images/s (median) | onnxruntime (median) | PyTorch (median) "
          "| Burn / PyTorch, median of rounds (min - max) | onnxruntime / PyTorch (min - max) |")
    print("|---|---|---|---|---|---|---|")
    raw = open(args.raw, "a") if args.raw else None
    for case in args.cases:
        stride, batch = map(int, case.split("x"))
        sides = {
            "burn": Server([args.burn, "--serve", "--stride", str(stride), "--batch", str(batch)]),
            "onnxruntime": Server([sys.executable, onnx_script, args.onnx.format(stride=stride),
                                   "--batch", str(batch)]),
            "pytorch": Server([sys.executable, torch_script, args.reference, "--serve",
                               "--strides", str(stride), "--batches", str(batch)]),
        }
        names = list(sides)
        rounds = []
        for i in range(args.pairs):
            order = names[i % 3:] + names[:i % 3]
            rounds.append({name: batch / sides[name].time_one() for name in order})
            if raw:
                print(json.dumps({"stride": stride, "batch": batch, **rounds[-1]}), file=raw,
                      flush=True)
        for server in sides.values():
            server.close()

        def ratio(name):
            r = sorted(x[name] / x["pytorch"] for x in rounds)
            return f"{statistics.median(r):.2f}x ({r[0]:.2f} - {r[-1]:.2f})"

        median = {n: statistics.median(x[n] for x in rounds) for n in names}
        print(f"| {stride} | {batch} | {median['burn']:.2f} | {median['onnxruntime']:.2f} "
              f"| {median['pytorch']:.2f} | {ratio('burn')} | {ratio('onnxruntime')} |", flush=True)


if args.onnx:
    onnx_table()
    sys.exit(0)

print("| stride | batch | Burn images/s (median) | PyTorch (median) | Burn / PyTorch, median of pairs "
      "| pair ratios, min - max | pairs Burn ahead |")
print("|---|---|---|---|---|---|---|")
raw = open(args.raw, "a") if args.raw else None
for case in args.cases:
    stride, batch = map(int, case.split("x"))
    burn = Server([args.burn, "--serve", "--stride", str(stride), "--batch", str(batch)])
    torch = Server([sys.executable, torch_script, args.reference, "--serve", "--strides",
                    str(stride), "--batches", str(batch)])
    pairs = []
    for i in range(args.pairs):
        first, second = (burn, torch) if i % 2 == 0 else (torch, burn)
        times = {first: first.time_one(), second: second.time_one()}
        pairs.append((batch / times[burn], batch / times[torch]))
        if raw:
            print(json.dumps({"stride": stride, "batch": batch, "burn": pairs[-1][0],
                              "pytorch": pairs[-1][1]}), file=raw, flush=True)
    burn.close()
    torch.close()
    ratios = sorted(b / t for b, t in pairs)
    print(f"| {stride} | {batch} | {statistics.median(b for b, _ in pairs):.2f} "
          f"| {statistics.median(t for _, t in pairs):.2f} | {statistics.median(ratios):.2f}x "
          f"| {ratios[0]:.2f} - {ratios[-1]:.2f} | {sum(r > 1 for r in ratios)} of {len(ratios)} |",
          flush=True)
