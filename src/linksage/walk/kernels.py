"""Numba kernels of the Pixie walk: counter-based RNG, lock-step walkers, a visit hash table, top-K.

One query page is walked by ``W`` walkers in lock step: every walker does hop ``o`` of the metapath
before any walker does hop ``o + 1``. The walkers' memory reads are independent, so the CPU overlaps
their cache misses (memory-level parallelism); a single walker waits for each miss in turn. Each hop
is split in two passes over the walkers (read ``indptr`` and pick a position; then read ``indices``)
so that neither pass has a dependent chain of misses, and each pass prefetches a few walkers ahead.

Randomness is counter-based (splitmix64 of a per-walker counter seeded from ``(seed, page, metapath
key, walker)``), so a query's output does not depend on which thread runs it, on what ran before, or
on the metapath's position in the config.

Visits are counted in a per-query open-addressing hash table sized from the query's step budget (never
a dense array over all pages), reset slot by slot between queries.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_U11, _U27, _U30, _U31, _U32 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)
_TWO_M53 = 1.0 / 9007199254740992.0
TRACE_COLS = 3  # trace row: metapath, op (-2 = traversal boundary), active walkers, then one node per walker
BOUNDARY = -2
AHEAD = 4  # prefetch distance in walkers: the misses of walkers w+1..w+4 are in flight while w computes


def _prefetch(typingctx, array, index):  # type: ignore[no-untyped-def]
    """Hint the CPU to fetch ``array[index]`` into cache (no effect on results; no bounds check needed)."""
    sig = types.void(array, index)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        arrayty = signature.args[0]
        ary = context.make_array(arrayty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, arrayty, ary, [args[1]], wraparound=False)
        ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all cache levels, data
        return context.get_dummy_value()

    return sig, codegen


prefetch: Any = intrinsic(_prefetch)


@njit(inline="always")
def mix64(z: np.uint64) -> np.uint64:
    """splitmix64's finaliser: a bijective, well-mixed hash of a 64-bit word."""
    z = (z ^ (z >> _U30)) * _M1
    z = (z ^ (z >> _U27)) * _M2
    return z ^ (z >> _U31)


@njit(inline="always")
def stream_seed(seed: int, page: int, path_key: int, walker: int) -> np.uint64:
    """The start of one walker's random stream, a function of its coordinates only."""
    h = mix64(np.uint64(seed) + _GOLDEN)
    h = mix64(h ^ np.uint64(page))
    h = mix64(h ^ np.uint64(path_key))
    return mix64(h ^ np.uint64(walker))


@njit(inline="always")
def next_random(state: np.ndarray, w: int) -> np.uint64:
    state[w] += _GOLDEN
    return mix64(state[w])


@njit(inline="always")
def below(r: np.uint64, n: int) -> np.int64:
    """A number in [0, n) from the high 32 bits of ``r`` (multiply-shift; bias < n / 2**32)."""
    return np.int64(((r >> _U32) * np.uint64(n)) >> _U32)


@njit(inline="always")
def walk_length(r: np.uint64, inv_log_keep: float) -> int:
    """Geometric number of traversals >= 1 with P(continue) = keep; ``inv_log_keep`` = 1 / ln(keep) (0: always 1)."""
    if inv_log_keep == 0.0:
        return 1
    u = (float(r >> _U11) + 1.0) * _TWO_M53  # (0, 1]
    return 1 + int(math.log(u) * inv_log_keep)


@njit(inline="always")
def table_bits(n_keys: int) -> int:
    """log2 of a power-of-two table size that keeps the load factor at most 1/2."""
    bits = 4
    while (1 << bits) < 2 * n_keys:
        bits += 1
    return bits


@njit(inline="always")
def table_add(keys: np.ndarray, cur: np.ndarray, used: np.ndarray, n_used: np.ndarray, bits: int, v: int) -> int:
    """Count one visit of page ``v``; returns its count in the current metapath."""
    mask = (1 << bits) - 1
    h = np.int64((np.uint64(v) * _GOLDEN) >> np.uint64(64 - bits))
    while True:
        k = keys[h]
        if k == v:
            cur[h] += 1
            return int(cur[h])
        if k == -1:
            keys[h] = v
            cur[h] = 1
            used[n_used[0]] = h
            n_used[0] += 1
            return 1
        h = (h + 1) & mask


@njit(inline="always")
def table_fold(cur: np.ndarray, acc: np.ndarray, used: np.ndarray, n_used: int, boost: bool) -> None:
    """End of a metapath: add its counts (or their square roots, for multi-hit boosting) to the totals."""
    for j in range(n_used):
        s = used[j]
        c = cur[s]
        if c > 0:
            acc[s] += math.sqrt(c) if boost else c
            cur[s] = 0


@njit(inline="always")
def table_reset(keys: np.ndarray, cur: np.ndarray, acc: np.ndarray, used: np.ndarray, n_used: np.ndarray) -> None:
    for j in range(n_used[0]):
        s = used[j]
        keys[s] = -1
        cur[s] = 0
        acc[s] = 0.0
    n_used[0] = 0


@njit(inline="always")
def table_top_k(
    keys: np.ndarray,
    acc: np.ndarray,
    used: np.ndarray,
    n_used: int,
    boost: bool,
    out_nbr: np.ndarray,
    out_vis: np.ndarray,
) -> None:
    """The ``len(out_nbr)`` pages with most visits (ties: smaller index first), by insertion into a sorted row."""
    k = out_nbr.shape[0]
    n = 0
    for j in range(n_used):
        s = used[j]
        v = keys[s]
        score = acc[s] * acc[s] if boost else acc[s]
        if n == k and (score < out_vis[k - 1] or (score == out_vis[k - 1] and v > out_nbr[k - 1])):
            continue
        i = n if n < k else k - 1
        while i > 0 and (out_vis[i - 1] < score or (out_vis[i - 1] == score and out_nbr[i - 1] > v)):
            out_vis[i] = out_vis[i - 1]
            out_nbr[i] = out_nbr[i - 1]
            i -= 1
        out_vis[i] = score
        out_nbr[i] = v
        if n < k:
            n += 1
    for i in range(n, k):
        out_nbr[i] = -1
        out_vis[i] = 0.0


@njit(inline="always")
def _record(trace: np.ndarray, row: int, m: int, op: int, n_active: int, node: np.ndarray) -> int:
    if row < trace.shape[0]:
        trace[row, 0] = m
        trace[row, 1] = op
        trace[row, 2] = n_active
        for w in range(node.shape[0]):
            trace[row, TRACE_COLS + w] = node[w]
    return row + 1


@njit
def walk_query(
    q: int,
    budget: int,
    ops: np.ndarray,
    n_ops: np.ndarray,
    n_hops: np.ndarray,
    shares: np.ndarray,
    path_keys: np.ndarray,
    indptrs: tuple[np.ndarray, ...],
    indices: tuple[np.ndarray, ...],
    merge_pc: int,
    merge_cp: int,
    inv_log_keep: float,
    n_p: int,
    n_v: int,
    boost: bool,
    seed: int,
    node: np.ndarray,
    remaining: np.ndarray,
    state: np.ndarray,
    pos: np.ndarray,
    keys: np.ndarray,
    cur: np.ndarray,
    acc: np.ndarray,
    used: np.ndarray,
    n_used: np.ndarray,
    bits: int,
    trace: np.ndarray,
) -> tuple[int, int]:
    """Walk every metapath from page ``q`` with ``len(node)`` lock-step walkers; counts go to the table.

    Returns (edge traversals done, metapaths stopped early).
    """
    n_walkers = node.shape[0]
    tracing = trace.shape[0] > 0
    row = 0
    total_steps = 0
    early = 0
    for m in range(ops.shape[0]):
        nop = n_ops[m]
        budget_m = max(1, int(budget * shares[m]))
        first = indptrs[ops[m, 0]]
        if first[q + 1] == first[q]:
            continue  # the page has no edge of this metapath's first type
        for w in range(n_walkers):
            state[w] = stream_seed(seed, q, path_keys[m], w)
            node[w] = q
            remaining[w] = walk_length(next_random(state, w), inv_log_keep)
        steps = 0
        n_high = 0
        stop = False
        while not stop:
            room = budget_m - steps
            if room <= 0:
                break
            # Only as many walkers as the remaining budget pays for start this traversal.
            n_active = min(n_walkers, (room + n_hops[m] - 1) // n_hops[m])
            for o in range(nop):
                op = ops[m, o]
                if op >= 0:
                    ip = indptrs[op]
                    ix = indices[op]
                    for w in range(n_active):
                        if w + AHEAD < n_active and node[w + AHEAD] >= 0:
                            prefetch(ip, node[w + AHEAD])
                        v = node[w]
                        if v < 0:
                            continue
                        s = ip[v]
                        d = ip[v + 1] - s
                        if d == 0:
                            node[w] = -1  # dead end: the walk ends here
                            continue
                        pos[w] = s + below(next_random(state, w), d)
                        steps += 1
                    for w in range(n_active):
                        if w + AHEAD < n_active and node[w + AHEAD] >= 0:
                            prefetch(ix, pos[w + AHEAD])
                        if node[w] >= 0:
                            node[w] = ix[pos[w]]
                else:
                    ip_pc, ix_pc = indptrs[merge_pc], indices[merge_pc]
                    ip_cp, ix_cp = indptrs[merge_cp], indices[merge_cp]
                    for w in range(n_active):
                        v = node[w]
                        if v < 0 or ip_pc[v + 1] == ip_pc[v]:
                            continue  # a pin without a cluster stays where it is
                        c = ix_pc[ip_pc[v]]
                        s = ip_cp[c]
                        d = ip_cp[c + 1] - s
                        if d == 0:
                            continue
                        node[w] = ix_cp[s + below(next_random(state, w), d)]
                        steps += 2
                if tracing:
                    row = _record(trace, row, m, op, n_active, node)
            for w in range(n_active):
                v = node[w]
                # Count the visit (never of the query itself); early stop when the n_p-th page reaches n_v.
                if v >= 0 and v != q and table_add(keys, cur, used, n_used, bits, v) == n_v and n_p > 0:
                    n_high += 1
                    if n_high >= n_p:
                        stop = True
                        early += 1
                        break
                remaining[w] -= 1
                if v < 0 or remaining[w] == 0:
                    node[w] = q
                    remaining[w] = walk_length(next_random(state, w), inv_log_keep)
            if tracing:
                row = _record(trace, row, m, BOUNDARY, n_active, node)
        table_fold(cur, acc, used, n_used[0], boost)
        total_steps += steps
    return total_steps, early


@njit(inline="always")
def distinct_bound(budget: int, shares: np.ndarray, n_ops: np.ndarray, n_walkers: int) -> int:
    """At most this many distinct pages are counted for a query (one counted visit costs >= 1 step)."""
    total = 0
    for m in range(shares.shape[0]):
        total += max(1, int(budget * shares[m])) + n_walkers * (n_ops[m] + 1)
    return total


@njit(parallel=True, cache=True)
def walk_batch(
    queries: np.ndarray,
    budgets: np.ndarray,
    ops: np.ndarray,
    n_ops: np.ndarray,
    n_hops: np.ndarray,
    shares: np.ndarray,
    path_keys: np.ndarray,
    indptrs: tuple[np.ndarray, ...],
    indices: tuple[np.ndarray, ...],
    merge_pc: int,
    merge_cp: int,
    inv_log_keep: float,
    n_walkers: int,
    n_p: int,
    n_v: int,
    boost: bool,
    seed: int,
    n_chunks: int,
    out_nbr: np.ndarray,
    out_vis: np.ndarray,
    out_steps: np.ndarray,
    out_early: np.ndarray,
    trace: np.ndarray,
) -> None:
    """Walk ``queries[i]`` into row ``i`` of the outputs, in parallel over ``n_chunks`` strided chunks.

    A chunk takes queries ``c, c + n_chunks, ...`` (so hub queries spread over threads) and owns one
    hash table and one set of walker arrays, sized for its largest budget: memory is O(chunks x budget).
    """
    n = queries.shape[0]
    for c in prange(n_chunks):
        most = 0
        for i in range(c, n, n_chunks):
            most = max(most, distinct_bound(budgets[i], shares, n_ops, n_walkers))
        cap = 1 << table_bits(most)
        keys = np.full(cap, -1, np.int32)
        cur = np.zeros(cap, np.int32)
        acc = np.zeros(cap, np.float64)
        used = np.empty(cap, np.int32)
        n_used = np.zeros(1, np.int64)
        node = np.empty(n_walkers, np.int64)
        remaining = np.empty(n_walkers, np.int64)
        state = np.empty(n_walkers, np.uint64)
        pos = np.empty(n_walkers, np.int64)
        top_vis = np.empty(out_vis.shape[1], np.float64)
        for i in range(c, n, n_chunks):
            bits = table_bits(distinct_bound(budgets[i], shares, n_ops, n_walkers))
            steps, early = walk_query(
                queries[i], budgets[i], ops, n_ops, n_hops, shares, path_keys, indptrs, indices, merge_pc, merge_cp,
                inv_log_keep, n_p, n_v, boost, seed, node, remaining, state, pos, keys, cur, acc, used,
                n_used, bits, trace,
            )  # fmt: skip
            table_top_k(keys, acc, used, n_used[0], boost, out_nbr[i], top_vis)
            for j in range(top_vis.shape[0]):
                out_vis[i, j] = top_vis[j]
            out_steps[i] = steps
            out_early[i] = early
            table_reset(keys, cur, acc, used, n_used)
