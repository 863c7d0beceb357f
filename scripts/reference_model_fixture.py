"""Writes tests/fixtures/reference_model.safetensors: a tiny TransReID (JPM + camera/view SIE)
built by the reference implementation, its eval features, training outputs, loss, every
parameter's gradient and the parameters after one SGD step at the epoch-1 learning rate.

Usage: python3 scripts/reference_model_fixture.py <reference checkout> <out.safetensors>
Needs torch, yacs and safetensors. The reference is imported from the given folder, not copied.
"""
import json
import sys
from functools import partial

import torch
import torch.nn as nn
from safetensors.torch import save_file

ref, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, ref)
# The reference predates torch 2: provide the removed `torch._six.container_abcs`.
import collections.abc  # noqa: E402
import types  # noqa: E402

sys.modules.setdefault("torch._six", types.SimpleNamespace(container_abcs=collections.abc))
from config import cfg  # noqa: E402
from loss.make_loss import make_loss  # noqa: E402
from model.backbones.vit_pytorch import TransReID  # noqa: E402
from model.make_model import build_transformer_local  # noqa: E402
from solver.make_optimizer import make_optimizer  # noqa: E402
from solver.scheduler_factory import create_scheduler  # noqa: E402

D, DEPTH, HEADS, C = 64, 4, 4, 5
H, W, STRIDE = 64, 32, 8  # grid 7x3 = 21 patches: odd, so the shuffle pads
CAMS, VIEWS = 3, 2
cfg.merge_from_list([
    "MODEL.NAME", "transformer", "MODEL.TRANSFORMER_TYPE", "tiny", "MODEL.JPM", True,
    "MODEL.SIE_CAMERA", True, "MODEL.SIE_VIEW", True, "MODEL.SIE_COE", 3.0,
    "MODEL.PRETRAIN_CHOICE", "none", "MODEL.DROP_PATH", 0.0,
    "INPUT.SIZE_TRAIN", [H, W], "MODEL.STRIDE_SIZE", [STRIDE, STRIDE], "MODEL.SHIFT_NUM", 5,
    "DATALOADER.SAMPLER", "softmax_triplet", "MODEL.METRIC_LOSS_TYPE", "triplet",
    "MODEL.IF_LABELSMOOTH", "off", "MODEL.NO_MARGIN", True, "SOLVER.OPTIMIZER_NAME", "SGD",
    "SOLVER.BASE_LR", 0.008, "SOLVER.WEIGHT_DECAY", 1e-4, "SOLVER.WEIGHT_DECAY_BIAS", 1e-4,
    "SOLVER.BIAS_LR_FACTOR", 2, "SOLVER.MAX_EPOCHS", 120, "TEST.NECK_FEAT", "before",
])
factory = {"tiny": lambda **kw: TransReID(patch_size=16, embed_dim=D, depth=DEPTH, num_heads=HEADS,
                                          mlp_ratio=4, qkv_bias=True,
                                          norm_layer=partial(nn.LayerNorm, eps=1e-6), **kw)}
torch.manual_seed(0)
model = build_transformer_local(C, CAMS, VIEWS, cfg, factory, rearrange=True)
# The reference hard-codes 768-d heads; rebuild them at D with its initialisation.
for k in ["", "_1", "_2", "_3", "_4"]:
    clf = nn.Linear(D, C, bias=False)
    nn.init.normal_(clf.weight, std=0.001)
    setattr(model, "classifier" + k, clf)
    bn = nn.BatchNorm1d(D)
    with torch.no_grad():  # non-trivial statistics so the neck is exercised
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    bn.bias.requires_grad_(False)
    setattr(model, "bottleneck" + k, bn)
with torch.no_grad():  # cls/pos/SIE at the reference's scale, blocks as initialised
    for p in [model.base.cls_token, model.base.pos_embed, model.base.sie_embed]:
        p.normal_(0, 0.02)

tensors = {f"weights.{k}": v.detach().clone() for k, v in model.state_dict().items()}
x = torch.randn(8, 3, H, W)
pids = torch.tensor([0, 0, 1, 1, 2, 2, 4, 4])
cams = torch.tensor([0, 1, 2, 0, 1, 2, 0, 2])
views = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0])
tensors.update({"input.images": x, "input.pids": pids, "input.cams": cams, "input.views": views})

model.eval()
with torch.no_grad():
    tensors["eval.feat_before"] = model(x, cam_label=cams, view_label=views)
    model.neck_feat = "after"
    tensors["eval.feat_after"] = model(x, cam_label=cams, view_label=views)
    model.neck_feat = "before"

model.train()
torch.Tensor.cuda = lambda self, *args, **kwargs: self  # CenterLoss asks for a GPU; run on CPU
loss_func, center = make_loss(cfg, num_classes=C)
scores, feats = model(x, pids, cam_label=cams, view_label=views)
for i, (s, f) in enumerate(zip(scores, feats)):
    tensors[f"train.scores.{i}"] = s.detach().clone()
    tensors[f"train.feats.{i}"] = f.detach().clone()
loss = loss_func(scores, feats, pids, cams)
tensors["train.loss"] = loss.detach().clone().reshape([])
loss.backward()
for k, p in model.named_parameters():
    if p.grad is not None:
        tensors[f"grad.{k}"] = p.grad.detach().clone()
optimizer, _ = make_optimizer(cfg, model, center)
scheduler = create_scheduler(cfg, optimizer)
scheduler.step(1)
optimizer.step()
tensors.update({f"step.{k}": v.detach().clone() for k, v in model.state_dict().items()})
tensors = {k: v.contiguous() for k, v in tensors.items()}
save_file(tensors, out)
json.dump({
    "description": __doc__.strip().splitlines()[0],
    "model": {"embed_dim": D, "depth": DEPTH, "heads": HEADS, "classes": C, "img": [H, W],
              "stride": STRIDE, "cameras": CAMS, "views": VIEWS, "shift": 5, "groups": 2,
              "sie_coe": 3.0, "drop_path": 0.0},
    "lr_epoch1": {"weight": optimizer.param_groups[0]["lr"]},
    "loss": float(loss),
    "torch": torch.__version__,
}, open(out.replace(".safetensors", ".json"), "w"), indent=1)
print("loss", float(loss), "tensors", len(tensors))
