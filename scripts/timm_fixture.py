"""Writes the timm fixtures of the model crate's parity tests (crates/transreid-model/tests/fixtures):

- `timm_vit_w48.safetensors`: a timm `VisionTransformer` with vit_tiny's depth and heads (12 blocks,
  3 heads, patch 16, 224x224, qkv bias, LayerNorm eps 1e-6) at width 48, timm's initialisation
  (seed 0) plus a perturbation of every parameter (so biases and norms are not 0 / 1), saved
  verbatim as timm's state dict (`format: pt` metadata, the layout of timm / Hugging Face
  downloads);
- `timm_vit.safetensors` (+ `timm_vit.json`): timm's `forward_features` on `input224`, and the
  reference TransReID backbone (no SIE / JPM) after the reference's `load_param` of that
  checkpoint at 256x128, stride 16 (`output256.*`) and stride 12 (`output256_s12.*`): the
  resized position embedding and `norm(x)[:, 0]`.

Usage: python3 scripts/timm_fixture.py <reference checkout>
Needs torch, timm and safetensors. The reference is imported from the given folder, not copied.
Then run scripts/pth_fixtures.py and scripts/ssl_fixtures.py, which derive their files from it.
"""
import collections.abc
import json
import pathlib
import sys
import tempfile
import types
from functools import partial

import timm
import torch
import torch.nn as nn
from safetensors.torch import save_file

ref = pathlib.Path(sys.argv[1])
out = pathlib.Path("crates/transreid-model/tests/fixtures")
D, DEPTH, HEADS = 48, 12, 3

# The reference predates torch 2: provide the removed `torch._six.container_abcs`.
sys.modules.setdefault("torch._six", types.SimpleNamespace(container_abcs=collections.abc))
sys.path.insert(0, str(ref))
from model.backbones.vit_pytorch import TransReID  # noqa: E402

torch.manual_seed(0)
vit = timm.models.vision_transformer.VisionTransformer(
    img_size=224, patch_size=16, embed_dim=D, depth=DEPTH, num_heads=HEADS, mlp_ratio=4,
    qkv_bias=True)
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    for p in vit.parameters():
        p.add_(torch.randn(p.shape, generator=g) * 0.02)
vit.eval()
state = {k: v.contiguous() for k, v in vit.state_dict().items()}
save_file(state, str(out / "timm_vit_w48.safetensors"), metadata={"format": "pt"})

golden = {"input224": torch.randn(2, 3, 224, 224, generator=g),
          "input256": torch.randn(2, 3, 256, 128, generator=g)}
with torch.no_grad():
    golden["output224.forward_features"] = vit.forward_features(golden["input224"])
grids = {}
with tempfile.TemporaryDirectory() as tmp:
    path = f"{tmp}/timm_vit_w48.pth"
    torch.save(state, path)
    for stride, prefix in [(16, "output256"), (12, "output256_s12")]:
        backbone = TransReID(img_size=(256, 128), patch_size=16, stride_size=stride,
                             embed_dim=D, depth=DEPTH, num_heads=HEADS, mlp_ratio=4,
                             qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))
        backbone.load_param(path)
        backbone.eval()
        with torch.no_grad():
            golden[f"{prefix}.global_feat"] = backbone(golden["input256"], None, None)
        golden[f"{prefix}.pos_embed"] = backbone.pos_embed.detach().clone()
        grids[f"stride{stride}"] = {"num_y": backbone.patch_embed.num_y,
                                    "num_x": backbone.patch_embed.num_x}
golden = {k: v.contiguous() for k, v in golden.items()}
save_file(golden, str(out / "timm_vit.safetensors"))
meta = {
    "reference_repo": "github.com/heshuting555/TransReID",
    "script": "scripts/timm_fixture.py",
    "torch": torch.__version__,
    "timm": timm.__version__,
    "dtype": "float32",
    "description": (
        f"timm VisionTransformer (img 224, patch 16, D={D}, depth {DEPTH}, heads {HEADS}, qkv bias, "
        "LN eps 1e-6; timm init seed 0 + N(0, 0.02) perturbation), saved verbatim in "
        "timm_vit_w48.safetensors. output224.forward_features = timm forward_features (after "
        "the final LayerNorm, all tokens). output256.global_feat = reference TransReID(img "
        f"256x128, patch 16, stride 16, D={D}, depth {DEPTH}, heads {HEADS}, no SIE, "
        "local_feature=False) after the reference's load_param (pos_embed 14x14 -> 16x8 by "
        "resize_pos_embed): norm(x)[:, 0]. output256_s12.* the same at stride 12 (grid 21x10)."),
    "checkpoint_file": "timm_vit_w48.safetensors",
    "grids": grids,
    "tensors": {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in golden.items()},
}
(out / "timm_vit.json").write_text(json.dumps(meta, indent=1) + "\n")
print(len(state), "weights,", len(golden), "golden tensors")
