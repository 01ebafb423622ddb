"""An incremental day's walks: which pages to walk again, and which of them take their new neighbours.

The neighbour-change rule (docs/update.md), one fraction ``f = update.neighbour_change``:

1. walked first: the day's new pages, pages it re-crawled, and old pages of which at least ``f`` of
   their pins are new or changed (a pin changes when its pages, boards or near-duplicate cluster do);
2. walked next (``update.reverse_neighbours``): old pages that at least ``ceil(f * top_k)`` pages of
   step 1 now list among their top-K neighbours (walks with restart are nearly symmetric: a page that
   many newcomers reach is likely to reach them);
3. a walked old page takes its new top-K when at least ``f`` of it changed
   (``1 - |old & new| / max(|old|, |new|)``); otherwise it keeps its stored row bit for bit, so Monte
   Carlo noise alone never re-embeds a page.

Every other page keeps its stored neighbours. Walks are seeded per query page, so a page gets the same
row whichever subset it is walked in (``walk_pages``).

The day also lists the pages whose model inputs it can have changed (``touched.npy``, see
``touched_pages``): the embed step compares only those with the store.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linksage.config import Config
from linksage.walk.pixie import WalkGraph, run_walks
from linksage.walk.stage import write_neighbours_parquet

TOUCHED = "touched.npy"  # page_idx whose model inputs the day can have changed
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


@dataclass
class WalkUpdate:
    neighbours: np.ndarray  # int32 (n_pages, K) of the new day
    visits: np.ndarray  # float32 (n_pages, K)
    walked: np.ndarray  # int64 page_idx walked this day
    adopted: np.ndarray  # int64 old page_idx that took their new neighbours
    touched: np.ndarray  # int64 page_idx whose model inputs the day can have changed (sorted)
    counts: dict[str, int]
    timings: dict[str, float]


def row_hashes(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """uint64 per CSR row: an order-free hash of its neighbour set (rows are sorted and de-duplicated)."""
    with np.errstate(over="ignore"):
        x = np.asarray(indices, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        for shift, mult in zip((30, 27), _MIX, strict=True):
            x = (x ^ (x >> np.uint64(shift))) * mult
        x ^= x >> np.uint64(31)
        sums = np.concatenate([np.zeros(1, np.uint64), np.cumsum(x, dtype=np.uint64)])
        ip = np.asarray(indptr, dtype=np.int64)
        return sums[ip[1:]] - sums[ip[:-1]] + np.diff(ip).astype(np.uint64) * np.uint64(0x632BE59BD9B4E019)


def changed_pins(old: WalkGraph, new: WalkGraph) -> np.ndarray:
    """bool (n_pins of ``new``): new pins, and old pins whose pages, boards or near-duplicate cluster changed."""
    n_old, n_new = old.counts["pin"], new.counts["pin"]
    changed = np.zeros(n_new, bool)
    changed[n_old:] = True
    for dst in ("page", "board"):
        a, b = row_hashes(*old.edges("pin", dst)), row_hashes(*new.edges("pin", dst))
        changed[:n_old] |= a != b[:n_old]
    # clusters are renumbered by every build: compare each pin's cluster by its smallest member and size
    for_old, for_new = _cluster_identity(old), _cluster_identity(new)
    changed[:n_old] |= (for_old != for_new[:n_old]).any(axis=1)
    return changed


def _cluster_identity(graph: WalkGraph) -> np.ndarray:
    """(n_pins, 2) int64: (smallest member pin, size) of each pin's near-duplicate cluster; (-1, 0) for none."""
    n = graph.counts["pin"]
    out = np.full((n, 2), -1, np.int64)
    out[:, 1] = 0
    ip, ix = graph.edges("pin", "cluster")
    cip, cix = graph.edges("cluster", "pin")
    if len(ix) == 0:
        return out
    sizes = np.diff(np.asarray(cip))
    first = np.full(len(sizes), -1, np.int64)
    first[sizes > 0] = np.asarray(cix)[np.asarray(cip)[:-1][sizes > 0]]  # rows are sorted: the smallest pin
    has = np.diff(np.asarray(ip)) > 0
    cluster = np.asarray(ix)[np.asarray(ip)[:-1][has]]
    out[has, 0] = first[cluster]
    out[has, 1] = sizes[cluster]
    return out


def changed_share(old: WalkGraph, new: WalkGraph, pins: np.ndarray) -> np.ndarray:
    """float (old pages): share of each old page's pins that are new, changed or gone."""
    n_old = old.counts["page"]
    ip, ix = new.edges("page", "pin")
    ip = np.asarray(ip)[: n_old + 1]
    flags = pins[np.asarray(ix)[: ip[-1]]].astype(np.int64)
    sums = np.concatenate([[0], np.cumsum(flags)])
    changed = sums[ip[1:]] - sums[ip[:-1]]
    added = np.asarray(ix)[: ip[-1]] >= old.counts["pin"]
    sums_new = np.concatenate([[0], np.cumsum(added)])
    degree, old_degree = np.diff(ip), old.degree("page", "pin")
    gone = np.maximum(old_degree - (degree - (sums_new[ip[1:]] - sums_new[ip[:-1]])), 0)
    return (changed + gone) / np.maximum(np.maximum(degree, old_degree), 1)


def neighbour_change(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """float (m,): ``1 - |old & new| / max(|old|, |new|)`` per row of two (m, K) -1 padded tables (0 if both empty)."""
    same = ((old[:, :, None] == new[:, None, :]) & (old[:, :, None] >= 0)).any(axis=2).sum(axis=1)
    size = np.maximum((old >= 0).sum(axis=1), (new >= 0).sum(axis=1))
    return np.where(size > 0, 1.0 - same / np.maximum(size, 1), 0.0)


def touched_pages(
    old: WalkGraph,
    new: WalkGraph,
    pins: np.ndarray,
    recrawled: np.ndarray,
    adopted: np.ndarray,
    neighbours: np.ndarray,
    retexted_boards: np.ndarray,
) -> np.ndarray:
    """int64 page_idx (sorted) of the pages whose model inputs can differ from the run's before the day.

    A page's inputs are its own content, its degree bucket, its neighbour rows (with the neighbours' content)
    and its board tokens (its pins' boards, ranked by its pins on them, and their text). Other rows of every
    array are the old ones bit for bit, so these can change only for: new pages; re-crawled ones; adopted
    ones; pages whose page->pin row changed or that have a changed pin (``pins``: new, or whose pages,
    boards or cluster changed), which covers the degree and the boards; pages listing a re-crawled page
    among their ``neighbours`` (the day's table); and pages with a pin on a re-texted board.
    """
    n_old, n_new = old.counts["page"], new.counts["page"]
    parts = [np.arange(n_old, n_new), np.asarray(recrawled, np.int64), np.asarray(adopted, np.int64)]
    old_rows = row_hashes(*old.edges("page", "pin"))
    new_rows = row_hashes(*new.edges("page", "pin"))[:n_old]
    parts.append(np.flatnonzero(old_rows != new_rows))
    ip, ix = new.edges("page", "pin")
    ip = np.asarray(ip)
    sums = np.concatenate([[0], np.cumsum(pins[np.asarray(ix)], dtype=np.int64)])
    parts.append(np.flatnonzero(sums[ip[1:]] - sums[ip[:-1]] > 0))
    if len(recrawled):
        parts.append(np.flatnonzero(np.isin(neighbours, recrawled).any(axis=1)))
    if len(retexted_boards):
        bip, bix = new.edges("board", "pin")
        bip, bix = np.asarray(bip), np.asarray(bix)
        on_board = np.concatenate([bix[bip[b] : bip[b + 1]] for b in retexted_boards])
        pip, pix = new.edges("pin", "page")
        pip, pix = np.asarray(pip), np.asarray(pix)
        parts.extend(pix[pip[p] : pip[p + 1]] for p in np.unique(on_board))
    return np.unique(np.concatenate([np.asarray(x, np.int64) for x in parts]))


def update_walks(
    cfg: Config,
    old_graph: Path,
    new_graph: Path,
    old_walk: Path,
    recrawled: np.ndarray,
    retexted_boards: np.ndarray | None = None,
) -> WalkUpdate:
    """The day's neighbour tables: old rows kept, new pages walked, changed old pages walked and ruled on."""
    f, k = cfg.update.neighbour_change, cfg.walk.top_k
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    before, after = WalkGraph.from_dir(old_graph), WalkGraph.from_dir(new_graph)
    n_old, n_new = before.counts["page"], after.counts["page"]
    pins = changed_pins(before, after)
    share = changed_share(before, after, pins)
    direct = np.flatnonzero(share >= f)
    first = np.union1d(np.union1d(np.arange(n_old, n_new), recrawled), direct).astype(np.int64)
    timings["diff_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    one = run_walks(after, first, cfg.walk)
    reverse = np.zeros(0, np.int64)
    if cfg.update.reverse_neighbours and len(first):
        found = one.neighbours[one.neighbours >= 0]
        hits = np.bincount(found, minlength=n_new)[:n_old]
        reverse = np.setdiff1d(np.flatnonzero(hits >= math.ceil(f * k)), first)
    two = run_walks(after, reverse, cfg.walk)
    timings["walk_s"] = time.perf_counter() - t0

    walked = np.concatenate([first, reverse])
    nbr, vis = np.concatenate([one.neighbours, two.neighbours]), np.concatenate([one.visits, two.visits])
    old_nbr, old_vis = np.load(old_walk / "neighbours.npy"), np.load(old_walk / "visits.npy")
    neighbours = np.full((n_new, old_nbr.shape[1]), -1, np.int32)
    visits = np.zeros((n_new, old_nbr.shape[1]), np.float32)
    neighbours[:n_old], visits[:n_old] = old_nbr, old_vis
    is_old = walked < n_old
    change = neighbour_change(old_nbr[walked[is_old]], nbr[is_old])
    take = ~is_old
    take[np.flatnonzero(is_old)[change >= f]] = True
    neighbours[walked[take]], visits[walked[take]] = nbr[take], vis[take]
    adopted = walked[take & is_old]
    t0 = time.perf_counter()
    retexted = np.zeros(0, np.int64) if retexted_boards is None else retexted_boards
    touched = touched_pages(before, after, pins, recrawled, adopted, neighbours, retexted)
    timings["touched_s"] = time.perf_counter() - t0
    counts = {
        "pages": n_new,
        "pins_changed": int(pins.sum()),
        "walked": len(walked),
        "walked_new": n_new - n_old,
        "walked_recrawled": len(recrawled),
        "walked_direct": len(direct),
        "walked_reverse": len(reverse),
        "adopted": len(adopted),
        "kept": int(is_old.sum()) - len(adopted),
        "steps": int(one.steps.sum() + two.steps.sum()),
        "touched": len(touched),
    }
    rounded = {k: round(v, 3) for k, v in timings.items()}
    return WalkUpdate(neighbours, visits, walked, adopted, touched, counts, rounded)


def write_walk(update: WalkUpdate, out: Path) -> None:
    """The walk folder's arrays (docs/artifacts.md) plus the day's ``walked.npy``, ``adopted.npy``, ``touched.npy``."""
    np.save(out / "neighbours.npy", update.neighbours)
    np.save(out / "visits.npy", update.visits)
    write_neighbours_parquet(out / "neighbours.parquet", update.neighbours, update.visits)
    np.save(out / "walked.npy", update.walked)
    np.save(out / "adopted.npy", update.adopted)
    np.save(out / TOUCHED, update.touched)
