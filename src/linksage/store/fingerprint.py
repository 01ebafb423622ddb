"""Stable 64-bit hashes: page ids from canonical URLs, and fingerprints of what the model reads.

One hash function everywhere (``hash64``): the row's bytes read as little-endian 64-bit words (the
tail zero-padded), each folded into the state with the splitmix64 finaliser, the byte length folded
in last. It depends only on the bytes, so a fingerprint is the same on every machine and run.
The kernels are numba-parallel over rows: fingerprinting must not slow inference down.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa

_SEED = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S8 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(8)
_CHUNK_BYTES = 1 << 26
_LANES = 4  # rows hashed side by side by one thread (see _hash_words)
ABSENT = np.uint64(0xA5A5A5A5A5A5A5A5)  # stands for a missing neighbour (-1) in neighbour fingerprints


@numba.njit(inline="always")
def _mix(z: np.uint64) -> np.uint64:  # splitmix64 finaliser: a bijection with full avalanche
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(parallel=True, cache=True, nogil=True)
def _hash_ragged(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    n = len(offsets) - 1
    out = np.empty(n, dtype=np.uint64)
    for i in numba.prange(n):
        lo, hi = offsets[i], offsets[i + 1]
        h = _SEED
        j = lo
        while j < hi:
            w = np.uint64(0)
            for b in range(min(8, hi - j)):
                w |= np.uint64(data[j + b]) << (_S8 * np.uint64(b))
            h = _mix(h ^ w)
            j += 8
        out[i] = _mix(h ^ np.uint64(hi - lo))
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _hash_words(words: np.ndarray, nbytes: int) -> np.ndarray:  # pragma: no cover - numba
    # Each row is a chain of dependent multiplies, so a thread hashes LANES rows side by side: their chains
    # are independent and the core overlaps them (about 3x a row at a time); the result is unchanged.
    n, m = words.shape
    out = np.empty(n, dtype=np.uint64)
    tail = np.uint64(nbytes)
    for g in numba.prange((n + _LANES - 1) // _LANES):
        i = g * _LANES
        if i + _LANES <= n:
            h0 = h1 = h2 = h3 = _SEED
            for j in range(m):
                h0 = _mix(h0 ^ words[i, j])
                h1 = _mix(h1 ^ words[i + 1, j])
                h2 = _mix(h2 ^ words[i + 2, j])
                h3 = _mix(h3 ^ words[i + 3, j])
            out[i], out[i + 1] = _mix(h0 ^ tail), _mix(h1 ^ tail)
            out[i + 2], out[i + 3] = _mix(h2 ^ tail), _mix(h3 ^ tail)
        else:
            for r in range(i, n):
                h = _SEED
                for j in range(m):
                    h = _mix(h ^ words[r, j])
                out[r] = _mix(h ^ tail)
    return out


def hash_rows(rows: np.ndarray, chunk: int = 0) -> np.ndarray:
    """(n,) uint64: ``hash64`` of each row's bytes; ``rows`` is (n, ...) of any fixed-size dtype.

    ``chunk`` rows are copied and hashed at a time (0: about 64 MB of rows; each kernel call has a fixed cost).
    """
    n = len(rows)
    out = np.empty(n, dtype=np.uint64)
    width = int(np.prod(rows.shape[1:], dtype=np.int64)) * rows.dtype.itemsize
    pad = -width % 8
    if width == 0:  # e.g. image tables of a run without images: every row is the empty byte string
        return _hash_words(np.zeros((n, 0), np.uint64), 0)
    chunk = chunk or max(1 << 12, _CHUNK_BYTES // (width + pad))
    for lo in range(0, n, chunk):  # chunked: rows may be a memory map far larger than RAM
        block = np.ascontiguousarray(rows[lo : lo + chunk]).view(np.uint8).reshape(-1, width)
        if pad:
            block = np.concatenate([block, np.zeros((len(block), pad), np.uint8)], axis=1)
        out[lo : lo + len(block)] = _hash_words(block.view(np.uint64).reshape(len(block), -1), width)
    return out


def hash_strings(values: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
    """(n,) uint64: ``hash64`` of each string's UTF-8 bytes (no nulls allowed)."""
    arr = pa.array(values, type=pa.large_string()) if isinstance(values, list) else values
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise ValueError(f"hash_strings: {arr.null_count} null strings")
    arr = arr.cast(pa.large_string())
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return _hash_ragged(data, np.ascontiguousarray(offsets))


def page_ids(urls: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
    """(n,) int64 page ids: ``hash64`` of the canonical URL, as a signed integer (Lance keys)."""
    return hash_strings(urls).view(np.int64)


def combine(*columns: np.ndarray) -> np.ndarray:
    """(n,) uint64: ``hash64`` of each row of the given (n,) or (n, k) uint64 columns, side by side."""
    parts = [np.asarray(c, dtype=np.uint64).reshape(len(c), -1) for c in columns]
    return hash_rows(np.concatenate(parts, axis=1))


def neighbour_fingerprints(
    content_fp: np.ndarray, neighbours: np.ndarray, log_visits: np.ndarray, degree_bucket: np.ndarray
) -> np.ndarray:
    """(n,) uint64: hash of a page's graph-side inputs, in order: its degree bucket, then for each
    neighbour slot the neighbour's content fingerprint (``ABSENT`` for -1) and its visit feature's bits.

    Neighbours are named by their content fingerprint, not by row number, so a re-indexed but otherwise
    identical neighbourhood keeps its fingerprint, and a neighbour whose content changed changes it.
    """
    n = len(neighbours)
    out = np.empty(n, dtype=np.uint64)
    chunk = 1 << 18
    for lo in range(0, n, chunk):
        nbr = np.asarray(neighbours[lo : lo + chunk], dtype=np.int64)  # (c, K)
        fps = np.where(nbr >= 0, content_fp[np.maximum(nbr, 0)], ABSENT)  # (c, K)
        visits = np.ascontiguousarray(log_visits[lo : lo + chunk], dtype=np.float32).view(np.uint32)
        deg = np.asarray(degree_bucket[lo : lo + chunk], dtype=np.uint64)
        out[lo : lo + len(nbr)] = combine(deg, fps, visits.astype(np.uint64))
    return out
