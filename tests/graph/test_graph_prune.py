"""Hub caps keep uniform samples of at most `cap` edges per node; the minimum-degree rule."""

from __future__ import annotations

import numpy as np

from linksage.graph.prune import cap_degree, cap_hubs, low_degree_nodes


def test_cap_keeps_exactly_min_degree_cap() -> None:
    rng = np.random.default_rng(0)
    nodes = rng.integers(0, 30, 2_000)
    keep = cap_degree(nodes, 50, rng)
    before, after = np.bincount(nodes, minlength=30), np.bincount(nodes[keep], minlength=30)
    np.testing.assert_array_equal(after, np.minimum(before, 50))


def test_cap_is_a_uniform_sample() -> None:
    """Each of a hub's 10 edges survives a cap of 3 with probability 0.3 (binomial bound over 4,000 seeds)."""
    nodes = np.zeros(10, np.int64)
    rng = np.random.default_rng(1)
    kept = np.zeros(10)
    trials = 4_000
    for _ in range(trials):
        kept += cap_degree(nodes, 3, rng)
    sd = np.sqrt(trials * 0.3 * 0.7)
    assert np.all(np.abs(kept - 0.3 * trials) < 5 * sd), kept


def test_cap_hubs_caps_both_sides_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 3_000), rng.integers(0, 400, 3_000)
    keep = cap_hubs(a, b, 100, np.random.default_rng(7))
    assert np.bincount(a[keep]).max() <= 100 and np.bincount(b[keep]).max() <= 100
    np.testing.assert_array_equal(keep, cap_hubs(a, b, 100, np.random.default_rng(7)))


def test_low_degree_nodes() -> None:
    assert low_degree_nodes(np.array([0, 1, 2, 3]), 2).tolist() == [False, True, False, False]
