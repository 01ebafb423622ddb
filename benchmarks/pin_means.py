"""Pin means (linksage.train.pin_means): board and neighbour means against a plain numpy baseline.

Data: a seeded graph shaped like the shared Reddit data (by default a quarter of its size, 100,000 pages
and 108,000 pins; `--pages 402817 --pins 433350` is its full size, whose baseline peaks at 18 GB), each
pin on one page and on one of 2,361 Zipf-sized boards, 384-dim float16 targets, 86% of the pins before
the cut-off, 4 board slots.

Measured in one process: ``board_means`` + ``page_means`` (what loading features with
``train.board_means`` and ``train.neighbour_means`` adds), medians of ``--repeats``; and once, the
baseline: the same tables built the obvious way, ``np.add.at`` into float64 sums, the board means as one
dense (pages, slots, dim) table. Then, untimed, both are checked equal (to float16 rounding).

    .venv/bin/python benchmarks/pin_means.py                               # a quarter of Reddit (30 s)
    .venv/bin/python benchmarks/pin_means.py --pages 402817 --pins 433350  # all of it (90 s, 18 GB)

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from _machine import machine
from linksage.train.features import page_boards
from linksage.train.pin_means import BoardMeans, board_means, page_means


def world(pages: int, pins: int, boards: int, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    page_of_pin = rng.integers(0, pages, pins)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(page_of_pin, minlength=pages))]).astype(np.int64)
    return {
        "pp_indptr": indptr,
        "pp_indices": np.argsort(page_of_pin, kind="stable").astype(np.int32),
        "pb_indptr": np.arange(pins + 1, dtype=np.int64),
        "pb_indices": (rng.zipf(1.5, pins) % boards).astype(np.int32),
        "targets": rng.normal(size=(pins, dim)).astype(np.float16),
        "eligible": rng.random(pins) < 0.86,
    }


def ours(w: dict[str, np.ndarray], boards: np.ndarray) -> tuple[BoardMeans, np.ndarray]:
    means = board_means(
        w["pp_indptr"], w["pp_indices"], w["pb_indptr"], w["pb_indices"], boards, w["targets"], w["eligible"]
    )
    return means, page_means(w["pp_indptr"], w["pp_indices"], w["targets"], w["eligible"])


def baseline(w: dict[str, np.ndarray], boards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The obvious way: float64 sums by np.add.at, one dense (pages, slots, dim) board-means table."""
    n_pages, slots = boards.shape
    targets, eligible = w["targets"].astype(np.float64), w["eligible"]
    board = w["pb_indices"].astype(np.int64)  # one board per pin here
    n_boards = int(board.max()) + 1
    board_sum, board_count = np.zeros((n_boards, targets.shape[1])), np.zeros(n_boards)
    np.add.at(board_sum, board[eligible], targets[eligible])
    np.add.at(board_count, board[eligible], 1)
    page = np.repeat(np.arange(n_pages), np.diff(w["pp_indptr"]))
    own_pin = w["pp_indices"].astype(np.int64)
    own_sum, own_count = np.zeros((n_pages, slots, targets.shape[1])), np.zeros((n_pages, slots))
    for s in range(slots):
        hit = (boards[page, s] == board[own_pin]) & eligible[own_pin]
        np.add.at(own_sum[:, s], page[hit], targets[own_pin[hit]])
        np.add.at(own_count[:, s], page[hit], 1)
    b = np.maximum(boards, 0)
    count = board_count[b] - own_count
    mean = (board_sum[b] - own_sum) / np.maximum(count, 1)[..., None]
    mean[(boards < 0) | (count <= 0)] = 0.0
    page_sum, page_count = np.zeros((n_pages, targets.shape[1])), np.zeros(n_pages)
    keep = eligible[own_pin]
    np.add.at(page_sum, page[keep], targets[own_pin[keep]])
    np.add.at(page_count, page[keep], 1)
    return mean.astype(np.float16), (page_sum / np.maximum(page_count, 1)[:, None]).astype(np.float16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--pins", type=int, default=108_000)
    ap.add_argument("--boards", type=int, default=2_361)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    w = world(args.pages, args.pins, args.boards, args.dim)
    boards = page_boards(w["pp_indptr"], w["pp_indices"], w["pb_indptr"], w["pb_indices"], args.slots)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        got = ours(w, boards)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    want = baseline(w, boards)
    base_s = time.perf_counter() - t
    got_dense = (got[0].dense(boards), got[1])  # what the slots read, untimed
    worst = max(
        float(np.abs(g.astype(np.float32) - x.astype(np.float32)).max()) for g, x in zip(got_dense, want, strict=True)
    )
    ours_s = statistics.median(times)
    print(
        f"pin means over {args.pages:,} pages, {args.pins:,} pins x {args.dim}: ours {ours_s:.2f} s (median of "
        f"{args.repeats}), np.add.at baseline {base_s:.2f} s, {base_s / ours_s:.1f}x; max abs difference {worst:.2e}"
    )
    print(
        json.dumps(
            {
                "benchmark": "pin_means",
                "pages": args.pages,
                "pins": args.pins,
                "dim": args.dim,
                "seconds": round(ours_s, 3),
                "baseline_seconds": round(base_s, 3),
                "ratio": round(base_s / ours_s, 2),
                "max_abs_difference": worst,
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
