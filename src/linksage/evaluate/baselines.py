"""Baselines scored beside the graph model, on the same queries, pool and positives.

- ``zero_shot``: the page's own text vector against the pins' target vectors, no training. Valid only when
  both come from one encoder (the pins have no given ``embedding`` column and the widths agree);
  otherwise it is skipped with the reason recorded.
- ``content_only``: the train stage's model and loop with no graph inputs (no neighbours, no board tokens).
- ``single_dim_<d>``: the same with ``train.dims = [d]``: a model trained for one size only.

Trained baselines run the train stage's own ``run`` on a derived config and land in
``evaluate/baselines/<name>/`` (model.pt, split.npy, result.json, key.txt); checkpoints go to
``.work/evaluate/<name>/`` so a crash resumes them. A later evaluate run whose baseline key (its train
config and the upstream stages' keys) is unchanged reuses the model instead of training it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from linksage import log
from linksage.config import ConfigError, fingerprint
from linksage.config.evaluate import EvaluateConfig, single_dim_of
from linksage.config.train import TrainConfig, check_dims
from linksage.evaluate.embeddings import Embeddings
from linksage.pipeline import StageContext
from linksage.rundir import atomic_write_json, atomic_write_text

TRAIN_UPSTREAM = ("ingest", "content", "graph", "walk")


def trained_variant(name: str, train: TrainConfig, cfg: EvaluateConfig, target_dim: int) -> TrainConfig:
    """The train config of a trained baseline; ConfigError when it cannot be trained here."""
    changes: dict[str, object] = {}
    if name == "content_only":
        # the page's own content: no graph (and no hidden content, which a model without a graph cannot replace)
        changes.update(neighbours=0, board_tokens=0, board_means=False, neighbour_means=False, domain_token=False)
        changes.update(content_dropout=0.0)
    elif (d := single_dim_of(name)) is not None:
        check_dims((d,), target_dim=target_dim)
        changes.update(dims=(d,), dim_weights=(), prefix_distillation=0.0)  # one dim: nothing to distil into
    else:
        raise ConfigError(f"evaluate.baselines: {name!r} is not a trained baseline")
    if cfg.baseline_steps:
        changes["steps"] = cfg.baseline_steps
    return dataclasses.replace(train, **changes)  # type: ignore[arg-type]


def baseline_key(ctx: StageContext, variant: TrainConfig) -> str:
    parts = {
        "train": fingerprint(variant),
        "upstream": {s: ctx.upstream_manifest(s).get("key") for s in TRAIN_UPSTREAM},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def train_baseline(ctx: StageContext, name: str, variant: TrainConfig) -> Path:
    """``evaluate/baselines/<name>/`` with the baseline's model.pt and split.npy: reused when its key matches
    the last sealed evaluate run's (or a crashed run's finished one), else trained now."""
    from linksage.train.stage import run as train_run

    key = baseline_key(ctx, variant)
    dest = ctx.out / "baselines" / name
    built = ctx.work / "baselines" / name  # survives a crash of the evaluate stage
    for source in (ctx.run_dir.stage_dir("evaluate") / "baselines" / name, built):
        if _read(source / "key.txt") == key:
            shutil.copytree(source, dest)
            log.event(f"[evaluate] baseline {name}: reusing its trained model", baseline=name, key=key)
            return dest
    shutil.rmtree(built, ignore_errors=True)
    built.mkdir(parents=True)
    sub = StageContext(
        config=dataclasses.replace(ctx.config, train=variant), run_dir=ctx.run_dir, stage=f"evaluate/{name}", out=built
    )
    log.event(f"[evaluate] training baseline {name}", baseline=name, steps=variant.steps)
    result = train_run(sub)  # checkpoints in .work/evaluate/<name>/, resumed after a crash
    atomic_write_json(
        built / "result.json", {"counts": result.counts, "metrics": result.metrics, "timings": result.timings}
    )
    atomic_write_text(built / "key.txt", key)  # last: a folder with key.txt holds a complete model
    ctx.run_dir.clear_work(sub.stage)
    shutil.copytree(built, dest)
    return dest


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def zero_shot_reason(root: Path) -> str | None:
    """Why page text and pin targets are not one space (None when they are)."""
    text = np.load(root / "content" / "page_text.npy", mmap_mode="r")
    targets = np.load(root / "content" / "pin_target.npy", mmap_mode="r")
    pins = root / "ingest" / "pins.parquet"
    if "embedding" in pq.ParquetDataset(pins).schema.names:  # a file or a folder of parts
        column = pq.read_table(pins, columns=["embedding"]).column("embedding")
        if column.null_count < len(column):
            return "the pins' targets come from their given `embedding` column, not from the page text encoder"
    if text.shape[1] != targets.shape[1]:
        return f"page text vectors are {text.shape[1]}-dim but pin targets are {targets.shape[1]}-dim"
    return None


def zero_shot_rotation(root: Path, train: TrainConfig, model_rotation: np.ndarray) -> np.ndarray | None:
    """The axes the zero-shot line is scored in: the model's PCA rotation; for a learned rotation the PCA
    it started from (recomputed, deterministic), so that the baseline stays free of training; None (no
    rotation, full width only) for ``target_rotation = "none"``."""
    if train.target_rotation == "none":
        return None
    if train.target_rotation == "learned":
        from linksage.train.target_space import pca_rotation

        return pca_rotation(np.load(root / "content" / "pin_target.npy", mmap_mode="r"), seed=train.seed)
    return model_rotation


def zero_shot_embeddings(
    root: Path, pages: np.ndarray, pool: np.ndarray, rotation: np.ndarray | None, model_dims: tuple[int, ...]
) -> Embeddings:
    """Page text vs pin targets, both rotated by ``rotation`` when given (``zero_shot_rotation``).

    The rotation (PCA of the targets, orthogonal) keeps full-size cosines and makes prefixes meaningful,
    so the zero-shot line is scored at the model's dims as well as at its full width.
    """
    from linksage.train.target_space import to_target_space

    text = np.load(root / "content" / "page_text.npy", mmap_mode="r")
    targets = np.load(root / "content" / "pin_target.npy", mmap_mode="r")
    width = text.shape[1]
    basis = rotation if rotation is not None else np.eye(width, dtype=np.float32)
    pins_src = targets if len(pool) == len(targets) else targets[pool]
    page_vecs = to_target_space(np.asarray(text[pages], dtype=np.float32), basis)
    pin_vecs = to_target_space(pins_src, basis)
    dims = tuple(sorted({d for d in model_dims if d < width} | {width})) if rotation is not None else (width,)
    return Embeddings(page_vecs, pin_vecs, dims)
