"""Cohesion scores: given, else cosine(pin target, page text), else unknown (kept)."""

from __future__ import annotations

import numpy as np

from linksage.graph.cohesion import cohesion_scores, keep_mask, rowwise_cosine


def test_given_then_cosine_then_unknown() -> None:
    target = np.array([[1, 0], [0, 1], [0, 0]], np.float16)  # pin 2 has no vector
    page = np.array([[1, 0], [0.6, 0.8]], np.float16)
    pin, pg = np.array([0, 1, 0, 2]), np.array([1, 0, 0, 1])
    given = np.array([0.25, np.nan, np.nan, np.nan], np.float32)
    s = cohesion_scores(pin, pg, given, target, page)
    np.testing.assert_allclose(s.scores[:3], [0.25, 0.0, 1.0], atol=1e-3)
    assert np.isnan(s.scores[3])
    assert (s.given, s.computed, s.unknown) == (1, 2, 1)
    assert keep_mask(s.scores, 0.5).tolist() == [False, False, True, True]


def test_dims_that_differ_leave_scores_unknown() -> None:
    s = cohesion_scores(np.array([0]), np.array([0]), np.array([np.nan], np.float32), np.ones((1, 3)), np.ones((1, 4)))
    assert np.isnan(s.scores[0]) and s.unknown == 1
    s = cohesion_scores(np.array([0]), np.array([0]), np.array([np.nan], np.float32), None, None)
    assert s.unknown == 1


def test_rowwise_cosine_against_a_loop() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    ref = [float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(rowwise_cosine(a, b), ref, rtol=1e-5)
