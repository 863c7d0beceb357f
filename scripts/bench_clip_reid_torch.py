"""Step times of the reference CLIP-ReID ViT-B/16 (Syliz517/CLIP-ReID) on the CPU, the PyTorch
side of `scripts/bench-clip-reid.sh`: its `build_transformer` (random weights: 751 identities,
camera SIE at 1.0, 256x128), its optimisers (`make_optimizer_1stage`, `make_optimizer_2stage`)
and losses, in f32. A stage-1 step computes the text features of a batch's prompts over
CLIP's 77 tokens, SupCon both ways against random image features, backward (through the text
encoder, whose gradients the reference computes and discards) and Adam; a stage-2 step is
the training forward, 0.25 x ID + triplet + image-to-text cross-entropy against fixed text
features, backward and Adam. Prints one JSON line per stage.

Usage: python3 scripts/bench_clip_reid_torch.py <CLIP-ReID checkout> [--stride 16]
           [--batch 64] [--prompt-batch 64] [--steps 2]
"""
import argparse
import json
import resource
import sys
import time
import types

import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("reference")
parser.add_argument("--stride", type=int, default=16)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--prompt-batch", type=int, default=64)
parser.add_argument("--steps", type=int, default=2)
args = parser.parse_args()

torch.Tensor.cuda = lambda self, *a, **k: self  # the reference moves prompts to the GPU
sys.path.insert(0, args.reference)
from model import make_model_clipreid as mcr  # noqa: E402
from model.clip import model as cm  # noqa: E402
from loss.softmax_loss import CrossEntropyLabelSmooth  # noqa: E402
from loss.supcontrast import SupConLoss  # noqa: E402
from loss.triplet_loss import TripletLoss  # noqa: E402
from solver.make_optimizer_prompt import make_optimizer_1stage, make_optimizer_2stage  # noqa: E402

CLASSES, CAMS, H, W, PATCH = 751, 6, 256, 128, 16
torch.manual_seed(0)

# build_transformer as the reference builds it, with CLIP ViT-B/16's shapes and random weights
# (its own constructor downloads the OpenAI weights).
m = mcr.build_transformer.__new__(mcr.build_transformer)
nn.Module.__init__(m)
m.model_name, m.cos_layer, m.neck, m.neck_feat = "ViT-B-16", False, "bnneck", "before"
m.in_planes, m.in_planes_proj = 768, 512
m.num_classes, m.camera_num, m.view_num, m.sie_coe = CLASSES, CAMS, 1, 1.0
m.classifier = nn.Linear(768, CLASSES, bias=False)
m.classifier_proj = nn.Linear(512, CLASSES, bias=False)
m.bottleneck = nn.BatchNorm1d(768)
m.bottleneck.bias.requires_grad_(False)
m.bottleneck_proj = nn.BatchNorm1d(512)
m.bottleneck_proj.bias.requires_grad_(False)
gh, gw = (H - PATCH) // args.stride + 1, (W - PATCH) // args.stride + 1
m.image_encoder = cm.VisionTransformer(gh, gw, PATCH, args.stride, 768, 12, 12, 512)
m.cv_embed = nn.Parameter(torch.randn(CAMS, 768) * 0.02)
mask = cm.CLIP.build_attention_mask(types.SimpleNamespace(context_length=77))
text = types.SimpleNamespace(
    transformer=cm.Transformer(512, 12, 8, attn_mask=mask),
    positional_embedding=nn.Parameter(torch.randn(77, 512) * 0.01),
    ln_final=cm.LayerNorm(512),
    text_projection=nn.Parameter(torch.randn(512, 512) * 512 ** -0.5),
    dtype=torch.float32,
)
m.prompt_learner = mcr.PromptLearner(CLASSES, "market1501", torch.float32, nn.Embedding(49408, 512))
m.text_encoder = mcr.TextEncoder(text)

solver = types.SimpleNamespace(
    STAGE1=types.SimpleNamespace(BASE_LR=3.5e-4, WEIGHT_DECAY=1e-4, OPTIMIZER_NAME="Adam"),
    STAGE2=types.SimpleNamespace(BASE_LR=5e-6, WEIGHT_DECAY=1e-4, WEIGHT_DECAY_BIAS=1e-4,
                                 BIAS_LR_FACTOR=2, LARGE_FC_LR=False, OPTIMIZER_NAME="Adam",
                                 CENTER_LR=0.5))
cfg = types.SimpleNamespace(SOLVER=solver)


def timed(stage, batch, step):
    step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    print(json.dumps({"impl": "pytorch", "training_stage": stage, "stride": args.stride, "batch": batch,
                      "steps": args.steps, "seconds_per_step": round(seconds, 3),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}),
          flush=True)


# Stage 1, as processor_clipreid_stage1.do_train_stage1 steps.
m.train()
supcon = SupConLoss("cpu")
optimizer = make_optimizer_1stage(cfg, m)
labels = (torch.arange(args.prompt_batch) * 37) % CLASSES


def prompt_step():
    image_features = torch.randn(args.prompt_batch, 512)
    text_features = m(label=labels, get_text=True)
    loss = supcon(image_features, text_features, labels, labels) + supcon(
        text_features, image_features, labels, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


timed("prompts", args.prompt_batch, prompt_step)

# Stage 2, as processor_clipreid_stage2.do_train_stage2 steps (text features fixed).
with torch.no_grad():
    text_features = torch.cat([m(label=torch.arange(i, min(i + 64, CLASSES)), get_text=True)
                               for i in range(0, CLASSES, 64)])
for name, p in m.named_parameters():
    if "prompt_learner" in name or "text_encoder" in name:
        p.requires_grad_(False)
optimizer, _ = make_optimizer_2stage(cfg, m, nn.Linear(1, 1))
xent = CrossEntropyLabelSmooth(CLASSES, use_gpu=False)
triplet = TripletLoss(0.3)
targets = torch.arange(args.batch) // 4
cams = torch.arange(args.batch) % CAMS


def image_step():
    images = torch.randn(args.batch, 3, H, W)
    scores, feats, image_proj = m(images, targets, cam_label=cams, view_label=torch.zeros_like(cams))
    loss = (0.25 * sum(xent(s, targets) for s in scores) + sum(triplet(f, targets)[0] for f in feats)
            + xent(image_proj @ text_features.t(), targets))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


timed("images", args.batch, image_step)
