"""The train stage on a run directory laid out as the upstream stages write it; the inference API."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from train_world import planted_world, write_boards, write_run_dir

from linksage.config import ConfigError, load_config
from linksage.errors import InputError, LinksageError
from linksage.pipeline import StageContext, StageResult
from linksage.rundir import RunDir
from linksage.train import stage as train_stage
from linksage.train.content_negatives import ContentNegatives, build_content_negatives
from linksage.train.infer import PageEmbedder, embed_pages, load_model, pin_vectors
from linksage.train.logs import read_tensorboard_scalars
from linksage.train.loop import BoardPins
from linksage.train.pairs import TEST, TRAIN, UNUSED, VAL
from linksage.train.stage import run
from linksage.train.target_space import pca_rotation

SMALL = [
    "train.dims=[8, 16, 32]",
    "train.d_model=32",
    "train.layers=2",
    "train.heads=4",
    "train.mlp_ratio=2",
    "train.neighbours=6",
    "train.batch_size=64",
    "train.random_negatives=64",
    "train.steps=40",
    "train.lr=3e-3",
    "train.warmup_steps=5",
    "train.eval_every=20",
    "train.checkpoint_every=20",
    "train.log_every=10",
    "train.threads=1",
]


@pytest.fixture(autouse=True)
def keep_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run_dir(planted_world(n_pages=300, k=8), tmp_path_factory.mktemp("run"))


def _run(root: Path, overrides: list[str]) -> tuple[StageResult, Path]:
    cfg = load_config(None, SMALL + overrides)
    rd = RunDir(root)
    out = rd.new_staging("train")
    return run(StageContext(config=cfg, run_dir=rd, stage="train", out=out)), out


@pytest.fixture(scope="module")
def trained(run_dir: Path) -> Iterator[tuple[StageResult, Path]]:
    before = torch.get_num_threads()
    yield _run(run_dir, [])
    torch.set_num_threads(before)


def test_stage_writes_the_model_and_logs(trained: tuple[StageResult, Path]) -> None:
    result, out = trained
    assert {p.name for p in out.iterdir()} == {"model.pt", "split.npy", "metrics.csv", "tensorboard"}
    split = np.load(out / "split.npy")
    assert split.dtype == np.int8 and len(split) == 300 and set(np.unique(split)) <= {UNUSED, TRAIN, VAL, TEST}
    assert result.counts["train_pages"] == (split == TRAIN).sum() and result.counts["steps"] == 40
    assert set(result.metrics["val_recall@100"]) == {"8", "16", "32"}
    assert set(result.metrics["test_recall@100"]) == {"8", "16", "32"}
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 41))
    assert rows[19]["val_recall@100_d32"] != "" and rows[18]["val_recall@100_d32"] == ""
    scalars = read_tensorboard_scalars(next((out / "tensorboard").iterdir()))
    assert {t for _, t, _ in scalars} >= {"train/loss", "train/loss_d8", "train/temperature_d32", "val/recall@100_d32"}


def test_api_embeddings_are_comparable_with_pin_vectors(run_dir: Path, trained: tuple[StageResult, Path]) -> None:
    out = trained[1]
    model = load_model(out)
    assert model.dims == (8, 16, 32) and model.neighbours == 6
    pages = np.arange(0, 300, 7)
    emb = embed_pages(out, run_dir, pages)
    assert emb.shape == (len(pages), 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    small = embed_pages(out, run_dir, pages, dim=8)
    prefix = emb[:, :8] / np.linalg.norm(emb[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(small, prefix, atol=1e-5)
    pins = pin_vectors(out, run_dir)
    assert pins.shape == (planted_world(n_pages=300, k=8).n_pins, 32)
    # the model's space is the rotated target space: rotating back recovers the pins' own cosines
    targets = np.load(run_dir / "content" / "pin_target.npy").astype(np.float32)
    unit = targets / np.linalg.norm(targets, axis=1, keepdims=True)
    np.testing.assert_allclose(pins[:20] @ pins[:20].T, unit[:20] @ unit[:20].T, atol=1e-3)
    with pytest.raises(LinksageError, match="dim 12 is not one of the model's Matryoshka dims"):
        embed_pages(out, run_dir, pages, dim=12)
    with pytest.raises(LinksageError, match="page_idx 300 is outside"):
        embed_pages(out, run_dir, np.array([300]))


def test_a_page_embedding_never_reads_its_pins(
    run_dir: Path, trained: tuple[StageResult, Path], tmp_path: Path
) -> None:
    """No leakage: scrambling every pin's target and content leaves every page embedding unchanged."""
    out = trained[1]
    before = embed_pages(out, run_dir, np.arange(300))
    other = tmp_path / "run"
    shutil.copytree(run_dir, other)
    target = np.load(other / "content" / "pin_target.npy")
    np.save(other / "content" / "pin_target.npy", np.random.default_rng(0).permutation(target))
    np.save(other / "content" / "pin_text.npy", np.ones_like(target))
    np.testing.assert_array_equal(embed_pages(out, other, np.arange(300)), before)


def test_time_split_and_content_only_baseline(run_dir: Path) -> None:
    result, out = _run(run_dir, ['train.split="time"', 'train.split_date="2013-04-15"', "train.neighbours=0"])
    split = np.load(out / "split.npy")
    first_seen = pq.read_table(run_dir / "ingest" / "pages.parquet").column("first_seen").to_numpy()
    cut = 1_365_984_000  # 2013-04-15 UTC
    assert (split[first_seen >= cut] == TEST).all() and np.isin(split[first_seen < cut], [TRAIN, VAL]).all()
    assert result.counts["train_pairs_dropped_future_pins"] > 0  # pins after the cut-off of earlier pages
    assert load_model(out).neighbours == 0 and result.metrics["tokens"] == 3


def test_a_learned_rotation_is_saved_as_one_orthogonal_matrix(run_dir: Path) -> None:
    result, out = _run(run_dir, ['train.target_rotation="learned"'])
    model = load_model(out)
    targets = np.load(run_dir / "content" / "pin_target.npy")
    q = model.rotation
    np.testing.assert_allclose(q.T @ q, np.eye(len(q)), atol=1e-5)
    assert np.abs(q - pca_rotation(targets)).max() > 1e-4  # PCA, turned further by training
    assert set(result.metrics["test_recall@100"]) == {"8", "16", "32"}


def test_board_negatives_read_the_graphs_pin_tables(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InputError, match=r"board__pin\.indptr\.npy: is missing"):
        _run(run_dir, ["train.board_negatives=1"])
    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    write_boards(planted_world(n_pages=300, k=8), root)
    result, _ = _run(root, ["train.board_negatives=1"])
    assert result.counts["steps"] == 40 and set(result.metrics["test_recall@100"]) == {"8", "16", "32"}
    windows: list[int] = []
    in_time_order = BoardPins.in_time_order

    def recorded(self: BoardPins, created: np.ndarray, window: int) -> BoardPins:
        windows.append(window)
        return in_time_order(self, created, window)

    monkeypatch.setattr(BoardPins, "in_time_order", recorded)
    result, _ = _run(root, ["train.board_negatives=1", "train.board_negative_window=3"])
    assert result.counts["steps"] == 40 and windows == [3]  # the stage ordered the boards in time
    with pytest.raises(ConfigError, match="board_negative_window: narrows the board negatives"):
        _run(root, ["train.board_negative_window=3"])
    pins = pq.read_table(root / "ingest" / "pins.parquet")
    pq.write_table(pins.drop_columns(["created_at"]), root / "ingest" / "pins.parquet")
    with pytest.raises(InputError, match=r"pins\.parquet: has no created_at column: train.board_negative_window"):
        _run(root, ["train.board_negatives=1", "train.board_negative_window=3"])


def test_content_negatives_are_mined_before_the_split_date(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[ContentNegatives] = []

    def recorded(*args: Any, **kwargs: Any) -> ContentNegatives:
        seen.append(build_content_negatives(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(train_stage, "build_content_negatives", recorded)
    time_split = ['train.split="time"', 'train.split_date="2013-04-15"']
    result, out = _run(run_dir, [*time_split, "train.content_negatives=2", "train.content_negative_pool=8"])
    assert result.counts["steps"] == 40 and "content_negatives_s" in result.timings
    created = pq.read_table(run_dir / "ingest" / "pins.parquet").column("created_at").cast("int64").to_numpy()
    lists = seen[0].pins.numpy()
    assert (lists >= 0).all() and (created[lists] < 1_365_984_000).all()  # pins of before 2013-04-15 only
    train_pages = np.flatnonzero(seen[0].page_row.numpy() >= 0)
    assert (np.load(out / "split.npy")[train_pages] == TRAIN).all()
    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    target = np.load(root / "content" / "pin_target.npy")
    np.save(root / "content" / "pin_target.npy", target[:, :16])  # pins from another encoder than the pages
    with pytest.raises(ConfigError, match="content_negatives: ranks pins by the page's own text vector, but"):
        _run(root, ["train.dims=[8, 16]", "train.content_negatives=1"])


def test_dims_larger_than_the_targets_are_refused(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match="the largest dim 64 exceeds the pins' target embedding dim 32"):
        _run(run_dir, ["train.dims=[16, 64]"])


def test_embedder_refuses_features_of_another_shape(
    run_dir: Path, trained: tuple[StageResult, Path], tmp_path: Path
) -> None:
    out = trained[1]
    other = tmp_path / "run"
    shutil.copytree(run_dir, other)
    text = np.load(other / "content" / "page_text.npy")
    np.save(other / "content" / "page_text.npy", np.concatenate([text, text], axis=1))
    with pytest.raises(LinksageError, match=r"page features \(text dim, image dim, image slots\) = \(64, 0, 1\)"):
        PageEmbedder.from_run(out, other)


def test_pin_pages_are_each_pins_lowest_page() -> None:
    from linksage.train.pairs import Pairs
    from linksage.train.stage import _pin_pages

    pairs = Pairs(page=np.array([0, 0, 1, 2, 3], np.int32), pin=np.array([4, 1, 1, 0, 4], np.int32))
    np.testing.assert_array_equal(_pin_pages(pairs, 6), [2, 0, -1, -1, 0, -1])


def test_a_schedule_far_beyond_the_data_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    from linksage import log
    from linksage.train.stage import MAX_SENSIBLE_EPOCHS, _warn_if_oversized

    said: list[str] = []
    monkeypatch.setattr(log.logger, "warning", said.append)
    cfg = load_config(None, []).train  # the defaults: 2,000 steps of 1,024 pairs
    _warn_if_oversized(cfg, 4)
    assert said == [
        "[train] 2,000 steps of 1,024 pairs is 512,000 passes over 4 training pairs: lower train.steps and "
        "train.batch_size for data this small (configs/demo.toml's [train] is sized for small data on a CPU)"
    ]
    _warn_if_oversized(cfg, cfg.steps * cfg.batch_size // MAX_SENSIBLE_EPOCHS)  # exactly the limit: quiet
    assert len(said) == 1


def test_a_split_without_test_pages_is_warned_about(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from linksage import log

    said: list[str] = []
    monkeypatch.setattr(log.logger, "warning", said.append)
    # every page was first seen before the cut-off: the evaluate stage would find nothing to score
    result, _ = _run(run_dir, ['train.split="time"', 'train.split_date="2099-01-01"', "train.steps=10"])
    assert result.counts["test_pairs"] == 0
    assert any("the time split left no test pages with a positive pin" in s for s in said), said
