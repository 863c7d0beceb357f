"""Writes the fixtures of the model crate's self-supervised / foreign-layout import tests
(tests/foreign_layouts.rs), all made from the tiny timm fixture or a tiny ICS model:

- `dino_teacher_tiny.pth`: an iBOT / DINO *training* checkpoint as PersonViT publishes it:
  `teacher` (`backbone.*` = block 0 of the timm fixture (`timm_vit_w48.safetensors`) with its position embedding
  resampled to a non-square 8x4 grid, plus a projection head), `student` (the same keys under
  `module.backbone.*` with other values and iBOT's `masked_embed`), an optimiser state with int
  keys, `epoch`, an `argparse.Namespace` under `args`, loss centres and a loss-scaler state;
- `dino_posixpath.pth`: a training checkpoint whose `args` holds a `pathlib.PosixPath`;
- `hf_vit_tiny.safetensors`: the same block-0 ViT in the Hugging Face `transformers` layout
  (`vit.` prefix, separate query / key / value, classifier);
- `ics_tiny.pth`: a DDP-wrapped DINO teacher (`teacher.module.backbone.*`) of a tiny
  TransReID-SSL ViT with the ICS stem (D 64, 2 blocks), non-trivial norm parameters and
  running statistics, built by the reference's `TransReID(stem_conv=True)`;
- `ssl_golden.safetensors`: PyTorch's values for the tests: the 8x4 position grid resized to
  16x8 and 21x10 by `F.interpolate(mode='bilinear')` (the reference's `resize_pos_embed`), and
  for the ICS model an input, its eval-mode patch tokens and cls feature, and in training mode
  the cls feature, a weighted-sum loss, every parameter's gradient and the stem's running
  statistics after that forward;
- `tests/fixtures/personvit_tiny.pth` (root crate): a PersonViT-layout iBOT training checkpoint
  of the `tiny` preset (D 64, 4 blocks, 4 heads) pretrained at 256x128 (16x8 grid), random
  weights with timm's initialisation, for the fine-tune smoke test.

Usage: python3 scripts/ssl_fixtures.py <TransReID-SSL checkout>
Needs torch and safetensors. The reference is imported from the given folder, not copied.
"""
import argparse
import collections.abc
import importlib.util
import pathlib
import sys
import types

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

ref = pathlib.Path(sys.argv[1])
out = pathlib.Path("crates/transreid-model/tests/fixtures")
timm = load_file(str(out / "timm_vit_w48.safetensors"))
g = torch.Generator().manual_seed(0)
golden = {}

# A block-0 backbone of the timm fixture with an 8x4 (LUPerson-like, non-square) position grid.
backbone = {k: v for k, v in timm.items()
            if not k.startswith(("blocks.", "head.")) or k.startswith("blocks.0.")}
pos = backbone["pos_embed"]
d = pos.shape[-1]
grid = pos[:, 1:].reshape(1, 14, 14, d).permute(0, 3, 1, 2)
grid = F.interpolate(grid, size=(8, 4), mode="bilinear", align_corners=False)
backbone["pos_embed"] = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 32, d)], 1)
for h, w in [(16, 8), (21, 10)]:
    resized = F.interpolate(grid, size=(h, w), mode="bilinear")  # align_corners False
    golden[f"pos_embed_{h}x{w}"] = torch.cat(
        [pos[:, :1], resized.permute(0, 2, 3, 1).reshape(1, h * w, d)], 1).contiguous()

teacher = {"backbone." + k: v.clone() for k, v in backbone.items()}
teacher["head.mlp.0.weight"] = torch.randn(32, d, generator=g)
teacher["head.mlp.0.bias"] = torch.zeros(32)
teacher["head.last_layer.weight_g"] = torch.ones(64, 1)
teacher["head.last_layer.weight_v"] = torch.randn(64, 32, generator=g)
student = {"module." + k: v + 1.0 for k, v in teacher.items()}
student["module.backbone.masked_embed"] = torch.randn(1, d, generator=g)
training = {
    "teacher": teacher,
    "student": student,
    # Several int-keyed entries, as a real optimiser state (pickled with SETITEMS).
    "optimizer": {"state": {i: {"exp_avg": torch.randn(d, generator=g),
                                "exp_avg_sq": torch.rand(d, generator=g)} for i in range(3)},
                  "param_groups": [{"lr": 5e-4, "betas": (0.9, 0.999), "params": [0, 1, 2]}]},
    "epoch": 260,
    "args": argparse.Namespace(arch="vit_tiny", lr=5e-4, out_dim=8192, patch_size=16),
    "ibot_loss": {"center": torch.randn(1, 64, generator=g), "center2": torch.randn(1, 1, 64, generator=g)},
    "fp16_scaler": {"scale": 65536.0, "_growth_tracker": 0},
}
torch.save(training, out / "dino_teacher_tiny.pth")
torch.save({"teacher": {"backbone.cls_token": backbone["cls_token"]},
            "args": argparse.Namespace(output_dir=pathlib.PosixPath("/runs/ibot"))},
           out / "dino_posixpath.pth")

# Hugging Face transformers ViT (ViTForImageClassification names) of the block-0 backbone
# with the original 14x14 position grid.
hf = {"vit.embeddings.cls_token": timm["cls_token"],
      "vit.embeddings.position_embeddings": timm["pos_embed"],
      "vit.embeddings.patch_embeddings.projection.weight": timm["patch_embed.proj.weight"],
      "vit.embeddings.patch_embeddings.projection.bias": timm["patch_embed.proj.bias"],
      "vit.layernorm.weight": timm["norm.weight"], "vit.layernorm.bias": timm["norm.bias"],
      "classifier.weight": timm["head.weight"], "classifier.bias": timm["head.bias"]}
layer = "vit.encoder.layer.0."
for p in ["weight", "bias"]:
    q, k, v = timm[f"blocks.0.attn.qkv.{p}"].chunk(3, 0)
    hf.update({layer + f"attention.attention.query.{p}": q, layer + f"attention.attention.key.{p}": k,
               layer + f"attention.attention.value.{p}": v,
               layer + f"attention.output.dense.{p}": timm[f"blocks.0.attn.proj.{p}"],
               layer + f"intermediate.dense.{p}": timm[f"blocks.0.mlp.fc1.{p}"],
               layer + f"output.dense.{p}": timm[f"blocks.0.mlp.fc2.{p}"],
               layer + f"layernorm_before.{p}": timm[f"blocks.0.norm1.{p}"],
               layer + f"layernorm_after.{p}": timm[f"blocks.0.norm2.{p}"]})
save_file({k: v.contiguous() for k, v in hf.items()}, str(out / "hf_vit_tiny.safetensors"))

# The reference's TransReID-SSL backbone with the ICS stem. It predates torch 2: provide the
# removed `torch._six.container_abcs`, and load the file alone (its package imports more).
sys.modules.setdefault("torch._six", types.SimpleNamespace(container_abcs=collections.abc))
spec = importlib.util.spec_from_file_location(
    "ssl_vit", ref / "transreid_pytorch/model/backbones/vit_pytorch.py")
ssl_vit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ssl_vit)
torch.manual_seed(0)
model = ssl_vit.TransReID(img_size=(64, 32), patch_size=16, stride_size=16, embed_dim=64,
                          depth=2, num_heads=4, mlp_ratio=4, qkv_bias=True, num_classes=0,
                          drop_path_rate=0.0, stem_conv=True)
with torch.no_grad():  # non-trivial norms so the IN / BN split and the statistics are pinned
    for name, m in model.patch_embed.conv.named_modules():
        if isinstance(m, (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d)):
            m.weight.uniform_(0.5, 1.5, generator=g)
            m.bias.uniform_(-0.2, 0.2, generator=g)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.num_batches_tracked.fill_(100)
state = {k: v.clone() for k, v in model.state_dict().items()}
torch.save({"teacher": {"module.backbone." + k: v for k, v in state.items()}, "epoch": 100},
           out / "ics_tiny.pth")

x = torch.randn(3, 3, 64, 32, generator=g)
golden["ics.input"] = x
model.eval()
with torch.no_grad():
    golden["ics.eval.patch_tokens"] = model.patch_embed(x)
    golden["ics.eval.cls"] = model.forward_features(x, None, None)
model.train()
weights = torch.randn(3, 64, generator=g)
cls = model.forward_features(x, None, None)
loss = (cls * weights).sum()
loss.backward()
golden["ics.train.cls"] = cls.detach()
golden["ics.train.weights"] = weights
golden["ics.train.loss"] = loss.detach().reshape(1)
for name, p in model.named_parameters():
    golden["ics.grad." + name] = p.grad
for name, b in model.named_buffers():
    if "running" in name:
        golden["ics.train." + name] = b
save_file({k: v.contiguous() for k, v in golden.items()}, str(out / "ssl_golden.safetensors"))

# The tiny preset in PersonViT's layout.
D, DEPTH = 64, 4
def normal(*shape):
    return torch.randn(*shape, generator=g) * 0.02
tiny = {"cls_token": normal(1, 1, D), "pos_embed": normal(1, 1 + 16 * 8, D),
        "patch_embed.proj.weight": normal(D, 3, 16, 16), "patch_embed.proj.bias": torch.zeros(D),
        "norm.weight": torch.ones(D), "norm.bias": torch.zeros(D)}
for i in range(DEPTH):
    for name, (o, n) in {"attn.qkv": (3 * D, D), "attn.proj": (D, D), "mlp.fc1": (4 * D, D),
                         "mlp.fc2": (D, 4 * D)}.items():
        tiny[f"blocks.{i}.{name}.weight"] = normal(o, n)
        tiny[f"blocks.{i}.{name}.bias"] = torch.zeros(o)
    for norm in ["norm1", "norm2"]:
        tiny[f"blocks.{i}.{norm}.weight"] = torch.ones(D)
        tiny[f"blocks.{i}.{norm}.bias"] = torch.zeros(D)
teacher = {"backbone." + k: v for k, v in tiny.items()}
teacher["head.last_layer.weight_v"] = normal(128, D)
torch.save({"teacher": teacher,
            "student": {"module.backbone.cls_token": tiny["cls_token"] + 1,
                        "module.backbone.masked_embed": normal(1, D)},
            "optimizer": {"state": {i: {"exp_avg": normal(D)} for i in range(3)},
                          "param_groups": [{"params": [0, 1, 2]}]},
            "epoch": 260, "args": argparse.Namespace(arch="vit_tiny", patch_size=16)},
           "tests/fixtures/personvit_tiny.pth")
print(len(golden), "golden tensors")
