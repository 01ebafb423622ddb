"""The README's Reddit table, averaged over runs of one config (seeds), from `device_ab.sh collect` archives.

    python scripts/seed_table.py A.tgz:full B.tgz:full1 B.tgz:full2

Each argument is ARCHIVE:VARIANT, a run evaluated with its trained baselines (`--baselines`). The runs
must be of one config: the same [train] section but for `seed` (a field that a run's manifest lacks, one
added later, counts at its default), the same dims and the same test pages. Prints the table (Recall@100
per Matryoshka dim, Recall@10 and MRR at the largest dim, for the graph model, each baseline and the
opaque slice), every cell the mean over the runs, the cell that moves most between the runs, then each
target's figure per run and its mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from typing import Any

from plot_ab import read_json, read_metrics

from linksage.config import TrainConfig

ROWS = (  # (label, baseline or "" for the graph model, slice or "")
    ("**linksage graph model**", "", ""),
    ("content-only model", "content_only", ""),
    ("zero-shot", "zero_shot", ""),
    ("single-dim model trained at 64 only", "single_dim_64", ""),
    ("single-dim model trained at 256 only", "single_dim_256", ""),
    ("*opaque pages:* graph model", "", "opaque"),
    ("*opaque pages:* content-only", "content_only", "opaque"),
    ("*opaque pages:* zero-shot", "zero_shot", "opaque"),
)


def model_metrics(m: dict[str, Any], baseline: str, slice_: str) -> dict[str, Any]:
    """The metrics block of one model (the graph model or a baseline) on all pages or one slice."""
    block = m["slices"][slice_] if slice_ else m
    return block if not baseline else block["baselines"][baseline]


def targets(m: dict[str, Any]) -> dict[str, float]:
    """Issue 6's figures of one run (its largest dim against content-only and 64 dims): relative changes in
    percent, negative scores, kurtosis."""
    r = m["recall@100"]
    top = max(r, key=int)
    content = m["baselines"]["content_only"]["recall@100"]
    opaque = m["slices"]["opaque"]
    return {
        f"gain at {top}, %": 100 * (r[top] / content[top] - 1),
        f"gain on opaque pages at {top}, %": 100
        * (opaque["recall@100"][top] / opaque["baselines"]["content_only"]["recall@100"][top] - 1),
        f"64 against {top}, %": 100 * (r["64"] / r[top] - 1),
        "64-dim prefix against the single-dim 64 model, %": 100
        * (r["64"] / m["baselines"]["single_dim_64"]["recall@100"]["64"] - 1),
        "negative score mean": m["negative_score_mean"],
        "negative score p95": m["negative_score_p95"],
        "excess kurtosis": m["kurtosis"],
    }


def train_config(archive: str, variant: str) -> dict[str, Any]:
    """The [train] section a variant's train manifest recorded, with fields it lacks at their defaults."""
    manifest = read_json(archive, "train", "manifest.json").get(variant)
    if manifest is None:
        raise LookupError(f"{archive}: no train/manifest.json for {variant}")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    defaults = json.loads(json.dumps(defaults))  # tuples as lists, as a manifest holds them
    return {**defaults, **manifest["config"]["train"]}


def mismatch(runs: list[dict[str, Any]], configs: list[dict[str, Any]], names: list[str]) -> str | None:
    """Why these runs are not runs of one config at several seeds, or None."""
    if len(set(names)) != len(names):
        return f"a run is given twice: {', '.join(names)}"
    for name, m, cfg in zip(names[1:], runs[1:], configs[1:], strict=True):
        dims, first = sorted(m["recall@100"], key=int), sorted(runs[0]["recall@100"], key=int)
        if dims != first:
            return f"{name} has dims {dims}, {names[0]} {first}"
        for key in ("num_queries", "pool_size"):
            if m.get(key) != runs[0].get(key):
                return f"{name} has {key} {m.get(key)}, {names[0]} {runs[0].get(key)}"
        differ = sorted(k for k in cfg.keys() | configs[0].keys() if k != "seed" and cfg.get(k) != configs[0].get(k))
        if differ:
            shown = ", ".join(f"{k} = {cfg.get(k)!r} against {configs[0].get(k)!r}" for k in differ)
            return f"{name} is another config than {names[0]} ([train] {shown})"
    return None


def table(runs: list[dict[str, Any]], dims: list[str]) -> tuple[list[str], tuple[float, str]]:
    """Markdown lines of the mean table, and the largest max - min of a cell over the runs with its name."""
    top = dims[-1]
    lines = [
        "| model | " + " | ".join(dims) + " | R@10 | MRR |",
        "|---|" + "---|" * (len(dims) + 2),
    ]
    spread = (0.0, "")
    for label, baseline, slice_ in ROWS:
        cells = []
        for key, dim in [("recall@100", d) for d in dims] + [("recall@10", top), ("mrr", top)]:
            values = [model_metrics(m, baseline, slice_)[key].get(dim) for m in runs]
            if any(v is None for v in values):
                cells.append("")
                continue
            if max(values) - min(values) > spread[0]:  # the first such cell, in the table's order
                spread = (max(values) - min(values), f"{label}, {key} at {dim}")
            cells.append(f"{statistics.mean(values):.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines, spread


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="ARCHIVE:VARIANT, one per run")
    args = p.parse_args(argv)

    runs, configs = [], []
    for spec in args.runs:
        archive, sep, variant = spec.rpartition(":")
        if not sep or not archive or not variant:
            print(f"expected ARCHIVE:VARIANT, got {spec!r}", file=sys.stderr)
            return 2
        metrics = read_metrics(archive)
        if variant not in metrics:
            print(f"{archive}: no metrics.json for {variant}; it has {', '.join(sorted(metrics))}", file=sys.stderr)
            return 1
        if "content_only" not in metrics[variant].get("baselines", {}):
            print(f"{archive}: {variant} was evaluated without its trained baselines (--baselines)", file=sys.stderr)
            return 1
        try:
            configs.append(train_config(archive, variant))
        except LookupError as exc:
            print(exc, file=sys.stderr)
            return 1
        runs.append(metrics[variant])
    why = mismatch(runs, configs, args.runs)
    if why:
        print(f"not runs of one config: {why}", file=sys.stderr)
        return 1
    dims = sorted(runs[0]["recall@100"], key=int)
    lines, (spread, cell) = table(runs, dims)
    print(f"mean of {len(runs)} runs (seeds {', '.join(str(c['seed']) for c in configs)}): {', '.join(args.runs)}")
    print("\n".join(lines))
    print(f"\nlargest spread of a cell over the runs (max - min): {spread:.4f} ({cell})\n")
    per_run = [targets(m) for m in runs]
    for key in per_run[0]:
        values = [t[key] for t in per_run]
        shown = " / ".join(f"{v:.3f}" for v in values)
        print(f"{key}: {shown} (mean {statistics.mean(values):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
