"""The target space: pins' target vectors, optionally rotated by PCA so that leading coordinates vary most.

The rotation is orthogonal and applied to the uncentred vectors, so cosines between full-size vectors are
unchanged; only *prefixes* (the Matryoshka dims) see the difference: a d-prefix keeps the d directions of
largest variance instead of d arbitrary ones. ``LearnedRotation`` goes one step further: an orthogonal
matrix trained with the encoder, so that each prefix keeps the directions that retrieve best rather than
those that vary most (``train.target_rotation = "learned"``, starting from the PCA axes).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def pca_rotation(targets: np.ndarray, max_rows: int = 200_000, seed: int = 0) -> np.ndarray:
    """(D, D) orthogonal matrix whose columns are the principal axes of the L2-normalised targets.

    Columns are sorted by explained variance, descending; each column's sign makes its largest-magnitude
    entry positive, so the result does not depend on the eigensolver's sign choices.
    """
    n, dim = targets.shape
    rows = np.random.default_rng(seed).choice(n, max_rows, replace=False) if n > max_rows else slice(None)
    x = np.asarray(targets[rows], dtype=np.float64)  # (n', D)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x -= x.mean(0)
    cov = x.T @ x / max(len(x) - 1, 1)  # (D, D)
    values, vectors = np.linalg.eigh(cov)  # ascending
    vectors = vectors[:, np.argsort(-values, kind="stable")]
    signs = np.sign(vectors[np.abs(vectors).argmax(0), np.arange(dim)])
    signs[signs == 0] = 1.0
    return (vectors * signs).astype(np.float32)


def identity_rotation(dim: int) -> np.ndarray:
    return np.eye(dim, dtype=np.float32)


def to_target_space(
    targets: np.ndarray, rotation: np.ndarray, dim: int | None = None, chunk: int = 1 << 18
) -> np.ndarray:
    """Rotate (n, D) targets into the trained space and keep the first ``dim`` coordinates, L2-normalised.

    With ``dim`` = the model's output size this is what a full-size page embedding is compared with.
    """
    basis = rotation[:, : dim or rotation.shape[1]]
    out = np.empty((len(targets), basis.shape[1]), dtype=np.float32)
    for lo in range(0, len(targets), chunk):  # bounded memory on memory-mapped float16 tables
        rotated = np.asarray(targets[lo : lo + chunk], dtype=np.float32) @ basis
        out[lo : lo + chunk] = rotated / np.maximum(np.linalg.norm(rotated, axis=1, keepdims=True), 1e-12)
    return out


class LearnedRotation(nn.Module):
    """An orthogonal (D, D) matrix ``matrix_exp(W - W^T)``, trained with the encoder; W = 0 at the start.

    The exponential of a skew-symmetric matrix is orthogonal for every W, so the trained space stays an
    exact rotation of the input space (full-size cosines unchanged) whatever the optimiser does; only
    which directions the leading coordinates hold is learned. ``forward`` rotates (n, D) vectors and
    keeps the first ``out_dim`` coordinates.
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        if not 0 < out_dim <= dim:
            raise ValueError(f"out_dim {out_dim} must be in 1..{dim}")
        self.out_dim = out_dim
        self.skew = nn.Parameter(torch.zeros(dim, dim))

    def matrix(self) -> Tensor:
        """(D, D) float32, computed in float64 (no TF32 or float32 drift from orthogonality; D is small)."""
        skew = self.skew.double()
        return torch.linalg.matrix_exp(skew - skew.T).float()

    def forward(self, x: Tensor) -> Tensor:
        """(n, D) float32 vectors turned, keeping the first ``out_dim`` coordinates."""
        return x @ self.matrix()[:, : self.out_dim]

    @torch.no_grad()
    def numpy(self) -> np.ndarray:
        """The (D, D) rotation as float32 (orthogonal to float32 precision)."""
        return self.matrix().cpu().numpy()

    def compose(self, base: np.ndarray) -> np.ndarray:
        """(D, D) ``base @ Q``: raw targets to the trained space, when ``forward`` saw ``targets @ base``."""
        return (np.asarray(base, np.float64) @ self.numpy().astype(np.float64)).astype(np.float32)
