"""Writes crates/transreid-model/tests/fixtures/clip_{openai,timm,hf}.safetensors: one small
CLIP image tower (width 128, 2 blocks, 2 heads, projection 32, patch 16, trained at 64x64)
in the three layouts CLIP weights come in, stored in float16 as OpenAI ships them, and
clip_layouts_golden.safetensors: what timm's and Hugging Face's own models compute from them
on two 64x64 images (the class token after the last norm, and its projection).

- OpenAI layout: the state dict of the `VisionTransformer` of CLIP-ReID's
  `model/clip/model.py`, under `visual.`.
- timm layout: timm's own `_convert_openai_clip` of it, run in timm's VisionTransformer
  configured as `vit_base_patch16_clip_quickgelu_224` (pre-norm, QuickGELU, LayerNorm eps 1e-5).
- Hugging Face layout: the mapping of transformers' `convert_clip_original_pytorch_to_hf.py`
  (q / k / v split from `in_proj_*`, projections transposed), loaded strictly into
  `CLIPVisionModelWithProjection` with `hidden_act="quick_gelu"`.
The script checks that timm's and Hugging Face's outputs agree before writing. It also writes
torchscript.pt, a TorchScript archive (the format of OpenAI's own CLIP files).

Usage: python3 scripts/clip_layouts_fixture.py <CLIP-ReID checkout> [out folder]
Needs torch, timm, transformers and safetensors.
"""
import functools
import pathlib
import sys

import torch
import torch.nn as nn
from safetensors.torch import save_file
from timm.layers import QuickGELU
from timm.models.vision_transformer import VisionTransformer, _convert_openai_clip
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

ref = pathlib.Path(sys.argv[1]).resolve()
root = pathlib.Path(__file__).resolve().parent.parent
out = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else root / "crates/transreid-model/tests/fixtures"
sys.path.insert(0, str(ref))
from model.clip import model as cm  # noqa: E402

WIDTH, LAYERS, HEADS, OUT, PATCH, SIZE = 128, 2, 2, 32, 16, 64
GRID = SIZE // PATCH
torch.manual_seed(0)
tower = cm.VisionTransformer(GRID, GRID, PATCH, PATCH, WIDTH, LAYERS, HEADS, OUT)
with torch.no_grad():
    for name, p in tower.named_parameters():
        if name.endswith("in_proj_weight"):
            p.normal_(0, 0.15)
        elif name.endswith(".bias"):
            p.normal_(0, 0.1)
        elif "ln_" in name and name.endswith("weight"):
            p.uniform_(0.5, 1.5)
        # float16 values, as OpenAI's files hold them.
        p.copy_(p.half().float())
openai = {f"visual.{k}": v.detach().clone() for k, v in tower.state_dict().items()}

timm_model = VisionTransformer(
    img_size=SIZE, patch_size=PATCH, embed_dim=WIDTH, depth=LAYERS, num_heads=HEADS,
    num_classes=OUT, pre_norm=True, class_token=True, global_pool="token",
    act_layer=QuickGELU, norm_layer=functools.partial(nn.LayerNorm, eps=1e-5)).eval()
timm_dict = _convert_openai_clip(openai, timm_model)
timm_model.load_state_dict(timm_dict, strict=True)

hf_dict = {}
for k, v in openai.items():
    k = k[len("visual."):]
    if k == "class_embedding":
        hf_dict["vision_model.embeddings.class_embedding"] = v
    elif k == "conv1.weight":
        hf_dict["vision_model.embeddings.patch_embedding.weight"] = v
    elif k == "positional_embedding":
        hf_dict["vision_model.embeddings.position_embedding.weight"] = v
    elif k.startswith("ln_pre."):
        hf_dict["vision_model.pre_layrnorm." + k[7:]] = v
    elif k.startswith("ln_post."):
        hf_dict["vision_model.post_layernorm." + k[8:]] = v
    elif k == "proj":
        hf_dict["visual_projection.weight"] = v.t().contiguous()
    else:
        _, _, i, rest = k.split(".", 3)
        layer = f"vision_model.encoder.layers.{i}."
        if rest.startswith("attn.in_proj_"):
            param = rest[len("attn.in_proj_"):]
            for name, part in zip(("q", "k", "v"), v.chunk(3, dim=0)):
                hf_dict[f"{layer}self_attn.{name}_proj.{param}"] = part.contiguous()
        else:
            rest = (rest.replace("attn.out_proj", "self_attn.out_proj").replace("ln_1", "layer_norm1")
                    .replace("ln_2", "layer_norm2").replace("mlp.c_fc", "mlp.fc1")
                    .replace("mlp.c_proj", "mlp.fc2"))
            hf_dict[layer + rest] = v
hf_model = CLIPVisionModelWithProjection(CLIPVisionConfig(
    hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, image_size=SIZE, patch_size=PATCH, projection_dim=OUT,
    hidden_act="quick_gelu", layer_norm_eps=1e-5)).eval()
missing, unexpected = hf_model.load_state_dict(hf_dict, strict=False)
assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)

images = torch.randn(2, 3, SIZE, SIZE)
with torch.no_grad():
    timm_cls = timm_model.forward_features(images)[:, 0]
    timm_proj = timm_model(images)
    hf_out = hf_model(pixel_values=images)
    # CLIPVisionModelWithProjection returns the class token before `post_layernorm`.
    hf_cls = hf_model.vision_model.post_layernorm(hf_out.last_hidden_state[:, 0])
torch.testing.assert_close(timm_cls, hf_cls, atol=1e-4, rtol=1e-4)
torch.testing.assert_close(timm_proj, hf_out.image_embeds, atol=1e-4, rtol=1e-4)

half = lambda d: {k: v.detach().half().contiguous() for k, v in d.items()}
meta = {"model": f"CLIP image tower: width {WIDTH}, layers {LAYERS}, heads {HEADS}, "
                 f"output {OUT}, patch {PATCH}, trained at {SIZE}x{SIZE}",
        "torch": torch.__version__}
save_file(half(openai), str(out / "clip_openai.safetensors"), metadata=meta)
save_file(half(timm_dict), str(out / "clip_timm.safetensors"), metadata=meta)
save_file(half(hf_dict), str(out / "clip_hf.safetensors"), metadata=meta)
golden = {"input.images": images, "timm.cls": timm_cls, "timm.projected": timm_proj,
          "hf.cls": hf_cls, "hf.projected": hf_out.image_embeds}
save_file({k: v.contiguous() for k, v in golden.items()},
          str(out / "clip_layouts_golden.safetensors"), metadata=meta)
# A TorchScript archive, the format of OpenAI's own `ViT-B-16.pt`.
torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(out / "torchscript.pt"))
print(f"wrote {out}/clip_{{openai,timm,hf,layouts_golden}}.safetensors and torchscript.pt")
