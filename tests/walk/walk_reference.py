"""Slow, obviously correct references for the walk tests, and small random heterogeneous graphs.

Exact visit distribution of Pixie walks with restart along one metapath: with ``M`` the product of the
row-normalised adjacency matrices of its hops (a row of zeros where a node has no edge of that type:
the walk ends there) and ``keep = 1 - 1 / mean_walk_length``, the expected number of visits to each
page in one walk from page ``q`` is ``sum_{t>=1} keep^(t-1) (e_q M^t) = e_q M (I - keep M)^-1``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from linksage.graph.csr import csr_pair
from linksage.walk.metapaths import parse_metapath
from linksage.walk.pixie import WalkGraph


def random_graph(seed: int, n_pins: int = 24, n_pages: int = 10, n_boards: int = 4, n_domains: int = 3) -> WalkGraph:
    """A small heterogeneous graph with dead ends (pins without board, pages without domain) and clusters."""
    rng = np.random.default_rng(seed)
    pin = rng.integers(0, n_pins, 3 * n_pins)
    page = rng.integers(0, n_pages, 3 * n_pins)
    pin_page = np.unique(np.stack([pin, page], 1), axis=0)
    with_board = rng.permutation(n_pins)[: n_pins * 2 // 3]
    pin_board = np.unique(np.stack([with_board, rng.integers(0, n_boards, len(with_board))], 1), axis=0)
    with_domain = rng.permutation(n_pages)[: n_pages - 2]
    page_domain = np.stack([with_domain, rng.integers(0, n_domains, len(with_domain))], 1)
    clustered = rng.permutation(n_pins)[:7]
    pin_cluster = np.stack([clustered, np.array([0, 0, 0, 1, 1, 2, 2])], 1)
    counts = {"pin": n_pins, "page": n_pages, "board": n_boards, "domain": n_domains, "cluster": 3}
    return graph_from_edges(
        counts,
        {
            ("pin", "page"): pin_page,
            ("pin", "board"): pin_board,
            ("page", "domain"): page_domain,
            ("pin", "cluster"): pin_cluster,
        },
    )


def graph_from_edges(counts: dict[str, int], edges: dict[tuple[str, str], np.ndarray]) -> WalkGraph:
    """Both CSR directions of each undirected edge type given as an (n, 2) array of (a, b) pairs."""
    csr = {}
    for (a, b), pairs in edges.items():
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        csr[(a, b)], csr[(b, a)] = csr_pair(pairs[:, 0], pairs[:, 1], counts[a], counts[b])
    return WalkGraph.checked(counts, csr)


def transition(graph: WalkGraph, src: str, dst: str) -> np.ndarray:
    """Row-normalised dense adjacency (rows of zeros for nodes without such edges)."""
    indptr, indices = graph.edges(src, dst)
    n_src, n_dst = graph.counts[src], graph.counts[dst]
    m = np.zeros((n_src, n_dst))
    for v in range(n_src):
        row = indices[indptr[v] : indptr[v + 1]]
        for u in row:
            m[v, u] += 1.0 / len(row)
    return m


def merge_matrix(graph: WalkGraph) -> np.ndarray:
    """Pin -> pin: a uniformly random member of the pin's cluster, or the pin itself when it has none."""
    n = graph.counts["pin"]
    m = np.eye(n)
    pc_ptr, pc_idx = graph.edges("pin", "cluster")
    cp_ptr, cp_idx = graph.edges("cluster", "pin")
    for p in range(n):
        if pc_ptr[p + 1] > pc_ptr[p]:
            c = pc_idx[pc_ptr[p]]
            members = cp_idx[cp_ptr[c] : cp_ptr[c + 1]]
            if len(members):
                m[p] = 0.0
                for u in members:
                    m[p, u] += 1.0 / len(members)
    return m


def metapath_matrix(graph: WalkGraph, text: str, merge: bool) -> np.ndarray:
    """Page -> page transition matrix of one traversal of the metapath (substochastic)."""
    hops = parse_metapath(text).hops
    m = np.eye(graph.counts["page"])
    for i, (src, dst) in enumerate(hops):
        m = m @ transition(graph, src, dst)
        next_is_cluster = i + 1 < len(hops) and hops[i + 1][1] == "cluster"
        if merge and dst == "pin" and src != "cluster" and not next_is_cluster:
            m = m @ merge_matrix(graph)
    return m


def expected_visits(graph: WalkGraph, q: int, text: str, mean_walk_length: float, merge: bool) -> np.ndarray:
    """Expected visits to each page in one walk from ``q`` (self included)."""
    m = metapath_matrix(graph, text, merge)
    keep = 1.0 - 1.0 / mean_walk_length
    start = np.zeros(graph.counts["page"])
    start[q] = 1.0
    return np.linalg.solve((np.eye(len(m)) - keep * m).T, (start @ m))


def visit_distribution(graph: WalkGraph, q: int, text: str, mean_walk_length: float, merge: bool) -> np.ndarray:
    """Share of the counted visits (self excluded) that each page gets."""
    v = expected_visits(graph, q, text, mean_walk_length, merge)
    v[q] = 0.0
    return v / v.sum()


def dense_counts(neighbours: np.ndarray, visits: np.ndarray, n_pages: int) -> np.ndarray:
    """One query's top-K row back to a dense vector of visits per page."""
    out = np.zeros(n_pages)
    found = neighbours >= 0
    out[neighbours[found]] = visits[found]
    return out


def write_graph_dir(graph: WalkGraph, folder: Path) -> Path:
    """A graph stage folder (nodes.json + CSR .npy files) holding ``graph``."""
    from linksage.graph.csr import save_csr
    from linksage.graph.schema import EDGE_TYPES

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nodes.json").write_text(json.dumps(graph.counts))
    for src, dst in EDGE_TYPES:
        if src in graph.counts and dst in graph.counts:
            save_csr(folder, src, dst, graph.edges(src, dst))
    return folder
