#!/usr/bin/env python3
"""Expected numbers for the transreid-eval parity test, from a NumPy port of the reference.

Ports, line for line, `eval_func` (utils/metrics.py) and `re_ranking` (utils/reranking.py) of
TransReID commit dec55046; the only change is that the two torch distance products
(`addmm_(1, -2, a, b.t())`) are NumPy float32 matrix products with the same formula.
mINP follows fast-reid's `evaluate_py` (INP = cmc[last match] / (last match + 1)).

Writes tests/fixtures/reference_small.json (inputs and outputs). Run from the crate root:

    pip install numpy
    python3 scripts/reference_golden.py
"""
import json
import os

import numpy as np

MASK64 = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def uniform(seed, n):
    """n float32 values in [-0.5, 0.5), each a multiple of 2^-24 (exact in float32)."""
    return np.array([(splitmix64(seed * 1_000_003 + i) >> 40) / float(1 << 24) - 0.5 for i in range(n)], dtype=np.float32)


def make_set(seed, n, dim, num_ids, num_cams, centres):
    pids = np.array([splitmix64(seed * 7 + 1_000 + i) % num_ids for i in range(n)], dtype=np.int64)
    cams = np.array([splitmix64(seed * 7 + 5_000 + i) % num_cams for i in range(n)], dtype=np.int64)
    noise = uniform(seed, n * dim).reshape(n, dim)
    feats = (centres[pids % centres.shape[0]] + np.float32(1.5) * noise).astype(np.float32)
    return feats, pids, cams


def normalize(x):
    """F.normalize(x, p=2, dim=1, eps=1e-12) in float32."""
    n = np.sqrt((x.astype(np.float64) ** 2).sum(axis=1, keepdims=True)).astype(np.float32)
    return x / np.maximum(n, np.float32(1e-12))


def euclidean_distance(qf, gf):
    """utils/metrics.py euclidean_distance with the torch ops done in NumPy float32."""
    m, n = qf.shape[0], gf.shape[0]
    dist = np.broadcast_to((qf ** 2).sum(axis=1, keepdims=True), (m, n)) + \
        np.broadcast_to((gf ** 2).sum(axis=1, keepdims=True), (n, m)).T
    return (dist + np.float32(-2) * (qf @ gf.T)).astype(np.float32)


def eval_func(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """utils/metrics.py eval_func, plus fast-reid's INP."""
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        max_rank = num_g
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_AP, all_INP = [], [], []
    num_valid_q = 0.
    for q_idx in range(num_q):
        q_pid, q_camid = q_pids[q_idx], q_camids[q_idx]
        order = indices[q_idx]
        remove = (g_pids[order] == q_pid) & (g_camids[order] == q_camid)
        keep = np.invert(remove)
        orig_cmc = matches[q_idx][keep]
        if not np.any(orig_cmc):
            continue
        cmc = orig_cmc.cumsum()
        pos_idx = np.where(orig_cmc == 1)
        max_pos_idx = np.max(pos_idx)
        all_INP.append(cmc[max_pos_idx] / (max_pos_idx + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_valid_q += 1.
        num_rel = orig_cmc.sum()
        tmp_cmc = orig_cmc.cumsum()
        y = np.arange(1, tmp_cmc.shape[0] + 1) * 1.0
        tmp_cmc = tmp_cmc / y
        tmp_cmc = np.asarray(tmp_cmc) * orig_cmc
        all_AP.append(tmp_cmc.sum() / num_rel)
    assert num_valid_q > 0
    all_cmc = np.asarray(all_cmc).astype(np.float32)
    all_cmc = all_cmc.sum(0) / num_valid_q
    return all_cmc, np.mean(all_AP), np.mean(all_INP), int(num_valid_q)


def re_ranking(probFea, galFea, k1, k2, lambda_value):
    """utils/reranking.py re_ranking (local_distmat=None, only_local=False)."""
    query_num = probFea.shape[0]
    all_num = query_num + galFea.shape[0]
    feat = np.concatenate([probFea, galFea])
    sq = (feat ** 2).sum(axis=1, keepdims=True)
    distmat = np.broadcast_to(sq, (all_num, all_num)) + np.broadcast_to(sq, (all_num, all_num)).T
    original_dist = (distmat + np.float32(-2) * (feat @ feat.T)).astype(np.float32)
    gallery_num = original_dist.shape[0]
    original_dist = np.transpose(original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float16)
    initial_rank = np.argsort(original_dist).astype(np.int32)

    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, :k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, :k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            candidate_forward_k_neigh_index = initial_rank[candidate, :int(np.around(k1 / 2)) + 1]
            candidate_backward_k_neigh_index = initial_rank[candidate_forward_k_neigh_index,
                                                            :int(np.around(k1 / 2)) + 1]
            fi_candidate = np.where(candidate_backward_k_neigh_index == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2 / 3 * len(
                    candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal_index)

        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = weight / np.sum(weight)
    original_dist = original_dist[:query_num, ]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float16)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    invIndex = []
    for i in range(gallery_num):
        invIndex.append(np.where(V[:, i] != 0)[0])

    jaccard_dist = np.zeros_like(original_dist, dtype=np.float16)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, gallery_num], dtype=np.float16)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(V[i, indNonZero[j]],
                                                                               V[indImages[j], indNonZero[j]])
        jaccard_dist[i] = 1 - temp_min / (2 - temp_min)

    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]


def floats(a):
    return [float(x) for x in np.asarray(a).ravel()]


def main():
    dim, num_ids, num_cams = 16, 8, 3
    centres = uniform(99, num_ids * dim).reshape(num_ids, dim)
    qf, q_pids, q_cams = make_set(1, 12, dim, 10, num_cams, centres)  # pids 8, 9: no gallery match
    gf, g_pids, g_cams = make_set(2, 60, dim, num_ids, num_cams, centres)
    qn, gn = normalize(qf), normalize(gf)

    distmat = euclidean_distance(qn, gn)
    cmc, mAP, mINP, valid = eval_func(distmat, q_pids, g_pids, q_cams, g_cams)
    out = {
        "source": "scripts/reference_golden.py (NumPy port of TransReID dec55046 eval_func / re_ranking)",
        "dim": dim,
        "query_features": floats(qf), "query_pids": q_pids.tolist(), "query_camids": q_cams.tolist(),
        "gallery_features": floats(gf), "gallery_pids": g_pids.tolist(), "gallery_camids": g_cams.tolist(),
        "distmat": floats(distmat),
        "eval": {"max_rank": 50, "cmc": floats(cmc), "map": float(mAP), "minp": float(mINP), "num_valid": valid},
        "rerank": [],
    }
    for k1, k2, lam in [(20, 6, 0.3), (5, 1, 0.5), (50, 15, 0.3)]:
        rr = re_ranking(qn, gn, k1, k2, lam)
        assert rr.dtype == np.float32
        cmc, mAP, mINP, valid = eval_func(rr, q_pids, g_pids, q_cams, g_cams)
        out["rerank"].append({"k1": k1, "k2": k2, "lambda": lam, "distmat": floats(rr),
                              "cmc": floats(cmc), "map": float(mAP), "minp": float(mINP)})
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "reference_small.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f)
    print("wrote", os.path.normpath(path), "numpy", np.__version__)


if __name__ == "__main__":
    main()
