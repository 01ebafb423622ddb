"""Slow, obviously correct references for the evaluation metrics (loops over every candidate)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalised_prefix(x: np.ndarray, dim: int) -> np.ndarray:
    p = np.asarray(x[:, :dim], dtype=np.float64)
    norm = np.linalg.norm(p, axis=1, keepdims=True)
    return np.divide(p, norm, out=np.zeros_like(p), where=norm > 0)


def loop_metrics(
    queries: np.ndarray, pool: np.ndarray, positives: Sequence[Sequence[int]], dim: int, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-query recall@k and reciprocal rank: rank(p) = 1 + #{c != p : score(c) > score(p)}."""
    q, p = normalised_prefix(queries, dim), normalised_prefix(pool, dim)
    out: dict[str, list[float]] = {f"recall@{k}": [] for k in ks} | {"mrr": []}
    for i, pos in enumerate(positives):
        scores = [float(np.dot(q[i], p[c])) for c in range(len(p))]
        ranks = []
        for j in pos:
            ranks.append(1 + sum(1 for c in range(len(p)) if c != j and scores[c] > scores[j]))
        for k in ks:
            out[f"recall@{k}"].append(sum(r <= k for r in ranks) / len(ranks))
        out["mrr"].append(1.0 / min(ranks))
    return {name: np.array(values) for name, values in out.items()}
