"""Pixie walk throughput: steps per second including visit counting and top-K, against two baselines.

A synthetic power-law bipartite graph (pins x pages, generated here, seeded) is walked along
page-pin-page from a random sample of query pages, with the same per-query step budgets for every
walker implementation:

- ours:     ``linksage.walk.pixie.run_walks`` (lock-step walkers per query, parallel over queries)
- baseline: a plain single-walker numba loop, one walker per query, parallel over queries, counting
            visits in the same per-query hash table and taking the same top-K
- numpy:    a vectorised numpy walker (all walkers of a batch of queries advance together; counting
            by ``np.unique`` over (query, page) keys; top-K by a lexsort)

A step is one edge traversal. Early stopping is off so that every implementation walks the whole
budget. Each figure is the median of ``--repeats`` runs, all in this process. The last line printed is
one JSON object.

    .venv/bin/python benchmarks/walks.py                       # 1M pins, 1M pages, 20M edges
    .venv/bin/python benchmarks/walks.py --threads 1,4,16      # thread scaling on a larger machine
    .venv/bin/python benchmarks/walks.py --pins 100000 --pages 100000 --edges 2000000 --queries 500
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

import numba
import numpy as np
from numba import njit, prange

from _machine import machine
from linksage.config.walk import WalkConfig
from linksage.graph.csr import csr_pair
from linksage.walk import kernels as kern
from linksage.walk.pixie import WalkGraph, numba_threads, run_walks, step_budgets


def power_law_ids(rng: np.random.Generator, n_ids: int, size: int, exponent: float) -> np.ndarray:
    """``size`` draws from ids 0..n_ids-1 with P(rank r) ~ r^-exponent, ranks scattered over the ids."""
    u = rng.random(size)
    one = 1.0 - exponent
    x = ((float(n_ids + 1) ** one - 1.0) * u + 1.0) ** (1.0 / one)  # inverse CDF of x^-a on [1, n + 1]
    rank = np.minimum(x.astype(np.int64) - 1, n_ids - 1)
    return rng.permutation(n_ids)[rank]


def synthetic_graph(n_pins: int, n_pages: int, n_edges: int, seed: int) -> WalkGraph:
    rng = np.random.default_rng(seed)
    pins = power_law_ids(rng, n_pins, n_edges, 0.5)
    pages = power_law_ids(rng, n_pages, n_edges, 0.7)
    pin_page, page_pin = csr_pair(pins, pages, n_pins, n_pages)
    return WalkGraph.checked({"pin": n_pins, "page": n_pages}, {("pin", "page"): pin_page, ("page", "pin"): page_pin})


@njit(parallel=True, cache=True)
def single_walker_batch(
    queries: np.ndarray,
    budgets: np.ndarray,
    page_pin_ptr: np.ndarray,
    page_pin_idx: np.ndarray,
    pin_page_ptr: np.ndarray,
    pin_page_idx: np.ndarray,
    inv_log_keep: float,
    seed: int,
    n_chunks: int,
    out_nbr: np.ndarray,
    out_vis: np.ndarray,
    out_steps: np.ndarray,
) -> None:
    """The plain loop: one walker per query walks page -> pin -> page with restarts until the budget is spent."""
    n = queries.shape[0]
    for c in prange(n_chunks):
        most = 16
        for i in range(c, n, n_chunks):
            most = max(most, budgets[i])
        cap = 1 << kern.table_bits(most)
        keys = np.full(cap, -1, np.int32)
        cur = np.zeros(cap, np.int32)
        acc = np.zeros(cap, np.float64)
        used = np.empty(cap, np.int32)
        n_used = np.zeros(1, np.int64)
        state = np.empty(1, np.uint64)
        top_vis = np.empty(out_vis.shape[1], np.float64)
        for i in range(c, n, n_chunks):
            q = queries[i]
            bits = kern.table_bits(budgets[i])
            state[0] = kern.stream_seed(seed, q, 0, 0)  # path key 0: a baseline of its own
            steps = 0
            v = q
            left = kern.walk_length(kern.next_random(state, 0), inv_log_keep)
            while steps < budgets[i]:
                s = page_pin_ptr[v]
                d = page_pin_ptr[v + 1] - s
                p = -1
                if d > 0:
                    p = page_pin_idx[s + kern.below(kern.next_random(state, 0), d)]
                    steps += 1
                    s = pin_page_ptr[p]
                    d = pin_page_ptr[p + 1] - s
                    if d > 0:
                        v = pin_page_idx[s + kern.below(kern.next_random(state, 0), d)]
                        steps += 1
                        if v != q:
                            kern.table_add(keys, cur, used, n_used, bits, v)
                left -= 1
                if p < 0 or d == 0 or left == 0:
                    v = q
                    left = kern.walk_length(kern.next_random(state, 0), inv_log_keep)
            kern.table_fold(cur, acc, used, n_used[0], False)
            kern.table_top_k(keys, acc, used, n_used[0], False, out_nbr[i], top_vis)
            for j in range(top_vis.shape[0]):
                out_vis[i, j] = top_vis[j]
            out_steps[i] = steps
            kern.table_reset(keys, cur, acc, used, n_used)


def numpy_walks(
    graph: WalkGraph, queries: np.ndarray, budgets: np.ndarray, cfg: WalkConfig, batch: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All walkers of a batch of queries advance together; visits counted by np.unique; top-K by lexsort."""
    page_ptr, page_idx = graph.edges("page", "pin")
    pin_ptr, pin_idx = graph.edges("pin", "page")
    n_pages = graph.counts["page"]
    keep = 1.0 - 1.0 / cfg.mean_walk_length
    rng = np.random.default_rng(cfg.seed)
    k = cfg.top_k
    nbr = np.full((len(queries), k), -1, np.int32)
    vis = np.zeros((len(queries), k), np.float32)
    steps = np.zeros(len(queries), np.int64)
    w = cfg.walkers
    for lo in range(0, len(queries), batch):
        q = queries[lo : lo + batch]
        rows = np.repeat(np.arange(len(q)), w)
        start = np.repeat(q, w)
        node = start.copy()
        spent = np.zeros(len(q), np.int64)
        left = budgets[lo : lo + batch].copy()
        visits: list[np.ndarray] = []
        while True:
            active = left[rows] > spent[rows]
            if not active.any():
                break
            cur = node[active]
            ptr = page_ptr[cur]
            deg = page_ptr[cur + 1] - ptr
            ok = deg > 0
            pin = np.where(
                ok, page_idx[np.minimum(ptr + (rng.random(len(cur)) * deg).astype(np.int64), len(page_idx) - 1)], 0
            )
            ptr2 = pin_ptr[pin]
            deg2 = np.where(ok, pin_ptr[pin + 1] - ptr2, 0)
            ok2 = deg2 > 0
            nxt = np.where(
                ok2, pin_idx[np.minimum(ptr2 + (rng.random(len(cur)) * deg2).astype(np.int64), len(pin_idx) - 1)], -1
            )
            r = rows[active]
            np.add.at(spent, r, ok.astype(np.int64) + ok2)
            counted = ok2 & (nxt != start[active])
            visits.append(r[counted].astype(np.int64) * n_pages + nxt[counted])
            restart = ~ok2 | (rng.random(len(cur)) >= keep)
            node[active] = np.where(restart, start[active], nxt)
        keys, counts = np.unique(np.concatenate(visits), return_counts=True)
        row, page = keys // n_pages, keys % n_pages
        order = np.lexsort((page, -counts, row))
        row, page, counts = row[order], page[order], counts[order]
        first = np.searchsorted(row, np.arange(len(q)))
        rank = np.arange(len(row)) - first[row]
        top = rank < k
        nbr[lo + row[top], rank[top]] = page[top]
        vis[lo + row[top], rank[top]] = counts[top]
        steps[lo : lo + len(q)] = spent
    return nbr, vis, steps


def timed(fns: dict[str, Callable[[], np.ndarray]], repeats: int) -> dict[str, tuple[float, float, int]]:
    """Per name: median wall seconds, median CPU seconds (all threads) and the steps of one run.

    The implementations take turns within each repeat, so that load from other processes on a shared
    machine hits them alike.
    """
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    steps: dict[str, int] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            steps[name] = int(fn().sum())
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name]), steps[name]) for name in fns}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--pins", type=int, default=1_000_000)
    p.add_argument("--pages", type=int, default=1_000_000)
    p.add_argument("--edges", type=int, default=20_000_000)
    p.add_argument("--queries", type=int, default=2_000, help="query pages walked per run")
    p.add_argument("--numpy-queries", type=int, default=500, help="query pages for the (slow) numpy walker")
    p.add_argument("--steps", type=int, default=2_000, help="walk.steps: budget of a page with one pin")
    p.add_argument("--walkers", type=int, default=64, help="lock-step walkers per query (ours)")
    p.add_argument("--threads", default="", help="comma-separated thread counts (default: 1 and all cores)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    all_threads = numba.config.NUMBA_NUM_THREADS
    threads = sorted({int(t) for t in args.threads.split(",") if t} or {1, all_threads})
    if threads[0] < 1 or threads[-1] > all_threads:
        p.error(f"--threads must lie in 1..{all_threads} (numba's NUMBA_NUM_THREADS here), got {args.threads}")
    t0 = time.perf_counter()
    graph = synthetic_graph(args.pins, args.pages, args.edges, args.seed)
    print(f"graph: {args.pins:,} pins, {args.pages:,} pages, {args.edges:,} edges in {time.perf_counter() - t0:.1f}s")
    rng = np.random.default_rng(args.seed + 1)
    has_pins = np.flatnonzero(graph.degree("page", "pin") > 0)
    queries = np.sort(rng.choice(has_pins, size=min(args.queries, len(has_pins)), replace=False)).astype(np.int64)
    cfg = WalkConfig(metapaths=("page-pin-page",), steps=args.steps, n_p=0, boost=False, walkers=args.walkers)
    budgets = step_budgets(graph.degree("page", "pin")[queries], cfg)
    print(f"queries: {len(queries):,}, mean budget {budgets.mean():,.0f} steps, threads {threads}")

    keep = 1.0 - 1.0 / cfg.mean_walk_length
    inv_log_keep = 1.0 / math.log(keep)
    pp_ptr, pp_idx = graph.edges("page", "pin")
    ip_ptr, ip_idx = graph.edges("pin", "page")

    def ours(n_threads: int) -> np.ndarray:
        return run_walks(graph, queries, dataclasses.replace(cfg, threads=n_threads)).steps

    def baseline(n_threads: int) -> np.ndarray:
        nbr = np.empty((len(queries), cfg.top_k), np.int32)
        vis = np.empty((len(queries), cfg.top_k), np.float32)
        steps = np.zeros(len(queries), np.int64)
        with numba_threads(n_threads) as used:
            single_walker_batch(
                queries, budgets, pp_ptr, pp_idx, ip_ptr, ip_idx, inv_log_keep, cfg.seed, max(1, used * 16),
                nbr, vis, steps,
            )  # fmt: skip
        return steps

    ours(1), baseline(1)  # compile (or load the cache) outside the timings
    figures: dict[str, float] = {}
    for n_threads in threads:
        fns = {"ours": lambda n=n_threads: ours(n), "baseline": lambda n=n_threads: baseline(n)}
        for name, (wall, cpu, total) in timed(fns, args.repeats).items():
            figures[f"{name}_{n_threads}"] = total / wall
            figures[f"{name}_{n_threads}_cpu"] = total / cpu
            print(
                f"{name:9s} threads={n_threads:3d}: {total / wall / 1e6:7.2f} M steps/s "
                f"({total:,} steps, {wall:.2f}s wall, {cpu:.2f}s cpu: {total / cpu / 1e6:.2f} M steps per cpu-second)"
            )
            sys.stdout.flush()
    nq = queries[: args.numpy_queries]
    numpy_fn = {"numpy": lambda: numpy_walks(graph, nq, budgets[: len(nq)], cfg)[2]}
    wall, cpu, total = timed(numpy_fn, max(1, args.repeats - 1))["numpy"]
    figures["numpy"] = total / wall
    print(f"numpy     threads=  1: {total / wall / 1e6:7.2f} M steps/s ({total:,} steps, {wall:.2f}s wall)")
    load = os.getloadavg()[0]

    top = max(threads)
    result = {
        "steps_per_s": round(figures[f"ours_{top}"]),
        "baseline_steps_per_s": round(figures[f"baseline_{top}"]),
        "ratio": round(figures[f"ours_{top}"] / figures[f"baseline_{top}"], 3),
        "steps_per_s_1thread": round(figures.get("ours_1", float("nan"))) if 1 in threads else None,
        "baseline_steps_per_s_1thread": round(figures["baseline_1"]) if 1 in threads else None,
        "numpy_steps_per_s": round(figures["numpy"]),
        "threads": top,
        "per_thread_count": {str(t): round(figures[f"ours_{t}"]) for t in threads},
        "per_cpu_second": {str(t): round(figures[f"ours_{t}_cpu"]) for t in threads},
        "baseline_per_cpu_second": {str(t): round(figures[f"baseline_{t}_cpu"]) for t in threads},
        "baseline_per_thread_count": {str(t): round(figures[f"baseline_{t}"]) for t in threads},
        "graph": {"pins": args.pins, "pages": args.pages, "edges": args.edges},
        "queries": len(queries),
        "walkers": args.walkers,
        "step": "one edge traversal; counting and top-K included",
        "load_average_1min": round(load, 2),
        "machine": f"{machine()}, numba {numba.__version__} ({numba.config.THREADING_LAYER})",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
