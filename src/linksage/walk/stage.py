"""The ``walk`` stage: every page's top-K neighbour pages by Pixie visits (docs/walks.md).

Pages are walked in blocks; each finished block is kept under ``.work/walk/`` so that a run killed
midway resumes from the last block (the blocks are discarded when the graph or the walk config changed).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from linksage import log
from linksage.config import fingerprint
from linksage.pipeline import StageContext, StageResult
from linksage.rundir import atomic_path, atomic_write_json
from linksage.walk.pixie import WalkGraph, WalkResult, run_walks

BLOCK = 16_384  # pages per block: the unit of progress and of resumption


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.walk
    graph = WalkGraph.from_dir(ctx.input_dir("graph"))
    n_pages = graph.counts.get("page", 0)
    blocks = _resumable_blocks(ctx.work, {"graph": ctx.upstream_manifest("graph")["key"], "walk": fingerprint(cfg)})
    t0 = time.perf_counter()
    parts: list[WalkResult] = []
    with log.progress(total=n_pages, desc="walk", unit="page") as bar:
        for lo in range(0, n_pages, BLOCK):
            path = blocks / f"block-{lo // BLOCK:06d}.npz"
            pages = np.arange(lo, min(lo + BLOCK, n_pages), dtype=np.int64)
            part = _load_block(path) if path.exists() else None
            if part is None:
                part = run_walks(graph, pages, cfg)
                _save_block(path, part)
            parts.append(part)
            bar.update(len(pages))
    walk_s = time.perf_counter() - t0
    neighbours = np.concatenate([p.neighbours for p in parts]) if parts else np.zeros((0, cfg.top_k), np.int32)
    visits = np.concatenate([p.visits for p in parts]) if parts else np.zeros((0, cfg.top_k), np.float32)
    steps = np.concatenate([p.steps for p in parts]) if parts else np.zeros(0, np.int64)
    early = np.concatenate([p.early_stops for p in parts]) if parts else np.zeros(0, np.int32)
    t = time.perf_counter()
    np.save(ctx.out / "neighbours.npy", neighbours)
    np.save(ctx.out / "visits.npy", visits)
    write_neighbours_parquet(ctx.out / "neighbours.parquet", neighbours, visits)
    write_s = time.perf_counter() - t
    found = (neighbours >= 0).sum(axis=1)
    counts = {
        "pages": n_pages,
        "pages_with_neighbours": int((found > 0).sum()),
        "pages_without_neighbours": int((found == 0).sum()),
        "steps": int(steps.sum()),
    }
    metrics: dict[str, Any] = {
        "neighbours_per_page": _quantiles(found),
        "median_neighbours": float(np.median(found)) if n_pages else 0.0,
        "steps_per_page": _quantiles(steps),
        "steps_per_s": round(float(steps.sum()) / walk_s) if walk_s > 0 else 0,
        "early_stopped_metapaths": int(early.sum()),
        "top1_visits": _quantiles(visits[found > 0, 0]) if counts["pages_with_neighbours"] else {},
    }
    return StageResult(
        counts=counts, metrics=metrics, timings={"walk_s": round(walk_s, 3), "write_s": round(write_s, 3)}
    )


def write_neighbours_parquet(path: Path, neighbours: np.ndarray, visits: np.ndarray) -> None:
    """``page_idx int32, neighbours list<int32>, visits list<float32>`` from the dense -1 padded arrays."""
    found = neighbours >= 0
    offsets = np.zeros(len(neighbours) + 1, np.int32)
    np.cumsum(found.sum(axis=1), out=offsets[1:])
    table = pa.table(
        {
            "page_idx": pa.array(np.arange(len(neighbours), dtype=np.int32)),
            "neighbours": pa.ListArray.from_arrays(pa.array(offsets), pa.array(neighbours[found])),
            "visits": pa.ListArray.from_arrays(pa.array(offsets), pa.array(visits[found])),
        }
    )
    with atomic_path(path) as tmp:
        # no dictionary encoding: neighbour ids are nearly all distinct, and trying costs 3x the write
        pq.write_table(table, tmp, use_dictionary=False)


def _resumable_blocks(work: Path, key: dict[str, str]) -> Path:
    """The folder of finished blocks, emptied when they were made from another graph or config."""
    folder = work / "blocks"
    key_path = work / "key.json"
    if not key_path.exists() or json.loads(key_path.read_text()) != key:
        shutil.rmtree(folder, ignore_errors=True)
        atomic_write_json(key_path, key)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save_block(path: Path, part: WalkResult) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, neighbours=part.neighbours, visits=part.visits, steps=part.steps, early_stops=part.early_stops)


def _load_block(path: Path) -> WalkResult | None:
    try:
        with np.load(path) as z:
            return WalkResult(z["neighbours"], z["visits"], z["steps"], z["early_stops"])
    except (OSError, ValueError, KeyError):
        return None  # a damaged block is walked again


def _quantiles(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {}
    q = np.quantile(x, [0.1, 0.5, 0.9, 0.99])
    return {
        "mean": round(float(np.mean(x)), 3),
        "p10": round(float(q[0]), 3),
        "p50": round(float(q[1]), 3),
        "p90": round(float(q[2]), 3),
        "p99": round(float(q[3]), 3),
        "max": round(float(np.max(x)), 3),
    }
