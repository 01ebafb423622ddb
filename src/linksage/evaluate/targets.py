"""The project's quality targets (issue 6), checked on a ``metrics.json`` document.

Each check is ``{"value", "target", "met", "unit"}``; ``met`` is None when a needed model, slice or dim
is missing, or when the pool is too small for the check to mean anything (the reason is in
``"missing"``). ``unit`` says how to read ``value``: ``"relative"`` (a fraction: 0.075 = +7.5%),
``"recall"`` (a difference of recalls) or ``"cosine"``.
"""

from __future__ import annotations

from typing import Any

NEGATIVE_MEAN_TOLERANCE = 0.05  # "mean cosine near 0": |mean| below this


def _get(metrics: dict[str, Any], model: str, metric: str, dim: int, slice_name: str | None = None) -> float | None:
    doc = metrics if slice_name is None else metrics.get("slices", {}).get(slice_name)
    if doc is None:
        return None
    if model != metrics.get("model"):
        doc = doc.get("baselines", {}).get(model)
        if doc is None:
            return None
    value = doc.get(metric, {}).get(str(dim))
    return float(value) if value is not None else None


def _check(value: float | None, target: str, met: bool | None, missing: str, unit: str) -> dict[str, Any]:
    if value is None:
        return {"value": None, "target": target, "met": None, "unit": unit, "missing": missing}
    return {"value": round(value, 6), "target": target, "met": met, "unit": unit}


def format_value(check: dict[str, Any]) -> str:
    """A check's value as a person reads it: +7.5% for a relative one, +0.0030 for a recall difference."""
    value = check.get("value")
    if value is None:
        return ""
    unit = check.get("unit")
    if unit == "relative":
        return f"{100 * value:+.1f}%"
    if unit == "recall":
        return f"{value:+.4f}"
    return f"{value:.4f}"


def check_targets(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Relative gains of the graph model over the baselines, the Matryoshka loss, and the negative scores."""
    main = metrics["model"]
    dims = metrics["dims"]
    top, small = dims[-1], 64
    k = max(metrics["ks"])
    metric = f"recall@{k}"
    out: dict[str, dict[str, Any]] = {}
    pool = metrics.get("pool_size")
    # a pool of at most k pins: every model retrieves every positive, and recall says nothing
    too_small = f"the pool ({pool} pins) is not larger than k={k}" if pool is not None and pool <= k else None

    def gain(model: str, slice_name: str | None) -> float | None:
        ours = _get(metrics, main, metric, top, slice_name)
        theirs = _get(metrics, model, metric, top, slice_name)
        if ours is None or not theirs:
            return None
        return ours / theirs - 1.0

    g = gain("content_only", None)
    out["graph_vs_content_only"] = _check(
        g,
        f"{metric} at {top}: >= +10% relative",
        g is not None and g >= 0.10,
        "content_only baseline or dim missing",
        "relative",
    )
    g = gain("content_only", "opaque")
    out["graph_vs_content_only_opaque"] = _check(
        g,
        f"{metric} at {top}, opaque pages: >= +30% relative",
        g is not None and g >= 0.30,
        "opaque slice missing",
        "relative",
    )
    r_top, r_small = _get(metrics, main, metric, top), _get(metrics, main, metric, small)
    loss = None
    if top > small and r_top and r_small is not None:
        loss = 1.0 - r_small / r_top
    out["dim64_loss_vs_top"] = _check(
        loss,
        f"{metric}: 64 dims lose <= 5% relative to the largest dim",
        loss is not None and loss <= 0.05,
        f"needs dim 64 and a larger one (dims {dims})",
        "relative",
    )
    single = _get(metrics, f"single_dim_{small}", metric, small)
    diff = None if single is None or r_small is None else r_small - single
    out["matryoshka64_vs_single64"] = _check(
        diff,
        f"{metric} at 64: Matryoshka prefix >= single-dim 64 model",
        diff is not None and diff >= 0,
        "no single_dim_64",
        "recall",
    )
    if too_small:  # no recall verdict: the checks keep their target and unit, the reason replaces the value
        for name, check in out.items():
            out[name] = _check(None, check["target"], None, too_small, check["unit"])
    neg_mean, neg_p95 = metrics.get("negative_score_mean"), metrics.get("negative_score_p95")
    out["negative_mean_near_zero"] = _check(
        neg_mean,
        f"|negative mean| < {NEGATIVE_MEAN_TOLERANCE}",
        neg_mean is not None and abs(neg_mean) < NEGATIVE_MEAN_TOLERANCE,
        "no negatives",
        "cosine",
    )
    out["negative_p95_below_0.25"] = _check(
        neg_p95, "negative p95 < 0.25", neg_p95 is not None and neg_p95 < 0.25, "no negatives", "cosine"
    )
    return out
