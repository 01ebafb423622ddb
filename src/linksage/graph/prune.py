"""Graph pruning: hub caps (uniform edge samples) and the minimum-degree drop."""

from __future__ import annotations

import numpy as np


def cap_degree(nodes: np.ndarray, cap: int, rng: np.random.Generator, keys: np.ndarray | None = None) -> np.ndarray:
    """Keep mask over edges: each node of ``nodes`` keeps a uniform sample of at most ``cap`` of its edges.

    Every edge gets a random key (from ``rng``, or the given per-edge ``keys``); a node keeps its ``cap``
    edges with the smallest keys, which is a uniform sample without replacement.
    """
    n = len(nodes)
    keep = np.ones(n, bool)
    if n == 0 or cap <= 0:
        return keep & (cap > 0)
    counts = np.bincount(nodes)
    if counts.max() <= cap:
        return keep
    hub_edges = np.flatnonzero(counts[nodes] > cap)  # only hubs' edges need sorting
    key = rng.random(len(hub_edges)) if keys is None else keys[hub_edges]
    order = np.lexsort((key, nodes[hub_edges]))
    sorted_nodes = nodes[hub_edges][order]
    starts = np.searchsorted(sorted_nodes, sorted_nodes, side="left")
    rank = np.arange(len(order)) - starts
    keep[hub_edges[order[rank >= cap]]] = False
    return keep


def cap_hubs(a: np.ndarray, b: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Keep mask over undirected edges ``(a[i], b[i])``: caps the ``a`` side, then the ``b`` side.

    An edge's key is a hash of its two ends (salted by one draw of ``rng``), not a draw in edge order:
    so adding edges elsewhere, or to a hub, never resamples a hub's other edges (a hub keeps the same
    ``cap`` smallest keys, give or take the newcomers), which keeps incremental days local.
    """
    salt = np.uint64(int(rng.integers(0, 2**63)))
    keys = _edge_keys(a, b, salt)
    keep = cap_degree(a, cap, rng, keys)
    kept = np.flatnonzero(keep)
    keep[kept[~cap_degree(b[kept], cap, rng, keys[kept] ^ np.uint64(0x5BD1E9955BD1E995))]] = False
    return keep


def _edge_keys(a: np.ndarray, b: np.ndarray, salt: np.uint64) -> np.ndarray:
    """A pseudo-random uint64 per edge from its two ends (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        x = (a.astype(np.uint64) << np.uint64(32)) ^ b.astype(np.uint64) ^ salt
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
    return x ^ (x >> np.uint64(31))


def low_degree_nodes(degree: np.ndarray, min_degree: int) -> np.ndarray:
    """Nodes to drop: those with at least one edge but fewer than ``min_degree`` (one pass, not iterated)."""
    return (degree > 0) & (degree < min_degree)
