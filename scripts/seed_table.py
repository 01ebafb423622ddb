"""The README's Reddit table, averaged over runs of one config (seeds), from `device_ab.sh collect` archives.

    python scripts/seed_table.py A.tgz:full B.tgz:full1 B.tgz:full2

Each argument is ARCHIVE:VARIANT, a run evaluated with its trained baselines (`--baselines`). Prints the
table (Recall@100 per Matryoshka dim, Recall@10 and MRR at the largest dim, for the graph model, each
baseline and the opaque slice), every cell the mean over the runs, then each target's figure per run
and its mean, and the largest spread of any cell (max - min over the runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from plot_ab import read_metrics

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
    """Issue 6's figures of one run: relative changes in percent, negative scores, kurtosis."""
    r = m["recall@100"]
    content = m["baselines"]["content_only"]["recall@100"]
    opaque = m["slices"]["opaque"]
    return {
        "gain at 256, %": 100 * (r["256"] / content["256"] - 1),
        "gain on opaque pages at 256, %": 100
        * (opaque["recall@100"]["256"] / opaque["baselines"]["content_only"]["recall@100"]["256"] - 1),
        "64 against 256, %": 100 * (r["64"] / r["256"] - 1),
        "64-dim prefix against the single-dim 64 model, %": 100
        * (r["64"] / m["baselines"]["single_dim_64"]["recall@100"]["64"] - 1),
        "negative score mean": m["negative_score_mean"],
        "negative score p95": m["negative_score_p95"],
        "excess kurtosis": m["kurtosis"],
    }


def table(runs: list[dict[str, Any]], dims: list[str]) -> tuple[list[str], float]:
    """Markdown lines of the mean table and the largest max - min of any cell over the runs."""
    top = dims[-1]
    lines = [
        "| model | " + " | ".join(dims) + " | R@10 | MRR |",
        "|---|" + "---|" * (len(dims) + 2),
    ]
    spread = 0.0
    for label, baseline, slice_ in ROWS:
        cells = []
        for key, dim in [("recall@100", d) for d in dims] + [("recall@10", top), ("mrr", top)]:
            values = [model_metrics(m, baseline, slice_)[key].get(dim) for m in runs]
            if any(v is None for v in values):
                cells.append("")
                continue
            spread = max(spread, max(values) - min(values))
            cells.append(f"{statistics.mean(values):.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines, spread


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="ARCHIVE:VARIANT, one per run")
    args = p.parse_args(argv)

    runs = []
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
        runs.append(metrics[variant])
    dims = sorted(runs[0]["recall@100"], key=int)
    lines, spread = table(runs, dims)
    print(f"mean of {len(runs)} runs: {', '.join(args.runs)}")
    print("\n".join(lines))
    print(f"\nlargest spread of a cell over the runs (max - min): {spread:.4f}\n")
    per_run = [targets(m) for m in runs]
    for key in per_run[0]:
        values = [t[key] for t in per_run]
        shown = " / ".join(f"{v:.3f}" for v in values)
        print(f"{key}: {shown} (mean {statistics.mean(values):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
