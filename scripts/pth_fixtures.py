"""Writes the `.pth` fixtures of the model crate's import tests with torch.save (zip format):

- `deit_distilled_tiny.pth`: a DeiT-distilled style ImageNet checkpoint under a `model` wrapper
  (dist_token, head_dist, pos_embed with two prefix tokens), made from the first two blocks of
  the timm fixture (`timm_vit_w48.safetensors`, scripts/timm_fixture.py);
- `reference_tiny.pth`: the reference-format TransReID state dict of
  `tests/fixtures/reference_model.safetensors` under a `state_dict` wrapper with `module.` keys.

Usage: python3 scripts/pth_fixtures.py
"""
import torch
from safetensors.torch import load_file

model_fixtures = "crates/transreid-model/tests/fixtures"
timm = load_file(f"{model_fixtures}/timm_vit_w48.safetensors")
keep = {k: v for k, v in timm.items() if not k.startswith("blocks.") or int(k.split(".")[1]) < 2}
g = torch.Generator().manual_seed(0)
d = keep["cls_token"].shape[-1]
keep["dist_token"] = torch.randn(1, 1, d, generator=g) * 0.02
pos = keep["pos_embed"]
keep["pos_embed"] = torch.cat([pos[:, :1], torch.randn(1, 1, d, generator=g) * 0.02, pos[:, 1:]], 1)
keep["head_dist.weight"] = torch.randn(1000, d, generator=g) * 0.02
keep["head_dist.bias"] = torch.zeros(1000)
torch.save({"model": keep, "epoch": 300}, f"{model_fixtures}/deit_distilled_tiny.pth")

ref = load_file("tests/fixtures/reference_model.safetensors")
state = {"module." + k[len("weights."):]: v for k, v in ref.items() if k.startswith("weights.")}
torch.save({"state_dict": state}, f"{model_fixtures}/reference_tiny.pth")
print(len(keep), len(state))
