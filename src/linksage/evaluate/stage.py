"""The evaluate stage: the trained model and its baselines on the held-out pages; metrics.json and report.html.

Reads ingest (pages' URLs, domains, first_seen; pins' text), content (pin targets, page text), graph
(page->pin positives), walk (neighbours, for the report) and train (model.pt, split.npy). Writes
``metrics.json`` (schema in docs/evaluation.md), ``per_query.parquet``, ``report.html`` with ``plots/``,
and ``baselines/<name>/`` for trained baselines.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from linksage import log
from linksage.config import ConfigError
from linksage.config.evaluate import EvaluateConfig
from linksage.errors import LinksageError
from linksage.evaluate import baselines as bl
from linksage.evaluate import slices as sl
from linksage.evaluate.cards import build_cards, sample_rows
from linksage.evaluate.embeddings import Embeddings, Evaluation, evaluate_embeddings
from linksage.evaluate.metrics import resolve_device
from linksage.evaluate.queries import SPLIT_CODES, QuerySet, load_query_set
from linksage.evaluate.report import PageCard, write_report
from linksage.evaluate.targets import check_targets
from linksage.pipeline import StageContext, StageResult
from linksage.rundir import atomic_path, atomic_write_json

UPSTREAM = ("ingest", "content", "graph", "walk", "train")


def run(ctx: StageContext) -> StageResult:
    cfg: EvaluateConfig = ctx.config.evaluate
    root = ctx.run_dir.root
    for stage in UPSTREAM:
        ctx.run_dir.require(stage)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    qs = load_query_set(root, cfg)
    if len(qs.pages) == 0:
        raise LinksageError(
            f"no {cfg.split} page with a positive pin in {root / 'train' / 'split.npy'}; "
            "check train.split and its fractions or dates"
        )
    device = str(resolve_device(cfg.device))
    log.event(
        f"[evaluate] {len(qs.pages):,} {cfg.split} pages, pool {qs.describe_pool()}",
        queries=len(qs.pages),
        pool=len(qs.pool),
    )
    main, rotation, meta = _model_embeddings(root / "train", root, qs, device)
    timings["embed_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    others, skipped = _baselines(ctx, cfg, qs, rotation, main.dims, device)
    timings["baselines_s"] = time.perf_counter() - t

    pages = _pages_table(root)
    pin_text = pq.read_table(root / "ingest" / "pins.parquet", columns=["text"]).column("text").to_pylist()
    slice_masks, skipped_slices = _slices(root, cfg, qs, pages, pin_text)

    t = time.perf_counter()
    ev = evaluate_embeddings(
        main,
        qs.positives,
        cfg,
        name="graph",
        baselines=others,
        slices=slice_masks,
        skipped_baselines=skipped,
        skipped_slices=skipped_slices,
        extra={
            "pool": qs.describe_pool(),
            "split": cfg.split,
            "split_pages": qs.split_pages,
            "positives": "edges of graph/page__pin (cohesion-filtered links), as in training",
            "device": device,
            "model_meta": meta,
            # the space every score is in: 0 = the pins' own targets (content.pin_target_boards)
            **_target_space(ctx.upstream_manifest("content")),
        },
    )
    timings["metrics_s"] = time.perf_counter() - t

    metrics = ev.to_json()
    metrics["targets"] = check_targets(metrics)
    atomic_write_json(ctx.out / "metrics.json", metrics)
    _write_per_query(ctx.out / "per_query.parquet", ev, qs)

    t = time.perf_counter()
    cards = _cards(root, cfg, ev, main, qs, pages["url"], pin_text, device)
    report = write_report(
        ctx.out, ev, metrics, metrics["targets"], cards, title=f"linksage evaluation: {root}", notes=_notes(metrics)
    )
    timings["report_s"] = time.perf_counter() - t
    log.event(f"[evaluate] report: {ctx.run_dir.stage_dir('evaluate') / report.name}")
    k = f"recall@{max(cfg.ks)}"
    return StageResult(
        counts={"queries": len(qs.pages), "pool": len(qs.pool), "positives": len(qs.positives.indices)},
        metrics={
            k: metrics[k],
            "mrr": metrics["mrr"],
            "baselines": {name: {k: r.means()[k]} for name, r in ev.baselines.items()},
            "targets_met": {name: c["met"] for name, c in metrics["targets"].items()},
        },
        timings={name: round(v, 3) for name, v in timings.items()},
    )


def _cards(
    root: Path,
    cfg: EvaluateConfig,
    ev: Evaluation,
    main: Embeddings,
    qs: QuerySet,
    urls: list[str],
    pin_text: list[str | None],
    device: str,
) -> list[PageCard]:
    """The report's sampled query pages, with their walk neighbours."""
    neighbours = np.load(root / "walk" / "neighbours.npy", mmap_mode="r")
    visits = np.load(root / "walk" / "visits.npy", mmap_mode="r")

    def page_neighbours(row: int) -> list[tuple[str, float]]:
        page = int(qs.pages[row])
        ids, counts = neighbours[page, : cfg.report_neighbours], visits[page, : cfg.report_neighbours]
        return [(urls[int(i)], float(v)) for i, v in zip(ids, counts, strict=True) if i >= 0]

    return build_cards(
        ev,
        main,
        sample_rows(len(qs.pages), cfg.report_pages, cfg.seed),
        page_url=lambda row: urls[int(qs.pages[row])],
        pin_text=lambda pool_row: pin_text[int(qs.pool[pool_row])] or "",
        neighbours=page_neighbours,
        k=cfg.report_top_k,
        device=device,
        pool_chunk=cfg.pool_chunk,
    )


def _pages_table(root: Path) -> dict[str, list[Any]]:
    """url, domain_idx and first_seen by page_idx (first_seen None when the column is absent)."""
    path = root / "ingest" / "pages.parquet"
    names = pq.ParquetDataset(path).schema.names  # a file or a folder of parts
    cols = ["page_idx", "url", "domain_idx"] + (["first_seen"] if "first_seen" in names else [])
    table = pq.read_table(path, columns=cols).sort_by("page_idx")
    out: dict[str, list[Any]] = {c: table.column(c).to_pylist() for c in cols}
    if "first_seen" not in out:
        out["first_seen"] = []
    return out


def _model_embeddings(
    model_dir: Path, root: Path, qs: QuerySet, device: str
) -> tuple[Embeddings, np.ndarray, dict[str, Any]]:
    """Query pages' embeddings and pool pins' target vectors of a trained model, and its rotation and meta."""
    from linksage.train.infer import PageEmbedder, load_model

    model = load_model(model_dir, device)
    embedder = PageEmbedder(model, model.features(root), device)
    pages = embedder.embed(qs.pages)
    targets = np.load(root / "content" / "pin_target.npy", mmap_mode="r")
    pins = model.pin_vectors(targets if qs.pool_is_all else targets[qs.pool])
    meta = {k: v for k, v in model.meta.items() if k != "train_config"}
    return Embeddings(pages, pins, tuple(model.dims)), model.rotation, meta


def _baselines(
    ctx: StageContext,
    cfg: EvaluateConfig,
    qs: QuerySet,
    rotation: np.ndarray,
    model_dims: tuple[int, ...],
    device: str,
) -> tuple[dict[str, Embeddings], dict[str, str]]:
    root = ctx.run_dir.root
    out: dict[str, Embeddings] = {}
    skipped: dict[str, str] = {}
    split = np.load(root / "train" / "split.npy")
    target_dim = int(np.load(root / "content" / "pin_target.npy", mmap_mode="r").shape[1])
    for name in cfg.baselines:
        if name == "zero_shot":
            reason = bl.zero_shot_reason(root)
            if reason is None:
                basis = bl.zero_shot_rotation(root, ctx.config.train, rotation)
                out[name] = bl.zero_shot_embeddings(root, qs.pages, qs.pool, basis, model_dims)
            else:
                skipped[name] = reason
            continue
        try:
            variant = bl.trained_variant(name, ctx.config.train, cfg, target_dim)
        except ConfigError as exc:
            skipped[name] = str(exc)
            continue
        folder = bl.train_baseline(ctx, name, variant)
        if not np.array_equal(np.load(folder / "split.npy"), split):
            skipped[name] = "its train/validation/test split differs from the main model's"
            continue
        out[name] = _model_embeddings(folder, root, qs, device)[0]
    for name, reason in skipped.items():
        log.event(f"[evaluate] baseline {name} skipped: {reason}", baseline=name)
    return out, skipped


def _slices(
    root: Path, cfg: EvaluateConfig, qs: QuerySet, pages: dict[str, list[Any]], pin_text: list[str | None]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    masks: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    pos = qs.positives
    split = np.load(root / "train" / "split.npy")
    train_pages = np.flatnonzero(split == SPLIT_CODES["train"])
    for name in cfg.slices:
        if name == "opaque":
            urls = [pages["url"][p] for p in qs.pages]
            texts = [
                [pin_text[int(qs.pool[r])] or "" for r in pos.indices[pos.indptr[i] : pos.indptr[i + 1]]]
                for i in range(len(qs.pages))
            ]
            masks["opaque"] = sl.opaque_mask(urls, texts)
            masks["readable"] = ~masks["opaque"]
        elif name == "degree":
            masks.update(sl.degree_masks(pos.counts, cfg.degree_buckets))
        elif name == "new_pages":
            if not pages["first_seen"]:
                skipped[name] = "ingest/pages.parquet has no first_seen column"
                continue
            seen = np.array([np.nan if v is None else v for v in pages["first_seen"]], dtype=np.float64)
            try:
                masks[name] = sl.new_pages_mask(seen[qs.pages], seen[train_pages])
            except ValueError as exc:
                skipped[name] = str(exc)
        elif name == "unseen_domains":
            domains = np.asarray(pages["domain_idx"], dtype=np.int64)
            masks[name] = sl.unseen_domains_mask(domains[qs.pages], domains[train_pages])
    return masks, skipped


def _write_per_query(path: Path, ev: Evaluation, qs: QuerySet) -> None:
    """One row per query: page_idx, degree, slice flags, and the graph model's metrics at every dim."""
    cols: dict[str, Any] = {"page_idx": pa.array(qs.pages, pa.int32()), "degree": pa.array(qs.positives.counts)}
    for name, mask in ev.slices.items():
        cols[f"slice:{name}"] = pa.array(mask)
    for d in ev.main.dims:
        for metric, values in ev.main.per_query[d].items():
            cols[f"{metric}@dim{d}"] = pa.array(values.astype(np.float32))
        cols[f"first_rank@dim{d}"] = pa.array(ev.main.ranks[d].first_rank)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(cols), tmp)


def _target_space(content_manifest: dict[str, Any]) -> dict[str, Any]:
    """What the content stage made the pins' targets: its ``content.pin_target_boards`` weight (0 = their own)
    and whether the boards' means were centred."""
    recorded = content_manifest.get("metrics", {})
    return {
        "pin_target_boards": float(recorded.get("pin_target_boards", 0.0)),
        "pin_target_boards_centred": bool(recorded.get("pin_target_boards_centred", False)),
    }


def _notes(metrics: dict[str, Any]) -> list[str]:
    notes = [
        f"Queries: {metrics['num_queries']:,} pages of the {metrics['split']} split "
        f"(of {metrics['split_pages']:,} with a positive). Positives: {metrics['positives']}.",
        "Recall counts other positives ranked above a positive (a page with more than k positives cannot reach "
        "recall 1 at k); the train stage's validation recall ranks each positive against negatives only.",
    ]
    if metrics.get("pin_target_boards"):
        notes.append(
            f"Pin targets are board-aware (content.pin_target_boards = {metrics['pin_target_boards']:g}: each pin's "
            f"target plus its boards' mean{', centred' if metrics.get('pin_target_boards_centred') else ''}): every "
            "score is in that space and does not compare with a run on the pins' own targets."
        )
    for name, reason in metrics["skipped_baselines"].items():
        notes.append(f"Baseline {name} not run: {reason}")
    return notes
