"""On-disk vector cache keyed by content hash: an unchanged text or image is never encoded twice.

One folder per encoder (its ``name`` is the namespace), shared by every run directory that points at
it. Appends are shards: ``<id>.vecs.npy`` (n, D) float16, then ``<id>.keys.npy`` (n, 2) uint64; each
file is written under a temporary name and renamed, keys last, so a shard without its keys file is
invisible and a run killed at any moment leaves the cache valid. Readers index every complete shard on
open (keys sorted in memory, 16 bytes per key; vectors memory-mapped), so lookups are batched
``searchsorted`` calls, not per-key Python work. Many shards are merged into one on open; a merged shard
keeps its sort order beside it (``<id>.order.npy``, checked when read), so opening a large cache reads it
instead of sorting millions of keys again.

    cache = VectorCache.open(root, encoder.name)
    keys = text_keys(texts)                      # (n, 2) uint64: blake2b-128 of each text
    found, vecs = cache.get(keys)                # bool (n,), float32 (n, D) (zeros where not found)
    cache.put(keys[~found], encoder.encode([t for t, f in zip(texts, found) if not f]))
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linksage.errors import LinksageError
from linksage.rundir import atomic_write_json

MERGE_AT = 32  # shards; more are merged into one when the cache is opened
_KEYS, _VECS, _ORDER = ".keys.npy", ".vecs.npy", ".order.npy"


def text_keys(texts: Iterable[str]) -> np.ndarray:
    """(n, 2) uint64: the 128-bit blake2b digest of each text's UTF-8 bytes."""
    blob = b"".join(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts)
    return np.frombuffer(blob, dtype="<u8").reshape(-1, 2).copy()


def bytes_keys(items: Iterable[bytes]) -> np.ndarray:
    """(n, 2) uint64: the 128-bit blake2b digest of each byte string (images)."""
    blob = b"".join(hashlib.blake2b(b, digest_size=16).digest() for b in items)
    return np.frombuffer(blob, dtype="<u8").reshape(-1, 2).copy()


@dataclass
class _Segment:
    """A sorted index over some shards: key halves, and where each key's vector lives."""

    hi: np.ndarray  # uint64, sorted (ties by lo)
    lo: np.ndarray  # uint64
    shard: np.ndarray  # int32: position in VectorCache._vecs
    row: np.ndarray  # int64: row in that shard


class VectorCache:
    """Append-only (hash -> float16 vector) store of one encoder; see the module docstring."""

    def __init__(self, folder: Path, namespace: str, dim: int | None) -> None:
        self.folder = folder
        self.namespace = namespace
        self.dim = dim
        self._vecs: list[np.ndarray] = []
        self._segments: list[_Segment] = []

    @classmethod
    def open(cls, root: Path | str, namespace: str, dim: int | None = None) -> VectorCache:
        """The cache of ``namespace`` (an encoder name) under ``root``; created when absent.

        ``dim``, when known, is checked against the stored vectors (and sizes ``get`` before any put).
        """
        folder = Path(root) / _folder_name(namespace)
        folder.mkdir(parents=True, exist_ok=True)
        meta_path = folder / "meta.json"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("namespace") != namespace:
                raise LinksageError(f"{meta_path}: belongs to {meta.get('namespace')!r}, not {namespace!r}")
            if dim is not None and int(meta["dim"]) != dim:
                raise LinksageError(f"{meta_path}: holds {meta['dim']}-dim vectors, expected {dim}")
            dim = int(meta["dim"])
        cache = cls(folder, namespace, dim)
        with cache._lock():
            shards = cache._shards()
            if len(shards) > MERGE_AT:
                shards = [cache._merge(shards)]
        cache._index(shards)
        return cache

    def __len__(self) -> int:
        return sum(len(s.hi) for s in self._segments)

    def get(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found bool (n,), vectors float32 (n, D)) for ``keys`` (n, 2); zero rows where not found."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64).reshape(-1, 2)
        n = len(keys)
        found = np.zeros(n, dtype=bool)
        where_shard = np.full(n, -1, dtype=np.int32)
        where_row = np.zeros(n, dtype=np.int64)
        for seg in self._segments:
            todo = np.flatnonzero(~found)
            if len(todo) == 0 or len(seg.hi) == 0:
                continue
            hi, lo = keys[todo, 0], keys[todo, 1]
            pos = np.minimum(np.searchsorted(seg.hi, hi), len(seg.hi) - 1)
            # a 64-bit tie of hi with a different lo (p ~ n^2 / 2^65) reads as a miss: re-encoded, never wrong
            hit = (seg.hi[pos] == hi) & (seg.lo[pos] == lo)
            idx, pos = todo[hit], pos[hit]
            found[idx] = True
            where_shard[idx] = seg.shard[pos]
            where_row[idx] = seg.row[pos]
        vecs = np.zeros((n, self.dim or 0), dtype=np.float32)
        for shard in np.unique(where_shard[found]):
            idx = np.flatnonzero(where_shard == shard)
            rows = where_row[idx]
            order = np.argsort(rows)  # sequential reads of the memory map
            vecs[idx[order]] = self._vecs[shard][rows[order]]
        return found, vecs

    def put(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        """Append ``vecs`` (n, D) under ``keys`` (n, 2) as one new shard (atomic; safe to run concurrently)."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64).reshape(-1, 2)
        if len(keys) == 0:
            return
        if vecs.ndim != 2 or len(vecs) != len(keys):
            raise LinksageError(f"cache put: {len(keys)} keys but vectors of shape {vecs.shape}")
        if self.dim is None:
            self.dim = int(vecs.shape[1])
        if not (self.folder / "meta.json").exists():
            atomic_write_json(self.folder / "meta.json", {"namespace": self.namespace, "dim": self.dim})
        if vecs.shape[1] != self.dim:
            raise LinksageError(f"cache {self.folder}: vectors have {vecs.shape[1]} dims, the cache holds {self.dim}")
        stem = self.folder / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        _write_npy(Path(f"{stem}{_VECS}"), vecs.astype(np.float16))
        _write_npy(Path(f"{stem}{_KEYS}"), keys)  # last: the shard exists from here on
        self._vecs.append(vecs.astype(np.float16))
        self._segments.append(_sorted_segment(keys, len(self._vecs) - 1))

    # --- internals ---------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.folder / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _shards(self) -> list[Path]:
        """Complete shards (a keys file present), oldest first."""
        return sorted(p for p in self.folder.glob(f"*{_KEYS}") if not p.name.startswith("."))

    def _load_shards(self, shards: Sequence[Path]) -> list[tuple[Path, np.ndarray, np.ndarray]]:
        """(keys path, keys, memory-mapped vectors) of each readable, consistent shard."""
        out = []
        for keys_path in shards:
            try:
                keys = np.load(keys_path)
                vecs = np.load(_vec_path(keys_path), mmap_mode="r")
            except (FileNotFoundError, ValueError, OSError):
                continue  # merged away by another process meanwhile, or damaged: its keys read as misses
            if keys.ndim != 2 or keys.shape[1] != 2 or vecs.ndim != 2 or len(vecs) != len(keys):
                continue
            if self.dim is None:
                self.dim = int(vecs.shape[1])
            if vecs.shape[1] == self.dim:
                out.append((keys_path, keys.astype(np.uint64, copy=False), vecs))
        return out

    def _index(self, shards: Sequence[Path]) -> None:
        loaded = self._load_shards(shards)
        if not loaded:
            return
        first = len(self._vecs)
        self._vecs.extend(vecs for _, _, vecs in loaded)
        rest = []
        for i, (path, keys, _) in enumerate(loaded):
            order = _stored_order(path, keys)
            if order is None:
                rest.append(i)
                continue
            # a merged shard: its own segment, in the order stored beside it (no sort of its keys)
            shard = np.full(len(keys), first + i, np.int32)
            self._segments.append(_Segment(keys[order, 0], keys[order, 1], shard, order))
        if not rest:
            return
        keys = np.concatenate([loaded[i][1] for i in rest])
        shard = np.concatenate([np.full(len(loaded[i][1]), first + i, np.int32) for i in rest])
        row = np.concatenate([np.arange(len(loaded[i][1]), dtype=np.int64) for i in rest])
        self._segments.append(_sorted_segment(keys, shard, row))

    def _merge(self, shards: list[Path]) -> Path:
        """Rewrite ``shards`` as one (first copy of each key kept), streaming; removes them. Under the lock."""
        loaded = self._load_shards(shards)
        keys = np.concatenate([k for _, k, _ in loaded]) if loaded else np.zeros((0, 2), np.uint64)
        order = np.lexsort((keys[:, 1], keys[:, 0]))  # stable: the first copy of a key leads its run
        ranked = keys[order]
        first = np.concatenate([[True], (ranked[1:] != ranked[:-1]).any(axis=1)]) if len(keys) else np.zeros(0, bool)
        keep = np.zeros(len(keys), dtype=bool)
        keep[order[first]] = True
        # the kept keys' sort order, in the merged shard's row numbers (rows keep their relative order)
        merged_row = np.cumsum(keep) - 1
        merged_order = merged_row[order[first]]
        stem = self.folder / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        vec_path = Path(f"{stem}{_VECS}")
        tmp = vec_path.with_name(f".{vec_path.name}.tmp")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(int(keep.sum()), self.dim or 0))
        start = end = 0
        for _, k, vecs in loaded:
            mask = keep[start : start + len(k)]
            out[end : end + int(mask.sum())] = vecs[mask]
            start, end = start + len(k), end + int(mask.sum())
        out.flush()
        del out
        os.replace(tmp, vec_path)
        _write_npy(Path(f"{stem}{_ORDER}"), merged_order)  # before the keys: a shard is never seen without it
        _write_npy(Path(f"{stem}{_KEYS}"), keys[keep])
        for keys_path in shards:
            keys_path.unlink(missing_ok=True)  # keys first: the shard disappears before its vectors do
            _vec_path(keys_path).unlink(missing_ok=True)
            _order_path(keys_path).unlink(missing_ok=True)
        for suffix in (_VECS, _ORDER):  # vectors (or a merge's order) of a write that died before its keys
            for orphan in self.folder.glob(f"*{suffix}"):
                if not Path(str(orphan)[: -len(suffix)] + _KEYS).exists() and _older_than(orphan, 3600):
                    orphan.unlink(missing_ok=True)
        return Path(f"{stem}{_KEYS}")


def default_cache_root(run_dir: Path) -> Path:
    """``<run dir's parent>/.cache/linksage``: shared by the run directories beside each other."""
    return Path(run_dir).resolve().parent / ".cache" / "linksage"


def _sorted_segment(keys: np.ndarray, shard: int | np.ndarray, row: np.ndarray | None = None) -> _Segment:
    order = np.lexsort((keys[:, 1], keys[:, 0]))
    shards = np.full(len(keys), shard, np.int32) if isinstance(shard, int) else shard
    rows = np.arange(len(keys), dtype=np.int64) if row is None else row
    return _Segment(
        hi=np.ascontiguousarray(keys[order, 0]),
        lo=np.ascontiguousarray(keys[order, 1]),
        shard=shards[order],
        row=rows[order],
    )


def _vec_path(keys_path: Path) -> Path:
    return Path(str(keys_path)[: -len(_KEYS)] + _VECS)


def _order_path(keys_path: Path) -> Path:
    return Path(str(keys_path)[: -len(_KEYS)] + _ORDER)


def _stored_order(keys_path: Path, keys: np.ndarray) -> np.ndarray | None:
    """The permutation that sorts ``keys`` (by hi, then lo), read from beside the shard; None if absent or wrong.

    Checked, not trusted: a permutation that does not sort the keys (a damaged or foreign file) is ignored
    and the keys are sorted again, so a bad file costs time, never a wrong lookup.
    """
    try:
        order = np.load(_order_path(keys_path))
    except (FileNotFoundError, ValueError, OSError):
        return None
    if order.shape != (len(keys),) or order.dtype != np.int64:
        return None
    if len(order) and (order.min() < 0 or order.max() >= len(keys)):
        return None
    hi, lo = keys[order, 0], keys[order, 1]
    ties = hi[1:] == hi[:-1]
    if (hi[1:] < hi[:-1]).any() or (ties & (lo[1:] < lo[:-1])).any() or (ties & (lo[1:] == lo[:-1])).any():
        return None  # not sorted, or not a permutation of distinct keys (a merged shard holds each key once)
    return order


def _folder_name(namespace: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", namespace)[:80]
    return f"{slug}-{hashlib.blake2b(namespace.encode(), digest_size=4).hexdigest()}"


def _write_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False
