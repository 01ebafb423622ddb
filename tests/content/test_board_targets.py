"""Board-aware pin targets (content/board_targets.py) against loop references, and in the content stage."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linksage.config import ConfigError, load_config
from linksage.config.content import ContentConfig
from linksage.config.train import TrainConfig
from linksage.content import board_targets as bt
from linksage.errors import InputError
from linksage.graph.csr import csr_from_edges
from linksage.pipeline import run_stages
from linksage.train.pairs import UNKNOWN_TIME


def world(seed: int = 0, n_pins: int = 23, n_boards: int = 6, dim: int = 5) -> tuple[np.ndarray, list[list[int]]]:
    """Unit targets (a few zero rows) and each pin's boards (some pins on none, some on several)."""
    rng = np.random.default_rng(seed)
    targets = rng.normal(size=(n_pins, dim)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    targets[[3, 11]] = 0.0
    boards = [sorted(rng.choice(n_boards, size=rng.integers(0, 3), replace=False).tolist()) for _ in range(n_pins)]
    return targets, boards


def csr(boards: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    pins = np.repeat(np.arange(len(boards)), [len(b) for b in boards])
    return csr_from_edges(pins, np.concatenate([np.asarray(b, np.int64) for b in boards]), len(boards))


def loop_means(
    targets: np.ndarray, boards: list[list[int]], ok: np.ndarray, n_boards: int, centre: bool = False
) -> np.ndarray:
    out = np.zeros((n_boards, targets.shape[1]))
    everyone = np.mean([targets[p].astype(np.float64) for p in range(len(targets)) if ok[p]], axis=0)
    for b in range(n_boards):
        members = [p for p, bs in enumerate(boards) if b in bs and ok[p]]
        if members:
            out[b] = np.mean([targets[p].astype(np.float64) for p in members], axis=0) - (everyone if centre else 0)
    return out


def loop_aware(targets: np.ndarray, boards: list[list[int]], means: np.ndarray, w: float) -> np.ndarray:
    out = targets.astype(np.float64).copy()
    for p, bs in enumerate(boards):
        s = sum((means[b].astype(np.float64) for b in bs if b < len(means)), np.zeros(targets.shape[1]))
        if np.linalg.norm(s) > 0 and targets[p].any():
            v = targets[p] + w * s / np.linalg.norm(s)
            out[p] = v / np.linalg.norm(v)
    return out


@pytest.mark.parametrize(("chunk", "centre"), [(1, False), (4, False), (1000, False), (3, True), (1000, True)])
def test_means_and_targets_match_a_loop(chunk: int, centre: bool) -> None:
    targets, boards = world()
    created = np.arange(len(targets), dtype=np.int64)
    created[[0, 5, 6, 7]] = 100  # test-period pins: never in a mean
    ok = bt.eligible(targets, created, 50, chunk)
    assert ok.sum() == len(targets) - 6 and not ok[[3, 11]].any()  # nor the two pins with no target
    means = bt.board_target_means(targets, csr(boards), 6, ok, chunk, centre=centre)
    assert means.dtype == np.float16
    np.testing.assert_allclose(means, loop_means(targets, boards, ok, 6, centre), atol=1e-3)
    out = targets.copy()
    changed = bt.add_board_means(out, csr(boards), means, 0.7, 0, len(out), chunk)
    np.testing.assert_allclose(out, loop_aware(targets, boards, means, 0.7), atol=1e-6)
    moved = [p for p, bs in enumerate(boards) if targets[p].any() and any(means[b].any() for b in bs)]
    assert changed == len(moved) > 0 and not out[[3, 11]].any()  # a pin with no target stays without one
    lonely = [p for p, bs in enumerate(boards) if not bs]
    assert lonely and np.array_equal(out[lonely], targets[lonely])  # a pin on no board keeps its own target


def test_only_the_given_rows_change_and_new_boards_count_for_nothing() -> None:
    targets, boards = world(seed=1)
    ok = np.ones(len(targets), bool)
    means = bt.board_target_means(targets, csr(boards), 6, ok, 8)[:4]  # boards 4 and 5 came after the means
    out = targets.copy()
    bt.add_board_means(out, csr(boards), means, 1.0, 10, 20, 3)
    assert np.array_equal(out[:10], targets[:10]) and np.array_equal(out[20:], targets[20:])
    np.testing.assert_allclose(out[10:20], loop_aware(targets, boards, means, 1.0)[10:20], atol=1e-6)
    assert bt.add_board_means(out, csr(boards), means[:0], 1.0, 0, len(out), 3) == 0  # no board has a mean


def test_eligible_leaves_out_later_unknown_and_empty_pins() -> None:
    created = np.array([5, 10, 15, UNKNOWN_TIME, 1])
    targets = np.ones((5, 2), np.float16)
    targets[4] = 0.0
    assert bt.eligible(targets, created, 10, 2).tolist() == [True, False, False, False, False]
    assert bt.eligible(targets, None, None, 2).tolist() == [True, True, True, True, False]


def test_a_board_index_out_of_range_names_the_file_row_and_value(tmp_path: Path) -> None:
    boards = {"board_idx": pa.array([0, 1], pa.int32()), "text": ["a", "b"]}
    pq.write_table(pa.table(boards), tmp_path / "boards.parquet")
    for last, error in ((1, False), (2, True)):
        edges = {"board_idx": pa.array([1, 0, last], pa.int32()), "pin_idx": pa.array([0, 1, 1], pa.int32())}
        pq.write_table(pa.table(edges), tmp_path / "board_pins.parquet")
        if not error:
            (indptr, indices), n_boards = bt.read_pin_boards(tmp_path, 2)
            assert n_boards == 2 and indptr.tolist() == [0, 1, 3] and indices.tolist() == [1, 0, 1]
            continue
        message = r"board_pins\.parquet, row 2, column 'board_idx': index out of range \[0, 2\) \(value: 2\)"
        with pytest.raises(InputError, match=message):
            bt.read_pin_boards(tmp_path, 2)


def test_a_cut_off_after_the_time_split_is_refused() -> None:
    split = TrainConfig(split="time", split_date="2013-04-01")
    assert bt.cutoff_seconds("2013-04-01", split) == 1364774400
    for before in ("", "2013-04-02"):
        with pytest.raises(ConfigError, match=r"on or before train.split_date \(2013-04-01\)"):
            bt.cutoff_seconds(before, split)
    assert bt.cutoff_seconds("", TrainConfig(split="random")) is None
    with pytest.raises(ConfigError, match=r"content\.pin_target_boards_before: expected an ISO date"):
        ContentConfig(pin_target_boards=1.0, pin_target_boards_before="April")
    with pytest.raises(ConfigError, match=r"content\.pin_target_boards: must be a finite weight"):
        ContentConfig(pin_target_boards=-1.0)
    with pytest.raises(ConfigError, match=r"content\.pin_target_boards_centred: needs content\.pin_target_boards > 0"):
        ContentConfig(pin_target_boards_centred=True)
    with pytest.raises(ConfigError, match=r"content\.pin_target_boards_before: needs content\.pin_target_boards > 0"):
        ContentConfig(pin_target_boards_before="2013-04-01")


SYNTHETIC = [
    'ingest.source="synthetic"',
    "ingest.synthetic.n_links=600",
    'content.text_encoder="hashing"',
    "train.dims=[16, 64]",
]


def test_the_content_stage_writes_board_aware_targets(tmp_path: Path) -> None:
    plain = run_stages(load_config(None, SYNTHETIC), tmp_path / "plain", ["content"])["content"]
    aware_cfg = load_config(None, [*SYNTHETIC, "content.pin_target_boards=0.5"])
    assert aware_cfg.train.split == "random"  # so every pin may enter the means
    aware = run_stages(aware_cfg, tmp_path / "aware", ["content"])["content"]
    assert plain["key"] != aware["key"] and aware["metrics"]["pin_target_boards"] == 0.5
    own = np.load(tmp_path / "plain" / "content" / "pin_target.npy").astype(np.float32)
    got = np.load(tmp_path / "aware" / "content" / "pin_target.npy").astype(np.float32)
    means = np.load(tmp_path / "aware" / "content" / bt.MEANS_FILE).astype(np.float32)
    edges = pq.read_table(tmp_path / "aware" / "ingest" / "board_pins.parquet")
    boards: list[list[int]] = [[] for _ in range(len(own))]
    for pin, board in zip(edges["pin_idx"].to_pylist(), edges["board_idx"].to_pylist(), strict=True):
        boards[pin].append(board)
    ok = own.any(axis=1)
    np.testing.assert_allclose(means, loop_means(own, boards, ok, len(means)), atol=2e-3)
    np.testing.assert_allclose(got, loop_aware(own, boards, means, 0.5), atol=2e-3)
    assert aware["counts"]["pin_targets_with_boards"] == sum(1 for p, bs in enumerate(boards) if bs and ok[p]) > 0
    assert not (tmp_path / "plain" / "content" / bt.MEANS_FILE).exists()


def test_a_leaking_cut_off_fails_before_any_encoding(tmp_path: Path) -> None:
    cfg = load_config(None, [*SYNTHETIC, "content.pin_target_boards=1.0"])
    cfg = replace(cfg, train=replace(cfg.train, split="time", split_date="2013-04-01"))
    with pytest.raises(ConfigError, match="a board's mean would read test-period pins"):
        run_stages(cfg, tmp_path / "run", ["content"])
    assert not list((tmp_path / "run").glob("**/page_text.npy"))


def test_the_train_stage_refuses_a_split_moved_before_the_targets_cut_off(tmp_path: Path) -> None:
    aware = [*SYNTHETIC, "content.pin_target_boards=1.0", 'content.pin_target_boards_before="2013-05-01"']
    cfg = load_config(None, [*aware, 'train.split="time"', 'train.split_date="2013-06-01"'])
    run_stages(cfg, tmp_path / "run", ["content"])
    moved = replace(cfg, train=replace(cfg.train, split_date="2013-04-01"))
    with pytest.raises(ConfigError, match=r"must be on or before train.split_date \(2013-04-01\)"):
        run_stages(moved, tmp_path / "run", ["train"])
    assert not (tmp_path / "run" / "train").exists()
    means = replace(cfg, train=replace(cfg.train, board_means=True))
    with pytest.raises(ConfigError, match="carry a page's own pins through their boards' means"):
        run_stages(means, tmp_path / "run", ["train"])


def test_centred_means_reach_the_stage_and_its_manifest(tmp_path: Path) -> None:
    cfg = load_config(None, [*SYNTHETIC, "content.pin_target_boards=1.0", "content.pin_target_boards_centred=true"])
    manifest = run_stages(cfg, tmp_path / "run", ["content"])["content"]
    assert manifest["metrics"]["pin_target_boards_centred"] is True
    got = np.load(tmp_path / "run" / "content" / bt.MEANS_FILE).astype(np.float32)
    plain = run_stages(load_config(None, SYNTHETIC), tmp_path / "plain", ["content"])["content"]
    own = np.load(tmp_path / "plain" / "content" / "pin_target.npy").astype(np.float32)
    assert plain["metrics"]["pin_target_boards_centred"] is False
    edges = pq.read_table(tmp_path / "run" / "ingest" / "board_pins.parquet")
    boards: list[list[int]] = [[] for _ in range(len(own))]
    for pin, board in zip(edges["pin_idx"].to_pylist(), edges["board_idx"].to_pylist(), strict=True):
        boards[pin].append(board)
    want = loop_means(own, boards, own.any(axis=1), len(got), centre=True)
    np.testing.assert_allclose(got, want, atol=2e-3)
