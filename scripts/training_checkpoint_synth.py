"""Writes a synthetic iBOT training checkpoint of PersonViT's size (ViT-B/16 teacher and
student, AdamW moments for the student, loss centres, args) to measure the import's memory:

    python3 scripts/training_checkpoint_synth.py /tmp/checkpoint_vitb.pth
    /usr/bin/time -v transreid import --source /tmp/checkpoint_vitb.pth --pretrain-hw-ratio 2 \
        --num-classes 751 --out /tmp/vitb.safetensors

Values are random: only the layout and the sizes matter.
"""
import argparse
import sys

import torch

D, DEPTH = 768, 12
def vit():
    t = {"cls_token": torch.randn(1, 1, D), "pos_embed": torch.randn(1, 129, D),
         "patch_embed.proj.weight": torch.randn(D, 3, 16, 16), "patch_embed.proj.bias": torch.randn(D),
         "norm.weight": torch.ones(D), "norm.bias": torch.zeros(D)}
    for i in range(DEPTH):
        for name, (o, n) in {"attn.qkv": (3 * D, D), "attn.proj": (D, D), "mlp.fc1": (4 * D, D),
                             "mlp.fc2": (D, 4 * D)}.items():
            t[f"blocks.{i}.{name}.weight"] = torch.randn(o, n)
            t[f"blocks.{i}.{name}.bias"] = torch.randn(o)
        for norm in ["norm1", "norm2"]:
            t[f"blocks.{i}.{norm}.weight"] = torch.ones(D)
            t[f"blocks.{i}.{norm}.bias"] = torch.zeros(D)
    return t

teacher = {"backbone." + k: v for k, v in vit().items()}
teacher["head.last_layer.weight_v"] = torch.randn(8192, 256)
student = {"module.backbone." + k: v for k, v in vit().items()}
student["module.backbone.masked_embed"] = torch.randn(1, D)
moments = {i: {"exp_avg": torch.randn_like(v), "exp_avg_sq": torch.rand_like(v)}
           for i, v in enumerate(student.values())}
torch.save({"teacher": teacher, "student": student,
            "optimizer": {"state": moments, "param_groups": [{"lr": 5e-4, "params": list(moments)}]},
            "epoch": 260, "args": argparse.Namespace(arch="vit_base", patch_size=16),
            "ibot_loss": {"center": torch.randn(1, 8192)}}, sys.argv[1])
