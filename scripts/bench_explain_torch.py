"""One explanation of a query / gallery pair with the reference ViT-B/16 TransReID (JPM + camera
SIE) at 256x128 on the CPU, the PyTorch side of `scripts/bench-explain.sh`: the pair's embedding,
attention rollout of both images (vit-explain's rule, rows renormalised, mean fusion, discard
0.9) and gradient-weighted attention for the pair's cosine (Chefer et al.: forward, backward,
R += mean_h(clamp(dA * A, 0)) @ R). The same work as `cargo bench --bench explain`; one JSON line
per mode.

Usage: python3 scripts/bench_explain_torch.py <reference checkout> [--mode embed|rollout|gradient]
           [--iters N]
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
parser.add_argument("--mode", choices=["embed", "rollout", "gradient"], action="append")
parser.add_argument("--iters", type=int, default=5)
args = parser.parse_args()
sys.path.insert(0, args.reference)
sys.modules.setdefault("torch._six", types.SimpleNamespace(container_abcs=collections.abc))
from config import cfg  # noqa: E402
from model.backbones import vit_pytorch  # noqa: E402
from model.make_model import make_model  # noqa: E402

cfg.merge_from_list(["MODEL.NAME", "transformer", "MODEL.TRANSFORMER_TYPE",
                     "vit_base_patch16_224_TransReID", "MODEL.JPM", True, "MODEL.SIE_CAMERA", True,
                     "MODEL.PRETRAIN_CHOICE", "none", "INPUT.SIZE_TRAIN", [256, 128],
                     "MODEL.STRIDE_SIZE", [16, 16], "TEST.NECK_FEAT", "before"])
model = make_model(cfg, num_class=751, camera_num=6, view_num=1).eval()
# Only the attention probabilities need gradients (the Burn side tracks no weight gradients
# either); the image's gradient keeps the graph alive from the first block.
model.requires_grad_(False)
depth = len(model.base.blocks)  # base blocks[:-1], then the global branch's copy of the last

captured = []
keep_grad = False


def attention_forward(self, x):
    B, N, C = x.shape
    qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
    if keep_grad:
        attn.retain_grad()
    captured.append(attn)
    x = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(B, N, C)
    return self.proj_drop(self.proj(x))


vit_pytorch.Attention.forward = attention_forward
x = torch.randn(2, 3, 256, 128)
cams = torch.tensor([0, 3])


def rollout(blocks, discard_ratio=0.9):
    tokens = blocks[0].shape[-1]
    eye = torch.eye(tokens)
    result = eye.expand(blocks[0].shape[0], tokens, tokens)
    for a in blocks:
        fused = a.mean(1)
        flat = fused.reshape(fused.shape[0], -1).clone()
        count = int(flat.shape[-1] * discard_ratio)
        _, indices = flat.topk(count, -1, largest=False)
        flat.scatter_(-1, indices, 0)
        flat[:, 0] = fused.reshape(fused.shape[0], -1)[:, 0]  # the class token keeps itself
        a = (flat.reshape(fused.shape) + eye) / 2
        a = a / a.sum(-1, keepdim=True)
        result = a @ result
    row = result[:, 0, 1:]
    return row / row.max(-1, keepdim=True).values


def chefer(blocks):
    tokens = blocks[0].shape[-1]
    r = torch.eye(tokens).expand(blocks[0].shape[0], tokens, tokens)
    for a in blocks:
        cam = (a.grad * a.detach()).clamp(min=0).mean(1)
        r = r + cam @ r
    row = r[:, 0, 1:]
    return row / row.max(-1, keepdim=True).values


def run(mode):
    global keep_grad
    captured.clear()
    if mode == "embed":
        with torch.no_grad():
            model(x, cam_label=cams)
    elif mode == "rollout":
        with torch.no_grad():
            model(x, cam_label=cams)
            rollout(captured[:depth])
    else:
        keep_grad = True
        f = model(x.requires_grad_(True), cam_label=cams)
        cosine = (f[0] * f[1]).sum() / (f[0].norm() * f[1].norm())
        cosine.backward()
        x.requires_grad_(False)
        x.grad = None
        chefer(captured[:depth])
        keep_grad = False


for mode in args.mode or ["embed", "rollout", "gradient"]:
    run(mode)
    times = []
    for _ in range(max(args.iters, 1)):
        start = time.perf_counter()
        run(mode)
        times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"mode": mode, "images": 2, "iters": len(times), "threads": torch.get_num_threads(),
                      "median_s": round(times[len(times) // 2], 4), "best_s": round(times[0], 4)}),
          flush=True)
