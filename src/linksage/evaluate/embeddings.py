"""Evaluate any page and pin embeddings: per-dim retrieval metrics, slices and score distributions.

This is the whole evaluation, minus reading a run directory: the ``evaluate`` stage calls it with the
trained model's vectors and the baselines', and ``python -m linksage.evaluate`` calls it on stored
``.npy`` files. Every model is scored on the same queries, the same pool and the same positives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from linksage import log
from linksage.config.evaluate import EvaluateConfig
from linksage.evaluate.distributions import (
    excess_kurtosis,
    negative_scores,
    pairwise_cosines,
    score_summary,
)
from linksage.evaluate.metrics import Positives, Ranks, mean_metrics, per_query_metrics, rank_positives

KURTOSIS_DEFINITION = "excess (Fisher): m4 / m2^2 - 3 of the cosines of random page pairs; 0 for a normal distribution"


@dataclass(frozen=True)
class Embeddings:
    """One model's vectors: a row per query page and a row per pool pin (pool order), and its dims."""

    pages: np.ndarray  # (n_queries, D)
    pins: np.ndarray  # (n_pool, D), may be memory-mapped
    dims: tuple[int, ...]  # Matryoshka prefixes to score; the last is usually D


@dataclass
class ModelResult:
    """Everything measured for one model."""

    name: str
    dims: tuple[int, ...]
    per_query: dict[int, dict[str, np.ndarray]]  # dim -> metric -> (n_queries,)
    ranks: dict[int, Ranks]
    negative: dict[int, np.ndarray]  # dim -> sampled negative cosines
    pairwise: dict[int, np.ndarray]  # dim -> cosines of random page pairs
    seconds: float = 0.0

    def means(self, mask: np.ndarray | None = None) -> dict[str, dict[str, float]]:
        """``{metric: {dim: mean}}`` over all queries or a slice."""
        out: dict[str, dict[str, float]] = {}
        for d in self.dims:
            for name, value in mean_metrics(self.per_query[d], mask).items():
                out.setdefault(name, {})[str(d)] = value
        return out

    def distributions(self) -> dict[str, dict[str, float]]:
        """Per dim: score summary and the pairwise-cosine kurtosis."""
        out = {}
        for d in self.dims:
            summary = score_summary(self.ranks[d].positive_score, self.negative[d])
            summary["kurtosis"] = excess_kurtosis(self.pairwise[d])
            out[str(d)] = summary
        return out


@dataclass
class Evaluation:
    """Results of the main model and the baselines on one set of queries, pool and positives."""

    main: ModelResult
    baselines: dict[str, ModelResult]
    positives: Positives
    slices: dict[str, np.ndarray]  # slice name -> (n_queries,) bool
    pool_size: int
    ks: tuple[int, ...]
    skipped_baselines: dict[str, str] = field(default_factory=dict)
    skipped_slices: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # pool description, split, timings ...

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.json`` document (schema in docs/evaluation.md)."""
        largest = str(self.main.dims[-1])
        dist = self.main.distributions()
        out: dict[str, Any] = {"model": self.main.name, "dims": list(self.main.dims), "ks": list(self.ks)}
        out.update(self.main.means())
        out["baselines"] = {name: {"dims": list(r.dims), **r.means()} for name, r in self.baselines.items()}
        out["skipped_baselines"] = dict(self.skipped_baselines)
        out["slices"] = {}
        for name, mask in self.slices.items():
            entry: dict[str, Any] = {"num_queries": int(mask.sum()), "share": float(mask.mean())}
            entry.update(self.main.means(mask))
            entry["baselines"] = {b: r.means(mask) for b, r in self.baselines.items()}
            out["slices"][name] = entry
        out["skipped_slices"] = dict(self.skipped_slices)
        out["kurtosis"] = dist[largest]["kurtosis"]
        out["kurtosis_definition"] = KURTOSIS_DEFINITION
        out["negative_score_mean"] = dist[largest]["negative_mean"]
        out["negative_score_p95"] = dist[largest]["negative_p95"]
        out["distributions"] = dist
        out["baseline_distributions"] = {name: r.distributions() for name, r in self.baselines.items()}
        out["pool_size"] = self.pool_size
        out["num_queries"] = self.positives.n_queries
        out["num_positives"] = len(self.positives.indices)
        out["timings"] = {self.main.name: round(self.main.seconds, 3)} | {
            n: round(r.seconds, 3) for n, r in self.baselines.items()
        }
        out.update(self.extra)
        return _finite(out)


def evaluate_model(
    name: str,
    emb: Embeddings,
    positives: Positives,
    cfg: EvaluateConfig,
) -> ModelResult:
    """Exact ranks at every dim, per-query metrics, sampled negatives and pairwise cosines."""
    timer = log.Timer()
    with timer:
        ranks = rank_positives(
            emb.pages,
            emb.pins,
            positives,
            emb.dims,
            max_k=max(cfg.ks),
            query_batch=cfg.query_batch,
            pool_chunk=cfg.pool_chunk,
            device=cfg.device,
            progress_desc=f"evaluate {name}",
        )
        per_query = {d: per_query_metrics(ranks[d], positives, cfg.ks) for d in emb.dims}
        negative, pairwise = {}, {}
        for d in emb.dims:  # the same seeded draws for every dim and model, so histograms compare
            neg_rng = np.random.default_rng([cfg.seed, 1])
            negative[d] = negative_scores(
                emb.pages, emb.pins, positives, d, cfg.negatives_per_query, neg_rng, cfg.device
            )
            pairwise[d] = pairwise_cosines(emb.pages, d, cfg.kurtosis_pairs, np.random.default_rng([cfg.seed, 2]))
    result = ModelResult(name, emb.dims, per_query, ranks, negative, pairwise, timer.seconds)
    m = result.means()
    top = str(emb.dims[-1])
    log.event(
        f"[evaluate] {name}: " + " ".join(f"{k}={v[top]:.4f}" for k, v in m.items()) + f" at dim {top}",
        model=name,
        seconds=round(timer.seconds, 2),
    )
    return result


def evaluate_embeddings(
    main: Embeddings,
    positives: Positives,
    cfg: EvaluateConfig | None = None,
    *,
    name: str = "graph",
    baselines: Mapping[str, Embeddings] | None = None,
    slices: Mapping[str, np.ndarray] | None = None,
    skipped_baselines: Mapping[str, str] | None = None,
    skipped_slices: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Score ``main`` and every baseline on the same queries, pool and positives.

    ``positives`` holds pool rows per query; ``slices`` maps a name to a (n_queries,) bool mask.
    """
    cfg = cfg or EvaluateConfig()
    n_q, n_pool = len(main.pages), len(main.pins)
    for label, emb in {name: main, **(baselines or {})}.items():
        if len(emb.pages) != n_q or len(emb.pins) != n_pool:
            raise ValueError(
                f"model {label!r} has {len(emb.pages)} queries and {len(emb.pins)} pins; "
                f"{name!r} has {n_q} and {n_pool}: every model must score the same queries and pool"
            )
    for label, mask in (slices or {}).items():
        if mask.shape != (n_q,) or mask.dtype != bool:
            raise ValueError(f"slice {label!r}: expected a bool mask of shape ({n_q},), got {mask.dtype} {mask.shape}")
    result = evaluate_model(name, main, positives, cfg)
    others = {label: evaluate_model(label, emb, positives, cfg) for label, emb in (baselines or {}).items()}
    return Evaluation(
        main=result,
        baselines=others,
        positives=positives,
        slices=dict(slices or {}),
        pool_size=n_pool,
        ks=tuple(cfg.ks),
        skipped_baselines=dict(skipped_baselines or {}),
        skipped_slices=dict(skipped_slices or {}),
        extra=dict(extra or {}),
    )


def matryoshka_dims(width: int, candidates: Sequence[int] = (16, 32, 64, 128, 256)) -> tuple[int, ...]:
    """The usual Matryoshka prefixes that fit ``width``, plus ``width`` itself."""
    return tuple(sorted({d for d in candidates if d < width} | {width}))


def _finite(obj: Any) -> Any:
    """NaN and infinities become null: metrics.json stays strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
