"""Inference throughput of the reference ViT-B/16 TransReID (JPM + camera SIE) at 256x128 on
the CPU, the PyTorch side of `scripts/bench-inference.sh`. One JSON line per case.

Usage: python3 scripts/bench_inference_torch.py <reference checkout> [iters]
"""
import collections.abc
import json
import sys
import time
import types

import torch

ref = sys.argv[1]
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 3
sys.path.insert(0, ref)
sys.modules.setdefault("torch._six", types.SimpleNamespace(container_abcs=collections.abc))
from config import cfg  # noqa: E402
from model.make_model import make_model  # noqa: E402

torch.set_num_threads(int(__import__("os").environ.get("THREADS", torch.get_num_threads())))
for stride in [16, 12]:
    c = cfg.clone()
    c.merge_from_list(["MODEL.NAME", "transformer", "MODEL.TRANSFORMER_TYPE",
                       "vit_base_patch16_224_TransReID", "MODEL.JPM", True, "MODEL.SIE_CAMERA", True,
                       "MODEL.PRETRAIN_CHOICE", "none", "INPUT.SIZE_TRAIN", [256, 128],
                       "MODEL.STRIDE_SIZE", [stride, stride], "TEST.NECK_FEAT", "before"])
    model = make_model(c, num_class=751, camera_num=6, view_num=1).eval()
    for batch in [1, 16]:
        x = torch.randn(batch, 3, 256, 128)
        cams = torch.zeros(batch, dtype=torch.long)
        with torch.no_grad():
            model(x, cam_label=cams)
            start = time.perf_counter()
            for _ in range(iters):
                model(x, cam_label=cams)
            seconds = time.perf_counter() - start
        print(json.dumps({"impl": "pytorch", "stride": stride, "batch": batch,
                          "images_per_second": round(iters * batch / seconds, 3)}), flush=True)
