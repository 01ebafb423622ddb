"""Score distributions: positive and negative cosines, and the pairwise-cosine kurtosis of page embeddings.

Negatives are random pool pins that are not the query's positives (a uniform sample: the histogram of
what a random candidate scores). Kurtosis is the **excess** (Fisher) kurtosis ``m4 / m2**2 - 3`` of the
cosines of random pairs of distinct pages: 0 for a normal distribution; the LinkSage blog reports 1.66
without saying which kind, and prefers smaller (a wider spread separates pages better).
"""

from __future__ import annotations

import numpy as np
import torch

from linksage.evaluate.metrics import Positives, prefix_normalise, resolve_device

SCORE_THRESHOLD = 0.25  # the blog's reference point: "almost all negatives below 0.25"


def negative_scores(
    queries: np.ndarray,
    pool: np.ndarray,
    positives: Positives,
    dim: int,
    per_query: int,
    rng: np.random.Generator,
    device: str = "cpu",
    batch: int = 256,
) -> np.ndarray:
    """Cosines (at ``dim``) of each query with ``per_query`` uniform random pool rows that are not its positives."""
    dev = resolve_device(device)
    n_pool = len(pool)
    positive_keys = positives.query_of_pair() * n_pool + positives.indices  # (query, pool row) as one int64
    out = []
    for q0 in range(0, len(queries), batch):
        q1 = min(q0 + batch, len(queries))
        cand = rng.integers(0, n_pool, size=(q1 - q0, per_query))
        keys = (np.arange(q0, q1)[:, None] * n_pool + cand).ravel()
        keep = ~np.isin(keys, positive_keys).reshape(cand.shape)  # drop the few draws that hit a positive
        uniq, inverse = np.unique(cand, return_inverse=True)  # sorted reads of the (memory-mapped) pool
        p = prefix_normalise(pool[uniq], dim, torch.float32, dev)[torch.as_tensor(inverse.reshape(cand.shape))]
        q = prefix_normalise(queries[q0:q1], dim, torch.float32, dev)
        scores = torch.einsum("bd,bnd->bn", q, p).cpu().numpy()
        out.append(scores[keep])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def pairwise_cosines(vectors: np.ndarray, dim: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Cosines (at ``dim``) of ``n_pairs`` uniform random pairs of distinct rows."""
    n = len(vectors)
    if n < 2:
        return np.zeros(0, dtype=np.float32)
    i = rng.integers(0, n, size=n_pairs)
    j = (i + rng.integers(1, n, size=n_pairs)) % n  # uniform over rows != i
    rows, inverse = np.unique(np.r_[i, j], return_inverse=True)
    x = prefix_normalise(vectors[rows], dim, torch.float32, torch.device("cpu")).numpy()
    a, b = inverse[:n_pairs], inverse[n_pairs:]
    out = np.empty(n_pairs, dtype=np.float32)
    for s in range(0, n_pairs, 65_536):  # bounded memory: never all pairs' vectors at once
        out[s : s + 65_536] = np.einsum("nd,nd->n", x[a[s : s + 65_536]], x[b[s : s + 65_536]])
    return out


def excess_kurtosis(x: np.ndarray) -> float:
    """Fisher's excess kurtosis ``m4 / m2**2 - 3`` (population moments); NaN for fewer than 2 values or no spread."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    centred = x - x.mean()
    m2 = float(np.mean(centred**2))
    if m2 == 0.0:
        return float("nan")
    return float(np.mean(centred**4) / m2**2 - 3.0)


def score_summary(positive: np.ndarray, negative: np.ndarray) -> dict[str, float]:
    """Means, the negatives' 95th percentile and the shares above the blog's 0.25 threshold."""

    def share(x: np.ndarray) -> float:
        return float(np.mean(x > SCORE_THRESHOLD)) if len(x) else float("nan")

    def mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if len(x) else float("nan")

    return {
        "positive_mean": mean(positive),
        "positive_share_above_0.25": share(positive),
        "negative_mean": mean(negative),
        "negative_p95": float(np.percentile(negative, 95)) if len(negative) else float("nan"),
        "negative_share_above_0.25": share(negative),
    }
