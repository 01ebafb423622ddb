"""The pieces of the neighbour-change rule on tiny hand-built graphs, and the synthetic next day."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from update_world import DAY, NEXT_DAY, config, day_input

from linksage.graph.csr import csr_pair
from linksage.graph.prune import cap_hubs
from linksage.update.neighbours import changed_pins, changed_share, neighbour_change, row_hashes
from linksage.walk.pixie import WalkGraph


def graph(counts: dict[str, int], edges: dict[tuple[str, str], list[tuple[int, int]]]) -> WalkGraph:
    csr = {}
    for (a, b), pairs in edges.items():
        ea, eb = np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)
        csr[(a, b)], csr[(b, a)] = csr_pair(ea, eb, counts[a], counts[b])
    return WalkGraph.checked(counts, csr)


def test_neighbour_change_is_the_share_of_the_top_k_that_moved() -> None:
    old = np.array([[1, 2, 3, 4], [1, 2, -1, -1], [-1, -1, -1, -1], [-1, -1, -1, -1], [5, 6, 7, 8]])
    new = np.array([[4, 3, 2, 9], [2, 1, -1, -1], [-1, -1, -1, -1], [7, -1, -1, -1], [1, 2, 3, 4]])
    np.testing.assert_allclose(neighbour_change(old, new), [0.25, 0.0, 0.0, 1.0, 1.0])


def test_row_hashes_see_sets_not_positions() -> None:
    a = row_hashes(np.array([0, 2, 4, 4]), np.array([1, 2, 1, 2]))
    assert a[0] == a[1] != a[2]
    b = row_hashes(np.array([0, 2, 5]), np.array([1, 2, 1, 2, 3]))
    assert b[0] == a[0] and b[1] != a[1]


def test_changed_pins_and_the_share_of_a_pages_pins() -> None:
    counts = {"pin": 4, "page": 3, "board": 2, "domain": 0, "cluster": 1}
    before = graph(
        counts,
        {
            ("pin", "page"): [(0, 0), (1, 0), (2, 1), (3, 2)],
            ("pin", "board"): [(0, 0), (1, 0), (2, 1), (3, 1)],
            ("pin", "cluster"): [(2, 0), (3, 0)],
        },
    )
    grown = {**counts, "pin": 6, "page": 4, "board": 3, "cluster": 1}
    after = graph(
        grown,
        {
            ("pin", "page"): [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3)],
            ("pin", "board"): [(0, 0), (1, 2), (2, 1), (3, 1), (4, 1), (5, 2)],  # pin 1 moved board
            ("pin", "cluster"): [(3, 0), (4, 0)],  # the cluster {2, 3} became {3, 4}
        },
    )
    changed = changed_pins(before, after)
    assert changed.tolist() == [False, True, True, True, True, True]
    # page 0: pins 0, 1 (one changed); page 1: pin 2 (changed); page 2: pins 3 (changed), 4 (new)
    np.testing.assert_allclose(changed_share(before, after, changed), [0.5, 1.0, 1.0])


def test_hub_caps_do_not_resample_when_edges_are_added() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 5_000), np.arange(5_000)
    keep = cap_hubs(a, b, 200, np.random.default_rng(1))
    more_a, more_b = np.concatenate([a, rng.integers(0, 3, 50)]), np.concatenate([b, np.arange(5_000, 5_050)])
    keep2 = cap_hubs(more_a, more_b, 200, np.random.default_rng(1))
    for hub in range(3):
        kept, kept2 = set(b[keep & (a == hub)]), set(more_b[keep2 & (more_a == hub)])
        assert len(kept - kept2) <= 50  # only newcomers with smaller keys push old edges out
        assert len(kept) == len(kept2) == 200


def test_synthetic_days_are_new_and_reproducible(tmp_path: Path) -> None:
    one = day_input(tmp_path / "a", DAY)
    again = day_input(tmp_path / "b", DAY)
    later = day_input(tmp_path / "c", NEXT_DAY)
    for table in ("pins", "links", "boards", "pages"):
        assert pq.read_table(one / table).equals(pq.read_table(again / table))
    ids, later_ids = pq.read_table(one / "pins")["pin_id"].to_pylist(), pq.read_table(later / "pins")["pin_id"]
    assert not set(ids) & set(later_ids.to_pylist())
    created = pq.read_table(one / "pins")["created_at"].to_numpy()
    start = 1_372_636_800  # 2013-07-01, the world's end
    assert config().ingest.synthetic.end == DAY and created.min() >= start and created.max() < start + 86_400
