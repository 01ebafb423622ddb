"""Graph pruning: hub caps (uniform edge samples) and the minimum-degree drop."""

from __future__ import annotations

import numpy as np


def cap_degree(nodes: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Keep mask over edges: each node of ``nodes`` keeps a uniform sample of at most ``cap`` of its edges.

    Every edge gets a random key; a node keeps its ``cap`` edges with the smallest keys, which is a
    uniform sample without replacement.
    """
    n = len(nodes)
    keep = np.ones(n, bool)
    if n == 0 or cap <= 0:
        return keep & (cap > 0)
    counts = np.bincount(nodes)
    if counts.max() <= cap:
        return keep
    hub_edges = np.flatnonzero(counts[nodes] > cap)  # only hubs' edges need sorting
    key = rng.random(len(hub_edges))
    order = np.lexsort((key, nodes[hub_edges]))
    sorted_nodes = nodes[hub_edges][order]
    starts = np.searchsorted(sorted_nodes, sorted_nodes, side="left")
    rank = np.arange(len(order)) - starts
    keep[hub_edges[order[rank >= cap]]] = False
    return keep


def cap_hubs(a: np.ndarray, b: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Keep mask over undirected edges ``(a[i], b[i])``: caps the ``a`` side, then the ``b`` side."""
    keep = cap_degree(a, cap, rng)
    kept = np.flatnonzero(keep)
    keep[kept[~cap_degree(b[kept], cap, rng)]] = False
    return keep


def low_degree_nodes(degree: np.ndarray, min_degree: int) -> np.ndarray:
    """Nodes to drop: those with at least one edge but fewer than ``min_degree`` (one pass, not iterated)."""
    return (degree > 0) & (degree < min_degree)
