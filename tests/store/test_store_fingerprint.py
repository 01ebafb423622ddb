"""Fingerprint kernels against a slow pure-Python hash64, and the invariants the embed stage relies on."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from linksage.store.fingerprint import (
    ABSENT,
    combine,
    hash_rows,
    hash_strings,
    neighbour_fingerprints,
    page_ids,
)

MASK = (1 << 64) - 1


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def hash64_reference(data: bytes) -> int:
    """The documented hash: little-endian 64-bit words (tail zero-padded) folded by splitmix64, then the length."""
    h = 0x9E3779B97F4A7C15
    for lo in range(0, len(data), 8):
        h = _mix(h ^ int.from_bytes(data[lo : lo + 8].ljust(8, b"\0"), "little"))
    return _mix(h ^ len(data))


@pytest.mark.parametrize("shape,dtype", [((50, 12), np.float16), ((40, 3), np.uint8), ((30, 2, 4), np.float32)])
def test_hash_rows_matches_reference(shape: tuple[int, ...], dtype: type) -> None:
    rows = (np.random.default_rng(0).random(shape) * 100).astype(dtype)
    got = hash_rows(rows, chunk=7)  # chunks smaller than the array exercise the chunk loop
    want = [hash64_reference(np.ascontiguousarray(r).tobytes()) for r in rows]
    assert got.tolist() == want


def test_hash_rows_of_empty_rows_is_the_empty_hash() -> None:
    got = hash_rows(np.zeros((4, 0), np.float16))
    assert got.tolist() == [hash64_reference(b"")] * 4


def test_hash_strings_matches_reference_and_sliced_arrays() -> None:
    words = ["", "a", "https://example.com/ünïcode/path?q=1", "x" * 17]
    assert hash_strings(words).tolist() == [hash64_reference(w.encode()) for w in words]
    arr = pa.array(["skip", *words])
    assert hash_strings(arr.slice(1)).tolist() == hash_strings(words).tolist()
    chunked = pa.chunked_array([pa.array(words[:2]), pa.array(words[2:])])
    assert hash_strings(chunked).tolist() == hash_strings(words).tolist()


def test_hash_strings_rejects_nulls() -> None:
    with pytest.raises(ValueError, match="null"):
        hash_strings(pa.array(["a", None]))


def test_page_ids_are_signed_stable_and_distinct() -> None:
    urls = [f"https://site.example/{i}" for i in range(20_000)]
    ids = page_ids(urls)
    assert ids.dtype == np.int64
    assert len(np.unique(ids)) == len(urls)
    assert np.array_equal(ids, page_ids(pa.array(urls)))
    assert (ids < 0).any()  # full 64-bit range: -1 is no safe sentinel for page ids


def test_combine_is_order_sensitive() -> None:
    a, b = np.arange(5, dtype=np.uint64), np.arange(5, 10, dtype=np.uint64)
    assert not np.array_equal(combine(a, b), combine(b, a))
    assert np.array_equal(combine(a, b), hash_rows(np.stack([a, b], axis=1)))


def _neighbour_reference(cfp: np.ndarray, nbr: np.ndarray, visits: np.ndarray, deg: np.ndarray) -> list[int]:
    out = []
    for p in range(len(nbr)):
        words = [int(deg[p])]
        words += [int(cfp[j]) if j >= 0 else int(ABSENT) for j in nbr[p]]
        words += [int(v) for v in visits[p].astype(np.float32).view(np.uint32)]
        out.append(hash64_reference(b"".join(w.to_bytes(8, "little") for w in words)))
    return out


def _graph(n: int = 60, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cfp = rng.integers(0, 2**63, n).astype(np.uint64)
    nbr = rng.integers(-1, n, (n, k)).astype(np.int32)
    visits = np.log1p(rng.integers(0, 30, (n, k))).astype(np.float32)
    deg = rng.integers(0, 10, n).astype(np.uint8)
    return cfp, nbr, visits, deg


def test_neighbour_fingerprints_match_reference() -> None:
    cfp, nbr, visits, deg = _graph()
    assert neighbour_fingerprints(cfp, nbr, visits, deg).tolist() == _neighbour_reference(cfp, nbr, visits, deg)


def test_neighbour_fingerprints_survive_reindexing() -> None:
    cfp, nbr, visits, deg = _graph()
    perm = np.random.default_rng(1).permutation(len(cfp))  # new page_idx of old page i is inv[i]
    inv = np.argsort(perm)
    nbr2 = np.where(nbr[perm] >= 0, inv[np.maximum(nbr[perm], 0)], -1)
    got = neighbour_fingerprints(cfp[perm], nbr2, visits[perm], deg[perm])
    assert np.array_equal(got, neighbour_fingerprints(cfp, nbr, visits, deg)[perm])


def test_neighbour_fingerprints_change_with_neighbour_content_visits_and_degree() -> None:
    cfp, nbr, visits, deg = _graph()
    base = neighbour_fingerprints(cfp, nbr, visits, deg)
    target = int(nbr[0][nbr[0] >= 0][0])
    cfp2 = cfp.copy()
    cfp2[target] ^= np.uint64(1)
    changed = neighbour_fingerprints(cfp2, nbr, visits, deg) != base
    assert np.array_equal(np.flatnonzero(changed), np.flatnonzero((nbr == target).any(axis=1)))
    visits2 = visits.copy()
    visits2[3, 0] += 0.5
    deg2 = deg.copy()
    deg2[5] += 1
    assert np.flatnonzero(neighbour_fingerprints(cfp, nbr, visits2, deg) != base).tolist() == [3]
    assert np.flatnonzero(neighbour_fingerprints(cfp, nbr, visits, deg2) != base).tolist() == [5]
