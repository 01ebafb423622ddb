"""Pins' target vectors (content/pin_target.npy): the ``embedding`` column when given, else their content.

Given targets are L2-normalised row by row; a null, zero or non-finite embedding gives a zero row
and is counted, never a crash. Computed targets are the pin's text vector, or with
``content.pin_target_image`` the concatenation [text, image] / sqrt(2) (each half a unit vector, or
zero when absent; the row is renormalised).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from linksage.errors import InputError


def embedding_dim(pins: Path) -> int | None:
    """Width of the pins' ``embedding`` column (a fixed-size list), or None when there is none."""
    schema = ds.dataset(pins, format="parquet").schema
    if "embedding" not in schema.names:
        return None
    kind = schema.field("embedding").type
    if not pa.types.is_fixed_size_list(kind):
        raise InputError(f"column 'embedding' must be a fixed-size list of floats, got {kind}", file=pins)
    return int(kind.list_size)


def write_given_targets(pins: Path, out: np.ndarray, chunk_rows: int) -> dict[str, int]:
    """Fill ``out`` (n_pins, D) float16 with the normalised ``embedding`` column; returns counts."""
    counts = {"pin_targets_given": 0, "pin_targets_missing": 0, "pin_targets_invalid": 0}
    dim = out.shape[1]
    for batch in ds.dataset(pins, format="parquet").to_batches(columns=["pin_idx", "embedding"], batch_size=chunk_rows):
        idx = batch.column("pin_idx").to_numpy()
        col = batch.column("embedding")
        valid = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        vecs = np.zeros((len(idx), dim), np.float32)
        if valid.any():
            flat = col.filter(pa.array(valid)).flatten().to_numpy(zero_copy_only=False)
            vecs[valid] = np.asarray(flat, dtype=np.float32).reshape(-1, dim)
        finite = np.isfinite(vecs).all(axis=1)
        vecs[~finite] = 0.0
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        usable = valid & finite & (norms[:, 0] > 0)
        np.divide(vecs, norms, out=vecs, where=usable[:, None])
        vecs[~usable] = 0.0
        out[idx] = vecs.astype(np.float16)
        counts["pin_targets_given"] += int(usable.sum())
        counts["pin_targets_missing"] += int((~valid).sum())
        counts["pin_targets_invalid"] += int((valid & ~usable).sum())
    return counts


def write_computed_targets(
    text: np.ndarray, image: np.ndarray | None, out: np.ndarray, chunk_rows: int
) -> dict[str, int]:
    """Fill ``out`` from the pins' own vectors: text, or [text, image] / sqrt(2) renormalised."""
    counts = {"pin_targets_computed": 0, "pin_targets_empty": 0}
    for start in range(0, len(text), chunk_rows):
        t = np.asarray(text[start : start + chunk_rows], dtype=np.float32)
        v = t if image is None else np.concatenate([t, np.asarray(image[start : start + chunk_rows], np.float32)], 1)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        np.divide(v, norms, out=v, where=norms > 0)
        out[start : start + len(v)] = v.astype(np.float16)
        counts["pin_targets_computed"] += int((norms[:, 0] > 0).sum())
        counts["pin_targets_empty"] += int((norms[:, 0] == 0).sum())
    return counts
