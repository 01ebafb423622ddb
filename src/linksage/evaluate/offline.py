"""Evaluate stored embeddings outside the pipeline: ``python -m linksage.evaluate --pages P.npy --pins Q.npy ...``.

Inputs are plain files: page vectors (n_pages, D) and pin vectors (n_pins, D') as ``.npy``, and positives
as a Parquet or CSV table with ``page_idx`` and ``pin_idx`` columns (row numbers of the two arrays; an
ingest ``links.parquet`` works as is). Optional: page URLs and pin texts (Parquet/CSV with a ``url`` /
``text`` column, one row per array row) for the opaque slice and the sampled pages of the report, and
baselines as ``NAME=PAGES.npy,PINS.npy``. Writes ``metrics.json`` and ``report.html`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from linksage import log
from linksage.config import ConfigError
from linksage.config._load import build, parse_override, set_path
from linksage.config.evaluate import EvaluateConfig
from linksage.errors import InputError, LinksageError
from linksage.evaluate.cards import build_cards, sample_rows
from linksage.evaluate.embeddings import Embeddings, evaluate_embeddings, matryoshka_dims
from linksage.evaluate.queries import build_pool, positives_in_pool
from linksage.evaluate.report import write_report
from linksage.evaluate.slices import degree_masks, opaque_mask
from linksage.evaluate.targets import check_targets
from linksage.rundir import atomic_write_json


def read_table(path: Path, columns: Sequence[str]) -> pa.Table:
    """A Parquet (file or folder) or CSV table with the given columns; a clear error naming what is missing."""
    if not path.exists():
        raise InputError("file does not exist", file=path)
    table = pacsv.read_csv(path) if path.suffix.lower() == ".csv" else pq.read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(f"missing column {missing[0]!r} (columns: {', '.join(table.column_names)})", file=path)
    return table.select(list(columns))


def read_positives(path: Path, n_pages: int, n_pins: int) -> tuple[np.ndarray, np.ndarray]:
    """(page rows, pin rows) of every positive pair, deduplicated, checked against the arrays' sizes."""
    table = read_table(path, ["page_idx", "pin_idx"])
    pages = table.column("page_idx").to_numpy(zero_copy_only=False).astype(np.int64)
    pins = table.column("pin_idx").to_numpy(zero_copy_only=False).astype(np.int64)
    for name, values, n in (("page_idx", pages, n_pages), ("pin_idx", pins, n_pins)):
        bad = np.flatnonzero((values < 0) | (values >= n))
        if bad.size:
            row = int(bad[0])
            raise InputError(f"must be in 0..{n - 1}", file=path, row=row, column=name, value=int(values[row]))
    pairs = np.unique(np.stack([pages, pins], axis=1), axis=0)  # sorted by page, then pin
    return pairs[:, 0], pairs[:, 1]


def load_vectors(path: Path) -> np.ndarray:
    if not path.exists():
        raise InputError("file does not exist", file=path)
    arr = np.load(path, mmap_mode="r")
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise InputError(f"expected a 2-D float array, got {arr.dtype} {arr.shape}", file=path)
    return arr


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m linksage.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--pages", type=Path, required=True, help="page vectors (n_pages, D) .npy")
    p.add_argument("--pins", type=Path, required=True, help="pin vectors (n_pins, D') .npy, the target space")
    p.add_argument("--positives", type=Path, required=True, help="Parquet/CSV with page_idx, pin_idx columns")
    p.add_argument("--out", type=Path, required=True, help="output folder for metrics.json and report.html")
    p.add_argument("--queries", type=Path, help=".npy of page rows to evaluate (default: every page with a positive)")
    p.add_argument("--dims", help="comma-separated Matryoshka dims (default: 16, 32, ... up to the width)")
    p.add_argument("--name", default="model", help="name of the evaluated model in the report")
    p.add_argument("--baseline", action="append", default=[], metavar="NAME=PAGES.npy,PINS.npy")
    p.add_argument("--urls", type=Path, help="Parquet/CSV with a url column, one row per page")
    p.add_argument("--pin-text", type=Path, help="Parquet/CSV with a text column, one row per pin")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="evaluate.KEY=VALUE")
    return p


def _config(overrides: Sequence[str]) -> EvaluateConfig:
    data: dict[str, Any] = {}
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] != "evaluate" or len(keys) != 2:
            raise ConfigError(f"--set {text!r}: only evaluate.KEY=VALUE applies here")
        data = set_path(data, keys, value)
    return build(EvaluateConfig, data.get("evaluate", {}), prefix="evaluate.")


def evaluate_files(args: argparse.Namespace) -> Path:
    """Run the evaluation the arguments describe; returns the report's path."""
    cfg = _config(args.overrides)
    pages, pins = load_vectors(args.pages), load_vectors(args.pins)
    pair_page, pair_pin = read_positives(args.positives, len(pages), len(pins))
    queries = np.unique(pair_page) if args.queries is None else np.unique(np.load(args.queries).astype(np.int64))
    if args.queries is not None:
        keep = np.isin(pair_page, queries)
        pair_page, pair_pin = pair_page[keep], pair_pin[keep]
        queries = queries[np.isin(queries, pair_page)]  # a query without positives cannot be scored
    if not len(queries):
        raise LinksageError(f"{args.positives}: no query page has a positive pin")
    width = min(pages.shape[1], pins.shape[1])
    dims = tuple(int(d) for d in args.dims.split(",")) if args.dims else matryoshka_dims(width)
    pool = build_pool(np.unique(pair_pin), len(pins), cfg.pool_size, cfg.seed)
    counts = np.bincount(np.searchsorted(queries, pair_page), minlength=len(queries))
    positives = positives_in_pool(np.concatenate([[0], np.cumsum(counts)]), pair_pin, pool)

    def embeddings(page_file: Path, pin_file: Path, label: str) -> Embeddings:
        p, q = load_vectors(page_file), load_vectors(pin_file)
        if len(p) != len(pages) or len(q) != len(pins):
            raise InputError(f"baseline {label!r} has {len(p)} pages and {len(q)} pins", file=page_file)
        w = min(p.shape[1], q.shape[1])
        return Embeddings(p[queries], q if len(pool) == len(q) else q[pool], tuple(d for d in dims if d <= w) or (w,))

    main = embeddings(args.pages, args.pins, args.name)
    baselines = {}
    for spec in args.baseline:
        name, _, files = spec.partition("=")
        page_file, _, pin_file = files.partition(",")
        if not name or not page_file or not pin_file:
            raise ConfigError(f"--baseline {spec!r}: expected NAME=PAGES.npy,PINS.npy")
        baselines[name] = embeddings(Path(page_file), Path(pin_file), name)

    urls = read_table(args.urls, ["url"]).column("url").to_pylist() if args.urls else None
    texts = read_table(args.pin_text, ["text"]).column("text").to_pylist() if args.pin_text else None
    slices = degree_masks(positives.counts, cfg.degree_buckets)
    if urls is not None and texts is not None:
        own = [
            [texts[int(pool[r])] or "" for r in positives.indices[positives.indptr[i] : positives.indptr[i + 1]]]
            for i in range(len(queries))
        ]
        slices = {"opaque": opaque_mask([urls[int(q)] for q in queries], own)} | slices
        slices["readable"] = ~slices["opaque"]
    pool_text = "all pins" if len(pool) == len(pins) else f"{len(pool):,} of {len(pins):,} pins (sample + positives)"
    ev = evaluate_embeddings(
        main, positives, cfg, name=args.name, baselines=baselines, slices=slices, extra={"pool": pool_text}
    )
    metrics = ev.to_json()
    metrics["targets"] = check_targets(metrics)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "metrics.json", metrics)
    cards = []
    if urls is not None and texts is not None:
        cards = build_cards(
            ev,
            main,
            sample_rows(len(queries), cfg.report_pages, cfg.seed),
            page_url=lambda row: urls[int(queries[row])],
            pin_text=lambda r: texts[int(pool[r])] or "",
            neighbours=lambda row: [],
            k=cfg.report_top_k,
            device=cfg.device,
            pool_chunk=cfg.pool_chunk,
        )
    return write_report(args.out, ev, metrics, metrics["targets"], cards, title=f"linksage evaluation: {args.name}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log.configure()
    try:
        path = evaluate_files(args)
    except (LinksageError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
