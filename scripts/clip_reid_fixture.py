"""Writes the CLIP-ReID fixtures of crates/transreid-model/tests: a tiny model of the
reference's `build_transformer` (`model/make_model_clipreid.py`) saved as the reference saves a
trained model (`clip_reid.pth`, a `torch.save` state dict), and the reference's outputs on it
(`clip_reid.safetensors`); and tests/fixtures/clip_reid_optim.safetensors of the root crate: two
Adam steps of each stage with the reference's parameter groups (`make_optimizer_1stage`,
`make_optimizer_2stage`) and both schedules per epoch.

The model: a CLIP image encoder (width 32, 12 blocks as the reference's hard-coded split needs,
2 heads, projection 16) at 64x40 with stride 16, SIE on cameras and views (3 x 2 rows,
coefficient 1.5), the two BNNecks with non-trivial running statistics and the two bias-free
classifiers over 5 identities; the text side is a 2-block width-64 CLIP text transformer with
the reference's causal mask over 77 tokens and its PromptLearner for "person" (its context
width, hard-coded to 512, replaced by the text width), built from a random token embedding.

Outputs on a batch of 6 images with labels [0, 0, 3, 3, 1, 1]: the eval feature (NECK_FEAT
before and after), the stage-1 image feature, the text features of the batch's labels and of
every identity, the training forward (two logits, three features) and the BNNecks' running
statistics after it, the stage-1 loss (SupCon image-to-text plus text-to-image) with its
gradient for the prompt vectors, and the stage-2 loss (0.25 x label-smoothed ID on both
classifiers + triplet 0.3 on the three features + label-smoothed cross-entropy of the
image-to-text logits) with gradients of some parameters. The token ids of both prompts come
from the reference's tokenizer.

Usage: python3 scripts/clip_reid_fixture.py <CLIP-ReID checkout> [out folder]
Needs torch, torchvision, timm, ftfy, regex and safetensors. The reference is imported from the
given folder, not copied.
"""
import copy
import pathlib
import sys
import types

import torch
import torch.nn as nn
from safetensors.torch import save_file

ref = pathlib.Path(sys.argv[1]).resolve()
root = pathlib.Path(__file__).resolve().parent.parent
out = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else root / "crates/transreid-model/tests/fixtures"
sys.path.insert(0, str(ref))
torch.Tensor.cuda = lambda self, *a, **k: self  # the reference moves prompts to the GPU
from model import make_model_clipreid as mcr  # noqa: E402
from model.clip import model as cm  # noqa: E402
from model.clip import clip  # noqa: E402
from loss.softmax_loss import CrossEntropyLabelSmooth  # noqa: E402
from loss.supcontrast import SupConLoss  # noqa: E402
from loss.triplet_loss import TripletLoss  # noqa: E402

WIDTH, LAYERS, HEADS, OUT, PATCH, STRIDE = 32, 12, 2, 16, 16, 16
TEXT_WIDTH, TEXT_LAYERS, TEXT_HEADS = 64, 2, 2
H, W = 64, 40
CLASSES, CAMS, VIEWS, SIE_COE = 5, 3, 2, 1.5
torch.manual_seed(0)


def randomise(module, qkv_std):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("in_proj_weight"):
                p.normal_(0, qkv_std)
            elif name.endswith(".bias"):
                p.normal_(0, 0.1)
            elif "ln_" in name and name.endswith("weight"):
                p.uniform_(0.5, 1.5)


m = mcr.build_transformer.__new__(mcr.build_transformer)
nn.Module.__init__(m)
m.model_name, m.cos_layer, m.neck, m.neck_feat = "ViT-B-16", False, "bnneck", "before"
m.in_planes, m.in_planes_proj = WIDTH, OUT
m.num_classes, m.camera_num, m.view_num, m.sie_coe = CLASSES, CAMS, VIEWS, SIE_COE
m.classifier = nn.Linear(WIDTH, CLASSES, bias=False)
m.classifier_proj = nn.Linear(OUT, CLASSES, bias=False)
m.classifier.apply(mcr.weights_init_classifier)
m.classifier_proj.apply(mcr.weights_init_classifier)
m.bottleneck = nn.BatchNorm1d(WIDTH)
m.bottleneck.bias.requires_grad_(False)
m.bottleneck_proj = nn.BatchNorm1d(OUT)
m.bottleneck_proj.bias.requires_grad_(False)
with torch.no_grad():
    for bn in (m.bottleneck, m.bottleneck_proj):
        bn.weight.uniform_(0.5, 1.5)
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.num_batches_tracked.fill_(7)
gh, gw = (H - PATCH) // STRIDE + 1, (W - PATCH) // STRIDE + 1
m.image_encoder = cm.VisionTransformer(gh, gw, PATCH, STRIDE, WIDTH, LAYERS, HEADS, OUT)
randomise(m.image_encoder, 0.3)
m.cv_embed = nn.Parameter(torch.randn(CAMS * VIEWS, WIDTH) * 0.5)

mask = cm.CLIP.build_attention_mask(types.SimpleNamespace(context_length=77))
text = types.SimpleNamespace(
    transformer=cm.Transformer(TEXT_WIDTH, TEXT_LAYERS, TEXT_HEADS, attn_mask=mask),
    positional_embedding=nn.Parameter(torch.randn(77, TEXT_WIDTH) * 0.1),
    ln_final=cm.LayerNorm(TEXT_WIDTH),
    text_projection=nn.Parameter(torch.randn(TEXT_WIDTH, OUT) * TEXT_WIDTH ** -0.5),
    dtype=torch.float32,
)
randomise(text.transformer, 0.2)
token_embedding = nn.Embedding(49408, TEXT_WIDTH)
m.prompt_learner = mcr.PromptLearner(CLASSES, "market1501", torch.float32, token_embedding)
m.prompt_learner.cls_ctx = nn.Parameter(torch.randn(CLASSES, 4, TEXT_WIDTH) * 0.3)
m.text_encoder = mcr.TextEncoder(text)

state = {k: v.detach().clone() for k, v in m.state_dict().items()}
torch.save(state, out / "clip_reid.pth")

images = torch.randn(6, 3, H, W)
labels = torch.tensor([0, 0, 3, 3, 1, 1])
cams = torch.tensor([0, 2, 1, 2, 0, 1])
views = torch.tensor([1, 0, 1, 1, 0, 0])
g = {"input.images": images, "input.labels": labels, "input.cameras": cams, "input.views": views}
for name, prompt in (("person", "market1501"), ("vehicle", "veri")):
    g[f"tokens.{name}"] = clip.tokenize(
        "A photo of a X X X X vehicle." if prompt == "veri" else "A photo of a X X X X person.")[0]

m.eval()
with torch.no_grad():
    g["eval.before"] = m(images, cam_label=cams, view_label=views)
    m.neck_feat = "after"
    g["eval.after"] = m(images, cam_label=cams, view_label=views)
    m.neck_feat = "before"
    g["stage1.image_features"] = m(images, get_image=True)
    g["text.batch"] = m(label=labels, get_text=True)
    g["text.all"] = m(label=torch.arange(CLASSES), get_text=True)
    g["prompts"] = m.prompt_learner(labels)

# Stage 1: the prompt vectors against fixed image features.
supcon = SupConLoss("cpu")
image_features = g["stage1.image_features"]
text_features = m(label=labels, get_text=True)
i2t = supcon(image_features, text_features, labels, labels)
t2i = supcon(text_features, image_features, labels, labels)
(i2t + t2i).backward()
g["stage1.i2t"], g["stage1.t2i"] = i2t.detach().reshape(1), t2i.detach().reshape(1)
g["stage1.grad.cls_ctx"] = m.prompt_learner.cls_ctx.grad.clone()
m.zero_grad()

# Stage 2: the image side in training mode against fixed text features.
m.train()
xent = CrossEntropyLabelSmooth(CLASSES, use_gpu=False)
triplet = TripletLoss(0.3)
scores, feats, image_proj = m(images, labels, cam_label=cams, view_label=views)
logits = image_proj @ g["text.all"].t()
id_loss = sum(xent(s, labels) for s in scores)
tri_loss = sum(triplet(f, labels)[0] for f in feats)
i2t_loss = xent(logits, labels)
loss = 0.25 * id_loss + 1.0 * tri_loss + 1.0 * i2t_loss
loss.backward()
for i, s in enumerate(scores):
    g[f"train.score{i}"] = s.detach()
for i, f in enumerate(feats):
    g[f"train.feat{i}"] = f.detach()
g["stage2.id"], g["stage2.triplet"] = id_loss.detach().reshape(1), tri_loss.detach().reshape(1)
g["stage2.i2t"], g["stage2.loss"] = i2t_loss.detach().reshape(1), loss.detach().reshape(1)
for bn in ("bottleneck", "bottleneck_proj"):
    for stat in ("running_mean", "running_var"):
        g[f"train.{bn}.{stat}"] = getattr(m, bn).__getattr__(stat).clone()
params = dict(m.named_parameters())
for name in ("image_encoder.conv1.weight", "image_encoder.class_embedding",
             "image_encoder.transformer.resblocks.11.attn.in_proj_weight", "image_encoder.proj",
             "cv_embed", "bottleneck.weight", "bottleneck_proj.weight", "classifier.weight",
             "classifier_proj.weight"):
    g[f"stage2.grad.{name}"] = params[name].grad.clone()
assert m.bottleneck.bias.grad is None and m.prompt_learner.cls_ctx.grad is None

# The optimisers and schedules (tests/fixtures/clip_reid_optim.safetensors of the root crate):
# two Adam steps of each stage with the reference's parameter groups on this model (lr 1e-3 so
# that the steps are far above rounding), and the schedules of the person configuration.
from solver.lr_scheduler import WarmupMultiStepLR  # noqa: E402
from solver.make_optimizer_prompt import make_optimizer_1stage, make_optimizer_2stage  # noqa: E402
from solver.scheduler_factory import create_scheduler  # noqa: E402

o = {}
solver = types.SimpleNamespace(
    STAGE1=types.SimpleNamespace(BASE_LR=1e-3, WEIGHT_DECAY=1e-4, OPTIMIZER_NAME="Adam"),
    STAGE2=types.SimpleNamespace(BASE_LR=1e-3, WEIGHT_DECAY=1e-4, WEIGHT_DECAY_BIAS=1e-4,
                                 BIAS_LR_FACTOR=2, LARGE_FC_LR=False, OPTIMIZER_NAME="Adam",
                                 CENTER_LR=0.5))
cfg = types.SimpleNamespace(SOLVER=solver)


def fresh():
    m.load_state_dict(state)
    m.zero_grad()
    for p in m.parameters():
        p.requires_grad_(True)
    m.bottleneck.bias.requires_grad_(False)
    m.bottleneck_proj.bias.requires_grad_(False)


fresh()
before = {k: v.detach().clone() for k, v in m.named_parameters()}
optimizer = make_optimizer_1stage(cfg, m)
for _ in range(2):
    text_features = m(label=labels, get_text=True)
    loss = (supcon(image_features, text_features, labels, labels)
            + supcon(text_features, image_features, labels, labels))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
o["stage1.delta.prompt_learner.cls_ctx"] = m.prompt_learner.cls_ctx.detach() - before["prompt_learner.cls_ctx"]
assert torch.equal(m.text_encoder.ln_final.weight, before["text_encoder.ln_final.weight"])

fresh()
m.train()
optimizer, _ = make_optimizer_2stage(cfg, m, nn.Linear(1, 1))
stage2_names = ("image_encoder.conv1.weight", "image_encoder.class_embedding",
                "image_encoder.ln_pre.bias", "image_encoder.transformer.resblocks.11.attn.in_proj_bias",
                "image_encoder.transformer.resblocks.3.mlp.c_fc.weight", "image_encoder.proj",
                "cv_embed", "bottleneck.weight", "classifier.weight")
for step in range(2):
    scores, feats, image_proj = m(images, labels, cam_label=cams, view_label=views)
    loss = (0.25 * sum(xent(s, labels) for s in scores) + sum(triplet(f, labels)[0] for f in feats)
            + xent(image_proj @ g["text.all"].t(), labels))
    optimizer.zero_grad()
    loss.backward()
    # The gradients each step used: Adam's arithmetic is checked on exactly these.
    for name in stage2_names:
        o[f"stage2.grad{step}.{name}"] = dict(m.named_parameters())[name].grad.clone()
    optimizer.step()
for name in stage2_names:
    o[f"stage2.delta.{name}"] = dict(m.named_parameters())[name].detach() - before[name]
assert torch.equal(m.bottleneck.bias, before["bottleneck.bias"])
assert torch.equal(m.prompt_learner.cls_ctx, before["prompt_learner.cls_ctx"])

# Schedules, epoch 0 (after construction) to the last, for a weight and a bias group.
params = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
opt = torch.optim.Adam([{"params": [params[0]], "lr": 3.5e-4}])
cosine = create_scheduler(opt, num_epochs=120, lr_min=1e-6, warmup_lr_init=1e-5, warmup_t=5)
o["schedule.stage1"] = torch.tensor([cosine._get_lr(e)[0] for e in range(121)], dtype=torch.float64)
opt = torch.optim.Adam([{"params": [params[0]], "lr": 5e-6}, {"params": [params[1]], "lr": 1e-5}])
multistep = WarmupMultiStepLR(opt, [30, 50], 0.1, 0.1, 10, "linear")
values = [[group["lr"] for group in opt.param_groups]]
for _ in range(60):
    multistep.step()
    values.append([group["lr"] for group in opt.param_groups])
o["schedule.stage2"] = torch.tensor(values, dtype=torch.float64)
save_file({k: v.contiguous() for k, v in o.items()}, str(root / "tests/fixtures/clip_reid_optim.safetensors"),
          metadata={"description": "two Adam steps of each CLIP-ReID stage on the model in "
                                   "crates/transreid-model/tests/fixtures/clip_reid.pth, and the schedules",
                    "torch": torch.__version__})

g = {k: v.contiguous() for k, v in g.items()}
save_file(g, str(out / "clip_reid.safetensors"), metadata={
    "description": "golden outputs of the reference's CLIP-ReID on the model in clip_reid.pth",
    "torch": torch.__version__,
})
print(f"wrote {out}/clip_reid.pth ({len(state)} tensors), clip_reid.safetensors ({len(g)} tensors)")
