"""The PCA rotation of the target space: orthogonal, cosine-preserving, variance-ordered, deterministic."""

from __future__ import annotations

import numpy as np

from linksage.train.target_space import pca_rotation, to_target_space


def _targets(n: int = 2000, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.geomspace(3.0, 0.1, dim)[rng.permutation(dim)]  # variance hidden in shuffled axes
    mixing = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    return ((rng.normal(size=(n, dim)) * scales) @ mixing + 0.5).astype(np.float16)


def test_rotation_is_orthogonal_and_preserves_cosines() -> None:
    t = _targets()
    r = pca_rotation(t)
    np.testing.assert_allclose(r.T @ r, np.eye(16), atol=1e-5)
    full = to_target_space(t, r)
    unit = t.astype(np.float32) / np.linalg.norm(t.astype(np.float32), axis=1, keepdims=True)
    np.testing.assert_allclose(full[:50] @ full[:50].T, unit[:50] @ unit[:50].T, atol=1e-5)


def test_leading_coordinates_carry_the_most_variance() -> None:
    t = _targets()
    rotated = to_target_space(t, pca_rotation(t))
    var = rotated.var(0)
    assert (np.diff(var) <= 1e-6).all()
    raw_var = (t / np.linalg.norm(t.astype(np.float32), axis=1, keepdims=True)).var(0)
    assert var[:4].sum() > np.sort(raw_var)[::-1][:4].sum() * 0.999  # the best 4 directions, at least


def test_deterministic_and_prefix_normalised() -> None:
    t = _targets()
    np.testing.assert_array_equal(pca_rotation(t), pca_rotation(t.copy()))
    p = to_target_space(t, pca_rotation(t), dim=4, chunk=300)
    assert p.shape == (2000, 4)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
