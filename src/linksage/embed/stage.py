"""The ``embed`` stage: embed the run's pages with the trained model into the versioned store.

The store is long-lived and lives outside the stage folder (``store.path``, default <run-dir>/store);
the stage folder records what this run did (``embed.json``) so that later stages and people can see
which store version it produced. Only pages whose model or inputs changed are embedded (see
``linksage.embed.batch``), so rerunning after a crash, or on unchanged inputs, writes nothing new.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from linksage import log
from linksage.config.store import EmbedConfig, StoreConfig
from linksage.embed.batch import EmbedReport, embed_into_store
from linksage.pipeline import StageContext, StageResult
from linksage.rundir import MANIFEST, atomic_write_json
from linksage.search.indices import pages_index, pins_index, store_path
from linksage.store.lance_store import EmbeddingStore

UPSTREAM = ("ingest", "content", "graph", "walk", "train")


def run(ctx: StageContext, candidates: np.ndarray | None = None) -> StageResult:
    """The stage; ``candidates`` (page_idx) limits the store comparison to them (see ``embed_into_store``)."""
    embed_cfg: EmbedConfig = ctx.config.section("embed")
    store_cfg: StoreConfig = ctx.config.section("store")
    for stage in UPSTREAM:
        ctx.input_dir(stage)  # a clear error naming the stage when one has not completed
    return embed_stage(ctx.run_dir.root, ctx.out, embed_cfg, store_cfg, candidates)


def run_state(run_dir: Path) -> str:
    """Hash of the upstream stages' manifests: which state of the run an embed brought the store to.

    Every stage rebuild and every incremental day rewrites its stage's manifest, so an equal hash means
    the store's rows were made from exactly the run's current tables (``linksage update`` checks this
    before it compares only the day's pages with the store).
    """
    digest = hashlib.sha256()
    for stage in UPSTREAM:
        path = run_dir / stage / MANIFEST
        digest.update(stage.encode() + b"\0" + (path.read_bytes() if path.exists() else b"") + b"\0")
    return digest.hexdigest()[:16]


def embed_stage(
    run_dir: Path,
    out: Path,
    embed_cfg: EmbedConfig,
    store_cfg: StoreConfig,
    candidates: np.ndarray | None = None,
) -> StageResult:
    """Embed into the store, build the ANN indices, and write ``out/embed.json``."""
    path = store_path(run_dir, store_cfg)
    state = run_state(run_dir)
    report = embed_into_store(run_dir, path, embed_cfg, candidates=candidates)
    timings = dict(report.timings)
    if store_cfg.build_index:
        t0 = time.perf_counter()
        pages_index(EmbeddingStore.open(path), store_cfg.index)
        pins_index(run_dir, path, store_cfg.index)
        timings["index_s"] = time.perf_counter() - t0
    summary = _summary(report, path)
    atomic_write_json(out / "embed.json", summary)
    embed_s = timings.get("embed_write_s", 0.0)
    log.event(
        "[embed] store updated",
        version=report.result.version,
        embedded=report.embedded,
        unchanged=report.unchanged,
        pages_per_s=round(report.embedded / embed_s) if embed_s > 0 else 0,
    )
    return StageResult(
        counts={
            "pages": report.pages,
            "embedded": report.embedded,
            "unchanged": report.unchanged,
            "inserted": report.result.inserted,
            "updated": report.result.updated,
            "checked": report.pages if report.checked is None else report.checked,
        },
        metrics={
            "run_state": state,
            "store_version": report.result.version,
            "committed": report.result.committed,
            "model_version": report.model_version,
            "day": report.day,
            "pages_per_s": round(report.embedded / embed_s, 1) if embed_s > 0 else None,
        },
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def _summary(report: EmbedReport, path: Path) -> dict[str, object]:
    return {
        "store": str(path),
        "version": report.result.version,
        "committed": report.result.committed,
        "model_version": report.model_version,
        "day": report.day,
        "pages": report.pages,
        "embedded": report.embedded,
        "inserted": report.result.inserted,
        "updated": report.result.updated,
        "unchanged": report.unchanged,
    }
