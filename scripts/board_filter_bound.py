"""What a page's boards are worth as a cut of the pool, zero-shot, beside what one vector of them retrieves.

    python scripts/board_filter_bound.py RUN_DIR --split-date 2013-04-01 [--queries 0] [--seed 0] [--centred]

Reads a run directory with ingest/ and content/ (page_text.npy, pin_target.npy). The queries are the pages
first seen on or after ``--split-date`` (all of them, or a seeded sample of ``--queries``), each with its
ingest links as the positives (the evaluate stage's positives when the graph's cohesion filter keeps every
link, as configs/reddit.toml does; ``train.split_end`` is not applied). Zero-shot rankings by cosine with
the pins' target vectors at their full size, Recall@K (default 100) of each, on all queries and on the
opaque ones (the URL shares no word with its pins' texts):

- the page's text vector against **all pins** (the README's zero-shot baseline);
- one vector for what the page's boards are (the boards its positives sit in; on Reddit the subreddits
  the URL was posted to): the mean of each board's pins created before the cut, against all pins;
- the text vector plus that boards' vector, against all pins: both in one vector;
- the text vector against only **the pins of the page's own boards** (and its positives): what the boards
  give an untrained vector when they can cut the pool. The boards come from the page's own positives, as
  the graph model's board tokens do at test time: an oracle for serving, which knows a page's boards
  only from the posts it has seen;
- and, for scale, the expected Recall@K of that pool in a random order, ``min(1, K / pool)``: the boards
  alone, no content, as a cut;
- then the same two one-vector rankings (the text vector; the text vector plus the boards' vector)
  against pins whose target carries their own boards: each pin's vector plus ``--board-weight`` times
  its boards' mean (over pins from before the cut), as a graph-aware pin embedding (PinSage's, on
  Pinterest) would. What one vector can take from the boards when the pins' space knows them too.

``--centred`` centres the boards' means wherever they are used (``content.pin_target_boards_centred``).
Also printed: the mean and 95th percentile cosine of 200,000 random pairs of pins, as they are and
carrying their boards (what the evaluate stage's negatives see in each space).

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linksage.config.train import parse_date
from linksage.content.board_targets import add_board_means, board_target_means
from linksage.evaluate.metrics import Positives, per_query_metrics, rank_positives
from linksage.evaluate.slices import opaque_mask
from linksage.graph.csr import csr_from_edges
from linksage.search.ann import normalise

CHUNK = 65_536  # pins summed at a time


def recall_all(queries: np.ndarray, pins: np.ndarray, positives: list[np.ndarray], k: int) -> np.ndarray:
    """Per query, the share of its positives among the top ``k`` of all pins: the evaluate stage's exact
    ranking (``rank_positives``; ties count in a positive's favour) at the vectors' full size. A zero
    query (boards with no pin before the cut) ties every pin and says nothing: it gets a random order's
    ``min(1, k / n_pins)``, not the full credit of its ties."""
    pos = Positives.from_lists([p.tolist() for p in positives])
    dim = pins.shape[1]
    ranks = rank_positives(queries, pins, pos, [dim], max_k=k)
    out = per_query_metrics(ranks[dim], pos, [k])[f"recall@{k}"]
    out[~queries.any(axis=1)] = min(1.0, k / len(pins))
    return out


def recall_filtered(
    queries: np.ndarray, pins: np.ndarray, positives: list[np.ndarray], allowed: list[np.ndarray], k: int
) -> np.ndarray:
    """Per query, the share of its positives among the top ``k`` of the ``allowed`` pins by dot product."""
    out = np.zeros(len(queries))
    for i, (pool, pos) in enumerate(zip(allowed, positives, strict=True)):
        scores = pins[pool] @ queries[i]
        top = pool[np.argsort(-scores, kind="stable")[:k]]
        out[i] = np.isin(pos, top).mean()
    return out


class Groups:
    """``values`` grouped by ``keys`` (0 .. n-1) as the graph stage's CSR: ``groups[k]`` is key k's values,
    ascending, as int64."""

    def __init__(self, keys: np.ndarray, values: np.ndarray, n: int | None = None) -> None:
        self.indptr, indices = csr_from_edges(keys, values, int(keys.max()) + 1 if n is None else n)
        self.values = indices.astype(np.int64)

    def __getitem__(self, key: int) -> np.ndarray:
        return self.values[self.indptr[key] : self.indptr[key + 1]]

    def sizes(self) -> np.ndarray:
        return np.diff(self.indptr)


def board_means(
    pin_vec: np.ndarray, pin_boards: Groups, n_boards: int, created: np.ndarray, cutoff: int, centre: bool = False
) -> np.ndarray:
    """(n_boards, d): each board's mean pin vector over its pins created before ``cutoff`` (zero when it
    has none), with ``centre`` less the mean of all those pins: no test-period pin is read. The content
    stage's own (``content.pin_target_boards``, ``pin_target_boards_centred``)."""
    eligible = created < cutoff
    return board_target_means(pin_vec, (pin_boards.indptr, pin_boards.values), n_boards, eligible, CHUNK, centre)


def pair_cosine(vectors: np.ndarray, pairs: int, seed: int) -> tuple[float, float]:
    """Mean and 95th percentile of the cosine of ``pairs`` random pairs of rows (unit rows)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(vectors), pairs), rng.integers(0, len(vectors), pairs)
    cos = np.einsum("ij,ij->i", vectors[a], vectors[b])
    return float(cos.mean()), float(np.quantile(cos, 0.95))


def boards_vectors(board_mean: np.ndarray, pin_boards: Groups, positives: list[np.ndarray]) -> np.ndarray:
    """One unit vector per query for what its boards are: the sum over the boards its positives sit in of
    each board's mean pin vector (``board_means``)."""
    boards = [np.unique(np.concatenate([pin_boards[q] for q in pos])) for pos in positives]
    return normalise(np.stack([board_mean[b].sum(0) for b in boards]))


def pins_with_boards(pin_vec: np.ndarray, board_mean: np.ndarray, pin_boards: Groups, weight: float) -> np.ndarray:
    """Pin vectors (unit rows in) that carry their own boards: ``unit(pin + weight * unit(sum of the pin's
    boards' means))``, as ``content.pin_target_boards`` makes them. A pin in no board (or only in boards
    with no pin before the cut) keeps its own vector."""
    out = np.array(pin_vec, dtype=np.float32, copy=True)
    add_board_means(out, (pin_boards.indptr, pin_boards.values), board_mean, weight, 0, len(out), CHUNK)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--split-date", required=True, help="ISO date: queries are the pages first seen from it on")
    p.add_argument("--queries", type=int, default=0, help="a seeded sample of this many (0: every test page)")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--board-weight", type=float, default=1.0, help="the boards' share of a graph-aware pin vector")
    p.add_argument(
        "--centred", action="store_true", help="centre the boards' means (content.pin_target_boards_centred)"
    )
    args = p.parse_args(argv)

    ingest, content = args.run_dir / "ingest", args.run_dir / "content"
    manifest_path = content / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if manifest.get("metrics", {}).get("pin_target_boards", 0):
        print(
            f"{content / 'pin_target.npy'}: board-aware already (content.pin_target_boards); "
            "this script adds the boards itself and needs a run without it",
            file=sys.stderr,
        )
        return 2
    pages = pq.read_table(ingest / "pages.parquet", columns=["page_idx", "url", "first_seen"])
    links = pq.read_table(ingest / "links.parquet", columns=["pin_idx", "page_idx"])
    board_pins = pq.read_table(ingest / "board_pins.parquet", columns=["board_idx", "pin_idx"])
    pin_table = pq.read_table(ingest / "pins.parquet", columns=["pin_idx", "text", "created_at"])
    n_pages = int(pc.max(pages["page_idx"]).as_py()) + 1
    n_pins = int(pc.max(pin_table["pin_idx"]).as_py()) + 1
    first_seen = np.full(n_pages, -1, dtype=np.int64)
    first_seen[pages["page_idx"].to_numpy()] = pages["first_seen"].fill_null(-1).to_numpy()
    urls = np.empty(n_pages, dtype=object)
    urls[pages["page_idx"].to_numpy()] = pages["url"].to_pylist()
    pin_text = np.empty(n_pins, dtype=object)
    pin_text[pin_table["pin_idx"].to_numpy()] = pin_table["text"].fill_null("").to_pylist()
    pin_created = np.full(n_pins, np.iinfo(np.int64).max, dtype=np.int64)  # unknown: never before the cut
    pin_created[pin_table["pin_idx"].to_numpy()] = pin_table["created_at"].fill_null(np.iinfo(np.int64).max).to_numpy()
    cutoff = int(parse_date("split_date", args.split_date).timestamp())

    page_pins = Groups(links["page_idx"].to_numpy(), links["pin_idx"].to_numpy(), n_pages)
    pin_boards = Groups(board_pins["pin_idx"].to_numpy(), board_pins["board_idx"].to_numpy(), n_pins)
    board_members = Groups(board_pins["board_idx"].to_numpy(), board_pins["pin_idx"].to_numpy())
    test = np.flatnonzero((first_seen >= cutoff) & (page_pins.sizes() > 0))
    if args.queries and args.queries < len(test):
        test = np.sort(np.random.default_rng(args.seed).choice(test, args.queries, replace=False))
    if not len(test):
        print(
            f"{ingest / 'pages.parquet'}: no page with a pin is first seen on or after {args.split_date}",
            file=sys.stderr,
        )
        return 1
    positives = [page_pins[int(p)] for p in test]
    allowed = []
    for pos in positives:
        boards = np.unique(np.concatenate([pin_boards[int(q)] for q in pos]))
        members = [board_members[int(b)] for b in boards]
        allowed.append(np.union1d(np.concatenate(members), pos) if members else np.unique(pos))

    page_vec = normalise(np.load(content / "page_text.npy", mmap_mode="r")[test])
    pin_vec = normalise(np.load(content / "pin_target.npy"))
    opaque = opaque_mask([str(urls[p]) for p in test], [[str(pin_text[q]) for q in pos] for pos in positives])

    board_mean = board_means(pin_vec, pin_boards, board_members.sizes().size, pin_created, cutoff, args.centred)
    board_vec = boards_vectors(board_mean, pin_boards, positives)
    graph_pins = pins_with_boards(pin_vec, board_mean, pin_boards, args.board_weight)
    w = args.board_weight
    k = args.k
    sizes = np.array([len(a) for a in allowed])
    rankings = {  # name -> (what it is, per-query Recall@k)
        "all_pins": ("the URL's vector, all pins", recall_all(page_vec, pin_vec, positives, k)),
        "board_mean": (
            "the boards' mean pin vector, all pins (no content)",
            recall_all(board_vec, pin_vec, positives, k),
        ),
        "url_plus_board_mean": (
            "the URL's vector plus the boards' mean, all pins",
            recall_all(normalise(page_vec + board_vec), pin_vec, positives, k),
        ),
        "own_boards_pins": (
            "the URL's vector, only the boards' pins",
            recall_filtered(page_vec, pin_vec, positives, allowed, k),
        ),
        # a positive's chance to be among k of the boards' pins in a random order
        "own_boards_random_order": ("the boards' pins in a random order (no content)", np.minimum(1.0, k / sizes)),
        "graph_pins_url": (
            f"the URL's vector, all pins carrying their boards (weight {w:g})",
            recall_all(page_vec, graph_pins, positives, k),
        ),
        "graph_pins_url_plus_board_mean": (
            f"the URL's vector plus {w:g} x the boards' mean, all pins carrying their boards",
            recall_all(normalise(page_vec + w * board_vec), graph_pins, positives, k),
        ),
    }
    some = bool(opaque.any())
    result: dict[str, Any] = {
        "queries": len(test),
        "opaque_queries": int(opaque.sum()),
        "pins": len(pin_vec),
        "board_weight": w,
        "centred": args.centred,
    }
    for name, vectors in (("pins", pin_vec), ("graph_pins", graph_pins)):
        mean, p95 = pair_cosine(vectors, 200_000, args.seed)
        result[f"pair_cosine_mean_{name}"], result[f"pair_cosine_p95_{name}"] = mean, p95
        print(f"  random pairs of {name.replace('_', ' ')}: mean cosine {mean:.4f}, 95th percentile {p95:.4f}")
    print(f"{len(test):,} queries ({int(opaque.sum()):,} opaque) against {len(pin_vec):,} pins, zero-shot cosine:")
    for name, (what, per_query) in rankings.items():
        result[f"recall@{k}_{name}"] = float(per_query.mean())
        result[f"opaque_recall@{k}_{name}"] = float(per_query[opaque].mean()) if some else None
        on_opaque = f"{per_query[opaque].mean():.4f}" if some else "-"
        print(f"  Recall@{k}, {what}: {per_query.mean():.4f} (opaque pages {on_opaque})")
    median, p90 = int(np.median(sizes)), int(np.quantile(sizes, 0.9))
    result["filtered_pool_median"], result["filtered_pool_p90"] = median, p90
    print(f"  the boards' pool: median {median:,} pins, 90th percentile {p90:,}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
