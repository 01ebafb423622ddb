"""Plot an A/B's Recall@100 per Matryoshka dim against one base variant, from `device_ab.sh collect`'s archive.

    python scripts/plot_ab.py AB.tgz OUT.png --base base --variants 'pd05=λ 0.5,pd1,pd2' [--title ...]
    python scripts/plot_ab.py AB.tgz OUT.png --absolute --also OTHER.tgz --variants 'bw10=w 1,base=titles'

Each line is a variant's relative change of Recall@100 against the base at every dim the base has. The
single-dim baselines found in any variant's metrics.json (`single_dim_<d>`) are drawn as points at their
dim, against the base at that dim, so that a prefix can be read against a model trained at its size.
With ``--absolute`` the lines are the variants' Recall@100 itself (no base), and a variant with one dim
(a single-dim model trained as a variant) is a point. ``--also`` reads more archives (a variant name must
be in only one of them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import PurePosixPath
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read_json(archive: str, stage: str, name: str) -> dict[str, dict[str, Any]]:
    """Variant name -> its ``<stage>/<name>`` JSON file, for every variant in the archive that has one."""
    out: dict[str, dict[str, Any]] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            path = PurePosixPath(member.name)
            if path.name == name and path.parent.name == stage:
                f = tar.extractfile(member)
                if f is None:
                    continue
                variant = path.parent.parent.name
                if variant in out:  # two run dirs' A/Bs in one archive, with a variant name in both
                    raise ValueError(f"{archive}: variant {variant!r} is in it twice ({member.name})")
                out[variant] = json.load(f)
    return out


def read_metrics(archive: str) -> dict[str, dict[str, Any]]:
    """Variant name -> its evaluate/metrics.json, for every variant in the archive."""
    return read_json(archive, "evaluate", "metrics.json")


def relative_change(recall: dict[str, float], base: dict[str, float]) -> dict[int, float]:
    """Per dim of the base that the variant has too, the variant's Recall change against it, in percent."""
    return {int(d): 100 * (recall[d] / r - 1) for d, r in base.items() if d in recall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("archive", help="an ab.tgz from `scripts/device_ab.sh collect`")
    p.add_argument("out", help="the PNG to write")
    p.add_argument("--base", default="", help="the variant every other is compared with (not with --absolute)")
    p.add_argument("--absolute", action="store_true", help="plot Recall@100 itself, not the change against --base")
    p.add_argument("--also", action="append", default=[], help="another archive to read variants from (repeatable)")
    p.add_argument(
        "--variants", required=True, help="comma-separated variant names, in legend order; NAME=LABEL names a line"
    )
    p.add_argument("--title", default="")
    args = p.parse_args(argv)

    try:
        metrics = read_metrics(args.archive)
        extra = [(other, read_metrics(other)) for other in args.also]
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    for other, more in extra:
        clash = sorted(set(more) & set(metrics))
        if clash:
            print(f"{other}: variants {', '.join(clash)} are in an earlier archive too", file=sys.stderr)
            return 1
        metrics.update(more)
    if args.absolute:
        return plot_absolute(metrics, args)
    if not args.base:
        print("--base is required unless --absolute", file=sys.stderr)
        return 2
    labels = dict(v.partition("=")[::2] for v in args.variants.split(",") if v)
    names = list(labels)
    missing = [v for v in [args.base, *names] if v not in metrics]
    if missing:
        print(
            f"{args.archive}: no metrics.json for {', '.join(missing)}; it has {', '.join(sorted(metrics))}",
            file=sys.stderr,
        )
        return 1
    base = metrics[args.base]["recall@100"]
    dims = sorted(int(d) for d in base)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in names:
        rel = relative_change(metrics[name]["recall@100"], base)
        ax.plot(sorted(rel), [rel[d] for d in sorted(rel)], marker="o", label=labels[name] or name)
    single: dict[str, float] = {}  # the single-dim models' Recall@100, by dim
    for m in metrics.values():
        for b, v in m.get("baselines", {}).items():
            if b.startswith("single_dim_"):
                single.update(v["recall@100"])
    stars = relative_change(single, base)
    if stars:
        at = sorted(stars)
        ax.plot(at, [stars[d] for d in at], "k*", markersize=14, label="single-dim model")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("Matryoshka dim")
    ax.set_ylabel(f"Recall@100 vs {args.base} (%)")
    ax.set_title(args.title or "Recall@100 against the base, per Matryoshka dim")
    return _save(fig, ax, args.out)


def absolute_series(
    metrics: dict[str, dict[str, Any]], labels: dict[str, str]
) -> dict[str, tuple[list[int], list[float]]]:
    """Legend label -> (dims, Recall@100 at each) of every variant in ``labels`` (name -> label, "" = name)."""
    out = {}
    for name, label in labels.items():
        recall = {int(d): float(v) for d, v in metrics[name]["recall@100"].items()}
        out[label or name] = (sorted(recall), [recall[d] for d in sorted(recall)])
    return out


def plot_absolute(metrics: dict[str, dict[str, Any]], args: argparse.Namespace) -> int:
    """Each variant's Recall@100 per dim: a line, or a point for a variant with one dim."""
    labels = dict(v.partition("=")[::2] for v in args.variants.split(",") if v)
    missing = [v for v in labels if v not in metrics]
    if missing:
        print(
            f"no metrics.json for {', '.join(missing)}; the archives have {', '.join(sorted(metrics))}", file=sys.stderr
        )
        return 1
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    series = absolute_series(metrics, labels)
    for label, (at, values) in series.items():
        style = "o-" if len(at) > 1 else "*"
        ax.plot(at, values, style, markersize=6 if len(at) > 1 else 14, label=label)
    ticks = sorted({d for at, _ in series.values() for d in at})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(d) for d in ticks])
    ax.set_xlabel("Matryoshka dim")
    ax.set_ylabel("Recall@100")
    ax.set_title(args.title or "Recall@100 per Matryoshka dim")
    return _save(fig, ax, args.out, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)  # off the lines


def _save(fig: Any, ax: Any, out: str, **legend: Any) -> int:
    ax.grid(alpha=0.3)
    ax.legend(**legend)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
