"""Writes crates/transreid-model/tests/fixtures/clip_vision.safetensors: golden outputs of
CLIP-ReID's image encoder (`VisionTransformer` of its `model/clip/model.py`) on a tiny CLIP
(width 32, 12 blocks as the reference's hard-coded split needs, 2 heads, projection 16, patch
16) pre-trained at 64x64 (a 4x4 grid), loaded as the reference's `build_model` does (the
position embedding resized by its `resize_pos_embed`) at 64x40 with stride 16 (grid 4x2) and
stride 12 (grid 5x3, overlapping patches), run on two images without and with side
information on the class token.

Usage: python3 scripts/clip_vision_fixture.py <CLIP-ReID checkout> [out.safetensors]
Needs torch and safetensors. The reference is imported from the given folder, not copied.
"""
import importlib.util
import pathlib
import sys

import torch
from safetensors.torch import save_file

ref = pathlib.Path(sys.argv[1])
root = pathlib.Path(__file__).resolve().parent.parent
out = sys.argv[2] if len(sys.argv) > 2 else str(
    root / "crates/transreid-model/tests/fixtures/clip_vision.safetensors")
# model/clip/__init__.py pulls in the tokenizer's dependencies: load model.py alone.
spec = importlib.util.spec_from_file_location("clip_model", ref / "model/clip/model.py")
clip_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(clip_model)

WIDTH, LAYERS, HEADS, OUT, PATCH = 32, 12, 2, 16, 16
H, W = 64, 40
torch.manual_seed(0)
pretrained = clip_model.VisionTransformer(4, 4, PATCH, PATCH, WIDTH, LAYERS, HEADS, OUT)
with torch.no_grad():
    for name, p in pretrained.named_parameters():
        if name.endswith("in_proj_weight"):
            p.normal_(0, 0.3)  # peaked attention, far from uniform
        elif name.endswith(".bias"):
            p.normal_(0, 0.1)
        elif "ln_" in name and name.endswith("weight"):
            p.uniform_(0.5, 1.5)
state = {f"visual.{k}": v.detach().clone() for k, v in pretrained.state_dict().items()}
tensors = dict(state)
x = torch.randn(2, 3, H, W)
side = torch.randn(2, WIDTH) * 0.5
tensors.update({"input.images": x, "input.side": side})
for stride in (16, 12):
    gh, gw = (H - PATCH) // stride + 1, (W - PATCH) // stride + 1
    model = clip_model.VisionTransformer(gh, gw, PATCH, stride, WIDTH, LAYERS, HEADS, OUT).eval()
    weights = {k[len("visual."):]: v.clone() for k, v in state.items()}
    weights["positional_embedding"] = clip_model.resize_pos_embed(
        weights["positional_embedding"], model.positional_embedding, gh, gw)
    model.load_state_dict(weights)
    tensors[f"s{stride}.positional_embedding"] = weights["positional_embedding"]
    with torch.no_grad():
        for case, cv in (("plain", None), ("side", side)):
            x11, x12, xproj = model(x, cv)
            tensors[f"s{stride}.{case}.before_last"] = x11
            tensors[f"s{stride}.{case}.last"] = x12
            tensors[f"s{stride}.{case}.projected"] = xproj
tensors = {k: v.contiguous() for k, v in tensors.items()}
save_file(tensors, out, metadata={
    "description": __doc__.strip().splitlines()[0],
    "model": f"width {WIDTH}, layers {LAYERS}, heads {HEADS}, output {OUT}, patch {PATCH}, "
             f"pretrained grid 4x4, input {H}x{W}, strides 16 and 12",
    "torch": torch.__version__,
})
print(f"wrote {out}: {len(tensors)} tensors")
