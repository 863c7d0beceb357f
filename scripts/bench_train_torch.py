"""Training-step throughput of the reference ViT-B/16 TransReID (JPM + camera SIE) at 256x128:
the reference's model, loss (`make_loss`), optimiser (`make_optimizer`) and, on CUDA, its AMP
step (`autocast` + `GradScaler`, as `processor.do_train`). The PyTorch side of
`scripts/bench-train.sh` and `scripts/gpu-bench.sh`; prints one JSON line per case.

Usage: python3 scripts/bench_train_torch.py <reference checkout> [--device cpu|cuda]
           [--strides 16 12] [--batch 64] [--steps 3] [--no-amp]
"""
import argparse
import collections.abc
import json
import resource
import sys
import time
import types

import torch

parser = argparse.ArgumentParser()
parser.add_argument("reference")
parser.add_argument("--device", default="cpu")
parser.add_argument("--strides", type=int, nargs="+", default=[16, 12])
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--no-amp", action="store_true")
args = parser.parse_args()

if args.device == "cpu":
    # The reference's CenterLoss (built by make_loss, unused by the loss) calls .cuda().
    torch.Tensor.cuda = lambda self, *a, **k: self
sys.path.insert(0, args.reference)
sys.modules.setdefault("torch._six", types.SimpleNamespace(container_abcs=collections.abc))
from config import cfg  # noqa: E402
from loss.make_loss import make_loss  # noqa: E402
from model.make_model import make_model  # noqa: E402
from solver.make_optimizer import make_optimizer  # noqa: E402

device = torch.device(args.device)
amp = device.type == "cuda" and not args.no_amp
for stride in args.strides:
    c = cfg.clone()
    c.merge_from_list([
        "MODEL.NAME", "transformer", "MODEL.TRANSFORMER_TYPE", "vit_base_patch16_224_TransReID",
        "MODEL.JPM", True, "MODEL.SIE_CAMERA", True, "MODEL.PRETRAIN_CHOICE", "none",
        "MODEL.STRIDE_SIZE", [stride, stride], "MODEL.NO_MARGIN", True,
        "MODEL.IF_LABELSMOOTH", "off", "MODEL.METRIC_LOSS_TYPE", "triplet",
        "DATALOADER.SAMPLER", "softmax_triplet", "DATALOADER.NUM_INSTANCE", 4,
        "INPUT.SIZE_TRAIN", [256, 128], "SOLVER.OPTIMIZER_NAME", "SGD", "SOLVER.BASE_LR", 0.008,
        "SOLVER.WEIGHT_DECAY", 1e-4, "SOLVER.WEIGHT_DECAY_BIAS", 1e-4,
        "SOLVER.BIAS_LR_FACTOR", 2, "SOLVER.IMS_PER_BATCH", args.batch,
    ])
    model = make_model(c, num_class=751, camera_num=6, view_num=1).to(device).train()
    loss_fn, center = make_loss(c, num_classes=751)
    optimizer, _ = make_optimizer(c, model, center)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    target = (torch.arange(args.batch) // 4).to(device)
    cams = (torch.arange(args.batch) % 6).to(device)

    def step():
        img = torch.randn(args.batch, 3, 256, 128, device=device)
        optimizer.zero_grad()
        with torch.autocast(device_type=device.type, enabled=amp):
            score, feat = model(img, target, cam_label=cams)
            loss = loss_fn(score, feat, target, cams)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start
    row = {"impl": "pytorch-amp" if amp else "pytorch", "stride": stride, "batch": args.batch,
           "steps": args.steps, "images_per_second": round(args.steps * args.batch / seconds, 3),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(row), flush=True)
    del model, optimizer
