"""Node types, edge types and the file names of their CSR arrays (``graph/{src}__{dst}.indptr.npy``)."""

from __future__ import annotations

NODE_TYPES: tuple[str, ...] = ("pin", "page", "board", "domain", "cluster")

# Undirected edge types; each is stored as two CSRs, one per direction.
UNDIRECTED: tuple[tuple[str, str], ...] = (("pin", "page"), ("pin", "board"), ("page", "domain"), ("pin", "cluster"))

EDGE_TYPES: tuple[tuple[str, str], ...] = tuple(e for a, b in UNDIRECTED for e in ((a, b), (b, a)))


def csr_stem(src: str, dst: str) -> str:
    """``pin__page``: the stem of the CSR files of edges from ``src`` nodes to ``dst`` nodes."""
    return f"{src}__{dst}"
