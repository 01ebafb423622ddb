"""Page ids of single URLs, in pure Python: ``hash64`` of the canonical URL as ``linksage.store.fingerprint``.

The store's numba kernels hash whole columns in parallel; a request hashes one URL, and numba's default
threading layer must not be entered from several request threads at once. This is the same function,
word by word: the UTF-8 bytes read as little-endian 64-bit words (the tail zero-padded), each folded in
with the splitmix64 finaliser, the byte length folded in last, read as a signed 64-bit integer.
"""

from __future__ import annotations

import threading

# Held around every numba-parallel call the server makes (walks, fingerprints, column hashes): numba's
# default "workqueue" threading layer aborts the process when entered from two threads at once.
NUMBA_LOCK = threading.Lock()
_MASK = (1 << 64) - 1
_SEED = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def hash64(data: bytes) -> int:
    """Unsigned 64-bit hash of ``data`` (equal to ``fingerprint.hash_strings`` of the same bytes)."""
    h = _SEED
    for at in range(0, len(data), 8):
        h = _mix(h ^ int.from_bytes(data[at : at + 8], "little"))
    return _mix(h ^ len(data))


def page_id(canonical_url: str) -> int:
    """The store's ``page_id`` of a canonical URL (signed, as ``fingerprint.page_ids`` gives it)."""
    h = hash64(canonical_url.encode("utf-8"))
    return h - (1 << 64) if h >= 1 << 63 else h
