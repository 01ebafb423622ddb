"""One version of the embedding store held in memory: the look-up side of every request.

Loaded once per store version, in one scan: a hash map ``page_id -> row`` (a page id is the hash of
the canonical URL, so a request never scans Lance), the embeddings as one (n, dim) float32 array, the
URLs, model versions and days, and the ANN index of the pages (``linksage.search.indices``, built and
saved beside the store when missing). Immutable once built: requests read a snapshot while the
reloader builds the next one.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linksage import log
from linksage.config.store import IndexConfig
from linksage.errors import LinksageError
from linksage.search.ann import AnnIndex
from linksage.search.indices import pages_index
from linksage.serve.ids import page_id
from linksage.store.lance_store import EmbeddingStore, embedding_matrix

_EPOCH = datetime.date(1970, 1, 1)


@dataclass(frozen=True)
class StoreSnapshot:
    path: Path
    version: int
    dim: int
    page_ids: np.ndarray  # (n,) int64
    rows: dict[int, int]  # page_id -> row
    urls: pa.Array  # (n,) canonical URLs
    embeddings: np.ndarray  # (n, dim) float32, unit rows as stored
    model_codes: np.ndarray  # (n,) int32 into model_versions
    model_versions: tuple[str, ...]
    days: np.ndarray  # (n,) int32 days since 1970-01-01
    pages_index: AnnIndex
    load_s: float

    def __len__(self) -> int:
        return len(self.page_ids)

    @classmethod
    def load(cls, path: Path, version: int, index_cfg: IndexConfig) -> StoreSnapshot:
        """Version ``version`` of the store at ``path`` (its pages index is built when absent)."""
        t0 = time.perf_counter()
        store = EmbeddingStore.open(path, version)  # pinned: later commits do not leak into this scan
        n, dim = store.count(), store.dim
        ids = np.empty(n, np.int64)
        emb = np.empty((n, dim), np.float32)
        days = np.empty(n, np.int32)
        urls: list[pa.Array] = []
        models: list[pa.Array] = []
        at = 0
        for batch in store.scan(["page_id", "url", "embedding", "model_version", "day"]):
            m = batch.num_rows
            if at + m > n:
                raise LinksageError(f"{path}: version {version} counted {n} rows but scans more")
            ids[at : at + m] = batch.column("page_id").to_numpy()
            emb[at : at + m] = embedding_matrix(batch.column("embedding"), dim)
            days[at : at + m] = batch.column("day").cast(pa.int32()).to_numpy()
            urls.append(batch.column("url"))
            models.append(batch.column("model_version"))
            at += m
        if at != n:
            raise LinksageError(f"{path}: version {version} counted {n} rows but scanned {at}")
        url_array = pa.chunked_array(urls, type=pa.string()).combine_chunks()
        model_dict = pc.dictionary_encode(pa.chunked_array(models, type=pa.string())).combine_chunks()
        index = pages_index(store, index_cfg)
        snapshot = cls(
            path=path,
            version=version,
            dim=dim,
            page_ids=ids,
            rows=dict(zip(ids.tolist(), range(n), strict=True)),
            urls=url_array,
            embeddings=emb,
            model_codes=model_dict.indices.to_numpy(zero_copy_only=False).astype(np.int32),
            model_versions=tuple(model_dict.dictionary.to_pylist()),
            days=days,
            pages_index=index,
            load_s=time.perf_counter() - t0,
        )
        log.event("[serve] store loaded", version=version, pages=n, dim=dim, seconds=round(snapshot.load_s, 2))
        return snapshot

    def find(self, canonical: str) -> int | None:
        """Row of the page at a canonical URL, or None (the stored URL is compared: no hash collision slips by)."""
        row = self.rows.get(page_id(canonical))
        if row is None or self.urls[row].as_py() != canonical:
            return None
        return row

    def vector(self, row: int, dim: int) -> np.ndarray:
        """(dim,) float32: the stored embedding's ``dim``-prefix, re-normalised (the full size as stored)."""
        v = self.embeddings[row]
        if dim >= self.dim:
            return v
        prefix = v[:dim]
        norm = np.sqrt(prefix.dot(prefix))  # what np.linalg.norm computes for a 1-d array, without its checks
        return prefix / norm if norm > 0 else prefix

    def model_version(self, row: int) -> str:
        return self.model_versions[int(self.model_codes[row])]

    def day(self, row: int) -> str:
        return _iso_day(int(self.days[row]))

    def url(self, row: int) -> str:
        return str(self.urls[row].as_py())


@lru_cache(maxsize=4096)
def _iso_day(days: int) -> str:
    """ISO date of a day number (a store holds a few distinct days: the look-up path formats each once)."""
    return (_EPOCH + datetime.timedelta(days=days)).isoformat()


def newest_version(path: Path) -> int | None:
    """The store's newest committed version, or None when there is no store at ``path`` yet."""
    if not EmbeddingStore.exists(path):
        return None
    return EmbeddingStore.open(path).version
