"""Means of pin targets as page inputs: board means and neighbour means, a page's own pins always left out.

Board means: for each (page, board slot), the mean target vector of the board's pins, the page's own
pins left out. Neighbour means: for each page, the mean target of its own pins, read only where the page
is *another* page's neighbour, and never by a page that shares one of those pins (``shares_a_pin``).

A board token says what the board is about through its text (and, optionally, a learned per-board vector
that only knows the training period's boards). The board's pins say it better: their target vectors are
the very space the page is trained into. So a board token may also carry the mean target of the board's
*eligible* pins (created before a cut-off, the time split's ``split_date``; all pins for a random split),
less the page's own pins: a page's positive pins never feed its own inputs, which is the no-leakage rule
of the train stage (docs/training.md). Every row depends only on the graph, the targets, the cut-off and
the page's own pin list, so an incremental day recomputes it and the embed fingerprints see a change.
A neighbour token likewise says more through the neighbour's pins than through its URL alone.

Sums are sparse-times-dense products in float64 (scipy: a fixed summation order, so the same inputs give
the same bytes on every run). Most board slots hold none of the page's own pins and read the board's
plain mean; only the others get a corrected row (``BoardMeans``), so no (n_pages, S, D) table is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from linksage.graph.csr import csr_to_edges
from linksage.train.pairs import UNKNOWN_TIME

CHUNK_KEYS = 16_384  # pages, or (page, slot)s, summed at a time (bounds the per-chunk float64 sums)


def page_pin_boards(
    page_pin_indptr: np.ndarray,
    page_pin_indices: np.ndarray,
    pin_board_indptr: np.ndarray,
    pin_board_indices: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (page, pin, board) with the page linked by the pin and the pin on the board, as three int64
    arrays in page order (then the page's pin order, then the pin's board order)."""
    page, pins = csr_to_edges(page_pin_indptr, page_pin_indices)
    lo = np.asarray(pin_board_indptr, dtype=np.int64)[pins]
    per_edge = np.asarray(pin_board_indptr, dtype=np.int64)[pins + 1] - lo  # boards of each (page, pin) edge
    # positions lo..hi-1 of every edge, flattened: a running index minus each run's start, plus its lo
    starts = np.repeat(np.cumsum(per_edge) - per_edge, per_edge)
    at = np.arange(int(per_edge.sum()), dtype=np.int64) - starts + np.repeat(lo, per_edge)
    board = np.asarray(pin_board_indices, dtype=np.int64)[at]
    return np.repeat(page, per_edge), np.repeat(pins, per_edge), board


def eligible_pins(created_at: np.ndarray | None, n_pins: int, before: int | None) -> np.ndarray:
    """(n_pins,) bool: the pins whose targets may enter pin means: every pin when ``before`` is None, else
    those created before ``before`` (unix seconds). Stricter than for training targets: a pin of unknown
    time (``UNKNOWN_TIME``) is left out, since it may be from the test period."""
    if before is None:
        return np.ones(n_pins, dtype=bool)
    if created_at is None:
        raise ValueError("pin means under a time cut-off need the pins' created_at")
    if len(created_at) != n_pins:
        raise ValueError(f"created_at has {len(created_at)} rows, expected one per pin ({n_pins})")
    created = np.asarray(created_at)
    return (created != UNKNOWN_TIME) & (created < before)


@dataclass(frozen=True)
class BoardMeans:
    """Board means in three small tables rather than one (n_pages, S, D) table: most slots read their
    board's plain mean; only a (page, slot) that holds some of the page's own eligible pins reads a row of
    its own, the mean less those pins."""

    board: np.ndarray  # (n_boards + 1, D) float16: each board's mean over its eligible pins; the last row zeros
    fixed: np.ndarray  # (n_fixed, D) float16: the corrected means (zeros where none of the board's pins is left)
    at: np.ndarray  # (n_pages, S) int32: the row of ``fixed`` a slot reads, -1 = its board's row

    @property
    def dim(self) -> int:
        return int(self.board.shape[1])

    def dense(self, boards: np.ndarray) -> np.ndarray:
        """(n_pages, S, D) float16: what each slot of ``boards`` (the board table they were made for) reads."""
        out = self.board[np.where(boards >= 0, boards, len(self.board) - 1)]
        fixed = self.at >= 0
        out[fixed] = self.fixed[self.at[fixed]]
        return out


@dataclass(frozen=True)
class BoardTotals:
    """Each board's float64 sum of its eligible pins' targets and their count: what board means start from,
    worth keeping where many pages are served one at a time (``serve``)."""

    sums: np.ndarray  # (n_boards, D) float64
    counts: np.ndarray  # (n_boards,) int64


def board_totals(
    pin_board_indptr: np.ndarray,
    pin_board_indices: np.ndarray,
    targets: np.ndarray,
    eligible: np.ndarray,
    n_boards: int | None = None,
    used: np.ndarray | None = None,
) -> BoardTotals:
    """Sums and counts of the eligible pins of each board (of the boards flagged in ``used``, when given;
    the others stay zero)."""
    n_boards = int(np.max(pin_board_indices, initial=-1)) + 1 if n_boards is None else n_boards
    member_pin, member_board = csr_to_edges(pin_board_indptr, pin_board_indices)
    keep = np.asarray(eligible, dtype=bool)[member_pin]
    if used is not None:
        keep &= used[member_board]
    pick, row = np.unique(member_pin[keep], return_inverse=True)
    dense = np.asarray(targets[pick], dtype=np.float64)  # (n_read, D): the only target rows read
    sums, counts = _sums(member_board[keep], row, n_boards, dense)
    return BoardTotals(sums=sums, counts=counts)


def board_means(
    page_pin_indptr: np.ndarray,
    page_pin_indices: np.ndarray,
    pin_board_indptr: np.ndarray,
    pin_board_indices: np.ndarray,
    boards: np.ndarray,
    targets: np.ndarray,
    eligible: np.ndarray,
    totals: BoardTotals | None = None,
) -> BoardMeans:
    """For page p and slot s, the mean of ``targets`` over the eligible pins of board ``boards[p, s]`` that
    are not p's own pins (its page -> pin list); zeros where the slot is empty or no such pin is left.

    ``boards`` is the (n_pages, S) board table of the board tokens (``features.page_boards``, -1 = none) and
    ``targets`` the (n_pins, D) pin targets (memory-mapped is fine: only eligible rows are read, into
    float64 copies). A page's pin list must hold each pin once, as the graph stage writes it. ``totals``
    (``board_totals`` over every board) saves summing the boards again.
    """
    boards = np.asarray(boards)
    n_pages, slots = boards.shape
    dim = targets.shape[1]
    if slots == 0:
        return BoardMeans(
            np.zeros((1, dim), np.float16), np.zeros((0, dim), np.float16), np.zeros((n_pages, 0), np.int32)
        )
    eligible = np.asarray(eligible, dtype=bool)
    if totals is None:
        n_boards = max(int(np.max(boards, initial=-1)) + 1, int(np.max(pin_board_indices, initial=-1)) + 1)
        used = np.zeros(n_boards, dtype=bool)
        used[boards[boards >= 0]] = True  # only the boards that some slot holds are summed
        totals = board_totals(pin_board_indptr, pin_board_indices, targets, eligible, n_boards, used)
    board_sum, board_count = totals.sums, totals.counts
    mean = board_sum / np.maximum(board_count, 1)[:, None]  # a board with no eligible pins sums to zeros
    board = np.vstack([mean, np.zeros((1, dim))]).astype(np.float16)

    # the (page, slot)s that hold some of the page's own eligible pins: their board's sum less those pins
    page, pin, edge_board = page_pin_boards(page_pin_indptr, page_pin_indices, pin_board_indptr, pin_board_indices)
    keep = eligible[pin]
    page, pin, edge_board = page[keep], pin[keep], edge_board[keep]
    match = boards[page] == edge_board[:, None]  # (E, S): the slot holding the edge's board, if any
    on_slot = match.any(axis=1)
    key = page[on_slot] * slots + match[on_slot].argmax(axis=1)
    order = np.argsort(key, kind="stable")
    pick, row = np.unique(pin[on_slot][order], return_inverse=True)
    dense = np.asarray(targets[pick], dtype=np.float64)  # the own pins' targets
    key = key[order]
    keys, starts = np.unique(key, return_index=True)
    starts = np.append(starts, len(key))
    fixed = np.zeros((len(keys), dim), dtype=np.float16)
    for lo in range(0, len(keys), CHUNK_KEYS):  # in chunks: small float64 temporaries
        hi = min(lo + CHUNK_KEYS, len(keys))
        e = slice(starts[lo], starts[hi])
        own_sum, own_count = _sums(np.searchsorted(keys[lo:hi], key[e]), row[e], hi - lo, dense)
        b = boards[keys[lo:hi] // slots, keys[lo:hi] % slots]
        np.subtract(board_sum[b], own_sum, out=own_sum)  # the board's sum less the page's own pins
        count = board_count[b] - own_count
        own_sum /= np.maximum(count, 1)[:, None]
        own_sum[count <= 0] = 0.0  # none of the board's pins left (not a rounding residue)
        fixed[lo:hi] = own_sum
    at = np.full((n_pages, slots), -1, dtype=np.int32)
    at.reshape(-1)[keys] = np.arange(len(keys), dtype=np.int32)
    return BoardMeans(board=board, fixed=fixed, at=at)


def _sums(group: np.ndarray, row: np.ndarray, n_groups: int, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_groups, D) float64 sums of ``dense[row]`` by ``group``, and (n_groups,) counts."""
    ones = np.ones(len(group), dtype=np.float64)
    select = sp.csr_matrix((ones, (group, row)), shape=(n_groups, len(dense)))
    return np.asarray(select @ dense), np.bincount(group, minlength=n_groups)


def page_means(
    page_pin_indptr: np.ndarray, page_pin_indices: np.ndarray, targets: np.ndarray, eligible: np.ndarray
) -> np.ndarray:
    """(n_pages, D) float16: each page's mean target over its eligible pins; zeros for a page with none.

    A page reads this row only as another page's neighbour (``PageFeatures.gather``), masked where the two
    share a pin (``shares_a_pin``), so that no page reads its own positives.
    """
    n_pages = len(page_pin_indptr) - 1
    page, pins = csr_to_edges(page_pin_indptr, page_pin_indices)
    keep = np.asarray(eligible, dtype=bool)[pins]
    page, pins = page[keep], pins[keep]
    pick = np.unique(pins)
    dense = np.asarray(targets[pick], dtype=np.float64)
    row = np.searchsorted(pick, pins)
    out = np.zeros((n_pages, targets.shape[1]), dtype=np.float16)
    bounds = np.searchsorted(page, np.arange(0, n_pages + CHUNK_KEYS, CHUNK_KEYS))  # edges come in page order
    for i, lo in enumerate(range(0, n_pages, CHUNK_KEYS)):  # in chunks: small float64 temporaries
        hi = min(lo + CHUNK_KEYS, n_pages)
        e = slice(bounds[i], bounds[i + 1])
        total, count = _sums(page[e] - lo, row[e], hi - lo, dense)
        total /= np.maximum(count, 1)[:, None]  # in place: a page with no pins sums to exact zeros
        out[lo:hi] = total
    return out


def shares_a_pin(page_pin_indptr: np.ndarray, page_pin_indices: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """(n_pages, K) bool: True where neighbour ``neighbours[p, k]`` is p itself or links one of p's pins (a
    pin that links several pages); False for -1 slots.

    Linear in (page, pin) edges x K: each edge of a pin on several pages looks its page's neighbours up in
    the sorted (page, pin) keys of those edges, so a pin on thousands of pages costs no pairs of pages.
    """
    n_pages = len(page_pin_indptr) - 1
    page, pins = csr_to_edges(page_pin_indptr, page_pin_indices)
    nbr = np.asarray(neighbours, dtype=np.int64)
    out = (nbr >= 0) & (nbr == np.arange(n_pages, dtype=np.int64)[:, None])  # a page is its own neighbour
    if not len(pins) or nbr.shape[1] == 0:
        return out
    n_pins = int(pins.max()) + 1
    on_several = np.bincount(pins, minlength=n_pins)[pins] > 1  # only such pins can be shared
    page, pin = page[on_several], pins[on_several]
    keys = np.unique(page * n_pins + pin)
    if not len(keys):
        return out
    probe = nbr[page] * n_pins + pin[:, None]  # (E, K): does neighbour k of the edge's page link its pin?
    hit = (nbr[page] >= 0) & (keys[np.minimum(np.searchsorted(keys, probe), len(keys) - 1)] == probe)
    some = np.flatnonzero(hit.any(axis=1))
    np.logical_or.at(out, page[some], hit[some])
    return out
