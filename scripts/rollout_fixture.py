#!/usr/bin/env python3
"""Golden values of attention rollout: jacobgil/vit-explain's `rollout` in NumPy, with each row of
(A + I) / 2 renormalised to sum 1 (vit-explain's `a / a.sum(dim=-1)` broadcasts the row sums
along the rows, dividing column by column instead).

Writes crates/transreid-model/tests/fixtures/rollout.json: random attention probabilities (4
blocks, 3 heads, 1 + 6 tokens: a 3x2 patch grid), and the map for each head fusion and discard
ratio. Usage: python3 scripts/rollout_fixture.py
"""
import json
import pathlib

import numpy as np

BLOCKS, HEADS, TOKENS = 4, 3, 7
rng = np.random.default_rng(0)
logits = rng.normal(size=(BLOCKS, HEADS, TOKENS, TOKENS)) * 2.0
attentions = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
# The fixture stores float32: roll out exactly those values.
attentions = attentions.astype(np.float32).astype(np.float64)


def rollout(attentions, discard_ratio, head_fusion):
    result = np.eye(TOKENS)
    for attention in attentions:
        fused = {"mean": attention.mean(0), "max": attention.max(0), "min": attention.min(0)}[head_fusion]
        flat = fused.reshape(-1).copy()
        count = int(flat.size * discard_ratio)
        indices = np.argsort(flat, kind="stable")[:count]
        indices = indices[indices != 0]  # the class token's attention to itself is kept
        flat[indices] = 0
        fused = flat.reshape(TOKENS, TOKENS)
        a = (fused + np.eye(TOKENS)) / 2
        a = a / a.sum(-1, keepdims=True)
        result = a @ result
    mask = result[0, 1:]
    return mask / mask.max()


cases = [
    {"fusion": fusion, "discard_ratio": ratio, "map": rollout(attentions, ratio, fusion).tolist()}
    for fusion in ("mean", "max", "min")
    for ratio in (0.0, 0.5, 0.9)
]
out = pathlib.Path(__file__).resolve().parent.parent / "crates/transreid-model/tests/fixtures/rollout.json"
out.write_text(json.dumps({
    "heads": HEADS,
    "tokens": TOKENS,
    "attentions": [block.reshape(-1).astype(np.float32).tolist() for block in attentions],
    "cases": cases,
}))
print(f"wrote {out}")
