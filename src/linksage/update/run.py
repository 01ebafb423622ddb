"""``linksage update``: one incremental day on top of a run directory, crash-safe and idempotent.

The day is built in a journal folder ``.work/update/<day>-<input sha>/``: new ``ingest``, ``content``,
``graph`` and ``walk`` folders, each renamed into the journal once its manifest is written (so a killed
update resumes from the last finished step). A ``READY`` marker follows; then each folder replaces the
run's (a crash mid-way is rolled forward by the next update), and the ``embed`` stage upserts the
changed pages into the store as one new version (Lance commits it atomically) and tags the day. So at
any moment the store holds the previous version or the complete new one.

Each stage folder keeps its key (the pipeline still sees it as fresh for the same config) and lists the
days applied to it under ``updates`` in its manifest: re-running a day that is already applied only
repeats the (no-op) embed. The config must be the run's: a changed stage config is refused (run
``linksage run`` with it first).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from linksage import __version__, log
from linksage.config import Config
from linksage.embed.stage import run as embed_run
from linksage.embed.stage import run_state
from linksage.errors import InputError, LinksageError
from linksage.pipeline import get_stage, lock_run_dir, run_stage, stage_key
from linksage.rundir import MANIFEST, RunDir, atomic_write_json
from linksage.search.indices import store_path
from linksage.store.lance_store import EmbeddingStore
from linksage.update.ingest import (
    UPDATE_FILE,
    UPDATED_BOARDS,
    UPDATED_PAGES,
    InputFormat,
    append_day,
    day_bounds,
    input_sha,
    open_day_input,
)
from linksage.update.neighbours import TOUCHED

STEPS = ("ingest", "content", "graph", "walk")
CHECKED = ("ingest", "content", "graph", "walk", "train")  # their config must be the run's
READY = "READY"
StepFn = Callable[[Path], tuple[dict[str, int], dict[str, Any], dict[str, float]]]


def update(
    cfg: Config,
    run_dir: Path | str,
    input_path: Path | str,
    day: str,
    *,
    input_format: InputFormat = "auto",
    retrain: bool = False,
) -> dict[str, Any]:
    """Apply the day's input to the run directory and its store; returns the day's summary (update/manifest)."""
    rd = RunDir(run_dir)
    day_bounds(day)
    started = time.time()
    with lock_run_dir(rd):
        rd.clean_staging()
        journal = rd.root / ".work" / "update"
        for ready in sorted(journal.glob(f"*/{READY}")):  # an earlier update died while swapping folders in
            _swap_in(rd, ready.parent)
        _check_config(cfg, rd)
        day_input = open_day_input(cfg.ingest, Path(input_path), day, input_format)
        sha = input_sha(day_input.files)
        applied = _applied(rd, day)
        if applied is not None and applied["input_sha"] != sha:
            raise LinksageError(
                f"day {day} was already applied to {rd.root} from {applied['input']} (input sha "
                f"{applied['input_sha'][:12]}); {input_path} differs (sha {sha[:12]}). A day is applied once."
            )
        work = journal / f"{day}-{sha[:12]}"
        for other in journal.glob("*"):
            if other != work:
                shutil.rmtree(other, ignore_errors=True)  # a crashed attempt at another input
        entry = {"day": day, "input": str(input_path), "input_sha": sha}
        # the store holds exactly the run before the day: the day's embed compares only the pages it touched
        follows = applied is None and not retrain and _store_follows_run(cfg, rd)
        if applied is None:
            _build(cfg, rd, day_input, entry, work)
            atomic_write_json(work / READY, entry)
            _pause_point("ready")
            _swap_in(rd, work)
        else:
            log.event(f"[update] day {day} already applied: only the embed runs (no change expected)", day=day)
        if retrain:
            train = get_stage("train")
            run_stage(train, cfg, rd, *stage_key(train, cfg, rd))
        _pause_point("before_embed")
        embed = get_stage("embed")
        key, parts = stage_key(embed, cfg, rd)
        with_day = dataclasses.replace(cfg, embed=dataclasses.replace(cfg.embed, day=day))
        # otherwise (a re-run, a retrain, a store or run changed since its last embed) every page is compared
        touched_path = rd.stage_dir("walk") / TOUCHED  # absent from a walk step an older linksage finished
        # pin means move with pins far from the walked pages (a new pin changes its board's mean for every
        # page on that board): then every page is compared, by its fingerprints
        pin_means = cfg.train.board_means or cfg.train.neighbour_means
        touched = np.load(touched_path) if follows and touched_path.exists() and not pin_means else None
        embed_manifest = run_stage(embed, with_day, rd, key, parts, functools.partial(embed_run, candidates=touched))
        summary = _summary(rd, entry, embed_manifest, started, applied is not None, retrain)
        _seal_update(rd, summary)
        shutil.rmtree(work, ignore_errors=True)
    return summary


# --- the steps ------------------------------------------------------------------------------------------------


def _build(cfg: Config, rd: RunDir, day_input: Any, entry: dict[str, Any], work: Path) -> None:
    """The four new stage folders in the journal, each step skipped when a killed run already finished it."""
    from linksage.graph.build import build_graph, read_inputs, write_graph
    from linksage.update.content import update_content
    from linksage.update.neighbours import update_walks, write_walk

    work.mkdir(parents=True, exist_ok=True)

    def ingest(out: Path) -> tuple[dict[str, int], dict[str, Any], dict[str, float]]:
        t0 = time.perf_counter()
        report = append_day(rd.stage_dir("ingest"), day_input, out, work / ".scratch-ingest")
        atomic_write_json(out / UPDATE_FILE, {"old": report.old, "new": report.new})
        return report.counts, report.metrics, {**report.timings, "total_s": time.perf_counter() - t0}

    def content(out: Path) -> tuple[dict[str, int], dict[str, Any], dict[str, float]]:
        t0 = time.perf_counter()
        sizes = json.loads((work / "ingest" / UPDATE_FILE).read_text())
        scratch = _scratch(work / ".scratch-content")
        counts, timings = update_content(
            cfg.content, rd.root, rd.stage_dir("content"), work / "ingest", out, scratch, sizes
        )
        shutil.rmtree(scratch, ignore_errors=True)
        return counts, {}, {**timings, "total_s": time.perf_counter() - t0}

    def graph(out: Path) -> tuple[dict[str, int], dict[str, Any], dict[str, float]]:
        t0 = time.perf_counter()
        built = build_graph(read_inputs(work / "ingest", work / "content"), cfg.graph)
        write_graph(built, built.csr(), out)
        return built.tallies, built.metrics, {**built.timings, "total_s": time.perf_counter() - t0}

    def walk(out: Path) -> tuple[dict[str, int], dict[str, Any], dict[str, float]]:
        t0 = time.perf_counter()
        recrawled = np.load(work / "ingest" / UPDATED_PAGES)
        retexted = np.load(work / "ingest" / UPDATED_BOARDS)
        result = update_walks(cfg, rd.stage_dir("graph"), work / "graph", rd.stage_dir("walk"), recrawled, retexted)
        write_walk(result, out)
        return (
            result.counts,
            {"neighbour_change": cfg.update.neighbour_change},
            {
                **result.timings,
                "total_s": time.perf_counter() - t0,
            },
        )

    steps: dict[str, StepFn] = {"ingest": ingest, "content": content, "graph": graph, "walk": walk}
    for name in STEPS:
        final = work / name
        if (final / MANIFEST).exists():
            log.event(f"[update] {name}: finished by an earlier attempt, kept", stage=name)
            continue
        log.event(f"[update] {name} running", stage=name, day=entry["day"])
        tmp = _scratch(work / f".{name}-{uuid.uuid4().hex[:8]}")
        try:
            counts, metrics, timings = steps[name](tmp)
        except InputError:
            shutil.rmtree(work, ignore_errors=True)  # a bad day leaves nothing behind, not even its journal
            raise
        manifest = _stage_manifest(rd.manifest(name) or {}, entry, counts, metrics, timings)
        atomic_write_json(tmp / MANIFEST, manifest)  # last: the step is complete from here on
        os.replace(tmp, final)
        log.event(f"[update] {name} done in {timings['total_s']:.1f}s", stage=name)
        _pause_point(f"after_{name}")
    for leftover in work.glob(".scratch-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _stage_manifest(
    old: dict[str, Any],
    entry: dict[str, Any],
    counts: dict[str, int],
    metrics: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    """The old manifest (its key included), with the day appended to ``updates``."""
    day = {**entry, "counts": counts, "metrics": metrics, "timings": {k: round(v, 3) for k, v in timings.items()}}
    manifest = {**old, "updates": [*old.get("updates", []), day]}
    if old.get("stage") in ("ingest", "graph"):  # their counts are totals: the top-level ones follow the day
        totals = old.get("counts", {})
        manifest["counts"] = {**totals, **{k: v for k, v in counts.items() if k in totals}}
    manifest["linksage_version"] = __version__
    return manifest


def _swap_in(rd: RunDir, work: Path) -> None:
    """Move the journal's stage folders into place (each a rename; a crash is finished by the next run)."""
    trash = rd.root / ".staging"
    trash.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(STEPS):
        src = work / name
        if not src.exists():
            continue  # moved in already by an attempt that then died
        target = rd.stage_dir(name)
        if target.exists():
            os.replace(target, trash / f"old-{name}-{uuid.uuid4().hex[:8]}")
        os.replace(src, target)
        if i == 0:
            _pause_point("mid_swap")
    (work / READY).unlink(missing_ok=True)
    rd.clean_staging()


def _check_config(cfg: Config, rd: RunDir) -> None:
    """Every stage the update extends must have completed with this config (else the day would mix two)."""
    for name in CHECKED:
        manifest = rd.manifest(name)
        if manifest is None:
            raise LinksageError(
                f"stage {name!r} has not completed in {rd.root}: run `linksage run --run-dir {rd.root}` first"
            )
        key, parts = stage_key(get_stage(name), cfg, rd)
        if manifest.get("key") != key:
            was = manifest.get("key_parts", {}).get("config", {})
            differ = [s for s, fp in parts["config"].items() if was.get(s) != fp]
            what = f"its config sections {', '.join(differ)} differ" if differ else "its inputs or code changed"
            raise LinksageError(
                f"stage {name!r} of {rd.root} is not what this config would make ({what}); pass the run's "
                f"--config and --set values, or run `linksage run` with the new ones first"
            )


def _store_follows_run(cfg: Config, rd: RunDir) -> bool:
    """True when the store's newest version holds exactly the run's current state, as its last embed left it.

    That embed recorded the run's state (``run_state``: its upstream manifests) and the store version it
    made; the embed config must be the same, and nothing may have written the store since.
    """
    manifest = rd.manifest("embed")
    if manifest is None:
        return False
    metrics = manifest.get("metrics", {})
    if (
        metrics.get("run_state") != run_state(rd.root)
        or manifest.get("key") != stage_key(get_stage("embed"), cfg, rd)[0]
    ):
        return False
    path = store_path(rd.root, cfg.store)
    return EmbeddingStore.exists(path) and EmbeddingStore.open(path).version == metrics.get("store_version")


def _applied(rd: RunDir, day: str) -> dict[str, Any] | None:
    """The ``updates`` entry of ``day`` in the ingest manifest, if the day's input is in the run's tables.

    Ingest is the source of truth: a later stage rebuilt by ``linksage run`` (e.g. ``walk --force``) was
    built from tables that hold the day, even though its own manifest no longer lists it.
    """
    updates = (rd.manifest("ingest") or {}).get("updates", [])
    entry: dict[str, Any] | None = next((u for u in updates if u["day"] == day), None)
    return entry


def _summary(
    rd: RunDir, entry: dict[str, Any], embed: dict[str, Any], started: float, rerun: bool, retrain: bool
) -> dict[str, Any]:
    counts: dict[str, int] = {}
    timings: dict[str, float] = {}
    for name in STEPS:
        updates = (rd.manifest(name) or {}).get("updates", [])
        day = next((u for u in updates if u["day"] == entry["day"]), None)
        if day is None:  # rebuilt in full by `linksage run` since the day was applied
            continue
        counts.update({f"{name}_{k}": v for k, v in day["counts"].items() if isinstance(v, int)})
        timings[f"{name}_s"] = day["timings"]["total_s"]
    et = embed.get("timings", {})
    timings["embed_s"] = round(et.get("total_s", 0.0), 3)  # its parts overlap on an empty store: the wall time
    timings["index_s"] = et.get("index_s", 0.0)
    counts.update({f"embed_{k}": v for k, v in embed.get("counts", {}).items()})
    return {
        "stage": "update",
        **entry,
        "rerun": rerun,
        "retrain": retrain,
        "store_version": embed.get("metrics", {}).get("store_version"),
        "committed": embed.get("metrics", {}).get("committed"),
        "counts": counts,
        "timings": timings,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(time.time() - started, 3),
        "linksage_version": __version__,
    }


def _seal_update(rd: RunDir, summary: dict[str, Any]) -> None:
    """``update/manifest.json`` (the latest day) and ``update/days.json`` (every day, in order applied)."""
    days_path = rd.stage_dir("update") / "days.json"
    days = json.loads(days_path.read_text()) if days_path.exists() else []
    days = [d for d in days if d.get("day") != summary["day"] or d.get("input_sha") != summary["input_sha"]]
    staging = rd.new_staging("update")
    atomic_write_json(staging / "days.json", [*days, summary])
    rd.seal("update", staging, summary)


def _scratch(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _pause_point(label: str) -> None:
    """Crash tests: sleep here when LINKSAGE_UPDATE_PAUSE names this point, so a test can SIGKILL us."""
    if os.environ.get("LINKSAGE_UPDATE_PAUSE") == label:
        print(f"paused at {label}", flush=True)
        time.sleep(float(os.environ.get("LINKSAGE_UPDATE_PAUSE_S", "60")))
