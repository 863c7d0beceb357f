"""Inference throughput of the reference ViT-B/16 TransReID (JPM + camera SIE) at 256x128, the
PyTorch side of `scripts/bench-inference.sh` (CPU) and `scripts/gpu-check.sh` (CUDA). One JSON
line per case.

Usage: python3 scripts/bench_inference_torch.py <reference checkout> [iters]
           [--device cpu|cuda] [--strides 16 12] [--batches 1 16] [--amp]
`--amp` runs under fp16 autocast, as the reference trains. `--serve` (first stride and batch)
prints `ready` after a warm-up, then times one forward per line read from stdin and prints its
seconds, for `scripts/bench_inference_paired.py`.
"""
import argparse
import collections.abc
import json
import sys
import time
import types

import torch

parser = argparse.ArgumentParser()
parser.add_argument("reference")
parser.add_argument("iters", nargs="?", type=int, default=3)
parser.add_argument("--device", default="cpu")
parser.add_argument("--strides", type=int, nargs="+", default=[16, 12])
parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
parser.add_argument("--amp", action="store_true")
parser.add_argument("--serve", action="store_true")
args = parser.parse_args()
ref, iters, device = args.reference, args.iters, torch.device(args.device)
sys.path.insert(0, ref)
sys.modules.setdefault("torch._six", types.SimpleNamespace(container_abcs=collections.abc))
from config import cfg  # noqa: E402
from model.make_model import make_model  # noqa: E402

torch.set_num_threads(int(__import__("os").environ.get("THREADS", torch.get_num_threads())))
def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


for stride in args.strides:
    c = cfg.clone()
    c.merge_from_list(["MODEL.NAME", "transformer", "MODEL.TRANSFORMER_TYPE",
                       "vit_base_patch16_224_TransReID", "MODEL.JPM", True, "MODEL.SIE_CAMERA", True,
                       "MODEL.PRETRAIN_CHOICE", "none", "INPUT.SIZE_TRAIN", [256, 128],
                       "MODEL.STRIDE_SIZE", [stride, stride], "TEST.NECK_FEAT", "before"])
    model = make_model(c, num_class=751, camera_num=6, view_num=1).eval().to(device)
    if args.serve:
        x = torch.randn(args.batches[0], 3, 256, 128, device=device)
        cams = torch.zeros(args.batches[0], dtype=torch.long, device=device)
        with torch.no_grad(), torch.autocast(device.type, torch.float16, enabled=args.amp):
            model(x, cam_label=cams)
            sync()
            print("ready", flush=True)
            for _ in sys.stdin:
                start = time.perf_counter()
                model(x, cam_label=cams)
                sync()
                print(time.perf_counter() - start, flush=True)
        break
    for batch in args.batches:
        x = torch.randn(batch, 3, 256, 128, device=device)
        cams = torch.zeros(batch, dtype=torch.long, device=device)
        with torch.no_grad(), torch.autocast(device.type, torch.float16, enabled=args.amp):
            model(x, cam_label=cams)
            sync()
            start = time.perf_counter()
            for _ in range(iters):
                model(x, cam_label=cams)
            sync()
            seconds = time.perf_counter() - start
        print(json.dumps({"impl": "pytorch-amp" if args.amp else "pytorch", "stride": stride,
                          "batch": batch, "images_per_second": round(iters * batch / seconds, 3)}),
              flush=True)
