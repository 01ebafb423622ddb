"""The walks' empirical visit distribution against the exact one (walk_reference), per metapath."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare
from walk_reference import dense_counts, random_graph, visit_distribution

from linksage.config.walk import WalkConfig
from linksage.walk.pixie import run_walks

METAPATHS = ["page-pin-page", "page-pin-board-pin-page", "page-domain-page", "page-pin-cluster-pin-page"]


def _counts(graph, q: int, cfg: WalkConfig) -> np.ndarray:  # type: ignore[no-untyped-def]
    result = run_walks(graph, np.array([q]), cfg)
    return dense_counts(result.neighbours[0], result.visits[0], graph.counts["page"])


def _config(metapath: str, **kw: object) -> WalkConfig:
    base: dict[str, object] = dict(metapaths=(metapath,), n_p=0, boost=False, top_k=64, walkers=16)
    base.update(kw)
    return WalkConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("metapath", METAPATHS)
def test_one_traversal_walks_are_multinomial(metapath: str, merge: bool) -> None:
    """Walk length 1: every counted visit is an independent draw from e_q M, so a chi-square test applies."""
    graph = random_graph(seed=3)
    cfg = _config(metapath, mean_walk_length=1.0, steps=60_000, merge_near_duplicates=merge)
    tested = 0
    for q in range(graph.counts["page"]):
        exact = visit_distribution(graph, q, metapath, 1.0, merge) if _reaches(graph, q, metapath, merge) else None
        counts = _counts(graph, q, cfg)
        if exact is None:
            assert counts.sum() == 0
            continue
        assert np.all(counts[exact == 0] == 0), "a page the metapath cannot reach was visited"
        support = exact > 0
        if support.sum() < 2:
            continue
        n = counts.sum()
        assert n > 5_000
        _, p_value = chisquare(counts[support], n * exact[support])
        assert p_value > 1e-5, (q, counts[support], n * exact[support])
        tested += 1
    assert tested >= 2


@pytest.mark.parametrize("metapath", ["page-pin-page", "page-pin-board-pin-page", "page-domain-page"])
def test_long_walks_match_the_exact_distribution(metapath: str) -> None:
    """Mean walk length 3: visits within a walk are correlated, so the tolerance comes from replicates.

    R independent replicates (different seeds) give R visit shares per page; their mean must lie within
    5 standard errors of the exact share for every page (and pages of share 0 get no visit at all), and
    the total variation distance must be within the sum of those bounds.
    """
    graph = random_graph(seed=5)
    reachable = [q for q in range(graph.counts["page"]) if _reaches(graph, q, metapath, True)]
    q = next(q for q in reachable if (visit_distribution(graph, q, metapath, 3.0, True) > 0).sum() > 2)
    exact = visit_distribution(graph, q, metapath, 3.0, True)
    replicates = 30
    shares = []
    for r in range(replicates):
        counts = _counts(graph, q, _config(metapath, mean_walk_length=3.0, steps=20_000, seed=r))
        assert np.all(counts[exact == 0] == 0)
        shares.append(counts / counts.sum())
    shares_a = np.array(shares)
    mean = shares_a.mean(axis=0)
    se = shares_a.std(axis=0, ddof=1) / np.sqrt(replicates)
    support = exact > 0
    z = np.abs(mean[support] - exact[support]) / np.maximum(se[support], 1e-12)
    assert z.max() < 5.0, (mean, exact, se)
    tv = 0.5 * np.abs(mean - exact).sum()
    assert tv <= 0.5 * (5.0 * se[support]).sum()


def test_dead_end_start_gives_no_neighbours() -> None:
    graph = random_graph(seed=3)
    no_domain = [q for q in range(graph.counts["page"]) if graph.degree("page", "domain")[q] == 0]
    result = run_walks(graph, np.array(no_domain), _config("page-domain-page"))
    assert np.all(result.neighbours == -1) and np.all(result.visits == 0) and np.all(result.steps == 0)


def _reaches(graph, q: int, metapath: str, merge: bool) -> bool:  # type: ignore[no-untyped-def]
    from walk_reference import expected_visits

    v = expected_visits(graph, q, metapath, 1.0, merge)
    v[q] = 0.0
    return bool(v.sum() > 0)
