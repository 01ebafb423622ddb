"""Score distributions: negatives exclude positives, pairs are distinct, kurtosis is the excess kind."""

from __future__ import annotations

import numpy as np
import scipy.stats

from linksage.evaluate.distributions import excess_kurtosis, negative_scores, pairwise_cosines, score_summary
from linksage.evaluate.metrics import Positives


def test_excess_kurtosis_matches_scipy_and_known_values() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200_000)
    assert abs(excess_kurtosis(x)) < 0.05  # normal: 0
    assert abs(excess_kurtosis(rng.uniform(-1, 1, 200_000)) + 1.2) < 0.02  # uniform: -6/5
    y = rng.standard_t(8, 5000)
    assert np.isclose(excess_kurtosis(y), scipy.stats.kurtosis(y, fisher=True, bias=True))
    assert np.isnan(excess_kurtosis(np.ones(10))) and np.isnan(excess_kurtosis(np.array([1.0])))


def test_negatives_never_include_a_positive() -> None:
    pool = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = np.array([[1.0, 0.0], [1.0, 0.0]])
    pos = Positives.from_lists([[0, 1], [0, 1]])
    scores = negative_scores(queries, pool, pos, 2, 50, np.random.default_rng(0))
    assert len(scores) > 0 and np.allclose(scores, -1.0)  # only row 2 is a negative


def test_negatives_are_uniform_over_the_pool() -> None:
    rng = np.random.default_rng(1)
    pool = np.eye(4)
    queries = np.tile(np.array([[1.0, 0.0, 0.0, 0.0]]), (200, 1))
    pos = Positives.from_lists([[0]] * 200)
    scores = negative_scores(queries, pool, pos, 4, 30, rng)
    assert np.all(scores == 0.0) and abs(len(scores) - 200 * 30 * 3 / 4) < 200  # ~1/4 of draws hit the positive


def test_pairwise_cosines_use_distinct_rows() -> None:
    v = np.array([[1.0, 0.0], [0.6, 0.8]])
    got = pairwise_cosines(v, 2, 100, np.random.default_rng(0))
    assert np.allclose(got, 0.6)  # never a row with itself (that would be 1.0)


def test_score_summary() -> None:
    s = score_summary(np.array([0.1, 0.5, 0.9]), np.arange(101) / 100 - 0.5)
    assert np.isclose(s["positive_mean"], 0.5) and np.isclose(s["positive_share_above_0.25"], 2 / 3)
    assert np.isclose(s["negative_mean"], 0.0) and np.isclose(s["negative_p95"], 0.45)
    assert np.isclose(s["negative_share_above_0.25"], 25 / 101)
