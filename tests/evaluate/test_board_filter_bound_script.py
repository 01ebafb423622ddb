"""scripts/board_filter_bound.py: zero-shot Recall@K against all pins and against the page's own boards' pins."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400
CUT = 1_364_774_400  # 2013-04-01


@pytest.fixture
def bound(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    return importlib.import_module("board_filter_bound")


def _brute_recall(q: np.ndarray, pins: np.ndarray, pos: np.ndarray, pool: np.ndarray, k: int) -> float:
    ranked = sorted(pool.tolist(), key=lambda p: (-float(pins[p] @ q), p))[:k]
    return float(np.mean([p in ranked for p in pos]))


def test_recalls_equal_a_brute_force_ranking(bound: ModuleType) -> None:
    rng = np.random.default_rng(0)
    pins = bound.normalise(rng.normal(size=(60, 8)))
    queries = bound.normalise(rng.normal(size=(7, 8)))
    positives = [rng.choice(60, rng.integers(1, 4), replace=False) for _ in range(7)]
    pools = [np.unique(np.concatenate([pos, rng.choice(60, 15, replace=False)])) for pos in positives]
    everything = bound.recall_all(queries, pins, positives, 5)
    zero = bound.recall_all(np.zeros((1, 8), np.float32), pins, positives[:1], 5)
    assert zero.tolist() == [5 / 60]  # ties everywhere: a random order's chance, not full credit
    filtered = bound.recall_filtered(queries, pins, positives, pools, 5)
    for i in range(7):
        assert everything[i] == pytest.approx(_brute_recall(queries[i], pins, positives[i], np.arange(60), 5))
        assert filtered[i] == pytest.approx(_brute_recall(queries[i], pins, positives[i], pools[i], 5))


def test_groups_keep_each_keys_values_in_order(bound: ModuleType) -> None:
    groups = bound.Groups(np.array([2, 0, 2, 2]), np.array([5, 6, 7, 8]), n=4)
    assert [groups[k].tolist() for k in range(4)] == [[6], [], [5, 7, 8], []]
    assert groups.sizes().tolist() == [1, 0, 3, 0]


def test_boards_vectors_read_only_pins_from_before_the_cut(bound: ModuleType) -> None:
    pins = np.array([[1, 0], [0, 1], [0, -1], [-1, 0]], np.float32)
    created = np.array([0, 5, 20, 0])  # pin 2 is after the cut at 10
    members = bound.Groups(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 3]))  # board 0: pins 0, 1, 2; board 1: 3
    pin_boards = bound.Groups(np.array([0, 1, 2, 3]), np.array([0, 0, 0, 1]))
    means = bound.board_means(pins, pin_boards, members.sizes().size, created, 10)
    np.testing.assert_allclose(means, [[0.5, 0.5], [-1, 0]])  # (pin 0 + pin 1) / 2, not pin 2
    vecs = bound.boards_vectors(means, pin_boards, [np.array([2]), np.array([2, 3])])
    np.testing.assert_allclose(vecs[0], np.array([1, 1]) / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(vecs[1], np.array([-1, 1]) / np.sqrt(2), rtol=1e-6)  # (0.5, 0.5) + (-1, 0)


def test_pins_with_boards_equal_a_loop(bound: ModuleType) -> None:
    rng = np.random.default_rng(1)
    pins = bound.normalise(rng.normal(size=(9, 4)))
    means = rng.normal(size=(3, 4)).astype(np.float16)
    means[2] = 0.0  # a board with no pin before the cut
    pin_of = np.array([0, 0, 1, 3, 3, 3, 5, 8])  # pins 2, 4, 6, 7 in no board; pin 5 only in the empty one
    board_of = np.array([0, 1, 1, 0, 1, 2, 2, 0])
    got = bound.pins_with_boards(pins, means, bound.Groups(pin_of, board_of, n=9), 0.7)
    for p in range(9):
        total = sum((means[b].astype(np.float64) for b, q in zip(board_of, pin_of, strict=True) if q == p), np.zeros(4))
        norm = np.linalg.norm(total)
        want = pins[p] + (0.7 * total / norm if norm > 0 else 0.0)
        np.testing.assert_allclose(got[p], want / np.linalg.norm(want), rtol=1e-5, atol=1e-6)
    assert np.array_equal(got[[2, 4, 5, 6, 7]], pins[[2, 4, 5, 6, 7]])  # no board, or only the empty one


def _run_dir(root: Path) -> Path:
    """Four pages, five pins, two boards: page 2 and 3 are first seen after the cut; page 3's URL says nothing."""
    ingest, content = root / "ingest", root / "content"
    ingest.mkdir(parents=True)
    content.mkdir()
    urls = ["https://a.com/cats", "https://b.com/dogs", "https://c.com/cats-again", "https://d.com/x7"]
    pq.write_table(
        pa.table(
            {
                "page_idx": pa.array(range(4), pa.int32()),
                "url": urls,
                "first_seen": [CUT - 2 * DAY, CUT - DAY, CUT, CUT + DAY],
            }
        ),
        ingest / "pages.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "pin_idx": pa.array(range(5), pa.int32()),
                "text": ["cats", "dogs", "more cats", "cat news", "birds"],
                "created_at": [CUT - 2 * DAY, CUT - DAY, CUT, CUT + DAY, CUT - DAY],
            }
        ),
        ingest / "pins.parquet",
    )
    pq.write_table(
        pa.table({"pin_idx": pa.array([0, 1, 2, 3, 4], pa.int32()), "page_idx": pa.array([0, 1, 2, 3, 1], pa.int32())}),
        ingest / "links.parquet",
    )
    pq.write_table(
        pa.table({"board_idx": pa.array([0, 1, 0, 0, 1], pa.int32()), "pin_idx": pa.array(range(5), pa.int32())}),
        ingest / "board_pins.parquet",
    )
    # 2-d vectors: page 2 points at pin 2, page 3 (opaque) points away from every cat pin
    np.save(content / "page_text.npy", np.array([[1, 0], [0, 1], [1, 0.1], [-1, 0]], np.float16))
    np.save(content / "pin_target.npy", np.array([[1, 0], [0, 1], [1, 0.1], [0.9, -0.1], [-1, 0.05]], np.float16))
    return root


def _result(bound: ModuleType, args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """main(args) succeeds; the JSON object of its last line."""
    assert bound.main(args) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return result


def test_main_scores_the_test_pages_against_all_pins_and_their_boards(
    bound: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_dir(tmp_path / "run")
    result = _result(bound, [str(run), "--split-date", "2013-04-01", "--k", "1"], capsys)
    assert result["queries"] == 2 and result["opaque_queries"] == 1  # pages 2 and 3; "x7" shares no word
    # k = 1: page 2 finds pin 2 either way; page 3's top pin overall is the bird pin 4 (another board),
    # within its board {0, 2, 3} its top pin is 3 itself (the least cat-like of them)
    assert result["recall@1_all_pins"] == pytest.approx(0.5)
    assert result["recall@1_own_boards_pins"] == pytest.approx(1.0)
    assert result["opaque_recall@1_own_boards_pins"] == pytest.approx(1.0)
    assert result["recall@1_own_boards_random_order"] == pytest.approx(1 / 3)  # pools of 3 pins, k = 1
    # board 0's mean over its pins from before the cut is pin 0 alone: both test pages' boards' vector finds it
    assert result["recall@1_board_mean"] == 0.0
    assert result["filtered_pool_median"] == 3
    # pins carrying their boards (weight 1; board 0's mean before the cut is pin 0, (1, 0)): page 2's
    # query (1, 0.1) + (1, 0) points at pin 2 carrying board 0 and finds it; page 3's query (-1, 0) plus
    # its board (1, 0) is zero, a tie everywhere: a random order's 1 / 5
    assert result["board_weight"] == 1.0
    assert result["recall@1_graph_pins_url_plus_board_mean"] == pytest.approx((1 + 1 / 5) / 2)


def test_main_says_when_no_page_is_after_the_cut(
    bound: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_dir(tmp_path / "run")
    assert bound.main([str(run), "--split-date", "2014-01-01"]) == 1
    assert "no page with a pin is first seen on or after 2014-01-01" in capsys.readouterr().err


def test_main_refuses_targets_that_carry_their_boards_already(
    bound: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_dir(tmp_path / "run")
    (run / "content" / "manifest.json").write_text(json.dumps({"metrics": {"pin_target_boards": 1.0}}))
    assert bound.main([str(run), "--split-date", "2013-04-01"]) == 2
    assert "board-aware already (content.pin_target_boards)" in capsys.readouterr().err


def test_main_centred_reports_pair_cosines_and_moves_the_board_vectors(
    bound: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_dir(tmp_path / "run")
    plain, centred = (
        _result(bound, [str(run), "--split-date", "2013-04-01", "--k", "1", *x], capsys) for x in ([], ["--centred"])
    )
    assert (plain["centred"], centred["centred"]) == (False, True)
    assert plain["pair_cosine_mean_pins"] == centred["pair_cosine_mean_pins"]  # the pins as they are: no boards
    # the mean of the pins from before the cut (0, 1, 4) is taken out of each board's mean: the pins
    # carrying their boards move, and their pairs' cosines with them
    assert plain["pair_cosine_mean_graph_pins"] != centred["pair_cosine_mean_graph_pins"]
