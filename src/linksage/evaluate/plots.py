"""PNG plots of an evaluation (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from linksage.evaluate.distributions import SCORE_THRESHOLD, excess_kurtosis
from linksage.evaluate.embeddings import Evaluation, ModelResult
from linksage.rundir import atomic_path

_COLOURS = ["#1f5fa8", "#d9822b", "#3a9a4a", "#b23a48", "#7a5195", "#6b6b6b", "#2a9d8f"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def recall_by_dim(ev: Evaluation, metric: str, path: Path) -> None:
    """``metric`` against the Matryoshka dim, one line per model (a single dot for single-dim models)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    models = [ev.main, *ev.baselines.values()]
    all_dims = sorted({d for m in models for d in m.dims})
    for i, model in enumerate(models):
        values = model.means()[metric]
        xs = list(model.dims)
        ys = [values[str(d)] for d in xs]
        style = "-o" if len(xs) > 1 else "s"
        width = 2.4 if model is ev.main else 1.4
        ax.plot(xs, ys, style, color=_COLOURS[i % len(_COLOURS)], label=model.name, linewidth=width, markersize=6)
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_dims, [str(d) for d in all_dims])
    ax.set_xlabel("embedding dim (Matryoshka prefix)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by dim ({ev.positives.n_queries:,} queries, pool {ev.pool_size:,} pins)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


def score_histograms(model: ModelResult, dim: int, path: Path) -> None:
    """Cosine of each query with its positives and with random negatives, at one dim."""
    plt = _pyplot()
    pos, neg = model.ranks[dim].positive_score, model.negative[dim]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    bins = np.linspace(-1.0, 1.0, 101)
    ax.hist(neg, bins=bins, density=True, alpha=0.6, color=_COLOURS[5], label=f"negatives (n={len(neg):,})")
    ax.hist(pos, bins=bins, density=True, alpha=0.6, color=_COLOURS[0], label=f"positives (n={len(pos):,})")
    ax.axvline(SCORE_THRESHOLD, color="black", linestyle="--", linewidth=1)
    if len(neg):
        p95 = float(np.percentile(neg, 95))
        ax.axvline(p95, color=_COLOURS[3], linestyle=":", linewidth=1.2, label=f"negative p95 = {p95:.3f}")
    ax.set_xlabel(f"cosine at dim {dim}")
    ax.set_ylabel("density")
    ax.set_title(f"{model.name}: positive vs negative scores, dim {dim}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def pairwise_histogram(models: list[ModelResult], path: Path) -> None:
    """Cosines of random page pairs at each model's largest dim, with the excess kurtosis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    bins = np.linspace(-1.0, 1.0, 101)
    for i, model in enumerate(models):
        d = model.dims[-1]
        values = model.pairwise[d]
        label = f"{model.name} dim {d}: excess kurtosis {excess_kurtosis(values):.2f}"
        ax.hist(values, bins=bins, density=True, histtype="step", linewidth=1.6, color=_COLOURS[i % 7], label=label)
    ax.set_xlabel("cosine of two random pages")
    ax.set_ylabel("density")
    ax.set_title("pairwise cosine distribution of page embeddings")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def slice_bars(ev: Evaluation, metric: str, dim: int, path: Path) -> None:
    """``metric`` at ``dim`` per slice, for the main model and every baseline scored at that dim."""
    plt = _pyplot()
    names = ["all", *ev.slices]
    models = [m for m in [ev.main, *ev.baselines.values()] if dim in m.dims]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(names) * max(1, len(models)) / 2), 4.0))
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        ys = [model.means(None if s == "all" else ev.slices[s])[metric][str(dim)] for s in names]
        xs = np.arange(len(names)) + i * width
        ax.bar(xs, ys, width=width, color=_COLOURS[i % 7], label=model.name)
    ax.set_xticks(np.arange(len(names)) + width * (len(models) - 1) / 2, names, rotation=20, ha="right")
    ax.set_ylabel(f"{metric} at dim {dim}")
    ax.set_title(f"{metric} by slice, dim {dim}")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    _save(fig, path)
