"""Inference of an exported model (`transreid export`) in onnxruntime on the CPU, the ONNX side of
`scripts/bench_inference_paired.py`: `ready` after a warm-up, then one timed batch per line read
from stdin, its seconds printed, until stdin closes.

Usage: python3 scripts/bench_inference_onnx.py MODEL.onnx --batch B
Threads: THREADS (default: onnxruntime's, one per core).
"""
import argparse
import os
import sys
import time

import numpy as np
import onnxruntime as ort

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--batch", type=int, default=1)
args = parser.parse_args()

options = ort.SessionOptions()
if "THREADS" in os.environ:
    options.intra_op_num_threads = int(os.environ["THREADS"])
session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
h, w = map(int, meta["transreid.input_size"].split("x"))
rng = np.random.default_rng(0)
feeds = {"images": rng.random((args.batch, 3, h, w), dtype=np.float32)}
for side in ("camera", "view"):
    if any(i.name == side for i in session.get_inputs()):
        feeds[side] = np.zeros(args.batch, dtype=np.int64)
session.run(["features"], feeds)
print("ready", flush=True)
for _ in sys.stdin:
    start = time.perf_counter()
    session.run(["features"], feeds)
    print(time.perf_counter() - start, flush=True)
