"""The pin-page cohesion filter: keep a link only when the pin and the page mean the same thing.

A link's score is its given ``cohesion`` when present, else the cosine between the pin's target vector
and the page's content vector when both exist and have the same dimension, else unknown (kept: there
is nothing to judge by).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 65_536  # links per gather: bounds the memory of the cosine computation


@dataclass(frozen=True)
class CohesionScores:
    scores: np.ndarray  # float32 (n_links,), NaN = unknown
    given: int  # links whose score came from the input
    computed: int  # links scored by cosine
    unknown: int


def cohesion_scores(
    pin: np.ndarray,
    page: np.ndarray,
    given: np.ndarray,
    pin_target: np.ndarray | None,
    page_text: np.ndarray | None,
) -> CohesionScores:
    """Score every link ``(pin[i], page[i])``: ``given[i]`` unless NaN, else cosine(target, page text)."""
    scores = np.asarray(given, dtype=np.float32).copy()
    missing = np.flatnonzero(np.isnan(scores))
    n_given = len(scores) - len(missing)
    comparable = (
        pin_target is not None
        and page_text is not None
        and pin_target.ndim == 2
        and page_text.ndim == 2
        and pin_target.shape[1] == page_text.shape[1]
        and pin_target.shape[1] > 0
    )
    if comparable and len(missing):
        assert pin_target is not None and page_text is not None
        for lo in range(0, len(missing), CHUNK):
            rows = missing[lo : lo + CHUNK]
            scores[rows] = rowwise_cosine(pin_target[pin[rows]], page_text[page[rows]])
    unknown = int(np.isnan(scores).sum())
    return CohesionScores(scores=scores, given=n_given, computed=len(missing) - unknown, unknown=unknown)


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row pair in float32; NaN where either row is all zeros (an absent vector)."""
    a32 = np.asarray(a, dtype=np.float32)
    b32 = np.asarray(b, dtype=np.float32)
    dot = np.einsum("ij,ij->i", a32, b32)
    norms = np.linalg.norm(a32, axis=1) * np.linalg.norm(b32, axis=1)
    out = np.full(len(dot), np.nan, np.float32)
    ok = norms > 1e-6
    out[ok] = np.clip(dot[ok] / norms[ok], -1.0, 1.0)
    return out


def keep_mask(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Links to keep: score >= threshold, or unknown."""
    return ~(scores < threshold)  # NaN compares False, so unknown scores are kept
