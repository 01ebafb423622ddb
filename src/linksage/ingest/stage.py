"""The ingest stage: run the configured adapter and write the canonical tables (docs/artifacts.md)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from linksage import log
from linksage.config import Config, TablesSource
from linksage.ingest.canonical import build_canonical
from linksage.ingest.tables import tables_files, tables_input
from linksage.pipeline import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.ingest
    timings: dict[str, float] = {}
    counts: dict[str, int] = {}
    metrics: dict[str, object] = {"source": cfg.source}
    if cfg.source == "tables":
        report = build_canonical(tables_input(cfg.tables, cfg.batch_rows), ctx.out, bad_urls=cfg.tables.bad_urls)
    elif cfg.source == "reddit":
        from linksage.ingest.reddit import reddit_input

        t0 = time.perf_counter()
        inp, filtered = reddit_input(cfg.reddit, cfg.batch_rows)
        timings["read_filter_s"] = round(time.perf_counter() - t0, 3)
        report = build_canonical(inp, ctx.out, bad_urls="skip")
        bad = filtered.counts.pop("posts_bad_url", 0)  # the adapter skipped them before blocking
        report.counts["bad_urls_skipped"] = report.counts.get("bad_urls_skipped", 0) + bad
        counts.update(filtered.counts)
        metrics.update(filtered.metrics)
    else:
        from linksage.ingest.synthetic import generate_world, write_truth

        world = ctx.work / "world"
        shutil.rmtree(world, ignore_errors=True)  # leftovers of a crashed run: regenerate, it is seeded
        t0 = time.perf_counter()
        files = generate_world(cfg.synthetic, world)
        timings["generate_s"] = round(time.perf_counter() - t0, 3)
        log.event("ingest: synthetic world generated", seconds=timings["generate_s"])
        src = TablesSource(
            pins=str(files.pins),
            links=str(files.links),
            boards=str(files.boards),
            board_meta=str(files.board_meta),
            pages=str(files.pages),
        )
        report = build_canonical(tables_input(src, cfg.batch_rows), ctx.out, bad_urls="error")
        counts["truth"] = write_truth(files.truth, ctx.out)
        shutil.rmtree(world, ignore_errors=True)
    counts.update(report.counts)
    metrics.update(report.metrics)
    timings.update(report.timings)
    return StageResult(counts=counts, metrics=metrics, timings=timings)


def external_files(cfg: Config) -> list[Path]:
    """Every input file the stage reads (their sizes and times key the stage); none for synthetic."""
    src = cfg.ingest
    if src.source == "tables":
        return tables_files(src.tables)
    if src.source == "reddit":
        from linksage.schema import data_files

        files = data_files(src.reddit.posts)
        if src.reddit.subreddits:
            files += data_files(src.reddit.subreddits)
        return files
    return []
