"""The ordered stages and the runner that skips a stage whose inputs and config are unchanged.

A stage is a function ``run(ctx: StageContext) -> StageResult`` in its own module, named here by
import path so that ``import linksage`` stays cheap. Its *key* hashes its config sections, the keys
of the upstream stages it reads and the fingerprints of the external files it reads; a completed
stage with the same key is skipped.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linksage import __version__, log
from linksage.config import Config, config_to_dict, fingerprint
from linksage.errors import LinksageError
from linksage.rundir import RunDir, file_fingerprint


@dataclass
class StageResult:
    """What a stage reports; it lands in the manifest."""

    counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class StageContext:
    """Everything a stage may touch: the config, the run directory, and its own output folder."""

    config: Config
    run_dir: RunDir
    stage: str
    out: Path  # staging folder: write every artifact here; it is moved into place on success

    def input_dir(self, stage: str) -> Path:
        """Folder of a completed upstream stage."""
        return self.run_dir.require(stage)

    def upstream_manifest(self, stage: str) -> dict[str, Any]:
        manifest = self.run_dir.manifest(stage)
        if manifest is None:
            raise LinksageError(f"stage {stage!r} has not completed in {self.run_dir.root}")
        return manifest

    @property
    def work(self) -> Path:
        """Crash-surviving scratch folder of this stage (checkpoints, resumable parts)."""
        return self.run_dir.work_dir(self.stage)


@dataclass(frozen=True)
class Stage:
    name: str
    entry: str  # "module:function" implementing run(ctx) -> StageResult
    sections: tuple[str, ...]  # config sections that change its output
    upstream: tuple[str, ...] = ()  # stages whose artifacts it reads
    external: str | None = None  # "module:function" (cfg) -> list[Path] of external files read
    version: int = 1  # bump when the stage's output format or semantics change

    def load(self) -> Callable[[StageContext], StageResult]:
        module, func = self.entry.split(":")
        fn: Callable[[StageContext], StageResult] = getattr(importlib.import_module(module), func)
        return fn

    def external_files(self, cfg: Config) -> list[Path]:
        if self.external is None:
            return []
        module, func = self.external.split(":")
        files: list[Path] = getattr(importlib.import_module(module), func)(cfg)
        return files


STAGES: tuple[Stage, ...] = (
    Stage(
        "ingest",
        "linksage.ingest.stage:run",
        sections=("ingest",),
        external="linksage.ingest.stage:external_files",
    ),
    Stage("content", "linksage.content.stage:run", sections=("content",), upstream=("ingest",), version=2),
    Stage("graph", "linksage.graph.stage:run", sections=("graph",), upstream=("ingest", "content")),
    Stage("walk", "linksage.walk.stage:run", sections=("walk",), upstream=("graph",)),
    Stage("train", "linksage.train.stage:run", sections=("train",), upstream=("ingest", "content", "graph", "walk")),
    Stage(
        "embed",
        "linksage.embed.stage:run",
        sections=("embed", "store"),
        upstream=("ingest", "content", "graph", "walk", "train"),
    ),
    Stage(
        "evaluate",
        "linksage.evaluate.stage:run",
        sections=("evaluate", "train"),
        upstream=("ingest", "content", "graph", "walk", "train"),
    ),
)


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise LinksageError(f"unknown stage {name!r}; stages are: {', '.join(stage_names())}")


def _with_upstream(names: Sequence[str]) -> list[Stage]:
    """The requested stages plus everything upstream of them, in pipeline order."""
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name in wanted:
            return
        wanted.add(name)
        for up in get_stage(name).upstream:
            add(up)

    for name in names:
        add(name)
    return [s for s in STAGES if s.name in wanted]


def stage_key(stage: Stage, cfg: Config, run_dir: RunDir) -> tuple[str, dict[str, Any]]:
    """Hash of everything the stage's output depends on, and the parts that went into it."""
    upstream = {}
    for up in stage.upstream:
        manifest = run_dir.manifest(up)
        upstream[up] = manifest["key"] if manifest else None
    inputs = [file_fingerprint(p) for p in stage.external_files(cfg)]
    parts: dict[str, Any] = {
        "stage": stage.name,
        "version": stage.version,
        "config": {s: fingerprint(cfg.section(s)) for s in stage.sections},
        "upstream": upstream,
        "inputs": inputs,
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return key, parts


@contextmanager
def lock_run_dir(run_dir: RunDir) -> Iterator[None]:
    """Hold the run directory's lock (one linksage process at a time); fails at once when it is taken."""
    run_dir.root.mkdir(parents=True, exist_ok=True)
    with open(run_dir.root / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LinksageError(f"another linksage process is using run directory {run_dir.root}") from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_stages(
    cfg: Config, run_dir: RunDir | Path | str, names: Sequence[str] = (), *, force: bool = False
) -> dict[str, dict[str, Any]]:
    """Run the named stages (all when empty) and any stale upstream ones; return their manifests.

    ``force`` reruns the named stages even when fresh (upstream stages still skip when fresh).
    """
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    requested = list(names) or stage_names()
    plan = _with_upstream(requested)
    manifests: dict[str, dict[str, Any]] = {}
    with lock_run_dir(rd):
        rd.clean_staging()
        for stage in plan:
            key, parts = stage_key(stage, cfg, rd)
            existing = rd.manifest(stage.name)
            forced = force and stage.name in requested
            if existing is not None and existing.get("key") == key and not forced:
                log.event(f"[{stage.name}] up to date, skipped", stage=stage.name, status="skipped")
                manifests[stage.name] = existing
                continue
            manifests[stage.name] = run_stage(stage, cfg, rd, key, parts)
            release_gpu_cache()
    return manifests


def release_gpu_cache() -> None:
    """Hand the CUDA caching allocator's free blocks back to the driver between stages.

    A finished stage's tensors are gone, but torch keeps their memory reserved for the process; the next
    stage then allocates beside it, and other processes on the same GPU (A/B variants sharing one) find it
    taken. Stages that never touched CUDA cost nothing here: torch is not imported for them.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        gc.collect()  # tensors held only by reference cycles
        torch.cuda.empty_cache()


def run_stage(
    stage: Stage,
    cfg: Config,
    rd: RunDir,
    key: str,
    parts: dict[str, Any],
    run: Callable[[StageContext], StageResult] | None = None,
) -> dict[str, Any]:
    """Run one stage into a staging folder and seal it with its manifest (returned); the caller holds the lock.

    ``run`` replaces the stage's entry point (``linksage update`` calls the embed stage with the day's pages).
    """
    fn = run or stage.load()
    staging = rd.new_staging(stage.name)
    ctx = StageContext(config=cfg, run_dir=rd, stage=stage.name, out=staging)
    log.event(f"[{stage.name}] running", stage=stage.name, status="running")
    started = time.time()
    t0 = time.perf_counter()
    result = fn(ctx)
    seconds = time.perf_counter() - t0
    manifest = {
        "stage": stage.name,
        "key": key,
        "key_parts": parts,
        "config": {s: config_to_dict(cfg.section(s)) for s in stage.sections},
        "counts": result.counts,
        "metrics": result.metrics,
        "timings": {**result.timings, "total_s": round(seconds, 3)},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "linksage_version": __version__,
        "host": {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()},
    }
    rd.seal(stage.name, staging, manifest)
    rd.clear_work(stage.name)
    log.event(f"[{stage.name}] done in {seconds:.1f}s", stage=stage.name, status="done", seconds=round(seconds, 3))
    return manifest
