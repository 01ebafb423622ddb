"""Landing-page parsing quality and speed on the article-extraction benchmark (181 real pages, 126 sites).

Data: ``../shared/data/article-extraction-benchmark/`` (``html/<id>.html.gz``, ``ground-truth.json``
``{id: {url, articleBody}}``), from scrapinghub/article-extraction-benchmark.

Main-text quality, ``f1``: the benchmark authors' own metric (their ``evaluate.py``): tokens are
``\\w+`` runs; each text becomes the multiset of its 4-token shingles; per page TP/FP/FN are
counted over the shingle multisets and normalised to sum to 1; precision and recall are averaged
over pages; F1 is the harmonic mean of the two averages. Also reported, ``f1_whitespace_tokens``: the
simpler variant of whitespace tokens, unigram multisets, F1 per page, averaged over pages.

Every figure is measured in this process for ``linksage.content.parse.parse_html`` (ours: bytes in,
metadata + main text out) and for plain ``trafilatura.extract(html)`` with its default settings (the
baseline). ``title_found``: share of pages with a non-empty title. ``pages_per_s``: median of
``--repeats`` timed passes over all pages (HTML bytes already in memory, one process, one thread),
ours and the baseline alternating; ``pages_per_cpu_s`` the same over this process's CPU time, which
other jobs on a shared machine disturb less than wall time.

    .venv/bin/python benchmarks/parse_quality.py
    .venv/bin/python benchmarks/parse_quality.py --repeats 1 --limit 50
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from _machine import machine

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "article-extraction-benchmark"
_WORD_RE = re.compile(r"\w+", re.UNICODE)


def shingles(text: str, n: int = 4) -> Counter[tuple[str, ...]]:
    """Multiset of ``n``-token shingles of ``\\w+`` tokens (a shorter text is one shingle)."""
    tokens = _WORD_RE.findall(text or "")
    return Counter(tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i : i + n])


def tp_fp_fn(true: Counter[tuple[str, ...]], pred: Counter[tuple[str, ...]]) -> tuple[float, float, float]:
    """Multiset overlap of two shingle bags, normalised to sum to 1 (so long pages weigh no more)."""
    tp = fp = fn = 0.0
    for key in true.keys() | pred.keys():
        t, p = true.get(key, 0), pred.get(key, 0)
        tp += min(t, p)
        fp += max(0, p - t)
        fn += max(0, t - p)
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total > 0 else (tp, fp, fn)


def authors_f1(truths: Sequence[str], preds: Sequence[str]) -> dict[str, float]:
    """The benchmark authors' precision, recall and F1 (see the module docstring)."""
    counts = [tp_fp_fn(shingles(t), shingles(p)) for t, p in zip(truths, preds, strict=True)]

    def score(tp: float, fp: float, fn: float, miss: float) -> float:
        if fp == fn == 0:
            return 1.0
        if tp == miss == 0:
            return 0.0
        return tp / (tp + miss)

    precision = statistics.mean(score(tp, fp, fn, fp) for tp, fp, fn in counts if tp + fp > 0)
    recall = statistics.mean(score(tp, fp, fn, fn) for tp, fp, fn in counts if tp + fn > 0)
    return {"f1": 2 * precision * recall / (precision + recall), "precision": precision, "recall": recall}


def whitespace_f1(truth: str, pred: str) -> float:
    """F1 of whitespace-token multisets of one page."""
    t, p = Counter(truth.split()), Counter(pred.split())
    if not t and not p:
        return 1.0
    overlap = sum((t & p).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(t.values())
    return 2 * precision * recall / (precision + recall)


def timed_pass(
    fn: Callable[[bytes, str], str], pages: Sequence[tuple[str, bytes, str]]
) -> tuple[list[str], float, float]:
    """Outputs, wall seconds and CPU seconds of this process for one pass over the pages."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = [fn(html, url) for _, html, url in pages]
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--repeats", type=int, default=3, help="timed passes; the median is reported")
    p.add_argument("--limit", type=int, default=0, help="first N pages only (0 = all)")
    args = p.parse_args(argv)
    if not (args.data / "ground-truth.json").exists():
        print(f"article-extraction benchmark not found at {args.data}", file=sys.stderr)
        return 2

    import trafilatura

    from linksage.content.parse import parse_html

    truth = json.loads((args.data / "ground-truth.json").read_text(encoding="utf-8"))
    ids = sorted(truth)[: args.limit or None]
    pages = [(i, gzip.decompress((args.data / "html" / f"{i}.html.gz").read_bytes()), truth[i]["url"]) for i in ids]
    truths = [truth[i]["articleBody"] for i in ids]

    def ours_text(html: bytes, url: str) -> str:
        return parse_html(html, url).main_text

    def baseline(html: bytes, url: str) -> str:
        return trafilatura.extract(html, url=url) or ""

    parsed = [parse_html(html, url) for _, html, url in pages]  # warm-up pass, also the quality pass
    base_texts = timed_pass(baseline, pages)[0]  # warm-up, also the quality pass
    # Passes alternate (ours, baseline, ours, ...) so that both see the same load on a shared machine.
    ours_runs, base_runs = [], []
    for _ in range(args.repeats):
        ours_runs.append(timed_pass(ours_text, pages)[1:])
        base_runs.append(timed_pass(baseline, pages)[1:])

    ours = authors_f1(truths, [pg.main_text for pg in parsed])
    base = authors_f1(truths, base_texts)
    problems = Counter(pr.split(":")[0] for pg in parsed for pr in pg.problems)
    pages_per_s = len(pages) / statistics.median(wall for wall, _ in ours_runs)
    base_pages_per_s = len(pages) / statistics.median(wall for wall, _ in base_runs)
    pages_per_cpu_s = len(pages) / statistics.median(cpu for _, cpu in ours_runs)
    base_pages_per_cpu_s = len(pages) / statistics.median(cpu for _, cpu in base_runs)
    result = {
        "pages": len(pages),
        "f1": round(ours["f1"], 4),
        "precision": round(ours["precision"], 4),
        "recall": round(ours["recall"], 4),
        "f1_whitespace_tokens": round(
            statistics.mean(whitespace_f1(t, pg.main_text) for t, pg in zip(truths, parsed, strict=True)), 4
        ),
        "title_found": round(sum(bool(pg.title) for pg in parsed) / len(parsed), 4),
        "description_found": round(sum(bool(pg.description) for pg in parsed) / len(parsed), 4),
        "language_found": round(sum(pg.language is not None for pg in parsed) / len(parsed), 4),
        "canonical_found": round(sum(pg.canonical_url is not None for pg in parsed) / len(parsed), 4),
        "images_per_page": round(statistics.mean(len(pg.images) for pg in parsed), 2),
        "pages_per_s": round(pages_per_s, 2),
        "pages_per_cpu_s": round(pages_per_cpu_s, 2),
        "baseline_f1": round(base["f1"], 4),
        "baseline_precision": round(base["precision"], 4),
        "baseline_recall": round(base["recall"], 4),
        "baseline_pages_per_s": round(base_pages_per_s, 2),
        "baseline_pages_per_cpu_s": round(base_pages_per_cpu_s, 2),
        "speed_ratio": round(pages_per_s / base_pages_per_s, 3),
        "cpu_speed_ratio": round(pages_per_cpu_s / base_pages_per_cpu_s, 3),
        "problems": dict(problems),
        "repeats": args.repeats,
        "machine": machine(),
    }
    print(
        f"ours:     F1 {result['f1']:.3f} (P {result['precision']:.3f} R {result['recall']:.3f}), "
        f"{pages_per_s:.1f} pages/s, title found {result['title_found']:.1%}"
    )
    print(f"baseline: F1 {result['baseline_f1']:.3f} (trafilatura.extract defaults), {base_pages_per_s:.1f} pages/s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
