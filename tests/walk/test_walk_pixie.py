"""Walk mechanics: hops follow real edges, early stopping, multi-hit boosting, determinism, subsets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from walk_reference import dense_counts, graph_from_edges, random_graph

from linksage.config.walk import WalkConfig
from linksage.errors import InputError
from linksage.walk.kernels import BOUNDARY, TRACE_COLS
from linksage.walk.metapaths import MERGE, hop_plan, parse_metapath
from linksage.walk.pixie import _plan, run_walks, step_budgets, walk_pages


def test_every_hop_follows_a_real_edge_of_the_right_type() -> None:
    graph = random_graph(seed=7)
    cfg = WalkConfig(metapaths=("page-pin-board-pin-page", "page-domain-page"), walkers=8, steps=3_000, n_p=0)
    plan = _plan(graph, cfg)
    checked = {int(op): 0 for m in range(len(plan.ops)) for op in plan.ops[m, : plan.n_ops[m]]} | {BOUNDARY: 0}
    assert MERGE in checked and len(checked) == 8  # 6 edge types, merges, boundaries
    for q in range(graph.counts["page"]):
        trace = run_walks(graph, np.array([q]), cfg, trace_rounds=4_000).trace
        assert trace is not None and len(trace) > 0
        state, path = None, -1
        for row in trace:
            m, op, active = int(row[0]), int(row[1]), int(row[2])
            if m != path:  # a metapath's walkers all start at the query page
                state, path = np.full(cfg.walkers, q), m
            assert state is not None
            after = row[TRACE_COLS:]
            for v, u in zip(state[:active], after[:active], strict=True):
                if op == BOUNDARY:
                    assert u == v or u == q  # go on from the page reached, or restart at the query
                elif v < 0:
                    assert u == -1  # a walk that ended stays ended until the boundary
                elif op == MERGE:
                    members = _cluster_members(graph, int(v))
                    assert (u in members) if members else u == v
                else:
                    indptr, indices = graph.edges(*plan.edge_types[op])
                    nbrs = indices[indptr[v] : indptr[v + 1]]
                    assert (u in nbrs) if len(nbrs) else u == -1
                checked[op] += 1
            np.testing.assert_array_equal(after[active:], state[active:])  # inactive walkers do not move
            state = after.copy()
    assert all(n > 100 for n in checked.values()), checked


def test_early_stopping_stops_once_n_p_pages_reach_n_v_visits() -> None:
    # page 0 -- pins 0..2 -- pages 1..3 (and back): every walk from page 0 reaches pages 1, 2 or 3.
    graph = graph_from_edges({"pin": 3, "page": 4}, {("pin", "page"): [(0, 0), (1, 0), (2, 0), (0, 1), (1, 2), (2, 3)]})
    base = WalkConfig(metapaths=("page-pin-page",), steps=50_000, walkers=4, top_k=4, boost=False)
    stopped = run_walks(graph, np.array([0]), dataclasses.replace(base, n_p=2, n_v=5))
    assert stopped.early_stops[0] == 1
    assert (stopped.visits[0] >= 5).sum() == 2  # stopped at the visit that made the second page reach n_v
    assert stopped.steps[0] < 200
    never = run_walks(graph, np.array([0]), dataclasses.replace(base, n_p=4, n_v=5))  # only 3 pages reachable
    assert never.early_stops[0] == 0
    budget = step_budgets(graph.degree("page", "pin")[[0]], base)[0]
    assert budget <= never.steps[0] <= budget + 4 * 2


def test_multi_hit_boosting_combines_metapaths_as_squared_sum_of_roots() -> None:
    graph = random_graph(seed=11)
    q = int(np.argmax(graph.degree("page", "pin") == 1))  # pin degree 1: the budget is exactly `steps`
    a, b = "page-pin-board-pin-page", "page-domain-page"
    base = WalkConfig(steps=8_000, n_p=0, top_k=64, walkers=8)
    n = graph.counts["page"]

    def counts(paths: tuple[str, ...], steps: int, boost: bool) -> np.ndarray:
        cfg = dataclasses.replace(base, metapaths=paths, steps=steps, boost=boost)
        r = run_walks(graph, np.array([q]), cfg)
        return dense_counts(r.neighbours[0], r.visits[0], n)

    only_a, only_b = counts((a,), 4_000, False), counts((b,), 4_000, False)
    assert only_a.sum() > 0 and only_b.sum() > 0 and ((only_a > 0) & (only_b > 0)).any()
    np.testing.assert_array_equal(counts((a, b), 8_000, False), only_a + only_b)
    np.testing.assert_allclose(counts((a, b), 8_000, True), (np.sqrt(only_a) + np.sqrt(only_b)) ** 2, rtol=1e-6)


def test_same_output_whatever_the_thread_count_and_subset() -> None:
    rng = np.random.default_rng(0)
    n_pins, n_pages = 3_000, 2_000
    graph = graph_from_edges(
        {"pin": n_pins, "page": n_pages, "board": 40, "domain": 100},
        {
            ("pin", "page"): np.stack([rng.integers(0, n_pins, 6_000), rng.integers(0, n_pages, 6_000)], 1),
            ("pin", "board"): np.stack([np.arange(n_pins), rng.integers(0, 40, n_pins)], 1),
            ("page", "domain"): np.stack([np.arange(n_pages), rng.integers(0, 100, n_pages)], 1),
        },
    )
    cfg = WalkConfig(steps=300, top_k=10)
    pages = np.arange(n_pages)
    one = run_walks(graph, pages, dataclasses.replace(cfg, threads=1))
    two = run_walks(graph, pages, dataclasses.replace(cfg, threads=2))
    np.testing.assert_array_equal(one.neighbours, two.neighbours)
    np.testing.assert_array_equal(one.visits, two.visits)
    np.testing.assert_array_equal(one.steps, two.steps)
    subset = rng.choice(n_pages, 50, replace=False)
    nbr, vis = walk_pages(graph, subset, cfg)
    np.testing.assert_array_equal(nbr, one.neighbours[subset])
    np.testing.assert_array_equal(vis, one.visits[subset])
    assert (one.neighbours >= 0).sum(axis=1).mean() > 5
    other = run_walks(graph, pages[:100], dataclasses.replace(cfg, seed=1))
    assert not np.array_equal(other.neighbours, one.neighbours[:100])


def test_top_k_is_sorted_self_free_and_padded() -> None:
    graph = random_graph(seed=2)
    cfg = WalkConfig(top_k=6, steps=2_000)
    r = run_walks(graph, np.arange(graph.counts["page"]), cfg)
    for q, (nbr, vis) in enumerate(zip(r.neighbours, r.visits, strict=True)):
        found = nbr >= 0
        assert q not in nbr
        assert np.all(found[:-1] >= found[1:])  # padding only at the end
        assert np.all(vis[~found] == 0) and np.all(vis[found] > 0)
        assert np.all(np.diff(vis[found]) <= 0)
        assert len(set(nbr[found].tolist())) == found.sum()


def test_step_budget_grows_sub_linearly_with_degree() -> None:
    cfg = WalkConfig(steps=1_000, budget_degree_c=5.0)
    b = step_budgets(np.array([0, 1, 2, 10, 54, 55, 1_000]), cfg)
    assert b[0] == b[1] == 1_000
    assert np.all(np.diff(b[1:5]) > 0)
    assert np.all(b[1:5] < 1_000 * np.array([1, 2, 10, 54]) + 1)  # sub-linear
    assert b[4] <= b[5] == b[6]  # flat beyond e^(C-1) ~ 54.6
    assert b[3] == round(1_000 * 10 * (5 - np.log(10)) / 5)


def test_bad_page_index_names_the_row_and_value() -> None:
    graph = random_graph(seed=1)
    with pytest.raises(InputError, match=r"row 1: page index out of range for 10 pages \(value: 99\)"):
        run_walks(graph, np.array([0, 99]), WalkConfig())


def test_hop_plan_inserts_merges_after_arrivals_at_pins() -> None:
    slots = {("page", "pin"): 0, ("pin", "page"): 1, ("pin", "board"): 2, ("board", "pin"): 3}
    slots |= {("pin", "cluster"): 4, ("cluster", "pin"): 5}
    assert hop_plan(parse_metapath("page-pin-page"), slots, merge=True) == [0, MERGE, 1]
    assert hop_plan(parse_metapath("page-pin-board-pin-page"), slots, merge=True) == [0, MERGE, 2, 3, MERGE, 1]
    assert hop_plan(parse_metapath("page-pin-cluster-pin-page"), slots, merge=True) == [0, 4, 5, 1]
    assert hop_plan(parse_metapath("page-pin-page"), slots, merge=False) == [0, 1]


def _cluster_members(graph, pin: int) -> list[int]:  # type: ignore[no-untyped-def]
    pc_ptr, pc_idx = graph.edges("pin", "cluster")
    if pc_ptr[pin + 1] == pc_ptr[pin]:
        return []
    c = pc_idx[pc_ptr[pin]]
    cp_ptr, cp_idx = graph.edges("cluster", "pin")
    return cp_idx[cp_ptr[c] : cp_ptr[c + 1]].tolist()
