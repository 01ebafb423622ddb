"""The versioned embedding store: one Lance table of page embeddings, every write a new version.

Each upsert is a single Lance commit (``merge_insert`` on ``page_id``, or an append into an empty
store): the data files are written first and the version becomes visible only when its manifest is
committed, so a writer killed at any moment leaves the previous version as the newest. Nothing is
ever deleted: any earlier version can be read or restored (a restore is itself a new version).

After a commit, the tag ``day-YYYY-MM-DD`` is pointed at the new version (the newest version written
for that day). The tag is informational: a writer killed between the commit and the tag leaves the
data correct and the tag is set by the next upsert of that day.

Layout::

    <store>/pages.lance/   the Lance dataset (data/, _versions/, _refs/tags/ ...)
    <store>/ann/           ANN indices built from it (linksage.search)
"""

from __future__ import annotations

import datetime
import itertools
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from linksage.errors import LinksageError

TABLE = "pages"
DAY_TAG = "day-"
COLUMNS = ("page_id", "url", "embedding", "model_version", "content_fingerprint", "neighbour_fingerprint", "day")
_EPOCH = datetime.date(1970, 1, 1)
KEY_COLUMNS = ("page_id", "model_version", "content_fingerprint", "neighbour_fingerprint")


def page_schema(dim: int) -> pa.Schema:
    """Arrow schema of the store's table; ``dim`` is the model's largest Matryoshka dim."""
    return pa.schema(
        [
            pa.field("page_id", pa.int64(), nullable=False),  # hash64 of the canonical URL
            pa.field("url", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),  # unit rows
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("content_fingerprint", pa.uint64(), nullable=False),
            pa.field("neighbour_fingerprint", pa.uint64(), nullable=False),
            pa.field("day", pa.date32(), nullable=False),  # the day this row was (re)embedded
        ]
    )


def parse_day(day: str | datetime.date) -> datetime.date:
    if isinstance(day, datetime.date):
        return day
    try:
        return datetime.date.fromisoformat(day)
    except ValueError as exc:
        raise LinksageError(f"day must be an ISO date like 2013-04-01, got {day!r}") from exc


def make_batch(
    page_id: np.ndarray,
    url: pa.Array | list[str],
    embedding: np.ndarray,
    model_version: str,
    content_fingerprint: np.ndarray,
    neighbour_fingerprint: np.ndarray,
    day: str | datetime.date,
) -> pa.RecordBatch:
    """One record batch of store rows from numpy columns; ``embedding`` is (n, dim) float32."""
    n, dim = embedding.shape
    values = pa.array(np.ascontiguousarray(embedding, dtype=np.float32).reshape(-1))
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.asarray(page_id, dtype=np.int64)),
            pa.array(url, type=pa.string()) if isinstance(url, list) else url.cast(pa.string()),
            pa.FixedSizeListArray.from_arrays(values, dim),
            pa.repeat(pa.scalar(model_version, pa.string()), n),  # constant columns without Python objects
            pa.array(np.asarray(content_fingerprint, dtype=np.uint64)),
            pa.array(np.asarray(neighbour_fingerprint, dtype=np.uint64)),
            pa.array(np.full(n, (parse_day(day) - _EPOCH).days, dtype=np.int32)).view(pa.date32()),
        ],
        schema=page_schema(dim),
    )


@dataclass(frozen=True)
class VersionInfo:
    version: int
    timestamp: str  # ISO, UTC as Lance records it
    rows: int
    tags: tuple[str, ...]

    @property
    def days(self) -> tuple[str, ...]:
        return tuple(t[len(DAY_TAG) :] for t in self.tags if t.startswith(DAY_TAG))


@dataclass(frozen=True)
class UpsertResult:
    version: int  # the newest version after the call (unchanged when nothing was written)
    committed: bool  # False: the input was empty, no version was made
    rows: int  # rows in the input
    inserted: int
    updated: int


class EmbeddingStore:
    """A Lance table of page embeddings at ``path`` (see the module docstring for the guarantees)."""

    def __init__(self, path: Path | str, table: Any) -> None:
        self.path = Path(path)
        self._table = table

    # -- opening -----------------------------------------------------------------------------------

    @staticmethod
    def exists(path: Path | str) -> bool:
        return _has_committed_version(Path(path) / f"{TABLE}.lance")

    @classmethod
    def open(cls, path: Path | str, version: int | None = None) -> EmbeddingStore:
        """The store at ``path``, at its newest version or a given one (read-only use)."""
        path = Path(path)
        if not cls.exists(path):
            raise LinksageError(f"no embedding store at {path}; run `linksage run embed` first")
        db = _connect(path)
        try:
            table = db.open_table(TABLE, version=version) if version is not None else db.open_table(TABLE)
        except Exception as exc:  # lance raises plain ValueError/RuntimeError for unknown versions
            raise LinksageError(f"{path}: cannot open version {version}: {exc}") from exc
        return cls(path, table)

    @classmethod
    def open_or_create(cls, path: Path | str, dim: int) -> EmbeddingStore:
        """The store at ``path``, created empty (version 1) when absent; its dim must be ``dim``."""
        path = Path(path)
        if not cls.exists(path):
            # a create killed before its first commit leaves files but no version: nothing to keep
            shutil.rmtree(path / f"{TABLE}.lance", ignore_errors=True)
            path.mkdir(parents=True, exist_ok=True)
            _connect(path).create_table(TABLE, schema=page_schema(dim))
        store = cls.open(path)
        if store.dim != dim:
            raise LinksageError(
                f"the store at {path} holds {store.dim}-dim embeddings, the model gives {dim}; "
                f"use another store.path for this model"
            )
        return store

    # -- reading -----------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return int(self._table.version)

    @property
    def dim(self) -> int:
        return int(self._table.schema.field("embedding").type.list_size)

    def count(self) -> int:
        return int(self._table.count_rows())

    def at(self, version: int | None) -> EmbeddingStore:
        """The same store at ``version`` (None: the newest)."""
        return EmbeddingStore.open(self.path, version)

    def read(self, columns: Iterable[str] | None = None, where: str | None = None) -> pa.Table:
        """Rows of this version (all columns by default), optionally filtered by a SQL predicate."""
        query = self._table.search().select(list(columns or COLUMNS))
        if where:
            query = query.where(where)
        result: pa.Table = query.limit(None).to_arrow()
        return result

    def scan(self, columns: Iterable[str] | None = None, batch_size: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Stream this version's rows in record batches (bounded memory)."""
        reader = self._table.search().select(list(columns or COLUMNS)).limit(None).to_batches(batch_size)
        yield from reader

    def keys(self) -> pa.Table:
        """page_id, model_version and fingerprints of every row: what decides whether a page is re-embedded."""
        return self.read(KEY_COLUMNS)

    def get(self, page_ids: Iterable[int]) -> pa.Table:
        """Rows of the given page ids (those present)."""
        ids = [int(i) for i in page_ids]
        if not ids:
            return page_schema(self.dim).empty_table()
        return self.read(where=f"page_id IN ({', '.join(map(str, ids))})")

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """All (page_id (n,) int64, embedding (n, dim) float32) of this version."""
        n = self.count()
        ids, out = np.empty(n, np.int64), np.empty((n, self.dim), np.float32)
        at = 0
        for batch in self.scan(["page_id", "embedding"]):  # filled in place: no second copy of the table
            m = batch.num_rows
            ids[at : at + m] = batch.column("page_id").to_numpy()
            out[at : at + m] = embedding_matrix(batch.column("embedding"), self.dim)
            at += m
        if at != n:
            raise LinksageError(f"{self.path}: version {self.version} counted {n} rows but scanned {at}")
        return ids, out

    def history(self) -> list[VersionInfo]:
        """Every version, oldest first, with its row count and tags."""
        tags: dict[int, list[str]] = {}
        for name, ref in self._table.tags.list().items():
            tags.setdefault(int(ref["version"]), []).append(name)
        out = []
        for v in self._table.list_versions():
            stamp = v["timestamp"]
            out.append(
                VersionInfo(
                    version=int(v["version"]),
                    timestamp=stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp),
                    rows=int(v.get("metadata", {}).get("total_rows", -1)),
                    tags=tuple(sorted(tags.get(int(v["version"]), []))),
                )
            )
        return sorted(out, key=lambda info: info.version)

    # -- writing -----------------------------------------------------------------------------------

    def upsert(
        self, data: pa.Table | Iterable[pa.RecordBatch], day: str | datetime.date, write_parallelism: int = 0
    ) -> UpsertResult:
        """Insert or replace rows by ``page_id`` as one new version; rows not in ``data`` are untouched.

        ``data`` may be a generator of record batches (streamed into Lance; a merge into a non-empty store
        holds about the upserted rows while it joins). Page ids must be unique within ``data``; an error
        raised while streaming aborts the write before its commit. ``day`` names the tag set afterwards.
        ``write_parallelism`` > 0 sets the parallel file writers of an append into an empty store (0: Lance's
        default); it does not change what is written, nor the one commit.
        """
        tag_day = parse_day(day)  # checked before anything is written
        latest = self.at(None)
        schema = page_schema(latest.dim)
        existing = np.sort(latest.read(["page_id"])["page_id"].to_numpy())
        stats = _StreamStats(existing)
        stream = stats.checked(data.to_batches() if isinstance(data, pa.Table) else data, schema)
        first = next(stream, None)
        if first is None:  # an empty upsert makes no version
            self._table = latest._table
            return UpsertResult(version=latest.version, committed=False, rows=0, inserted=0, updated=0)
        reader = pa.RecordBatchReader.from_batches(schema, itertools.chain([first], stream))
        try:
            if len(existing) == 0:
                latest._table.add(reader, write_parallelism=write_parallelism or None)  # first fill: no join
            else:
                merge = latest._table.merge_insert("page_id").when_matched_update_all().when_not_matched_insert_all()
                merge.execute(reader)
        except Exception:
            if stats.error is not None:  # our own error, raised inside the stream: Lance wraps it
                raise stats.error from None
            raise
        _pause_point("after_commit")
        version = int(latest._table.version)
        self._set_day_tag(latest._table, tag_day, version)
        self._table = latest._table
        return UpsertResult(
            version=version,
            committed=True,
            rows=stats.rows,
            inserted=stats.rows - stats.updated,
            updated=stats.updated,
        )

    @staticmethod
    def _set_day_tag(table: Any, day: datetime.date, version: int) -> None:
        name = f"{DAY_TAG}{day.isoformat()}"
        if name in table.tags.list():
            table.tags.update(name, version)
        else:
            table.tags.create(name, version)

    def tag_day(self, day: str | datetime.date) -> None:
        """Point ``day-YYYY-MM-DD`` at the newest version (repairs a tag lost to a crash after a commit)."""
        latest = self.at(None)
        self._set_day_tag(latest._table, parse_day(day), latest.version)

    def restore(self, version: int) -> int:
        """Make ``version``'s content the newest version (a new version; nothing is lost). Returns it."""
        known = {v.version for v in self.history()}
        if version not in known:
            raise LinksageError(f"{self.path}: no version {version}; versions are {sorted(known)}")
        table = _connect(self.path).open_table(TABLE)
        table.restore(version)
        self._table = _connect(self.path).open_table(TABLE)
        return self.version


def embedding_matrix(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """(n, dim) float32 view of a fixed-size-list embedding column."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(arr) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    values = arr.values.to_numpy(zero_copy_only=False)[arr.offset * dim : (arr.offset + len(arr)) * dim]
    return values.reshape(-1, dim)


class _StreamStats:
    """Validates streamed batches and counts inserted/updated rows against the existing page ids."""

    def __init__(self, existing_sorted: np.ndarray) -> None:
        self.existing = existing_sorted
        self.seen: list[np.ndarray] = []
        self.rows = self.updated = 0
        self.error: Exception | None = None

    def checked(self, batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._checked(batches, schema)
        except Exception as exc:
            self.error = exc
            raise

    def _checked(self, batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.schema != schema:
                try:
                    batch = pa.RecordBatch.from_arrays(
                        [batch.column(name).cast(schema.field(name).type) for name in schema.names], schema=schema
                    )
                except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                    raise LinksageError(f"upsert: batch does not fit the store's schema {schema}: {exc}") from exc
            ids = batch.column("page_id").to_numpy()
            values = batch.column("embedding").values.to_numpy(zero_copy_only=False)
            if not np.isfinite(values).all():
                bad = ids[~np.isfinite(values.reshape(len(ids), -1)).all(axis=1)][0]
                raise LinksageError(f"upsert: the embedding of page_id {int(bad)} is not finite")
            if len(self.existing):
                pos = np.minimum(np.searchsorted(self.existing, ids), len(self.existing) - 1)
                self.updated += int(np.count_nonzero(self.existing[pos] == ids))
            self.seen.append(ids)
            self.rows += len(ids)
            yield batch
            _pause_point("mid_stream")
        ids = np.sort(np.concatenate(self.seen)) if self.seen else np.zeros(0, np.int64)
        dup = np.flatnonzero(ids[1:] == ids[:-1])
        if len(dup):
            raise LinksageError(f"upsert: page_id {int(ids[dup[0]])} appears more than once in one upsert")
        _pause_point("stream_end")


def _pause_point(label: str) -> None:
    """Crash tests: sleep here when LINKSAGE_STORE_PAUSE names this point, so a test can SIGKILL us."""
    if os.environ.get("LINKSAGE_STORE_PAUSE") == label:
        print(f"paused at {label}", flush=True)
        time.sleep(float(os.environ.get("LINKSAGE_STORE_PAUSE_S", "60")))


def _connect(path: Path) -> Any:
    import lancedb  # lazy: keeps `import linksage` cheap

    return lancedb.connect(str(path))


def _has_committed_version(dataset: Path) -> bool:
    versions = dataset / "_versions"
    return versions.is_dir() and any(p.suffix == ".manifest" for p in versions.iterdir())
