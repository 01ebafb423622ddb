"""Board means: against a pin-by-pin reference, the page's own pins left out, the cut-off, and the train
stage end to end (a page's own pins still never feed its embedding)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from train_reference import loop_board_means, loop_page_means, loop_shares_a_pin
from train_world import planted_world, write_boards, write_run_dir

from linksage.config import ConfigError, load_config
from linksage.pipeline import StageContext
from linksage.rundir import RunDir
from linksage.train import pin_means
from linksage.train.features import page_boards
from linksage.train.infer import embed_pages, load_model
from linksage.train.pairs import UNKNOWN_TIME
from linksage.train.pin_means import board_means, board_totals, eligible_pins, page_means, shares_a_pin
from linksage.train.stage import run


def _csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    return indptr, np.array([x for r in rows for x in r], dtype=np.int32)


def _graph(
    seed: int = 0, n_pages: int = 30, n_pins: int = 60, n_boards: int = 6
) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
    rng = np.random.default_rng(seed)
    page_pins = [sorted(rng.choice(n_pins, rng.integers(0, 5), replace=False).tolist()) for _ in range(n_pages)]
    pin_boards = [sorted(rng.choice(n_boards, rng.integers(0, 3), replace=False).tolist()) for _ in range(n_pins)]
    targets = rng.normal(size=(n_pins, 5)).astype(np.float32)
    return page_pins, pin_boards, targets


@pytest.mark.parametrize(("seed", "chunk"), [(0, 3), (1, 7), (2, 16_384)])
def test_board_means_equal_the_pin_by_pin_reference(seed: int, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pin_means, "CHUNK_KEYS", chunk)  # chunks of any size give the same table
    page_pins, pin_boards, targets = _graph(seed)
    eligible = np.random.default_rng(seed + 10).random(len(targets)) < 0.7
    boards = page_boards(*_csr(page_pins), *_csr(pin_boards), 3)
    means = board_means(*_csr(page_pins), *_csr(pin_boards), boards, targets, eligible)
    got = means.dense(boards)
    want = loop_board_means(page_pins, pin_boards, boards, targets, eligible)
    assert got.dtype == np.float16 and got.shape == (30, 3, 5)
    np.testing.assert_allclose(got.astype(np.float64), want, atol=2e-3)
    assert (np.abs(want).sum(-1) > 0).sum() > 20  # most slots hold a mean: the comparison is not vacuous
    assert 0 < len(means.fixed) < (boards >= 0).sum()  # some slots hold own pins and get a row of their own
    totals = board_totals(*_csr(pin_boards), targets, eligible)  # every board's, as serve keeps them
    again = board_means(*_csr(page_pins), *_csr(pin_boards), boards, targets, eligible, totals)
    np.testing.assert_array_equal(again.dense(boards), got)


def test_a_pages_own_pins_never_enter_its_row() -> None:
    page_pins, pin_boards, targets = _graph(seed=2)
    csrs = _csr(page_pins), _csr(pin_boards)
    boards = page_boards(*csrs[0], *csrs[1], 2)
    eligible = np.ones(len(targets), dtype=bool)
    before = board_means(*csrs[0], *csrs[1], boards, targets, eligible).dense(boards)
    p = next(i for i, pins in enumerate(page_pins) if pins and (boards[i] >= 0).any())
    scrambled = targets.copy()
    scrambled[page_pins[p]] = 100.0  # the page's own pins only
    after = board_means(*csrs[0], *csrs[1], boards, scrambled, eligible).dense(boards)
    np.testing.assert_array_equal(after[p], before[p])
    assert not np.array_equal(after, before)  # other pages on those boards do see the change


def test_ineligible_pins_never_enter_any_row() -> None:
    page_pins, pin_boards, targets = _graph(seed=3)
    csrs = _csr(page_pins), _csr(pin_boards)
    boards = page_boards(*csrs[0], *csrs[1], 3)
    created = np.arange(len(targets))
    eligible = eligible_pins(created, len(targets), before=40)
    assert eligible.sum() == 40 and eligible_pins(created, 60, None).all() and eligible_pins(None, 5, None).all()
    unknown = created.copy()
    unknown[3] = UNKNOWN_TIME  # a pin of unknown time may be from the test period: left out
    assert not eligible_pins(unknown, 60, before=40)[3] and eligible_pins(unknown, 60, before=40).sum() == 39
    with pytest.raises(ValueError, match="need the pins' created_at"):
        eligible_pins(None, 5, before=40)
    before = board_means(*csrs[0], *csrs[1], boards, targets, eligible).dense(boards)
    later = targets.copy()
    later[40:] = -50.0
    np.testing.assert_array_equal(board_means(*csrs[0], *csrs[1], boards, later, eligible).dense(boards), before)
    with pytest.raises(ValueError, match="created_at has 3 rows"):
        eligible_pins(np.zeros(3), 5, before=1)


def test_empty_slots_and_boards_left_empty_read_zeros() -> None:
    # page 0's only pin is the only pin of board 0: left out, nothing remains
    page_pins, pin_boards = [[0], [1]], [[0], [1], [1]]
    targets = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    boards = page_boards(*_csr(page_pins), *_csr(pin_boards), 2)
    got = board_means(*_csr(page_pins), *_csr(pin_boards), boards, targets, np.ones(3, dtype=bool)).dense(boards)
    assert boards.tolist() == [[0, -1], [1, -1]]
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_array_equal(got[1], [[5.0, 6.0], [0.0, 0.0]])  # board 1 less page 1's own pin 1


@pytest.mark.parametrize("chunk", [4, 16_384])
def test_page_means_and_shared_pins_equal_the_references(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pin_means, "CHUNK_KEYS", chunk)
    page_pins, _, targets = _graph(seed=4, n_pins=40)  # 30 pages on 40 pins: many pins link several pages
    eligible = np.random.default_rng(5).random(len(targets)) < 0.8
    got = page_means(*_csr(page_pins), targets, eligible)
    np.testing.assert_allclose(got.astype(np.float64), loop_page_means(page_pins, targets, eligible), atol=2e-3)
    neighbours = np.random.default_rng(6).integers(-1, 30, (30, 6))
    neighbours[3, 0] = 3  # a page that is its own neighbour never reads its own mean
    shared = shares_a_pin(*_csr(page_pins), neighbours)
    assert shared.tolist() == loop_shares_a_pin(page_pins, neighbours).tolist()
    assert shared[3, 0] and 10 < shared.sum() < (neighbours >= 0).sum()  # both outcomes occur


SMALL = [
    "train.dims=[8, 16, 32]",
    "train.d_model=32",
    "train.layers=1",
    "train.heads=4",
    "train.mlp_ratio=2",
    "train.neighbours=4",
    "train.batch_size=64",
    "train.random_negatives=64",
    "train.steps=20",
    "train.warmup_steps=5",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def board_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    world = planted_world(n_pages=200, k=6)
    return write_boards(world, write_run_dir(world, tmp_path_factory.mktemp("run")))


def _train(root: Path, overrides: list[str]) -> Path:
    rd = RunDir(root)
    out = rd.new_staging("train")
    torch.set_num_threads(1)
    run(StageContext(config=load_config(None, SMALL + overrides), run_dir=rd, stage="train", out=out))
    return out


BOTH = ["train.board_means=true", "train.neighbour_means=true"]


@pytest.mark.parametrize("means", [["train.board_means=true"], ["train.neighbour_means=true"], BOTH])
def test_the_train_stage_with_pin_means_keeps_a_pages_own_pins_out(
    board_run: Path, tmp_path: Path, means: list[str]
) -> None:
    out = _train(board_run, means)
    cfg = load_model(out).encoder.cfg
    assert (cfg.board_mean_dim, cfg.nbr_mean_dim) == (
        32 * ("train.board_means=true" in means),
        32 * ("train.neighbour_means=true" in means),
    )
    assert cfg.pin_means_before is None
    pages = np.arange(200)
    before = embed_pages(out, board_run, pages)
    indptr = np.load(board_run / "graph" / "page__pin.indptr.npy")
    indices = np.load(board_run / "graph" / "page__pin.indices.npy")
    p = int(np.flatnonzero(np.diff(indptr) > 0)[0])
    other = tmp_path / "run"
    shutil.copytree(board_run, other)
    targets = np.load(other / "content" / "pin_target.npy")
    targets[indices[indptr[p] : indptr[p + 1]]] = np.float16(3.0)  # page p's own pins only
    np.save(other / "content" / "pin_target.npy", targets)
    after = embed_pages(out, other, pages)
    np.testing.assert_array_equal(after[p], before[p])
    assert not np.allclose(after, before)  # pages sharing p's boards read those pins: the feature is live


def test_a_time_split_keeps_later_pins_out_of_every_board_mean(board_run: Path, tmp_path: Path) -> None:
    out = _train(board_run, [*BOTH, 'train.split="time"', 'train.split_date="2013-04-15"'])
    cut = 1_365_984_000  # 2013-04-15 UTC
    assert load_model(out).encoder.cfg.pin_means_before == cut
    created = pq.read_table(board_run / "ingest" / "pins.parquet")["created_at"].to_numpy()
    pages = np.arange(200)
    before = embed_pages(out, board_run, pages)
    other = tmp_path / "run"
    shutil.copytree(board_run, other)
    targets = np.load(other / "content" / "pin_target.npy")
    assert (created >= cut).sum() > 10
    targets[created >= cut] = np.float16(-2.0)
    np.save(other / "content" / "pin_target.npy", targets)
    np.testing.assert_array_equal(embed_pages(out, other, pages), before)
    targets[created < cut] = np.float16(-2.0)  # the control: earlier pins do feed the means
    np.save(other / "content" / "pin_target.npy", targets)
    assert not np.allclose(embed_pages(out, other, pages), before)


def test_pin_means_need_their_tokens() -> None:
    with pytest.raises(ConfigError, match=r"train\.board_means: reads the board tokens' boards"):
        load_config(None, ["train.board_means=true", "train.board_tokens=0"])
    with pytest.raises(ConfigError, match=r"train\.neighbour_means: reads the walk neighbours"):
        load_config(None, ["train.neighbour_means=true", "train.neighbours=0"])


def test_a_neighbour_that_shares_a_pin_is_not_read(board_run: Path, tmp_path: Path) -> None:
    """Page a's pin x also links page b, a's first neighbour: b's mean holds x, so a must not read it."""
    root = tmp_path / "shared"
    shutil.copytree(board_run, root)
    graph, walk = root / "graph", root / "walk"
    indptr, indices = np.load(graph / "page__pin.indptr.npy"), np.load(graph / "page__pin.indices.npy")
    rows = [indices[indptr[i] : indptr[i + 1]].tolist() for i in range(len(indptr) - 1)]
    a, b = (int(i) for i in np.flatnonzero(np.diff(indptr) > 0)[:2])
    x = rows[a][0]
    rows[b] = sorted({*rows[b], x})  # x now links a and b
    new_indptr = np.cumsum([0] + [len(r) for r in rows]).astype(indptr.dtype)
    np.save(graph / "page__pin.indptr.npy", new_indptr)
    np.save(graph / "page__pin.indices.npy", np.array([q for r in rows for q in r], dtype=indices.dtype))
    neighbours = np.load(walk / "neighbours.npy")
    neighbours[a, 0] = b
    np.save(walk / "neighbours.npy", neighbours)
    out = _train(root, ["train.neighbour_means=true"])
    pages = np.arange(200)
    before = embed_pages(out, root, pages)
    changed = tmp_path / "changed"
    shutil.copytree(root, changed)
    targets = np.load(changed / "content" / "pin_target.npy")
    targets[x] = np.float16(3.0)
    np.save(changed / "content" / "pin_target.npy", targets)
    after = embed_pages(out, changed, pages)
    np.testing.assert_array_equal(after[a], before[a])  # b's mean holds x: a does not read it
    readers = np.flatnonzero((np.load(walk / "neighbours.npy")[:, :4] == b).any(axis=1))
    moved = np.flatnonzero(~np.all(after == before, axis=1))
    assert len(set(readers) - {a}) and set(moved) & (set(readers) - {a})  # others reading b's mean do move
