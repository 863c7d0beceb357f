"""Writes crates/transreid-model/tests/fixtures/relevance.safetensors: golden gradient-weighted
attention maps (Chefer, Gur & Wolf, ICCV 2021: R = I, then block by block
R += mean_h(clamp(dT/dA * A, min=0)) @ R; the class token's row over the patches over its maximum)
of a tiny TransReID (JPM + camera SIE) built by the reference implementation, for four targets:
the cosine similarity of a pair's eval features (NECK_FEAT before and after), the norm of each
image's eval feature and one identity's logit of the global branch.

Usage: python3 scripts/relevance_fixture.py <reference checkout> [out.safetensors]
Needs torch, yacs and safetensors. The reference is imported from the given folder, not copied.
"""
import pathlib
import sys
from functools import partial

import torch
import torch.nn as nn
from safetensors.torch import save_file

ref = sys.argv[1]
root = pathlib.Path(__file__).resolve().parent.parent
out = sys.argv[2] if len(sys.argv) > 2 else str(
    root / "crates/transreid-model/tests/fixtures/relevance.safetensors")
sys.path.insert(0, ref)
# The reference predates torch 2: provide the removed `torch._six.container_abcs`.
import collections.abc  # noqa: E402
import types  # noqa: E402

sys.modules.setdefault("torch._six", types.SimpleNamespace(container_abcs=collections.abc))
from config import cfg  # noqa: E402
from model.backbones import vit_pytorch  # noqa: E402
from model.make_model import build_transformer_local  # noqa: E402

D, DEPTH, HEADS, C = 32, 3, 2, 4
H, W, STRIDE = 48, 32, 8  # grid 5x3 = 15 patches: odd, so the shuffle pads
CAMS, LOGIT_CLASS = 3, 2
cfg.merge_from_list([
    "MODEL.NAME", "transformer", "MODEL.TRANSFORMER_TYPE", "tiny", "MODEL.JPM", True,
    "MODEL.SIE_CAMERA", True, "MODEL.SIE_VIEW", False, "MODEL.SIE_COE", 3.0,
    "MODEL.PRETRAIN_CHOICE", "none", "MODEL.DROP_PATH", 0.0,
    "INPUT.SIZE_TRAIN", [H, W], "MODEL.STRIDE_SIZE", [STRIDE, STRIDE], "MODEL.SHIFT_NUM", 5,
    "TEST.NECK_FEAT", "before",
])
factory = {"tiny": lambda **kw: vit_pytorch.TransReID(
    patch_size=16, embed_dim=D, depth=DEPTH, num_heads=HEADS, mlp_ratio=4, qkv_bias=True,
    norm_layer=partial(nn.LayerNorm, eps=1e-6), **kw)}
torch.manual_seed(0)
model = build_transformer_local(C, CAMS, 0, cfg, factory, rearrange=True)
# The reference hard-codes 768-d heads; rebuild them at D, with non-trivial neck statistics.
for k in ["", "_1", "_2", "_3", "_4"]:
    clf = nn.Linear(D, C, bias=False)
    nn.init.normal_(clf.weight, std=0.5)
    setattr(model, "classifier" + k, clf)
    bn = nn.BatchNorm1d(D)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    bn.bias.requires_grad_(False)
    setattr(model, "bottleneck" + k, bn)
with torch.no_grad():
    for p in [model.base.cls_token, model.base.pos_embed, model.base.sie_embed]:
        p.normal_(0, 0.5)
    # Peaked attention, so that the maps are far from flat, and LayerNorms that do not fix
    # the features' norm.
    for name, p in model.named_parameters():
        if name.endswith("attn.qkv.weight"):
            p.normal_(0, 0.4)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.1)
model.eval()

# Every attention's probabilities, in call order, kept for their gradients.
captured = []


def attention_forward(self, x):
    B, N, Cx = x.shape
    qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, Cx // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
    attn.retain_grad()
    captured.append(attn)
    x = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(B, N, Cx)
    return self.proj_drop(self.proj(x))


vit_pytorch.Attention.forward = attention_forward


def chefer(blocks, image):
    tokens = blocks[0].shape[-1]
    r = torch.eye(tokens, dtype=torch.float64)
    for a in blocks:
        cam = (a.grad[image].double() * a[image].detach().double()).clamp(min=0).mean(0)
        r = r + cam @ r
    row = r[0, 1:]
    return (row / row.max()).float()


def global_logits(x, cams):
    """The global branch's classifier logits in eval mode (the reference returns them only in
    training mode)."""
    features = model.base(x, cam_label=cams, view_label=None)
    global_feat = model.b1(features)[:, 0]
    return model.classifier(model.bottleneck(global_feat))


x = torch.randn(6, 3, H, W)
cams = torch.tensor([0, 2, 1, 1, 2, 0])
tensors = {f"weights.{k}": v.detach().clone() for k, v in model.state_dict().items()}
tensors.update({"input.images": x, "input.cams": cams})
cases = {
    "pair_before": (slice(0, 2), "before"),
    "pair_after": (slice(0, 2), "after"),
    "norm": (slice(2, 4), "before"),
    "logit": (slice(4, 6), "before"),
}
for name, (rows, neck) in cases.items():
    captured.clear()
    model.neck_feat = neck
    xs, cs = x[rows], cams[rows]
    if name == "logit":
        values = global_logits(xs, cs)[:, LOGIT_CLASS]
        objective = values.sum()
    else:
        f = model(xs, cam_label=cs, view_label=None)
        if name.startswith("pair"):
            values = (f[0] * f[1]).sum() / (f[0].norm() * f[1].norm())
            objective = values
            values = values.expand(2)
        else:
            values = f.norm(dim=1)
            objective = values.sum()
    objective.backward()
    blocks = captured[:DEPTH]  # base blocks[:-1], then b1; the b2 calls follow
    for image in range(2):
        tensors[f"{name}.map.{image}"] = chefer(blocks, image)
    tensors[f"{name}.values"] = values.detach().clone()
model.neck_feat = "before"
tensors = {k: v.contiguous() for k, v in tensors.items()}
save_file(tensors, out, metadata={
    "description": __doc__.strip().splitlines()[0],
    "model": f"embed_dim {D}, depth {DEPTH}, heads {HEADS}, classes {C}, img {H}x{W}, "
             f"stride {STRIDE}, cameras {CAMS}, sie_coe 3.0, jpm shift 5 groups 2 parts 4",
    "logit_class": str(LOGIT_CLASS),
    "torch": torch.__version__,
})
print(f"wrote {out}: {len(tensors)} tensors")
