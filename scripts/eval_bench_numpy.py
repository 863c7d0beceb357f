#!/usr/bin/env python3
"""The reference evaluation in NumPy, timed on the data written by the Rust benchmark.

Runs what TransReID's `R1_mAP_eval.compute` does after feature extraction (commit dec55046,
utils/metrics.py): `F.normalize`, `euclidean_distance` (the torch ops done in NumPy float32 with
the same formula and summation order) and `eval_func` verbatim, on the .npy files that

    cargo bench -p transreid-eval --bench msmt_scale -- --scale 0.5 --dump DIR

writes. Prints seconds per phase, the peak resident memory (VmHWM) and mAP / Rank-1 for
comparison with the Rust numbers.

    pip install numpy
    python3 scripts/eval_bench_numpy.py DIR
"""
import argparse
import json
import os
import time

import numpy as np


def peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak():
    """Reset VmHWM to the current resident size (Linux clear_refs value 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def normalize(x):
    """F.normalize(x, p=2, dim=1, eps=1e-12), without a squared copy of x."""
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x / np.maximum(norm, np.float32(1e-12))


def euclidean_distance(qf, gf):
    """utils/metrics.py euclidean_distance: (|q|^2 + |g|^2) + (-2 q.g), float32."""
    distmat = np.add.outer((qf ** 2).sum(axis=1), (gf ** 2).sum(axis=1))
    prod = qf @ gf.T
    prod *= np.float32(-2)
    distmat += prod
    del prod
    return distmat


def eval_func(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """utils/metrics.py eval_func, verbatim apart from the removed print."""
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        max_rank = num_g
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc = []
    all_AP = []
    num_valid_q = 0.
    for q_idx in range(num_q):
        q_pid = q_pids[q_idx]
        q_camid = q_camids[q_idx]
        order = indices[q_idx]
        remove = (g_pids[order] == q_pid) & (g_camids[order] == q_camid)
        keep = np.invert(remove)
        orig_cmc = matches[q_idx][keep]
        if not np.any(orig_cmc):
            continue
        cmc = orig_cmc.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_valid_q += 1.
        num_rel = orig_cmc.sum()
        tmp_cmc = orig_cmc.cumsum()
        y = np.arange(1, tmp_cmc.shape[0] + 1) * 1.0
        tmp_cmc = tmp_cmc / y
        tmp_cmc = np.asarray(tmp_cmc) * orig_cmc
        AP = tmp_cmc.sum() / num_rel
        all_AP.append(AP)
    assert num_valid_q > 0, "Error: all query identities do not appear in gallery"
    all_cmc = np.asarray(all_cmc).astype(np.float32)
    all_cmc = all_cmc.sum(0) / num_valid_q
    mAP = np.mean(all_AP)
    return all_cmc, mAP


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="directory written by the msmt_scale bench with --dump")
    args = parser.parse_args()

    load = lambda name: np.load(os.path.join(args.data, name))
    qf, gf = load("query.npy"), load("gallery.npy")
    q_pids, q_camids = load("q_pids.npy"), load("q_camids.npy")
    g_pids, g_camids = load("g_pids.npy"), load("g_camids.npy")
    features_mib = (qf.nbytes + gf.nbytes) / 2 ** 20
    print(f"numpy {np.__version__}: {qf.shape[0]} queries x {gf.shape[0]} gallery x {qf.shape[1]} dims, "
          f"features {features_mib:.0f} MiB, resident peak after loading {peak_mib():.0f} MiB")

    reset_peak()
    t0 = time.perf_counter()
    qn, gn = normalize(qf), normalize(gf)
    t1 = time.perf_counter()
    distmat = euclidean_distance(qn, gn)
    t2 = time.perf_counter()
    cmc, mAP = eval_func(distmat, q_pids, g_pids, q_camids, g_camids)
    t3 = time.perf_counter()
    peak = peak_mib()
    seconds = t3 - t0
    print(f"normalize {t1 - t0:.2f} s, distmat {t2 - t1:.2f} s, eval_func {t3 - t2:.2f} s; total {seconds:.2f} s, "
          f"peak {peak:.0f} MiB")
    print(f"  mAP {mAP:.6f} R1 {cmc[0]:.6f} R5 {cmc[4]:.6f} R10 {cmc[9]:.6f}")
    print("RESULT " + json.dumps({"mode": "numpy", "nq": int(qf.shape[0]), "ng": int(gf.shape[0]), "dim": int(qf.shape[1]),
                                  "seconds": round(seconds, 3), "peak_mib": round(peak), "features_mib": round(features_mib),
                                  "map": float(mAP), "rank1": float(cmc[0])}))


if __name__ == "__main__":
    main()
