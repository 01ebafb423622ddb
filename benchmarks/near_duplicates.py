"""Near-duplicate pin clusters (linksage.graph.near_duplicates): the cells method against the kNN baseline.

Data: seeded unit vectors shaped like text embeddings (``ann.clustered_vectors``: 1,000 Zipf-sized
clusters of low-rank spread), then planted near-duplicates: groups of copies of a row, with group sizes
from a power law (most are pairs, the largest a few hundred), each copy = its row + isotropic noise of a
norm drawn per group, so that the copies' pairwise cosines spread over 0.86-0.99, on both sides of the
default threshold 0.9; and some exact duplicates. Float16, like ``content/pin_text.npy``.

Measured, in the same process and alternating: ``near_duplicate_clusters`` with ``method="cells"`` (the
default) and ``method="knn"`` (the implementation before the cells, through the same function), both
past ``exact_max`` (the IVF path), medians of ``--repeats``. Then, untimed: whether both give the same
clusters; the pair-counting recall of each partition against the other (of the pin pairs that one puts
in one cluster, the share the other does too); recall against exact search on a sample (every pair of
a sampled pin and any pin at cosine >= threshold, by brute force: the share that the method puts in one
cluster, over all those pairs and as a mean over the sampled pins that have any); and the cells
method's edges below the threshold (must be 0).

    .venv/bin/python benchmarks/near_duplicates.py                 # 433,000 x 384 (1-2 minutes on 2 cores)
    .venv/bin/python benchmarks/near_duplicates.py --n 100000      # quick look

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from _machine import machine
from ann import clustered_vectors
from linksage.config.graph import GraphConfig
from linksage.graph.near_duplicates import near_duplicate_clusters


def plant_near_duplicates(
    x: np.ndarray, seed: int, copies: float = 0.06, exact: float = 0.02, largest: int = 300, exponent: float = 2.5
) -> np.ndarray:
    """Overwrite rows of unit ``x`` with near-copies of other rows (about ``copies`` of all) and exact copies."""
    rng = np.random.default_rng(seed)
    n, dim = x.shape
    sizes = np.arange(2, largest + 1)
    p = sizes.astype(np.float64) ** -exponent
    group = rng.choice(sizes, size=int(copies * n / (p @ (sizes - 1) / p.sum())) + 1, p=p / p.sum())
    rows = rng.permutation(n)
    source, targets = rows[: len(group)], rows[len(group) : len(group) + int((group - 1).sum())]
    of = np.repeat(np.arange(len(group)), group - 1)  # the group of each target
    noise = rng.uniform(0.1, 0.4, len(group))[of, None]  # |noise|: pairwise cosine about 1 / (1 + noise^2)
    y = x[source[of]] + noise * rng.standard_normal((len(targets), dim)).astype(np.float32) / np.sqrt(dim)
    x[targets] = y / np.linalg.norm(y, axis=1, keepdims=True)
    same = rng.choice(n, size=(int(exact * n), 2))
    x[same[:, 0]] = x[same[:, 1]]
    return x


def same_cluster_recall(truth: np.ndarray, found: np.ndarray) -> float:
    """Of the pin pairs that ``truth`` puts in one cluster, the share that ``found`` puts in one cluster too."""
    inside = truth >= 0
    _, per_truth = np.unique(truth[inside], return_counts=True)
    both = inside & (found >= 0)
    _, per_both = np.unique(truth[both].astype(np.int64) << 32 | found[both], return_counts=True)
    total = (per_truth * (per_truth - 1)).sum()
    return float((per_both * (per_both - 1)).sum() / total) if total else 1.0


def exact_sample_pairs(x: np.ndarray, threshold: float, sample: np.ndarray, chunk: int = 16_384) -> np.ndarray:
    """(i, j) for i in ``sample`` and every other row j at cosine >= threshold, by brute force."""
    q = x[sample].astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    parts = []
    for lo in range(0, len(x), chunk):
        y = x[lo : lo + chunk].astype(np.float32)
        y /= np.linalg.norm(y, axis=1, keepdims=True)
        i, j = np.nonzero(q @ y.T >= threshold)
        parts.append(np.stack([sample[i], j + lo], axis=1))
    pairs = np.concatenate(parts)
    return pairs[pairs[:, 0] != pairs[:, 1]]


def pair_recall(pairs: np.ndarray, pin_cluster: np.ndarray) -> tuple[float, float]:
    """The share of ``pairs`` whose two pins are in one cluster; and its mean over their first pins.

    (Large groups have many pairs: the mean per pin weighs each sampled pin once.)
    """
    if len(pairs) == 0:
        return 1.0, 1.0
    a, b = pin_cluster[pairs[:, 0]], pin_cluster[pairs[:, 1]]
    hit = (a >= 0) & (a == b)
    _, pin = np.unique(pairs[:, 0], return_inverse=True)
    return float(hit.mean()), float((np.bincount(pin, hit) / np.bincount(pin)).mean())


def main(argv: list[str] | None = None) -> dict[str, object]:
    cfg = GraphConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=433_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--threshold", type=float, default=cfg.near_duplicate_threshold)
    ap.add_argument("--k", type=int, default=cfg.near_duplicate_k)
    ap.add_argument("--nprobe", type=int, default=cfg.near_duplicate_nprobe)
    ap.add_argument("--pca", type=int, default=cfg.near_duplicate_pca)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample", type=int, default=2_000, help="pins whose exact pairs are found by brute force")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    x = plant_near_duplicates(clustered_vectors(args.n, args.dim, args.seed), args.seed + 1).astype(np.float16)
    print(f"data: {args.n:,} x {args.dim} float16 in {time.perf_counter() - t0:.1f}s", flush=True)
    opts = {"k": args.k, "nprobe": args.nprobe, "pca_dim": args.pca, "exact_max": 0, "seed": args.seed}

    near_duplicate_clusters(x[:20_000], args.threshold, **opts)  # numba's compilation (or cache load) untimed
    times: dict[str, list[float]] = {"cells": [], "knn": []}
    last = {}
    for r in range(args.repeats):
        for method in ("cells", "knn"):
            t = time.perf_counter()
            last[method] = near_duplicate_clusters(x, args.threshold, method=method, **opts)
            times[method].append(time.perf_counter() - t)
            print(f"repeat {r + 1} {method}: {times[method][-1]:.2f}s, load {os.getloadavg()[0]:.1f}", flush=True)
    new, old = last["cells"], last["knn"]

    edges = near_duplicate_clusters(x, args.threshold, method="cells", keep_edges=True, **opts).edges
    assert edges is not None
    a, b = edges[0][edges[0] != edges[1]], edges[1][edges[0] != edges[1]]
    cos = np.zeros(len(a), np.float32)
    for lo in range(0, len(a), 65_536):
        xa, xb = x[a[lo : lo + 65_536]].astype(np.float32), x[b[lo : lo + 65_536]].astype(np.float32)
        cos[lo : lo + 65_536] = np.einsum("ij,ij->i", xa, xb) / np.linalg.norm(xa, axis=1) / np.linalg.norm(xb, axis=1)
    sample = np.sort(np.random.default_rng(args.seed + 2).choice(args.n, min(args.sample, args.n), replace=False))
    truth = exact_sample_pairs(x, args.threshold, sample)

    new_s, baseline_s = statistics.median(times["cells"]), statistics.median(times["knn"])
    recall_new, recall_old = pair_recall(truth, new.pin_cluster), pair_recall(truth, old.pin_cluster)
    keep = ["index", "candidate_pairs", "cells", "largest_cell", "split_cells", "second_probes", "dense_pairs"]
    keep += ["train_assign_s", "cells_s", "second_probe_s"]
    result: dict[str, object] = {
        "n": args.n,
        "dim": args.dim,
        "threshold": args.threshold,
        "new_s": round(new_s, 2),
        "baseline_s": round(baseline_s, 2),
        "ratio": round(baseline_s / new_s, 2),
        "new_runs_s": [round(t, 2) for t in times["cells"]],
        "baseline_runs_s": [round(t, 2) for t in times["knn"]],
        "pairs_new": new.stats["pairs"],
        "pairs_baseline": old.stats["pairs"],
        "clusters_new": new.n_clusters,
        "clusters_baseline": old.n_clusters,
        "pins_in_clusters_new": new.stats["pins_in_clusters"],
        "pins_in_clusters_baseline": old.stats["pins_in_clusters"],
        "largest_cluster_new": new.stats["largest_cluster"],
        "largest_cluster_baseline": old.stats["largest_cluster"],
        "same_clusters": bool(np.array_equal(new.pin_cluster, old.pin_cluster)),
        "recall_new_vs_baseline": round(same_cluster_recall(old.pin_cluster, new.pin_cluster), 4),
        "recall_baseline_vs_new": round(same_cluster_recall(new.pin_cluster, old.pin_cluster), 4),
        "exact_sample_pins": len(sample),
        "exact_sample_pairs": len(truth),
        "recall_vs_exact_new": round(recall_new[0], 4),
        "recall_vs_exact_baseline": round(recall_old[0], 4),
        "recall_vs_exact_per_pin_new": round(recall_new[1], 4),
        "recall_vs_exact_per_pin_baseline": round(recall_old[1], 4),
        "edges_below_threshold_new": int((cos < args.threshold - 1e-6).sum()),
        "new_stats": {key: new.stats[key] for key in keep},
        "baseline_index": old.stats["index"],
        # other processes share the cores: the 1-minute load average before and after the run says how much
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": machine(),
    }
    print(
        f"cells {new_s:.2f}s vs knn {baseline_s:.2f}s -> {result['ratio']}x; pairs {result['pairs_new']:,} vs "
        f"{result['pairs_baseline']:,}; recall vs exact {recall_new[0]:.4f} vs {recall_old[0]:.4f}, per pin "
        f"{recall_new[1]:.4f} vs {recall_old[1]:.4f} ({len(truth):,} pairs of {len(sample):,} sampled pins)",
        flush=True,
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
