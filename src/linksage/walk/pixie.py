"""Pixie walks for any set of query pages: the walk graph, per-query step budgets, ``walk_pages``.

Step budget of a query page with ``d`` pins (Pixie's sub-linear scaling, Eksombatchai et al. 2018,
with its constant ``C`` fixed by the config so a page's budget does not depend on the rest of the graph)::

    budget(d) = steps * d * (C - ln d) / C     for 1 <= d <= e^(C-1)   (d = 0 counts as 1)
              = steps * e^(C-1) / C            beyond (the maximum of the curve)

Each metapath gets ``budget * share`` edge traversals, walked by ``cfg.walkers`` lock-step walkers
(see ``kernels``). A step is one edge traversal.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linksage.config.walk import WalkConfig
from linksage.errors import InputError
from linksage.graph.schema import EDGE_TYPES, csr_stem
from linksage.walk.kernels import TRACE_COLS, walk_batch
from linksage.walk.metapaths import MERGE, hop_plan, parse_metapath

CSR = tuple[np.ndarray, np.ndarray]  # (indptr int64 (n_src + 1,), indices int32 (nnz,))


@dataclass(frozen=True)
class WalkGraph:
    """Node counts per type and one CSR per edge type and direction (read-only, possibly memory-mapped)."""

    counts: dict[str, int]
    csr: dict[tuple[str, str], CSR]

    @classmethod
    def from_dir(cls, path: Path) -> WalkGraph:
        """Memory-map a graph stage folder (``nodes.json`` and ``{src}__{dst}.indptr/indices.npy``)."""
        counts = {k: int(v) for k, v in json.loads((path / "nodes.json").read_text()).items()}
        csr: dict[tuple[str, str], CSR] = {}
        for src, dst in EDGE_TYPES:
            stem = path / csr_stem(src, dst)
            ip, ix = Path(f"{stem}.indptr.npy"), Path(f"{stem}.indices.npy")
            if ip.exists() and ix.exists():
                csr[(src, dst)] = (np.load(ip, mmap_mode="r"), np.load(ix, mmap_mode="r"))
        return cls.checked(counts, csr, where=str(path))

    @classmethod
    def checked(cls, counts: dict[str, int], csr: dict[tuple[str, str], CSR], where: str = "graph") -> WalkGraph:
        """Validate shapes and dtypes; arrays become read-only views (no copy when already int64/int32)."""
        fixed: dict[tuple[str, str], CSR] = {}
        for (src, dst), (indptr, indices) in csr.items():
            name = f"{where}/{csr_stem(src, dst)}"
            ip = _readonly(np.ascontiguousarray(indptr, dtype=np.int64))
            ix = _readonly(np.ascontiguousarray(indices, dtype=np.int32))
            n_src, n_dst = counts.get(src, 0), counts.get(dst, 0)
            if ip.ndim != 1 or ip.shape[0] != n_src + 1:
                raise InputError(f"indptr has shape {ip.shape}, expected ({n_src + 1},)", file=f"{name}.indptr.npy")
            if ip[0] != 0 or ip[-1] != ix.shape[0] or (n_src and np.any(np.diff(ip) < 0)):
                raise InputError("indptr must start at 0, be non-decreasing and end at nnz", file=f"{name}.indptr.npy")
            if ix.shape[0] and (ix.min() < 0 or ix.max() >= n_dst):
                bad = int(np.flatnonzero((ix < 0) | (ix >= n_dst))[0])
                raise InputError(
                    f"index out of range for {n_dst} {dst} nodes",
                    file=f"{name}.indices.npy",
                    row=bad,
                    value=int(ix[bad]),
                )
            fixed[(src, dst)] = (ip, ix)
        return cls(counts=dict(counts), csr=fixed)

    def edges(self, src: str, dst: str) -> CSR:
        """The CSR of ``src -> dst`` edges; an empty one when the graph has none of that type."""
        if (src, dst) in self.csr:
            return self.csr[(src, dst)]
        empty = _readonly(np.zeros(self.counts.get(src, 0) + 1, np.int64))
        return empty, _readonly(np.zeros(0, np.int32))

    def degree(self, src: str, dst: str) -> np.ndarray:
        return np.diff(self.edges(src, dst)[0])


@dataclass(frozen=True)
class WalkResult:
    neighbours: np.ndarray  # int32 (n, K), -1 padded, by visits descending (ties: smaller index first)
    visits: np.ndarray  # float32 (n, K), 0 padded
    steps: np.ndarray  # int64 (n,) edge traversals walked per query
    early_stops: np.ndarray  # int32 (n,) metapaths stopped early per query
    trace: np.ndarray | None = None  # (rounds, 3 + walkers) when asked for: see ``kernels.TRACE_COLS``


def step_budgets(pin_degree: np.ndarray, cfg: WalkConfig) -> np.ndarray:
    """Per-query step budgets (int64) from the query pages' pin degrees: see the module docstring."""
    c = cfg.budget_degree_c
    d = np.minimum(np.maximum(pin_degree.astype(np.float64), 1.0), math.exp(c - 1.0))
    return np.maximum(1, np.rint(cfg.steps * d * (c - np.log(d)) / c)).astype(np.int64)


@dataclass(frozen=True)
class _Plan:
    ops: np.ndarray  # int64 (n_paths, max_ops): edge slot per hop, MERGE, padding 0
    n_ops: np.ndarray
    n_hops: np.ndarray
    shares: np.ndarray
    edge_types: tuple[tuple[str, str], ...]  # the edge type of each CSR slot
    path_keys: np.ndarray  # int64 per metapath: a hash of its text, part of the walkers' seeds
    indptrs: tuple[np.ndarray, ...]
    indices: tuple[np.ndarray, ...]
    merge_pc: int
    merge_cp: int


def _plan(graph: WalkGraph, cfg: WalkConfig) -> _Plan:
    """Hop plans of the configured metapaths over a fixed tuple of all edge types' CSRs.

    The tuple always holds every edge type (empty CSRs for absent ones), so the kernel is compiled
    once, whatever the metapaths and the graph.
    """
    paths = [parse_metapath(t) for t in cfg.metapaths]
    slots = {etype: i for i, etype in enumerate(EDGE_TYPES)}
    merge = cfg.merge_near_duplicates and graph.counts.get("cluster", 0) > 0 and ("pin", "cluster") in graph.csr
    plans = [hop_plan(p, slots, merge) for p in paths]
    ops = np.zeros((len(plans), max(len(p) for p in plans)), np.int64)
    for i, plan in enumerate(plans):
        ops[i, : len(plan)] = plan
    return _Plan(
        ops=ops,
        n_ops=np.array([len(p) for p in plans], np.int64),
        n_hops=np.array([sum(op != MERGE for op in p) for p in plans], np.int64),
        shares=np.array(cfg.shares(), np.float64),
        edge_types=EDGE_TYPES,
        path_keys=np.array([metapath_key(p.text) for p in paths], np.int64),
        indptrs=tuple(graph.edges(*e)[0] for e in EDGE_TYPES),
        indices=tuple(graph.edges(*e)[1] for e in EDGE_TYPES),
        merge_pc=slots[("pin", "cluster")] if merge else -1,
        merge_cp=slots[("cluster", "pin")] if merge else -1,
    )


def metapath_key(text: str) -> int:
    """A stable 63-bit key of a metapath's text (so its walks do not depend on its position in the config)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def run_walks(graph: WalkGraph, page_indices: np.ndarray, cfg: WalkConfig, *, trace_rounds: int = 0) -> WalkResult:
    """Walk from each page of ``page_indices``; row i of the result belongs to ``page_indices[i]``.

    ``trace_rounds > 0`` (one query only) records the walkers' nodes after every hop, for tests.
    """
    pages = np.ascontiguousarray(page_indices, dtype=np.int64)
    n_pages = graph.counts.get("page", 0)
    if pages.size and (pages.min() < 0 or pages.max() >= n_pages):
        bad = int(np.flatnonzero((pages < 0) | (pages >= n_pages))[0])
        raise InputError(f"page index out of range for {n_pages} pages", row=bad, value=int(pages[bad]))
    if trace_rounds and pages.size != 1:
        raise ValueError(f"tracing walks needs exactly one query page, got {pages.size}")
    plan = _plan(graph, cfg)
    budgets = step_budgets(graph.degree("page", "pin")[pages], cfg)
    keep = 1.0 - 1.0 / cfg.mean_walk_length
    inv_log_keep = 1.0 / math.log(keep) if keep > 0 else 0.0
    n = pages.shape[0]
    nbr = np.empty((n, cfg.top_k), np.int32)
    vis = np.empty((n, cfg.top_k), np.float32)
    steps = np.zeros(n, np.int64)
    early = np.zeros(n, np.int32)
    trace = np.full((trace_rounds, TRACE_COLS + cfg.walkers), -1, np.int64)
    with numba_threads(cfg.threads) as threads:
        n_chunks = max(1, min(n, threads * 16))
        walk_batch(
            pages, budgets, plan.ops, plan.n_ops, plan.n_hops, plan.shares, plan.path_keys, plan.indptrs, plan.indices,
            plan.merge_pc, plan.merge_cp, inv_log_keep, cfg.walkers, cfg.n_p, cfg.n_v, cfg.boost, cfg.seed,
            n_chunks, nbr, vis, steps, early, trace,
        )  # fmt: skip
    rows = trace[trace[:, 0] >= 0] if trace_rounds else None
    return WalkResult(neighbours=nbr, visits=vis, steps=steps, early_stops=early, trace=rows)


def walk_pages(graph: WalkGraph, page_indices: np.ndarray, cfg: WalkConfig) -> tuple[np.ndarray, np.ndarray]:
    """Top-K neighbour pages and visits of each page of ``page_indices`` (e.g. an incremental day's pages).

    Returns ``(neighbours int32 (n, K) -1 padded, visits float32 (n, K) 0 padded)``; the same page gives
    the same row whichever subset it is walked in.
    """
    result = run_walks(graph, page_indices, cfg)
    return result.neighbours, result.visits


@contextmanager
def numba_threads(threads: int) -> Iterator[int]:
    """Run numba parallel code on ``threads`` threads (0 = all), restoring the previous setting."""
    import numba

    most = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    wanted = max(1, min(threads or most, most))
    before = numba.get_num_threads()
    numba.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        numba.set_num_threads(before)


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view, so numba compiles one specialisation for memory-mapped and in-memory graphs."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a
