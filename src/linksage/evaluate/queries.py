"""Which pages are queries, which pins form the pool, and each query's positives, read from a run directory.

Queries are the pages of the chosen split (``train/split.npy``); their positives are their edges in the
cohesion-filtered page->pin CSR of the graph stage, the same pairs the train stage learns from. The pool is
every pin, or, past ``pool_size`` pins, a seeded uniform sample of that many plus every positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linksage.config.evaluate import EvaluateConfig
from linksage.errors import InputError
from linksage.evaluate.metrics import Positives

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


@dataclass(frozen=True)
class QuerySet:
    pages: np.ndarray  # int64 (n_q,) page_idx of the queries, ascending
    pool: np.ndarray  # int64 (n_pool,) pin_idx of the pool rows, ascending
    positives: Positives  # pool rows per query
    n_pins: int
    split_pages: int  # pages in the split before sampling

    @property
    def pool_is_all(self) -> bool:
        return len(self.pool) == self.n_pins

    def describe_pool(self) -> str:
        if self.pool_is_all:
            return "all pins"
        return f"{len(self.pool):,} of {self.n_pins:,} pins: a uniform sample plus every positive"


def select_queries(split: np.ndarray, which: str, max_queries: int, seed: int, degree: np.ndarray) -> np.ndarray:
    """page_idx of the split's pages that have a positive, all or a seeded sample of ``max_queries``."""
    pages = np.flatnonzero((split == SPLIT_CODES[which]) & (degree > 0)).astype(np.int64)
    if max_queries and len(pages) > max_queries:
        pages = np.sort(np.random.default_rng([seed, 4]).choice(pages, max_queries, replace=False))
    return pages


def build_pool(positive_pins: np.ndarray, n_pins: int, pool_size: int, seed: int) -> np.ndarray:
    """Every pin when ``n_pins <= pool_size``; else ``pool_size`` uniform random pins plus the positives."""
    if n_pins <= pool_size:
        return np.arange(n_pins, dtype=np.int64)
    sample = np.random.default_rng([seed, 5]).choice(n_pins, pool_size, replace=False)
    return np.union1d(sample, positive_pins).astype(np.int64)


def query_pins(pages: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each query page's positive pins: (indptr (n_q + 1,), pin_idx (nnz,))."""
    lo, hi = indptr[pages], indptr[pages + 1]
    counts = (hi - lo).astype(np.int64)
    pins = [np.asarray(indices[a:b], dtype=np.int64) for a, b in zip(lo, hi, strict=True)]
    flat = np.concatenate(pins) if pins else np.zeros(0, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), flat


def positives_in_pool(q_indptr: np.ndarray, pins: np.ndarray, pool: np.ndarray) -> Positives:
    """The positives as pool rows; ``pool`` is ascending and holds every positive pin."""
    rows = np.searchsorted(pool, pins)
    if len(pins) and not np.array_equal(pool[np.minimum(rows, len(pool) - 1)], pins):
        raise ValueError("a positive pin is missing from the pool")  # build_pool always includes them
    return Positives(q_indptr, rows.astype(np.int64))


def load_query_set(root: Path, cfg: EvaluateConfig) -> QuerySet:
    """Queries, pool and positives of a run directory (needs the graph and train stages)."""
    split_path = root / "train" / "split.npy"
    split = np.load(split_path)
    indptr = np.load(root / "graph" / "page__pin.indptr.npy")
    indices = np.load(root / "graph" / "page__pin.indices.npy", mmap_mode="r")
    if len(indptr) != len(split) + 1:
        raise InputError(
            f"has {len(split)} pages but graph/page__pin.indptr.npy has {len(indptr) - 1}; rerun the train stage",
            file=split_path,
        )
    n_pins = int(np.load(root / "content" / "pin_target.npy", mmap_mode="r").shape[0])
    degree = np.diff(indptr)
    in_split = int(((split == SPLIT_CODES[cfg.split]) & (degree > 0)).sum())
    pages = select_queries(split, cfg.split, cfg.max_queries, cfg.seed, degree)
    q_indptr, pins = query_pins(pages, indptr, indices)
    pool = build_pool(np.unique(pins), n_pins, cfg.pool_size, cfg.seed)
    positives = positives_in_pool(q_indptr, pins, pool)
    return QuerySet(pages=pages, pool=pool, positives=positives, n_pins=n_pins, split_pages=in_split)
