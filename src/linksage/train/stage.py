"""The train stage: pairs and splits, target space, the encoder trained with checkpoints; model.pt out.

Reads ingest/pages.parquet (first_seen) and pins.parquet (created_at) for a time split, content/*.npy,
graph/page__pin CSR (the cohesion-filtered positives and the page degree) and walk/neighbours.npy with
visits.npy. Writes model.pt, split.npy, metrics.csv and tensorboard/ (see docs/training.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from linksage import log
from linksage.config import ConfigError, config_to_dict, fingerprint
from linksage.config.train import TrainConfig, check_dims, parse_date
from linksage.content.board_targets import cutoff_seconds
from linksage.errors import InputError
from linksage.evaluate.baselines import zero_shot_reason  # the same one-space check as the zero-shot line
from linksage.graph.csr import csr_first
from linksage.model import EncoderConfig, LinkSageEncoder
from linksage.pipeline import StageContext, StageResult
from linksage.rundir import atomic_path
from linksage.train.content_negatives import ContentNegatives, build_content_negatives
from linksage.train.features import load_page_features
from linksage.train.infer import MODEL_FILE, LinkSageModel
from linksage.train.loop import EVAL_K, BoardPins, FitResult, TrainData, Trainer, make_eval_set
from linksage.train.pairs import (
    TEST,
    TRAIN,
    VAL,
    Pairs,
    assert_no_leakage,
    drop_future_pins,
    pairs_of,
    positive_pairs,
    split_pages,
    time_column,
)
from linksage.train.target_space import LearnedRotation, identity_rotation, pca_rotation, to_target_space

UPSTREAM = ("ingest", "content", "graph", "walk")
# passes over the training pairs past which the schedule is warned about (the Reddit benchmark makes 35)
MAX_SENSIBLE_EPOCHS = 200


def run(ctx: StageContext) -> StageResult:
    cfg: TrainConfig = ctx.config.train
    root = ctx.run_dir.root
    for stage in UPSTREAM:
        ctx.run_dir.require(stage)
    if ctx.config.content.pin_target_boards > 0:  # a split moved before the targets' cut-off would leak
        cutoff_seconds(ctx.config.content.pin_target_boards_before, cfg)
        if cfg.board_means or cfg.neighbour_means:
            # every board-aware target holds its boards' means, the page's own pins in them: a pin mean
            # that leaves those pins out would still read them through the other pins' targets
            raise ConfigError(
                "train.board_means / train.neighbour_means: read the pins' targets, which with "
                f"content.pin_target_boards = {ctx.config.content.pin_target_boards} carry a page's own pins "
                "through their boards' means; turn one of them off"
            )
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 loss matmuls

    targets = np.load(root / "content" / "pin_target.npy", mmap_mode="r")
    check_dims(cfg.dims, target_dim=targets.shape[1])
    indptr = np.load(root / "graph" / "page__pin.indptr.npy")
    pairs = positive_pairs(indptr, np.load(root / "graph" / "page__pin.indices.npy"))
    degree = np.diff(indptr)
    first_seen = pin_created = None
    cutoff = None
    if cfg.split == "time":
        first_seen = time_column(root / "ingest" / "pages.parquet", "page_idx", "first_seen", len(degree))
        pin_created = time_column(root / "ingest" / "pins.parquet", "pin_idx", "created_at", len(targets))
        cutoff = int(parse_date("split_date", cfg.split_date).timestamp())
    split = split_pages(degree, cfg, first_seen, pages_file=str(root / "ingest" / "pages.parquet"))
    by_split = {w: pairs_of(pairs, split, w) for w in (TRAIN, VAL, TEST)}
    dropped_future = 0
    if cutoff is not None and pin_created is not None:
        by_split[TRAIN], dropped_future = drop_future_pins(by_split[TRAIN], pin_created, cutoff)
    assert_no_leakage(split, by_split, first_seen=first_seen, pin_created_at=pin_created, cutoff=cutoff)
    timings["pairs_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    rotation = (
        identity_rotation(targets.shape[1]) if cfg.target_rotation == "none" else pca_rotation(targets, seed=cfg.seed)
    )
    learned = LearnedRotation(targets.shape[1], cfg.output_dim) if cfg.target_rotation == "learned" else None
    # a learned rotation turns the PCA-rotated full-size targets on each step; else they are fixed here
    target_space = torch.from_numpy(to_target_space(targets, rotation, None if learned is not None else cfg.output_dim))
    features = load_page_features(
        root,
        k=cfg.neighbours,
        image_mode=cfg.image_tokens,
        degree_bucket_count=cfg.degree_buckets,
        board_slots=cfg.board_tokens,
        board_means=cfg.board_means,
        neighbour_means=cfg.neighbour_means,
        pin_means_before=cutoff,
        domains=cfg.domain_token,
    )
    timings["load_s"] = time.perf_counter() - t
    if cfg.board_means and not features.board_mean_dim:
        raise ConfigError(
            f"train.board_means: the run has no board tables ({root / 'content' / 'board_text.npy'}, "
            f"{root / 'graph' / 'pin__board.*'}); set train.board_means = false or rerun content and graph"
        )

    enc_cfg = EncoderConfig(
        text_dim=features.text_dim,
        image_dim=features.image_dim,
        image_slots=features.image_slots,
        neighbours=cfg.neighbours,
        output_dim=cfg.output_dim,
        n_dims=len(cfg.dims),
        d_model=cfg.d_model,
        layers=cfg.layers,
        heads=cfg.heads,
        mlp_ratio=cfg.mlp_ratio,
        dropout=cfg.dropout,
        degree_buckets=cfg.degree_buckets,
        temperature_init=cfg.temperature_init,
        board_slots=features.board_slots,
        n_boards=features.n_boards if cfg.board_ids else 0,
        n_domains=features.n_domains,
        board_mean_dim=features.board_mean_dim,
        nbr_mean_dim=features.nbr_mean_dim,
        pin_means_before=cutoff if features.board_mean_dim or features.nbr_mean_dim else None,
    )
    torch.manual_seed(cfg.seed)
    model = LinkSageEncoder(enc_cfg).to(device)
    n_pins = len(targets)
    val = by_split[VAL]
    data = TrainData(
        features=features.to(device),
        targets=target_space.to(device),
        pair_page=torch.from_numpy(by_split[TRAIN].page.astype(np.int64)).to(device),
        pair_pin=torch.from_numpy(by_split[TRAIN].pin.astype(np.int64)).to(device),
        val=make_eval_set(val, n_pins, cfg.eval_pages, cfg.eval_pool, cfg.seed, device) if len(val) else None,
    )
    if cfg.board_negatives:
        data.board_pins = _board_pins(root / "graph", n_pins, device)
        if cfg.board_negative_window:
            pins_file = root / "ingest" / "pins.parquet"
            created = (
                pin_created if pin_created is not None else time_column(pins_file, "pin_idx", "created_at", n_pins)
            )
            if created is None:
                raise InputError(
                    "has no created_at column: train.board_negative_window needs each pin's time", file=pins_file
                )
            data.board_pins = data.board_pins.in_time_order(created, cfg.board_negative_window)
    if cfg.content_negatives:
        t = time.perf_counter()
        data.content_negatives = _content_negatives(root, cfg, by_split[TRAIN], pairs, pin_created, cutoff, device)
        timings["content_negatives_s"] = time.perf_counter() - t
    if cfg.board_negatives or cfg.content_negatives:  # hard negatives are often another of the page's own pins
        data.pin_page = torch.from_numpy(_pin_pages(pairs, n_pins)).to(device)
    log.event(
        f"[train] {len(by_split[TRAIN]):,} training pairs, {len(val):,} validation pairs, {enc_cfg.n_tokens} tokens, "
        f"device {device}{' bf16' if bf16 else ''}",
        device=str(device),
    )
    _warn_if_oversized(cfg, len(by_split[TRAIN]))
    if not len(by_split[TEST]):
        log.logger.warning(
            f"[train] the {cfg.split} split left no test pages with a positive pin: the evaluate stage will have "
            "nothing to score (more data, a larger train.test_fraction, or an earlier train.split_date)"
        )
    trainer = Trainer(
        cfg,
        data,
        model,
        device=device,
        bf16=bf16,
        compile=cfg.compile,
        work_dir=ctx.work,
        checkpoint_key=_checkpoint_key(ctx),
        rotation=None if learned is None else learned.to(device),
    )
    t = time.perf_counter()
    fit = trainer.fit()
    timings["fit_s"] = time.perf_counter() - t

    t = time.perf_counter()
    test_recall = _test_recall(trainer, by_split[TEST], n_pins, cfg, device)
    timings["test_eval_s"] = time.perf_counter() - t
    if learned is not None:  # the saved rotation takes raw targets to the trained space: PCA, then learned
        rotation = learned.compose(rotation)
    _write_outputs(ctx, cfg, model, rotation, split, fit, targets.shape[1])
    scales = model.logit_scales(cfg.temperature_min).tolist()
    return StageResult(
        counts={
            "pages": len(split),
            "pins": n_pins,
            "positive_pairs": len(pairs),
            "train_pages": int((split == TRAIN).sum()),
            "val_pages": int((split == VAL).sum()),
            "test_pages": int((split == TEST).sum()),
            "train_pairs": len(by_split[TRAIN]),
            "val_pairs": len(val),
            "test_pairs": len(by_split[TEST]),
            "train_pairs_dropped_future_pins": dropped_future,
            "steps": fit.steps,
        },
        metrics={
            f"val_recall@{EVAL_K}": {str(d): v for d, v in fit.best_recall.items()},
            f"test_recall@{EVAL_K}": {str(d): v for d, v in test_recall.items()},
            "best_step": fit.best_step,
            "early_stopped": fit.early_stopped,
            "resumed_from": fit.resumed_from,
            "samples_per_s": round(fit.samples_per_s, 1),
            "temperature": {str(d): 1.0 / s for d, s in zip(cfg.dims, scales, strict=True)},
            "tokens": enc_cfg.n_tokens,
            "parameters": sum(p.numel() for p in trainer.net.parameters()),  # with a learned rotation's
            "device": str(device),
            "bf16": bf16,
        },
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def _board_pins(graph: Path, n_pins: int, device: torch.device) -> BoardPins:
    """Same-board negatives' tables: each pin's first board and the board -> pins CSR, checked."""

    def csr(name: str, n_src: int | None, n_dst: int) -> tuple[np.ndarray, np.ndarray]:
        paths = graph / f"{name}.indptr.npy", graph / f"{name}.indices.npy"
        for path in paths:
            if not path.exists():
                raise InputError("is missing: train.board_negatives needs the graph's pin and board tables", file=path)
        indptr, indices = np.load(paths[0]).astype(np.int64), np.load(paths[1]).astype(np.int64)
        if n_src is not None and len(indptr) != n_src + 1:
            raise InputError(f"has {len(indptr)} entries, expected {n_src + 1}", file=paths[0])
        bad = np.flatnonzero((indices < 0) | (indices >= n_dst))
        if bad.size:
            raise InputError(
                f"ids must be in 0..{n_dst - 1}", file=paths[1], row=int(bad[0]), value=int(indices[bad[0]])
            )
        return indptr, indices

    board_indptr, board_pins = csr("board__pin", None, n_pins)
    pin_board = csr_first(*csr("pin__board", n_pins, len(board_indptr) - 1))
    return BoardPins(
        pin_board=torch.from_numpy(pin_board).to(device),
        indptr=torch.from_numpy(board_indptr).to(device),
        pins=torch.from_numpy(board_pins).to(device),
    )


def _content_negatives(
    root: Path,
    cfg: TrainConfig,
    train: Pairs,
    pairs: Pairs,
    pin_created: np.ndarray | None,
    cutoff: int | None,
    device: torch.device,
) -> ContentNegatives:
    """Each training page's ``content_negative_pool`` nearest pins by its own text vector (its own pins and,
    for a time split, pins created on or after the split date left out)."""
    reason = zero_shot_reason(root)
    if reason is not None:
        raise ConfigError(f"train.content_negatives: ranks pins by the page's own text vector, but {reason}")
    allowed = pin_created < cutoff if cutoff is not None and pin_created is not None else None
    return build_content_negatives(
        np.load(root / "content" / "page_text.npy", mmap_mode="r"),
        np.load(root / "content" / "pin_target.npy", mmap_mode="r"),
        np.unique(train.page),
        pairs.page,
        pairs.pin,
        cfg.content_negative_pool,
        device,
        allowed_pins=allowed,
    )


def _pin_pages(pairs: Pairs, n_pins: int) -> np.ndarray:
    """(n_pins,) int64: each pin's first (lowest) page among the positive pairs, -1 for a pin in none."""
    n_pages = int(pairs.page.max()) + 1 if len(pairs) else 0
    page = np.full(n_pins, n_pages, dtype=np.int64)
    np.minimum.at(page, pairs.pin, pairs.page.astype(np.int64))
    page[page == n_pages] = -1
    return page


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f'train.device: {name!r} requested, but torch sees no CUDA device (set train.device = "cpu")')
    return torch.device(name)


def _warn_if_oversized(cfg: TrainConfig, n_pairs: int) -> None:
    """A schedule of many more passes than the data can use: the defaults meet a small table set."""
    epochs = cfg.steps * cfg.batch_size / max(n_pairs, 1)
    if epochs > MAX_SENSIBLE_EPOCHS:
        log.logger.warning(
            f"[train] {cfg.steps:,} steps of {cfg.batch_size:,} pairs is {epochs:,.0f} passes over "
            f"{n_pairs:,} training pairs: lower train.steps and train.batch_size for data this small "
            "(configs/demo.toml's [train] is sized for small data on a CPU)"
        )


def _test_recall(
    trainer: Trainer, test: Pairs, n_pins: int, cfg: TrainConfig, device: torch.device
) -> dict[int, float]:
    """Recall@100 per dim on a sample of test pages (the evaluate stage reports the full picture)."""
    if not len(test):
        return {}
    return trainer.evaluate(make_eval_set(test, n_pins, cfg.eval_pages, cfg.eval_pool, cfg.seed + 1, device))


def _checkpoint_key(ctx: StageContext) -> str:
    """A checkpoint is only resumed by a run with the same config and the same upstream artifacts."""
    parts = {
        "train": fingerprint(ctx.config.train),
        "upstream": {s: ctx.upstream_manifest(s).get("key") for s in UPSTREAM},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _write_outputs(
    ctx: StageContext,
    cfg: TrainConfig,
    model: LinkSageEncoder,
    rotation: np.ndarray,
    split: np.ndarray,
    fit: FitResult,
    target_dim: int,
) -> None:
    LinkSageModel(
        encoder=model,
        dims=cfg.dims,
        rotation=rotation,
        image_mode=cfg.image_tokens,
        degree_buckets=cfg.degree_buckets,
        meta={
            "train_config": config_to_dict(cfg),
            "target_dim": target_dim,
            "best_step": fit.best_step,
            f"val_recall@{EVAL_K}": {str(d): v for d, v in fit.best_recall.items()},
        },
    ).save(ctx.out / MODEL_FILE)
    with atomic_path(ctx.out / "split.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, split)
    if (ctx.work / "metrics.csv").exists():
        shutil.copy2(ctx.work / "metrics.csv", ctx.out / "metrics.csv")
    if (ctx.work / "tensorboard").exists():
        shutil.copytree(ctx.work / "tensorboard", ctx.out / "tensorboard")
