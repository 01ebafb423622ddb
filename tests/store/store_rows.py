"""Deterministic store rows for tests: content is a function of (page id, seed), so states can be checked."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from linksage.store.lance_store import make_batch

DIM = 16


def embeddings(ids: np.ndarray, seed: int) -> np.ndarray:
    """(n, DIM) float32 unit rows; row of page id p depends only on (p, seed)."""
    out = np.empty((len(ids), DIM), np.float32)
    for i, p in enumerate(ids):
        v = np.random.default_rng([int(p), seed]).normal(size=DIM)
        out[i] = v / np.linalg.norm(v)
    return out


def batches(ids: np.ndarray, seed: int, day: str = "2013-04-01", size: int = 50) -> Iterator[pa.RecordBatch]:
    for lo in range(0, len(ids), size):
        c = np.asarray(ids[lo : lo + size], dtype=np.int64)
        yield make_batch(
            c,
            [f"https://example.com/{p}" for p in c],
            embeddings(c, seed),
            f"model-{seed}",
            (c * 3 + seed).astype(np.uint64),
            (c * 5 + seed).astype(np.uint64),
            day,
        )


def state(table: pa.Table) -> dict[int, tuple[bytes, str]]:
    """page_id -> (embedding bytes, model_version): a comparable snapshot of a version."""
    emb = table["embedding"].combine_chunks()
    vals = emb.values.to_numpy().reshape(-1, emb.type.list_size)
    return {
        int(p): (vals[i].tobytes(), m)
        for i, (p, m) in enumerate(zip(table["page_id"].to_pylist(), table["model_version"].to_pylist(), strict=True))
    }


def expected(upserts: list[tuple[np.ndarray, int]]) -> dict[int, tuple[bytes, str]]:
    """The state after applying ``(ids, seed)`` upserts in order."""
    out: dict[int, tuple[bytes, str]] = {}
    for ids, seed in upserts:
        for p, e in zip(ids, embeddings(ids, seed), strict=True):
            out[int(p)] = (e.tobytes(), f"model-{seed}")
    return out
