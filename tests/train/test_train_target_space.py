"""The target space's rotations: orthogonal and cosine-preserving; PCA variance-ordered and deterministic."""

from __future__ import annotations

import numpy as np
import torch

from linksage.train.target_space import LearnedRotation, pca_rotation, to_target_space


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


def test_learned_rotation_starts_at_identity_and_stays_orthogonal() -> None:
    torch.manual_seed(0)
    rot = LearnedRotation(16, 8)
    x = torch.randn(50, 16)
    torch.testing.assert_close(rot(x), x[:, :8])  # W = 0: no turn yet
    opt = torch.optim.SGD(rot.parameters(), lr=0.5)
    for _ in range(5):  # large steps that pull the prefix towards a random direction
        loss = -(rot(x)[:, 0] * x[:, 3]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    q = rot.numpy()
    assert not np.allclose(q, np.eye(16), atol=1e-2)  # it moved
    np.testing.assert_allclose(q.T @ q, np.eye(16), atol=1e-5)
    full = x.numpy() @ q  # full-size dot products unchanged
    np.testing.assert_allclose(full @ full.T, x.numpy() @ x.numpy().T, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(rot(x), torch.from_numpy(full[:, :8]), rtol=1e-4, atol=1e-4)


def test_compose_gives_the_one_matrix_that_takes_raw_targets_to_the_trained_space() -> None:
    t = _targets()
    pca = pca_rotation(t)
    rot = LearnedRotation(16, 8)
    with torch.no_grad():
        rot.skew.copy_(torch.randn(16, 16, generator=torch.Generator().manual_seed(3)) * 0.3)
    trained = rot(torch.from_numpy(to_target_space(t, pca))).detach().numpy()  # what training scored against
    trained /= np.linalg.norm(trained, axis=1, keepdims=True)
    saved = rot.compose(pca)
    np.testing.assert_allclose(to_target_space(t, saved, 8), trained, atol=1e-5)
    np.testing.assert_allclose(saved.T @ saved, np.eye(16), atol=1e-5)
    wrong_order = rot.numpy() @ pca  # Q @ PCA is orthogonal too, but another space
    assert np.abs(to_target_space(t, wrong_order, 8) - trained).max() > 0.1
