"""The evaluate stage end to end on a small run directory, with the real train stage and trained baselines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from evaluate_rundir import config, run_stage, write_run_dir

from linksage.config.train import TrainConfig
from linksage.evaluate import baselines as bl
from linksage.evaluate.metrics import Positives, mean_metrics, per_query_metrics, rank_positives
from linksage.train.target_space import pca_rotation

TRAIN = [
    "train.dims=[8, 16, 32]", "train.d_model=32", "train.layers=1", "train.heads=2", "train.mlp_ratio=2",
    "train.steps=12", "train.batch_size=64", "train.random_negatives=64", "train.eval_every=0",
    "train.checkpoint_every=0", "train.neighbours=4", "train.eval_pages=50", "train.eval_pool=0",
    "train.device=cpu", "train.split=time", "train.split_date=2013-04-15", "train.warmup_steps=2", "train.threads=1",
]  # fmt: skip
EVALUATE = [
    'evaluate.baselines=["zero_shot", "content_only", "single_dim_16"]', "evaluate.device=cpu",
    "evaluate.report_pages=4", "evaluate.kurtosis_pairs=2000", "evaluate.negatives_per_query=30",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    from linksage.evaluate.stage import run as evaluate_run
    from linksage.train.stage import run as train_run

    root = write_run_dir(tmp_path_factory.mktemp("run") / "run", n_pages=240)
    cfg = config(TRAIN + EVALUATE)
    run_stage(train_run, "train", cfg, root)
    result = run_stage(evaluate_run, "evaluate", cfg, root)
    yield root, result


def test_writes_metrics_report_and_baselines(run: tuple[Path, Any]) -> None:
    root, result = run
    out = root / "evaluate"
    metrics = json.loads((out / "metrics.json").read_text())
    split = np.load(root / "train" / "split.npy")
    assert metrics["num_queries"] == int((split == 2).sum()) == result.counts["queries"]
    assert metrics["pool"] == "all pins" and metrics["pool_size"] == len(np.load(root / "content" / "pin_target.npy"))
    assert set(metrics["recall@100"]) == {"8", "16", "32"}
    assert set(metrics["baselines"]) == {"zero_shot", "content_only", "single_dim_16"}
    assert set(metrics["baselines"]["single_dim_16"]["recall@100"]) == {"16"}
    assert {"opaque", "readable", "degree 1", "new_pages", "unseen_domains"} <= set(metrics["slices"])
    assert metrics["slices"]["new_pages"]["share"] == 1.0  # a time split: every test page is new
    assert metrics["pin_target_boards"] == 0.0  # the pins' own targets: the report says nothing of the space
    assert metrics["pin_target_boards_centred"] is False
    assert set(metrics["targets"]) >= {"graph_vs_content_only", "negative_p95_below_0.25"}
    for name in ("content_only", "single_dim_16"):
        assert (out / "baselines" / name / "model.pt").exists() and (out / "baselines" / name / "key.txt").exists()
    html = (out / "report.html").read_text()
    assert html.count('class="card"') == 4 and "content_only" in html
    per_query = pq.read_table(out / "per_query.parquet")
    assert per_query.num_rows == metrics["num_queries"]
    assert np.isclose(np.mean(per_query.column("recall@100@dim32").to_numpy()), metrics["recall@100"]["32"], atol=1e-6)


def test_zero_shot_is_the_raw_text_vectors_at_full_width(run: tuple[Path, Any]) -> None:
    root, _ = run
    metrics = json.loads((root / "evaluate" / "metrics.json").read_text())
    split = np.load(root / "train" / "split.npy")
    indptr, indices = (
        np.load(root / "graph" / "page__pin.indptr.npy"),
        np.load(root / "graph" / "page__pin.indices.npy"),
    )
    pages = np.flatnonzero(split == 2)
    pos = Positives.from_lists([indices[indptr[p] : indptr[p + 1]] for p in pages])
    text = np.load(root / "content" / "page_text.npy").astype(np.float32)[pages]
    targets = np.load(root / "content" / "pin_target.npy").astype(np.float32)
    ranks = rank_positives(text, targets, pos, (32,), max_k=100)[32]  # rotation keeps full-width cosines
    want = mean_metrics(per_query_metrics(ranks, pos, (10, 50, 100)))
    for name, value in want.items():
        assert metrics["baselines"]["zero_shot"][name]["32"] == pytest.approx(value, abs=0.01)


def test_rerun_reuses_trained_baselines(run: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import linksage.train.stage
    from linksage.evaluate.stage import run as evaluate_run

    root, _ = run
    before = (root / "evaluate" / "baselines" / "content_only" / "model.pt").read_bytes()

    def no_training(ctx: object) -> None:
        raise AssertionError("a baseline with an unchanged key was trained again")

    monkeypatch.setattr(linksage.train.stage, "run", no_training)
    run_stage(evaluate_run, "evaluate", config([*TRAIN, *EVALUATE, "evaluate.report_pages=2"]), root)
    assert (root / "evaluate" / "baselines" / "content_only" / "model.pt").read_bytes() == before
    assert (root / "evaluate" / "report.html").read_text().count('class="card"') == 2


def test_zero_shot_is_skipped_for_given_target_embeddings(tmp_path: Path) -> None:
    root = write_run_dir(tmp_path / "run", n_pages=30)
    assert bl.zero_shot_reason(root) is None
    pins = pq.read_table(root / "ingest" / "pins.parquet")
    emb = pa.array([[0.0, 1.0]] * pins.num_rows, pa.list_(pa.float32(), 2))
    pq.write_table(pins.append_column("embedding", emb), root / "ingest" / "pins.parquet")
    assert "given `embedding` column" in (bl.zero_shot_reason(root) or "")


def test_zero_shot_stays_training_free_under_a_learned_rotation(tmp_path: Path) -> None:
    root = write_run_dir(tmp_path / "run", n_pages=30)
    targets = np.load(root / "content" / "pin_target.npy")
    turned = np.linalg.qr(np.random.default_rng(0).normal(size=(targets.shape[1],) * 2))[0].astype(np.float32)
    learned = TrainConfig(target_rotation="learned", seed=3)
    # the PCA axes the learned turn started from, not the model's turned ones
    np.testing.assert_array_equal(bl.zero_shot_rotation(root, learned, turned), pca_rotation(targets, seed=3))
    assert bl.zero_shot_rotation(root, TrainConfig(target_rotation="pca"), turned) is turned
    assert bl.zero_shot_rotation(root, TrainConfig(target_rotation="none"), turned) is None


def test_the_report_says_when_the_targets_are_board_aware() -> None:
    from linksage.evaluate.stage import _notes

    metrics = {"num_queries": 10, "split": "test", "split_pages": 12, "positives": "links", "skipped_baselines": {}}
    assert not any("board-aware" in n for n in _notes({**metrics, "pin_target_boards": 0.0}))
    (note,) = [n for n in _notes({**metrics, "pin_target_boards": 0.5}) if "board-aware" in n]
    assert "content.pin_target_boards = 0.5" in note and "does not compare" in note and "centred" not in note
    centred = {**metrics, "pin_target_boards": 1.0, "pin_target_boards_centred": True}
    (note,) = [n for n in _notes(centred) if "board-aware" in n]
    assert "boards' mean, centred)" in note
